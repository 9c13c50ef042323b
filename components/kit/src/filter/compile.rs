//! A filter compiled once (paths parsed, regexes built, operands
//! classified) and evaluated many times, within [`Limits`].

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::error::FilterError;
use std::cmp::Ordering;

use super::compare::{Operand, Test};
use super::error::kind;
use super::inspect::inspect;
use super::limits::{Budget, Exceeded, Limits, Outcome};
use super::spec::{Criterion, FilterSpec, MatchMode};
#[cfg(test)]
use super::walk::any_direct;
use super::walk::{walk_direct, Step, Walk};

/// The operators, in the order they are listed in error messages.
const OPERATORS: [&str; 9] = [
    "==", "!=", ">", ">=", "<", "<=", "contains", "exists", "matches",
];

/// A compiled filter: evaluate it with [`Filter::evaluate`] or [`Filter::matches`].
///
/// Cheap to clone relative to compiling, `Send + Sync`, immutable.
#[derive(Debug, Clone)]
pub struct Filter {
    spec: FilterSpec,
    criteria: Vec<Compiled>,
    limits: Limits,
}

impl Filter {
    /// Compiles `spec` within the default [`Limits`], reporting every bad
    /// criterion (not just the first).
    pub fn compile(spec: &FilterSpec) -> Result<Filter, Vec<FilterError>> {
        Filter::compile_with_limits(spec, &Limits::default())
    }

    /// Compiles `spec` within `limits`: a spec longer than
    /// `limits.max_filter_bytes` (in its canonical JSON form) is refused
    /// before anything else, a `matches` regex that compiles to more than
    /// `limits.max_regex_bytes` is refused, and every evaluation may visit
    /// at most `limits.max_visits` nodes.
    pub fn compile_with_limits(
        spec: &FilterSpec,
        limits: &Limits,
    ) -> Result<Filter, Vec<FilterError>> {
        if !fits(spec, limits.max_filter_bytes) {
            return Err(vec![FilterError::new(
                &spec.error_prefix,
                format!(
                    "the filter is longer than {} bytes (max_filter_bytes)",
                    limits.max_filter_bytes
                ),
            )]);
        }
        let slice = spec.criteria.as_slice();
        if slice.is_empty() {
            // An empty list would silently pass everything (all) or nothing
            // (any); neither is what someone who wrote `[]` meant.
            return Err(vec![FilterError::new(
                &spec.error_prefix,
                "at least one criterion is needed",
            )]);
        }
        let mut errors = Vec::new();
        let mut criteria = Vec::with_capacity(slice.len());
        for (i, criterion) in slice.iter().enumerate() {
            let at = spec.criteria.location(&spec.error_prefix, i);
            match Compiled::new(criterion, &at, limits) {
                Ok(c) => criteria.push(c),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Filter {
                spec: spec.clone(),
                criteria,
                limits: *limits,
            })
        } else {
            Err(errors)
        }
    }

    /// Parses any shape [`FilterSpec::from_value`] accepts and compiles it.
    pub fn from_value(value: &Value) -> Result<Filter, Vec<FilterError>> {
        Filter::compile(&FilterSpec::from_value(value)?)
    }

    /// [`Filter::from_value`] within `limits`.
    pub fn from_value_with_limits(
        value: &Value,
        limits: &Limits,
    ) -> Result<Filter, Vec<FilterError>> {
        Filter::compile_with_limits(&FilterSpec::from_value(value)?, limits)
    }

