//! The limits of the filter engine (`fednode_kit::filter::Limits`): the
//! JSONPath visit budget per message, the size of a filter's source and of
//! its regexes.

use std::time::{Duration, Instant};

use fednode_kit::filter::{Criterion, Filter, FilterError, FilterSpec, Limits, Outcome};
use serde_json::{json, Value};

fn compile(path: &str, op: &str, value: Option<Value>) -> Filter {
    Filter::compile(&FilterSpec::single(Criterion::new(path, op, value)))
        .unwrap_or_else(|e| panic!("{path} {op}: {}", FilterError::join(&e)))
}

fn compile_errors(spec: &FilterSpec, limits: &Limits) -> Vec<String> {
    match Filter::compile_with_limits(spec, limits) {
        Ok(_) => panic!("{spec:?} should not compile"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// `{"a":{"a":…{"a":"end"}…}}`, `depth` objects deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("end"), |inner, _| json!({ "a": inner }))
}

#[test]
fn repeated_descendants_on_a_deep_message_are_over_budget_fast() {
    let message = nested(28);
    assert!(serde_json::to_vec(&message).unwrap().len() <= 192);
    let path = format!("${}", "..a".repeat(8));
    // The outcome does not depend on the operator: every path is walked in
    // full, so `exists` (which the first value would decide) is over budget too.
    for (op, value) in [("exists", None), ("==", Some(json!("never")))] {
        let filter = compile(&path, op, value);
        let started = Instant::now();
        let outcome = filter.evaluate(&message);
        let elapsed = started.elapsed();
        assert_eq!(outcome, Outcome::OverBudget, "{op}");
        assert!(!filter.matches(&message), "{op}");
        assert!(
            elapsed < Duration::from_millis(100),
            "{op}: took {elapsed:?}"
        );
    }
    // The bytes entry point says the same.
    let filter = compile(&path, "exists", None);
    let bytes = serde_json::to_vec(&message).unwrap();
    assert_eq!(filter.evaluate_bytes(&bytes), Outcome::OverBudget);
    assert!(!filter.matches_bytes(&bytes));
}

#[test]
fn descendants_within_the_budget_keep_their_answers() {
    let message = nested(28);
    // 28 `a` members below the root, 28 objects: 56 visits.
    let filter = compile("$..a", "==", Some(json!("end")));
    assert_eq!(filter.evaluate(&message), Outcome::Match);
    assert_eq!(
        compile("$..a..a", "exists", None).evaluate(&message),
        Outcome::Match
    );
    assert_eq!(
        compile("$..b", "exists", None).evaluate(&message),
        Outcome::NoMatch
    );
    let doc = json!({"x": [{"b": 1}, {"c": {"b": 7}}], "b": 2});
    assert!(compile("$..b", "==", Some(json!(7))).matches(&doc));
    assert!(compile("$.x[0:1]..b", "==", Some(json!(1))).matches(&doc));
    assert!(!compile("$.x[0:1]..b", "==", Some(json!(7))).matches(&doc));
    assert!(compile("$['b','x']", "==", Some(json!(2))).matches(&doc));
    assert!(compile("$.x[?@.c].c.b", ">", Some(json!(5))).matches(&doc));
}

#[test]
fn the_budget_is_ten_thousand_visits() {
    let limits = Limits::default();
    assert_eq!(limits.max_visits, 10_000);
    // `$.x` is one visit, each element one more.
    let filter = compile("$.x[*]", "==", Some(json!(-1)));
    let doc = |n: usize| json!({ "x": vec![0; n] });
    assert_eq!(filter.evaluate(&doc(9_999)), Outcome::NoMatch);
    assert_eq!(filter.evaluate(&doc(10_000)), Outcome::OverBudget);
    // Even when the first element would have matched.
    let first = compile("$.x[*]", "==", Some(json!(0)));
    assert_eq!(first.evaluate(&doc(9_999)), Outcome::Match);
    assert_eq!(first.evaluate(&doc(10_000)), Outcome::OverBudget);
}

#[test]
fn the_budget_is_shared_by_the_criteria_of_a_filter() {
    let limits = Limits {
        max_visits: 5,
        ..Limits::default()
    };
    let spec = |criteria: Value| FilterSpec::from_value(&criteria).unwrap();
    let doc = json!({"a": [1, 2], "b": [3, 4]});
    // 3 visits each: 6 together.
    let both = spec(json!({"filters": [
        {"path": "$.a[*]", "operator": "==", "value": 1},
        {"path": "$.b[*]", "operator": "==", "value": 3}
    ], "match": "any"}));
    let filter = Filter::compile_with_limits(&both, &limits).unwrap();
    assert_eq!(filter.evaluate(&doc), Outcome::OverBudget);
    assert_eq!(filter.limits(), &limits);
    let one = spec(json!({"filters": [{"path": "$.a[*]", "operator": "==", "value": 1}]}));
    let filter = Filter::compile_with_limits(&one, &limits).unwrap();
    assert_eq!(filter.evaluate(&doc), Outcome::Match);
}

#[test]
fn filter_selectors_are_bounded_before_the_engine_runs() {
    let message = nested(28);
    let filter = compile("$..[?@..a..a..a..a]", "exists", None);
    let started = Instant::now();
    assert_eq!(filter.evaluate(&message), Outcome::OverBudget);
    assert!(started.elapsed() < Duration::from_millis(100));
    // Within the budget, the engine's answer.
    let doc = json!({"r": [{"b": 1}, {"b": 60}, {"c": 7}], "min": 10});
    assert!(compile("$.r[?@.b > $.min].b", "==", Some(json!(60))).matches(&doc));
    assert!(!compile("$.r[?@.b > $.min].b", "==", Some(json!(1))).matches(&doc));
    assert!(compile("$.r[?length(@) == 1].c", "exists", None).matches(&doc));
}

#[test]
fn comparing_large_nodes_in_a_condition_is_charged_by_their_size() {
    // `big` at the root and a copy of it at the bottom of a 20-deep chain.
    let big = json!("x".repeat(200 * 1024));
    let mut message = (0..20).fold(
        json!({ "a": big.clone() }),
        |inner, _| json!({ "n": inner }),
    );
    message["big"] = big;
    // Once per candidate: within the budget, and the engine's answer.
    let once = compile("$..[?@.a == $.big]", "exists", None);
    assert_eq!(once.evaluate(&message), Outcome::Match);
    // Repeated descents make the bottom node a candidate many times: within
    // the budget as a mere test, over it when each time compares 200 KiB
    // (and fast).
    let walk_only = compile("$..*..*..[?@.a]", "exists", None);
    assert_eq!(walk_only.evaluate(&message), Outcome::Match);
    let repeated = compile("$..*..*..[?@.a == $.big]", "exists", None);
    let started = Instant::now();
    assert_eq!(repeated.evaluate(&message), Outcome::OverBudget);
    assert!(started.elapsed() < Duration::from_millis(100));
    // `length()` of a string reads it whole: a visit per KiB.
    let long = json!({"s": ["x".repeat(11 * 1024 * 1024)]});
    assert_eq!(
        compile("$.s[?length(@) > 1]", "exists", None).evaluate(&long),
        Outcome::OverBudget
    );
    let short = json!({"s": ["x".repeat(1024 * 1024)]});
    assert_eq!(
        compile("$.s[?length(@) > 1]", "exists", None).evaluate(&short),
        Outcome::Match
    );
}

#[test]
fn a_filter_longer_than_max_filter_bytes_is_refused() {
    let spec = FilterSpec::single(Criterion::new(
        "$.name",
        "==",
        Some(json!("x".repeat(5_000))),
    ));
    assert_eq!(
        compile_errors(&spec, &Limits::default()),
        vec!["filter: the filter is longer than 4096 bytes (max_filter_bytes)"]
    );
    // Filter::compile applies the default limits.
    assert!(Filter::compile(&spec).is_err());
    // The size is that of the canonical JSON form; the limit is inclusive.
    let small = FilterSpec::single(Criterion::new("$.a", "==", Some(json!("abc"))));
    let len = serde_json::to_vec(&small).unwrap().len();
    let at = |max_filter_bytes| Limits {
        max_filter_bytes,
        ..Limits::default()
    };
    assert!(Filter::compile_with_limits(&small, &at(len)).is_ok());
    assert_eq!(
        compile_errors(&small, &at(len - 1)),
        vec![format!(
            "filter: the filter is longer than {} bytes (max_filter_bytes)",
            len - 1
        )]
    );
    // From subscribe params.
    let params = json!({"filters": [{"path": "$.a", "operator": "exists"}]});
    assert!(Filter::from_value_with_limits(&params, &at(64)).is_ok());
    let err = Filter::from_value_with_limits(&params, &at(16)).unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "filters: the filter is longer than 16 bytes (max_filter_bytes)"
    );
}

#[test]
fn a_regex_over_256_kib_compiled_is_refused() {
    let spec = FilterSpec::single(Criterion::new(
        "$.message",
        "matches",
        Some(json!("\\w{1000}")),
    ));
    assert_eq!(
        compile_errors(&spec, &Limits::default()),
        vec![
            "filter.value: regex \"\\\\w{1000}\" compiles to more than 262144 bytes (the limit of a regex)"
        ]
    );
    // A smaller limit refuses a smaller regex.
    let spec = FilterSpec::single(Criterion::new("$.m", "matches", Some(json!("[a-z]{64}"))));
    let tight = Limits {
        max_regex_bytes: 1024,
        ..Limits::default()
    };
    assert!(Filter::compile_with_limits(&spec, &tight).is_err());
    let filter = Filter::compile(&spec).unwrap();
    assert!(filter.matches(&json!({"m": "a".repeat(64)})));
}

#[test]
fn jsonpath_regex_functions_are_refused() {
    let spec = FilterSpec::single(Criterion::new("$.a[?match(@.b, 'x.*')]", "exists", None));
    let errors = compile_errors(&spec, &Limits::default());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("filter.path: the JSONPath function match() is not supported"),
        "{errors:?}"
    );
}
