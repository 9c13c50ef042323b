//! Behaviour of the filter engine (`fednode_kit::filter`): every operator in
//! a table, `match: all|any`, spec shapes, compile errors, and the property
//! that `!=` is the negation of `==` on a path resolving to one value.

use fednode_kit::filter::{CriteriaSpec, Criterion, Filter, FilterError, FilterSpec, MatchMode};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The document most table rows are evaluated against.
fn doc() -> Value {
    json!({
        "value": 75,
        "ratio": 0.5,
        "big": 9007199254740993u64,
        "name": "sensor-12",
        "level": "Warning",
        "other_level": "ERROR",
        "word": "banana",
        "flag": true,
        "off": false,
        "nothing": null,
        "tags": ["eeg", "alpha", 3, null],
        "nums": [1, 2.5, 40],
        "empty": [],
        "nested": {"a": {"b": 3}},
        "readings": [{"b": 1}, {"b": 60}, {"c": 7}],
        "a b": "spaced",
        "obj": {"x": 1, "y": [1, 2]}
    })
}

fn criterion(path: &str, op: &str, value: Option<Value>) -> Criterion {
    Criterion::new(path, op, value)
}

fn compile_one(path: &str, op: &str, value: Option<Value>) -> Filter {
    Filter::compile(&FilterSpec::single(criterion(path, op, value)))
        .unwrap_or_else(|e| panic!("{path} {op}: {}", FilterError::join(&e)))
}