    /// The spec this filter was compiled from (e.g. to show it in `/components`).
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// The limits this filter was compiled with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Evaluates the message `v`: [`Outcome::OverBudget`] when the paths of
    /// the criteria together would visit more than `max_visits` nodes.
    ///
    /// Every criterion's path is walked in full (no early exit on the first
    /// value that decides), so whether a message is over budget depends
    /// only on the filter and the message, not on the values compared.
    pub fn evaluate(&self, v: &Value) -> Outcome {
        let budget = Budget::new(self.limits.max_visits);
        let mut verdict = self.spec.match_mode == MatchMode::All;
        for c in &self.criteria {
            match c.holds(v, &budget) {
                Ok(holds) => match self.spec.match_mode {
                    MatchMode::All => verdict &= holds,
                    MatchMode::Any => verdict |= holds,
                },
                Err(Exceeded) => return Outcome::OverBudget,
            }
        }
        if verdict {
            Outcome::Match
        } else {
            Outcome::NoMatch
        }
    }

    /// Parses `json` and evaluates it; bytes that are not JSON are
    /// [`Outcome::NoMatch`].
    pub fn evaluate_bytes(&self, json: &[u8]) -> Outcome {
        match serde_json::from_slice::<Value>(json) {
            Ok(v) => self.evaluate(&v),
            Err(_) => Outcome::NoMatch,
        }
    }

    /// Whether the message `v` passes the filter (over budget: it does not).
    pub fn matches(&self, v: &Value) -> bool {
        self.evaluate(v).is_match()
    }

    /// Parses `json` and evaluates it; bytes that are not JSON never match.
    pub fn matches_bytes(&self, json: &[u8]) -> bool {
        self.evaluate_bytes(json).is_match()
    }
}

/// Whether the canonical JSON form of `spec` is at most `max` bytes,
/// measured without building it (serialising stops at the limit).
fn fits(spec: &FilterSpec, max: usize) -> bool {
    struct Meter {
        left: usize,
    }
    impl std::io::Write for Meter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.left = self
                .left
                .checked_sub(buf.len())
                .ok_or(std::io::ErrorKind::FileTooLarge)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Meter { left: max }, spec).is_ok()
}

/// One compiled criterion.
#[derive(Debug, Clone)]
struct Compiled {
    path: CompiledPath,
    test: Test,
}

/// A parsed path, and how it is evaluated (see `walk` for the budget).
#[derive(Debug, Clone)]
enum CompiledPath {
    /// Only names, indexes and wildcards: navigated step by step.
    Direct(Vec<Step>),
    /// Anything else (slices, filters, descendants, unions).
    Query(Box<Query>),
}

/// A path that is not [`CompiledPath::Direct`].
#[derive(Debug, Clone)]
struct Query {
    query: JpQuery,
    /// Has filter selectors `[?…]`: the walk only bounds the visits, then
    /// jsonpath-rust evaluates. Without, the walk evaluates.
    filtered: bool,
}

impl Compiled {
    /// Compiles one criterion located at `at`, collecting all its problems.
    fn new(c: &Criterion, at: &str, limits: &Limits) -> Result<Compiled, Vec<FilterError>> {
        let mut errors = Vec::new();
        let path = compile_path(&c.path)
            .map_err(|m| errors.push(FilterError::new(format!("{at}.path"), m)));
        let test =
            compile_test(&c.operator, c.value.as_ref(), at, limits).map_err(|e| errors.push(e));
        match (path, test) {
            (Ok(path), Ok(test)) => Ok(Compiled { path, test }),
            _ => Err(errors),
        }
    }

    /// Whether some value at the path passes the test; every value is
    /// visited (and charged) even after one passed.
    fn holds(&self, root: &Value, budget: &Budget) -> Result<bool, Exceeded> {
        let mut holds = false;
        let mut found = |v: &Value| {
            holds = holds || self.test.holds(v);
            Ok(())
        };
        match &self.path {
            CompiledPath::Direct(steps) => walk_direct(steps, root, budget, &mut found)?,
            CompiledPath::Query(q) if !q.filtered => {
                Walk { root, budget }.run(&q.query.segments, root, &mut found)?
            }
            CompiledPath::Query(q) => {
                Walk { root, budget }.count(&q.query.segments, root)?;
                // The engine only errs on queries that do not yield
                // references, which a parsed `$…` query never is; a filter
                // must not fail a message, so treat it as no match.
                if let Ok(values) = jsonpath_rust::query::js_path_process(&q.query, root) {
                    values.iter().try_for_each(|r| found(r.val))?;
                }
            }
        }
        Ok(holds)
    }
}