#[test]
fn operator_table() {
    // (path, operator, value, expected against doc())
    let rows: Vec<(&str, &str, Option<Value>, bool)> = vec![
        // == / != on numbers: int and float alike.
        ("$.value", "==", Some(json!(75)), true),
        ("$.value", "==", Some(json!(75.0)), true),
        ("$.value", "==", Some(json!(75.5)), false),
        ("$.ratio", "==", Some(json!(0.5)), true),
        ("$.big", "==", Some(json!(9007199254740992.0)), false),
        ("$.value", "!=", Some(json!(75.0)), false),
        ("$.value", "!=", Some(json!(76)), true),
        // Number vs string: never equal, so != holds; ordering is false.
        ("$.value", "==", Some(json!("75")), false),
        ("$.value", "!=", Some(json!("75")), true),
        ("$.value", ">", Some(json!("50")), false),
        ("$.value", "<", Some(json!("50")), false),
        // Ordering on numbers.
        ("$.value", ">", Some(json!(50)), true),
        ("$.value", ">", Some(json!(75)), false),
        ("$.value", ">=", Some(json!(75)), true),
        ("$.value", ">=", Some(json!(75.1)), false),
        ("$.value", "<", Some(json!(75.1)), true),
        ("$.value", "<", Some(json!(75)), false),
        ("$.value", "<=", Some(json!(75)), true),
        ("$.ratio", "<", Some(json!(1)), true),
        ("$.ratio", ">", Some(json!(0)), true),
        ("$.big", ">", Some(json!(9007199254740992u64)), true),
        // Strings: exact equality, lexical order.
        ("$.word", "==", Some(json!("banana")), true),
        ("$.word", "==", Some(json!("Banana")), false),
        ("$.word", "!=", Some(json!("apple")), true),
        ("$.word", ">", Some(json!("apple")), true),
        ("$.word", "<", Some(json!("cherry")), true),
        ("$.word", ">=", Some(json!("banana")), true),
        ("$.word", "<=", Some(json!("banan")), false),
        // Severity words: by rank, case-insensitive, when both sides are words.
        ("$.level", ">=", Some(json!("warning")), true),
        ("$.level", ">=", Some(json!("error")), false),
        ("$.level", ">", Some(json!("info")), true),
        ("$.level", "<", Some(json!("EMERGENCY")), true),
        ("$.level", "<=", Some(json!("notice")), false),
        ("$.level", "==", Some(json!("WARNING")), true),
        ("$.level", "!=", Some(json!("warning")), false),
        ("$.other_level", ">", Some(json!("Warning")), true),
        ("$.other_level", "<", Some(json!("critical")), true),
        // Lexically "error" < "info", but by severity it is above.
        ("$.other_level", ">", Some(json!("info")), true),
        // Only one side a severity word: lexical.
        ("$.level", ">", Some(json!("Walrus")), true),
        ("$.level", "==", Some(json!("warn")), false),
        // contains: substring in strings, element equality in arrays.
        ("$.name", "contains", Some(json!("sor-1")), true),
        ("$.name", "contains", Some(json!("SOR")), false),
        ("$.name", "contains", Some(json!(12)), false),
        ("$.tags", "contains", Some(json!("alpha")), true),
        ("$.tags", "contains", Some(json!("alp")), false),
        ("$.tags", "contains", Some(json!(3.0)), true),
        ("$.tags", "contains", Some(json!(null)), true),
        ("$.nums", "contains", Some(json!(2.5)), true),
        ("$.empty", "contains", Some(json!(1)), false),
        ("$.value", "contains", Some(json!(7)), false),
        ("$.obj", "contains", Some(json!("x")), false),
        // matches: regex search in strings; false for non-strings.
        ("$.name", "matches", Some(json!("^sensor-\\d+$")), true),
        ("$.name", "matches", Some(json!("\\d{3}")), false),
        ("$.name", "matches", Some(json!("sor")), true),
        ("$.value", "matches", Some(json!("75")), false),
        // exists: the value is ignored; null counts as existing.
        ("$.value", "exists", None, true),
        ("$.nothing", "exists", None, true),
        ("$.nothing", "exists", Some(json!(false)), true),
        ("$.missing", "exists", None, false),
        ("$.nested.a.b", "exists", None, true),
        ("$.nested.a.c", "exists", None, false),
        ("$.tags[3]", "exists", None, true),
        ("$.tags[4]", "exists", None, false),
        // Missing paths: everything false except exists, including !=.
        ("$.missing", "==", Some(json!(null)), false),
        ("$.missing", "!=", Some(json!(1)), false),
        ("$.missing", ">", Some(json!(0)), false),
        ("$.missing", "contains", Some(json!("a")), false),
        ("$.missing", "matches", Some(json!(".*")), false),
        ("$.value.deeper", "==", Some(json!(75)), false),
        // null and booleans: == / != only.
        ("$.nothing", "==", Some(json!(null)), true),
        ("$.nothing", "!=", Some(json!(null)), false),
        ("$.nothing", "==", Some(json!(0)), false),
        ("$.nothing", "!=", Some(json!(false)), true),
        ("$.flag", "==", Some(json!(true)), true),
        ("$.flag", "!=", Some(json!(true)), false),
        ("$.off", "==", Some(json!(false)), true),
        ("$.flag", "==", Some(json!("true")), false),
        ("$.flag", "==", Some(json!(1)), false),
        ("$.flag", ">", Some(json!(0)), false),
        // Arrays and objects: structural ==, numbers inside compare numerically.
        ("$.nums", "==", Some(json!([1, 2.5, 40.0])), true),
        ("$.nums", "==", Some(json!([1, 2.5])), false),
        ("$.nums", "!=", Some(json!([40, 2.5, 1])), true),
        ("$.obj", "==", Some(json!({"y": [1, 2], "x": 1.0})), true),
        ("$.obj", "==", Some(json!({"x": 1})), false),
        ("$.obj", "!=", Some(json!({"x": 1})), true),
        // Paths: index, negative index, bracket names, wildcards (any value).
        ("$.tags[0]", "==", Some(json!("eeg")), true),
        ("$.tags[-2]", "==", Some(json!(3)), true),
        ("$['a b']", "==", Some(json!("spaced")), true),
        ("$['nested']['a'].b", "==", Some(json!(3)), true),
        ("$.readings[*].b", ">", Some(json!(50)), true),
        ("$.readings[*].b", ">", Some(json!(60)), false),
        ("$.readings[*].b", "==", Some(json!(1)), true),
        ("$.readings[*].b", "!=", Some(json!(1)), true),
        ("$.readings[*].c", "exists", None, true),
        ("$.readings[*].d", "exists", None, false),
        ("$.readings[*].d", "!=", Some(json!(1)), false),
        ("$.empty[*]", "exists", None, false),
        ("$.nums[*]", ">=", Some(json!(40)), true),
        ("$..b", "==", Some(json!(3)), true),
        ("$.nums[0:2]", ">", Some(json!(2)), true),
        ("$.readings[?@.b > 10].b", "==", Some(json!(60)), true),
        ("$.tags[*]", "matches", Some(json!("^alp")), true),
    ];

    let doc = doc();
    let mut failures = Vec::new();
    for (path, op, value, expected) in &rows {
        let filter = compile_one(path, op, value.clone());
        if filter.matches(&doc) != *expected {
            failures.push(format!("{path} {op} {value:?}: expected {expected}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn match_all_and_any() {
    let yes = criterion("$.value", ">", Some(json!(50)));
    let no = criterion("$.word", "==", Some(json!("apple")));
    let doc = doc();
    let build = |criteria: Vec<Criterion>, mode| {
        Filter::compile(&FilterSpec::new(CriteriaSpec::Many(criteria), mode)).unwrap()
    };

    assert!(build(vec![yes.clone(), yes.clone()], MatchMode::All).matches(&doc));
    assert!(!build(vec![yes.clone(), no.clone()], MatchMode::All).matches(&doc));
    assert!(build(vec![yes.clone(), no.clone()], MatchMode::Any).matches(&doc));
    assert!(!build(vec![no.clone(), no.clone()], MatchMode::Any).matches(&doc));
    assert_eq!(MatchMode::default(), MatchMode::All);
}

#[test]
fn non_object_documents_and_bytes() {
    let f = compile_one("$", "==", Some(json!(42)));
    assert!(f.matches(&json!(42)));
    assert!(f.matches_bytes(b"42.0"));
    assert!(!f.matches_bytes(b"{not json"));
    assert!(!compile_one("$.a", "exists", None).matches(&json!([1, 2])));
    assert!(compile_one("$[1]", "==", Some(json!(2))).matches(&json!([1, 2])));
    assert!(compile_one("$.value", ">", Some(json!(50))).matches_bytes(br#"{"value": 51}"#));
}

#[test]
fn spec_shapes() {
    let doc = doc();
    // subscribe: {filter: {...}}
    let f =
        Filter::from_value(&json!({"filter": {"path": "$.value", "operator": ">", "value": 50}}))
            .unwrap();
    assert!(f.matches(&doc));
    assert_eq!(f.spec().error_prefix, "filter");
    // subscribe: {filters: [...], match}
    let spec = FilterSpec::from_value(&json!({
        "filters": [
            {"path": "$.value", "operator": "<", "value": 50},
            {"path": "$.level", "operator": ">=", "value": "warning"}
        ],
        "match": "any"
    }))
    .unwrap();
    assert_eq!(spec.match_mode, MatchMode::Any);
    assert!(Filter::compile(&spec).unwrap().matches(&doc));
    // A bare criterion and a bare list.
    assert!(
        Filter::from_value(&json!({"path": "$.flag", "operator": "==", "value": true}))
            .unwrap()
            .matches(&doc)
    );
    assert!(
        Filter::from_value(&json!([{"path": "$.flag", "operator": "exists"}]))
            .unwrap()
            .matches(&doc)
    );
    // Serde round trip through the canonical form.
    let back: FilterSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(back.criteria.as_slice(), spec.criteria.as_slice());
    assert_eq!(back.match_mode, MatchMode::Any);
    // `value: null` is a value, not an absent one.
    let c: Criterion =
        serde_json::from_value(json!({"path": "$.nothing", "operator": "==", "value": null}))
            .unwrap();
    assert_eq!(c.value, Some(Value::Null));
    let c: Criterion =
        serde_json::from_value(json!({"path": "$.nothing", "operator": "exists"})).unwrap();
    assert_eq!(c.value, None);
}

#[test]
fn json_filter_config_embedding() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        criteria: CriteriaSpec,
        #[serde(rename = "match", default)]
        match_mode: MatchMode,
    }
    let cfg: Config = serde_json::from_value(json!({
        "criteria": [{"path": "$.value", "operator": ">", "value": 100}, {"path": "$.flag", "operator": "==", "value": true}],
        "match": "any"
    }))
    .unwrap();
    let filter = Filter::compile(&FilterSpec::new(cfg.criteria, cfg.match_mode)).unwrap();
    assert!(filter.matches(&doc()));

    let cfg: Config = serde_json::from_value(
        json!({"criteria": {"path": "$.value", "operator": ">", "value": 100}}),
    )
    .unwrap();
    assert_eq!(cfg.match_mode, MatchMode::All);
    assert!(matches!(cfg.criteria, CriteriaSpec::One(_)));

    let err = serde_json::from_value::<Config>(
        json!({"criteria": {"paht": "$.a", "operator": "exists"}}),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("unknown field `paht`"), "{err}");
    let err = serde_json::from_value::<Config>(json!({"criteria": [], "match": "some"}))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown variant `some`"), "{err}");
    // The same checks through from_criteria, with located errors.
    let errs = FilterSpec::from_criteria(
        &json!([{"path": "$.a", "operator": "exists", "extra": 1}]),
        Some("most"),
    )
    .unwrap_err();
    let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        lines[0].starts_with("criteria[0]: unknown field `extra`"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "match: unknown match mode \"most\" (expected \"all\" or \"any\")"
    );
    let spec = FilterSpec::from_criteria(
        &json!({"path": "$.value", "operator": ">", "value": 1}),
        None,
    )
    .unwrap();
    assert_eq!(spec.match_mode, MatchMode::All);
    assert!(spec.compile().unwrap().matches(&doc()));
}

fn compile_errors(criteria: Value) -> Vec<String> {
    let spec = FilterSpec::from_criteria(&criteria, None).expect("shape is valid");
    match Filter::compile(&spec) {
        Ok(_) => panic!("{criteria} should not compile"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn compile_errors_name_the_bad_field() {
    let errs = compile_errors(json!([
        {"path": "$.a", "operator": "==", "value": 1},
        {"path": "$.b", "operator": "=>", "value": 2}
    ]));
    assert_eq!(
        errs,
        vec!["criteria[1].operator: unknown operator \"=>\" (valid operators: ==, !=, >, >=, <, <=, contains, exists, matches)"]
    );

    let errs = compile_errors(json!([{"path": "$.a[", "operator": "==", "value": 1}]));
    assert_eq!(
        errs,
        vec!["criteria[0].path: invalid JSONPath \"$.a[\": expected selector at column 5"]
    );

    let errs = compile_errors(json!([{"path": "a.b", "operator": "exists"}]));
    assert!(
        errs[0].starts_with("criteria[0].path: invalid JSONPath \"a.b\": "),
        "{errs:?}"
    );
    assert!(errs[0].contains("starts with \"$\""), "{errs:?}");

    let errs =
        compile_errors(json!([{"path": "$.a", "operator": "matches", "value": "(unclosed"}]));
    assert_eq!(
        errs,
        vec!["criteria[0].value: invalid regex \"(unclosed\": unclosed group"]
    );

    let errs = compile_errors(json!({"path": "$.a", "operator": "matches", "value": 5}));
    assert_eq!(
        errs,
        vec!["criteria.value: operator \"matches\" needs a string (a regular expression), got a number"]
    );

    let errs = compile_errors(json!({"path": "$.a", "operator": ">"}));
    assert_eq!(errs, vec!["criteria.value: operator \">\" needs a value"]);

    let errs = compile_errors(json!({"path": "$.a", "operator": "<=", "value": [1]}));
    assert_eq!(
        errs,
        vec!["criteria.value: operator \"<=\" compares numbers or strings, got an array"]
    );

    // Every problem is reported, not only the first.
    let errs = compile_errors(json!([
        {"path": "$$", "operator": "~", "value": 1},
        {"path": "$.ok", "operator": "exists"},
        {"path": "$.c", "operator": "matches", "value": "["}
    ]));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs[0].starts_with("criteria[0].path: invalid JSONPath"));
    assert!(errs[1].starts_with("criteria[0].operator: unknown operator \"~\""));
    assert!(errs[2].starts_with("criteria[2].value: invalid regex \"[\""));

    let errs = compile_errors(json!([]));
    assert_eq!(errs, vec!["criteria: at least one criterion is needed"]);
}

#[test]
fn subscribe_errors_use_filter_prefixes() {
    let join = |v: Value| FilterError::join(&Filter::from_value(&v).unwrap_err());
    assert_eq!(
        join(json!({"filter": {"path": "$.a", "operator": "=>", "value": 1}})),
        "filter.operator: unknown operator \"=>\" (valid operators: ==, !=, >, >=, <, <=, contains, exists, matches)"
    );
    assert!(join(json!({"filters": [{"path": "$.a", "operator": "exists"}, {"path": "$.a", "operator": "nope"}]}))
        .starts_with("filters[1].operator: unknown operator \"nope\""));
    assert!(
        join(json!({"filters": [{"path": "$.a", "operator": "exists"}], "match": "some"}))
            .starts_with("match: ")
    );
    assert!(join(json!({"filters": [], "other": 1})).starts_with("other: unknown field"));
    assert!(join(json!("x")).starts_with("filter: expected a criterion object"));
    assert!(
        join(json!({"filter": {"path": "$.a"}})).starts_with("filter: missing field `operator`")
    );
    // FilterSpec's Deserialize reports the same, joined.
    let err = serde_json::from_value::<FilterSpec>(json!({"filter": 3}))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("filter: expected a criterion object"),
        "{err}"
    );
}

/// Random JSON scalars, with severity words over-represented.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..3).prop_map(|i| json!(i as f64)),
        prop::num::f64::NORMAL.prop_map(Value::from),
        prop::sample::select(vec![
            "debug", "INFO", "Warning", "warning", "error", "x", "", "alert"
        ])
        .prop_map(Value::from),
        ".{0,4}".prop_map(Value::from),
    ]
}

proptest! {
    /// `!=` is exactly `!(==)` whenever the path resolves to one value, on
    /// the direct fast path and through the JSONPath engine alike.
    #[test]
    fn not_equal_is_the_negation_of_equal(data in scalar(), operand in scalar()) {
        let doc = json!({"x": data.clone(), "w": [data]});
        for path in ["$.x", "$.w[*]"] {
            let eq = compile_one(path, "==", Some(operand.clone())).matches(&doc);
            let ne = compile_one(path, "!=", Some(operand.clone())).matches(&doc);
            prop_assert_eq!(ne, !eq, "path {} operand {}", path, operand);
        }
    }

    /// Every scalar equals itself.
    #[test]
    fn equality_is_reflexive(data in scalar()) {
        let doc = json!({"x": data.clone()});
        prop_assert!(compile_one("$.x", "==", Some(data)).matches(&doc));
    }
}