/// Parses a JSONPath once and picks the direct-navigation fast path when possible.
fn compile_path(path: &str) -> Result<CompiledPath, String> {
    let query = crate::json::parse_query(path)?;
    let steps: Option<Vec<Step>> = query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(Selector::Name(name)) => Some(Step::Key(name.clone())),
            Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
            Segment::Selector(Selector::Wildcard) => Some(Step::Wildcard),
            _ => None,
        })
        .collect();
    Ok(match steps {
        Some(steps) => CompiledPath::Direct(steps),
        None => CompiledPath::Query(Box::new(Query {
            filtered: inspect(&query.segments)?,
            query,
        })),
    })
}

/// Checks the operator and its value.
fn compile_test(
    operator: &str,
    value: Option<&Value>,
    at: &str,
    limits: &Limits,
) -> Result<Test, FilterError> {
    if !OPERATORS.contains(&operator) {
        return Err(FilterError::new(
            format!("{at}.operator"),
            format!(
                "unknown operator {operator:?} (valid operators: {})",
                OPERATORS.join(", ")
            ),
        ));
    }
    if operator == "exists" {
        return Ok(Test::Exists);
    }
    let value_at = || format!("{at}.value");
    let value = value.ok_or_else(|| {
        FilterError::new(value_at(), format!("operator {operator:?} needs a value"))
    })?;
    let operand = || Operand::new(value.clone());
    let order = |wanted, or_equal| {
        if value.is_number() || value.is_string() {
            Ok(Test::Order {
                wanted,
                or_equal,
                operand: operand(),
            })
        } else {
            // Rejected up front: such a criterion could never be true.
            Err(FilterError::new(
                value_at(),
                format!(
                    "operator {operator:?} compares numbers or strings, got {}",
                    kind(value)
                ),
            ))
        }
    };
    match operator {
        "==" => Ok(Test::Eq(operand())),
        "!=" => Ok(Test::Ne(operand())),
        ">" => order(Ordering::Greater, false),
        ">=" => order(Ordering::Greater, true),
        "<" => order(Ordering::Less, false),
        "<=" => order(Ordering::Less, true),
        "contains" => Ok(Test::Contains(operand())),
        "matches" => {
            let pattern = value.as_str().ok_or_else(|| {
                FilterError::new(
                    value_at(),
                    format!(
                        "operator \"matches\" needs a string (a regular expression), got {}",
                        kind(value)
                    ),
                )
            })?;
            compile_regex(pattern, limits.max_regex_bytes)
                .map(Test::Matches)
                .map_err(|message| FilterError::new(value_at(), message))
        }
        _ => unreachable!("checked against OPERATORS above"),
    }
}

/// Builds a `matches` regex no larger than `max_bytes` once compiled.
fn compile_regex(pattern: &str, max_bytes: usize) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(max_bytes)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "regex {pattern:?} compiles to more than {limit} bytes (the limit of a regex)"
            ),
            e => format!("invalid regex {pattern:?}: {}", one_line_regex_error(&e)),
        })
}

/// The regex crate renders syntax errors over several lines (pattern, caret,
/// `error: …`); keep the `error:` line.
fn one_line_regex_error(e: &regex::Error) -> String {
    let rendered = e.to_string();
    rendered
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| rendered.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl FilterSpec {
    /// Compiles this spec; shorthand for [`Filter::compile`].
    pub fn compile(&self) -> Result<Filter, Vec<FilterError>> {
        Filter::compile(self)
    }
}

#[cfg(test)]
mod tests {
    //! Internals: the direct-navigation fast path must agree with the
    //! jsonpath-rust engine on every simple path.

    use super::super::compare::compare_numbers;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn engine(path: &str, v: &Value) -> Vec<Value> {
        let query = jsonpath_rust::parser::parse_json_path(path).unwrap();
        jsonpath_rust::query::js_path_process(&query, v)
            .unwrap()
            .into_iter()
            .map(|r| r.val.clone())
            .collect()
    }

    fn direct(path: &str, v: &Value) -> Vec<Value> {
        match compile_path(path).unwrap() {
            CompiledPath::Direct(steps) => {
                let mut out = Vec::new();
                any_direct(&steps, v, &mut |found| {
                    out.push(found.clone());
                    false
                });
                out
            }
            CompiledPath::Query(_) => panic!("{path} should take the fast path"),
        }
    }

    #[test]
    fn simple_paths_take_the_fast_path_and_others_do_not() {
        for p in [
            "$",
            "$.a",
            "$.a.b",
            "$['a b']",
            "$.a[0]",
            "$.a[-1]",
            "$[\"x\"][2].y",
            "$.a[*]",
            "$.*",
            "$.a[*].b[0]",
        ] {
            assert!(
                matches!(compile_path(p).unwrap(), CompiledPath::Direct(_)),
                "{p}"
            );
        }
        for p in ["$..a", "$.a[0:2]", "$['a','b']", "$.a[?@.b > 1]", "$..*"] {
            assert!(
                matches!(compile_path(p).unwrap(), CompiledPath::Query(_)),
                "{p}"
            );
        }
    }

    #[test]
    fn fast_path_agrees_with_engine_on_fixed_cases() {
        let doc = json!({
            "a": {"b": 1, "c": [10, 20, {"d": null}]},
            "a b": "spaced",
            "list": [1, 2, 3],
            "0": "zero-key",
            "s": "str"
        });
        let paths = [
            "$",
            "$.a",
            "$.a.b",
            "$.*",
            "$[*]",
            "$.a.*",
            "$.a.c[*]",
            "$.a.c[*].d",
            "$.*.c[-1].*",
            "$.list[*]",
            "$.s[*]",
            "$.a.c[0]",
            "$.a.c[2].d",
            "$.a.c[-1]",
            "$.a.c[-3]",
            "$.a.c[-4]",
            "$.a.c[3]",
            "$['a b']",
            "$.list[1]",
            "$.missing",
            "$.a.b.c",
            "$.s[0]",
            "$.list.x",
            "$['0']",
            "$[0]",
            "$.a['c'][1]",
        ];
        for p in paths {
            assert_eq!(direct(p, &doc), engine(p, &doc), "path {p}");
        }
    }

    /// Small random JSON trees over a few keys so random paths often hit.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_simple_path() -> impl Strategy<Value = String> {
        let step = prop_oneof![
            "[a-c]".prop_map(|k| format!(".{k}")),
            "[a-c]".prop_map(|k| format!("['{k}']")),
            (-4i64..4).prop_map(|i| format!("[{i}]")),
            Just("[*]".to_string()),
            Just(".*".to_string()),
        ];
        prop::collection::vec(step, 0..4).prop_map(|steps| format!("${}", steps.concat()))
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_engine(doc in arb_json(), path in arb_simple_path()) {
            prop_assert_eq!(direct(&path, &doc), engine(&path, &doc));
        }
    }

    #[test]
    fn numbers_compare_exactly() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        let cmp = |a: Value, b: Value| compare_numbers(&n(a), &n(b));
        assert_eq!(cmp(json!(5), json!(5.0)), Some(Ordering::Equal));
        assert_eq!(cmp(json!(5), json!(5.5)), Some(Ordering::Less));
        assert_eq!(cmp(json!(-5), json!(-5.5)), Some(Ordering::Greater));
        assert_eq!(
            cmp(json!(9007199254740993u64), json!(9007199254740992.0)),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp(json!(u64::MAX), json!(1e300)), Some(Ordering::Less));
        assert_eq!(cmp(json!(-1e300), json!(i64::MIN)), Some(Ordering::Less));
    }

    #[test]
    fn filter_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Filter>();
    }
}
