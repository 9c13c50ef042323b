//! The filter engine shared by the `json_filter` processor and the WebSocket
//! output's `subscribe` method.
//!
//! A filter is a list of criteria `{path, operator, value}` combined with
//! `match: all | any` (default `all`). It is written as a [`FilterSpec`],
//! compiled once with [`Filter::compile`] (JSONPaths parsed, regexes built,
//! operands pre-classified) and then evaluated many times with
//! [`Filter::matches`].
//!
//! # Semantics
//!
//! * The path is a JSONPath evaluated with jsonpath-rust. A path that matches
//!   several values satisfies a criterion if ANY of them does. A path that
//!   matches nothing makes every criterion false except `exists`, which is
//!   true iff the path matches at least one value (a JSON `null` counts).
//! * `==`: numbers compare numerically (`5 == 5.0`, exactly, even for large
//!   integers); two severity words (`debug < info < notice < warning < error
//!   < critical < alert < emergency`, case-insensitive) compare by rank;
//!   other strings, booleans and `null` compare exactly; arrays and objects
//!   compare structurally with these same rules. Values of different types
//!   are never equal.
//! * `!=` is exactly the negation of `==` on each matched value, so on a
//!   path that resolves to one value `a != b` ⇔ `!(a == b)` (a number is
//!   `!=` to a string). On a path matching nothing it is false like every
//!   other operator; on a path matching several values it means "some value
//!   differs".
//! * `>`, `>=`, `<`, `<=`: number with number, or string with string
//!   (severity rank when both are severity words, else lexical). Any other
//!   pair (number vs string, booleans, `null`, arrays, objects) is false.
//! * `contains`: substring when the value at the path is a string (and the
//!   operand a string); element equality (as `==`) when it is an array.
//!   False for anything else.
//! * `matches`: the regex (compiled at compile time) finds a match in the
//!   string at the path; false for non-strings.
//! * `exists` ignores `value`.
//!
//! Paths made only of `.name`, `['name']`, `[index]` and `[*]`/`.*`
//! segments (the common case) are evaluated by navigating the
//! `serde_json::Value` directly, which is an order of magnitude faster than
//! the general JSONPath engine (it builds a path string for every value it
//! visits) and gives the same answers (see the tests).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Spec types: what users write.
// ---------------------------------------------------------------------------

/// One criterion as written in config or in `subscribe` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// A JSONPath such as `$.a.b`, `$.a[0]`, `$.a[*].b` or `$['a b']`.
    pub path: String,
    /// One of `==`, `!=`, `>`, `>=`, `<`, `<=`, `contains`, `exists`, `matches`.
    pub operator: String,
    /// The operand; absent only for `exists`. An explicit JSON `null` is
    /// `Some(Value::Null)`, distinct from an absent value.
    #[serde(
        default,
        deserialize_with = "deserialize_present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
}

impl Criterion {
    /// Builds a criterion (e.g. from `fednode tail --filter PATH OP VALUE`).
    pub fn new(path: impl Into<String>, operator: impl Into<String>, value: Option<Value>) -> Self {
        Self {
            path: path.into(),
            operator: operator.into(),
            value,
        }
    }
}

/// Serde maps a JSON `null` to `None` for `Option` fields; `value: null` must
/// instead mean "compare with null", so a present field is always `Some`.
fn deserialize_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The `criteria` of a `json_filter` config: one criterion object or a list.
///
/// The shape is remembered so that error paths point at the right place
/// (`criteria.operator` for one object, `criteria[1].operator` for a list).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CriteriaSpec {
    /// A single criterion object.
    One(Criterion),
    /// A list of criteria.
    Many(Vec<Criterion>),
}

impl CriteriaSpec {
    /// The criteria, in order.
    pub fn as_slice(&self) -> &[Criterion] {
        match self {
            CriteriaSpec::One(c) => std::slice::from_ref(c),
            CriteriaSpec::Many(list) => list,
        }
    }

    /// Where criterion `i` sits below `prefix`, for error messages.
    fn location(&self, prefix: &str, i: usize) -> String {
        match self {
            CriteriaSpec::One(_) => prefix.to_string(),
            CriteriaSpec::Many(_) => format!("{prefix}[{i}]"),
        }
    }
}

impl<'de> Deserialize<'de> for CriteriaSpec {
    // Hand-written rather than `#[serde(untagged)]`: untagged enums replace
    // the real error ("unknown field `paht`") with "did not match any
    // variant", and they hide the position from serde_path_to_error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CriteriaVisitor;

        impl<'de> Visitor<'de> for CriteriaVisitor {
            type Value = CriteriaSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a criterion {path, operator, value} or a list of criteria")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CriteriaSpec, A::Error> {
                Criterion::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CriteriaSpec::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CriteriaSpec, A::Error> {
                Vec::<Criterion>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CriteriaSpec::Many)
            }
        }

        d.deserialize_any(CriteriaVisitor)
    }
}

/// How the criteria of a filter combine. Written `"all"` or `"any"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Every criterion must hold (the default).
    #[default]
    All,
    /// At least one criterion must hold.
    Any,
}

impl FromStr for MatchMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(MatchMode::All),
            "any" => Ok(MatchMode::Any),
            other => Err(format!(
                "unknown match mode {other:?} (expected \"all\" or \"any\")"
            )),
        }
    }
}

impl fmt::Display for MatchMode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            MatchMode::All => "all",
            MatchMode::Any => "any",
        })
    }
}

/// A complete filter as written: criteria, how they combine, and the name
/// under which errors are reported.
///
/// Serializes to the canonical `subscribe` form
/// `{"filters": [...], "match": "all"|"any"}`; deserializes from every shape
/// [`FilterSpec::from_value`] accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    /// The criteria.
    pub criteria: CriteriaSpec,
    /// How the criteria combine.
    pub match_mode: MatchMode,
    /// The prefix of error paths: `criteria` (json_filter), `filter` or
    /// `filters` (subscribe). Criterion `i` of a list is `{prefix}[i]`.
    pub error_prefix: String,
}

impl FilterSpec {
    /// A spec from an already-deserialized `criteria` + `match`, as embedded
    /// in the `json_filter` config. Errors are reported under `criteria`.
    pub fn new(criteria: CriteriaSpec, match_mode: MatchMode) -> Self {
        Self {
            criteria,
            match_mode,
            error_prefix: "criteria".to_string(),
        }
    }

    /// A single-criterion spec, reported under `filter`.
    pub fn single(criterion: Criterion) -> Self {
        Self::new(CriteriaSpec::One(criterion), MatchMode::All).with_error_prefix("filter")
    }

    /// Replaces the prefix of error paths.
    pub fn with_error_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.error_prefix = prefix.into();
        self
    }

    /// The `json_filter` form: `criteria` (one object or a list) and the
    /// `match` string beside it (`None` = `all`). Errors name `criteria…`
    /// and `match`.
    pub fn from_criteria(criteria: &Value, match_: Option<&str>) -> Result<Self, Vec<FilterError>> {
        let mut errors = Vec::new();
        let parsed = criteria_from_value(criteria, "criteria", &mut errors);
        let match_mode = match match_.map(str::parse).transpose() {
            Ok(mode) => mode.unwrap_or_default(),
            Err(message) => {
                errors.push(FilterError::new("match", message));
                MatchMode::All
            }
        };
        match parsed {
            Some(criteria) if errors.is_empty() => Ok(Self::new(criteria, match_mode)),
            _ => Err(errors),
        }
    }

    /// Any accepted shape, typically `subscribe` params:
    ///
    /// * `{"filter": {path, operator, value}}` (errors under `filter`),
    /// * `{"filters": [...], "match": "all"|"any"}` (errors under `filters[i]`),
    /// * `{"criteria": ..., "match": ...}` (errors under `criteria`),
    /// * a bare criterion object (`filter`) or a bare list (`filters[i]`).
    ///
    /// `match` is accepted beside any of the keyed forms.
    pub fn from_value(value: &Value) -> Result<Self, Vec<FilterError>> {
        let mut errors = Vec::new();
        let spec = match value {
            Value::Array(_) => criteria_from_value(value, "filters", &mut errors)
                .map(|c| Self::new(c, MatchMode::All).with_error_prefix("filters")),
            Value::Object(map) => {
                const KEYS: [&str; 3] = ["filter", "filters", "criteria"];
                let present: Vec<&str> =
                    KEYS.into_iter().filter(|k| map.contains_key(*k)).collect();
                if present.is_empty() {
                    // No wrapper key: the object is the criterion itself.
                    criteria_from_value(value, "filter", &mut errors)
                        .map(|c| Self::new(c, MatchMode::All).with_error_prefix("filter"))
                } else {
                    if present.len() > 1 {
                        errors.push(FilterError::new(
                            present[1],
                            format!("cannot be combined with {:?}", present[0]),
                        ));
                    }
                    for key in map.keys() {
                        if !KEYS.contains(&key.as_str()) && key != "match" {
                            errors.push(FilterError::new(
                                key.clone(),
                                "unknown field, expected one of `filter`, `filters`, `criteria`, `match`",
                            ));
                        }
                    }
                    let match_mode = match map.get("match") {
                        None => MatchMode::All,
                        Some(Value::String(s)) => s.parse().unwrap_or_else(|message| {
                            errors.push(FilterError::new("match", message));
                            MatchMode::All
                        }),
                        Some(other) => {
                            errors.push(FilterError::new(
                                "match",
                                format!("expected \"all\" or \"any\", got {}", kind(other)),
                            ));
                            MatchMode::All
                        }
                    };
                    let key = present[0];
                    criteria_from_value(&map[key], key, &mut errors)
                        .map(|c| Self::new(c, match_mode).with_error_prefix(key))
                }
            }
            other => {
                errors.push(FilterError::new(
                    "filter",
                    format!(
                        "expected a criterion object or a list of criteria, got {}",
                        kind(other)
                    ),
                ));
                None
            }
        };
        match spec {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(errors),
        }
    }

    /// Compiles this spec; shorthand for [`Filter::compile`].
    pub fn compile(&self) -> Result<Filter, Vec<FilterError>> {
        Filter::compile(self)
    }
}

/// Reads one criterion or a list from `value`, pushing shape errors (unknown
/// or missing fields) under `prefix` / `prefix[i]`.
fn criteria_from_value(
    value: &Value,
    prefix: &str,
    errors: &mut Vec<FilterError>,
) -> Option<CriteriaSpec> {
    let one = |v: &Value, at: String, errors: &mut Vec<FilterError>| match v {
        Value::Object(_) => Criterion::deserialize(v)
            .map_err(|e| errors.push(FilterError::new(at, e.to_string())))
            .ok(),
        other => {
            errors.push(FilterError::new(
                at,
                format!(
                    "expected a criterion object {{path, operator, value}}, got {}",
                    kind(other)
                ),
            ));
            None
        }
    };
    match value {
        Value::Array(items) => {
            let parsed: Vec<Option<Criterion>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| one(item, format!("{prefix}[{i}]"), errors))
                .collect();
            parsed
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(CriteriaSpec::Many)
        }
        Value::Object(_) => one(value, prefix.to_string(), errors).map(CriteriaSpec::One),
        other => {
            errors.push(FilterError::new(
                prefix,
                format!(
                    "expected a criterion object or a list of criteria, got {}",
                    kind(other)
                ),
            ));
            None
        }
    }
}

impl Serialize for FilterSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FilterSpec", 2)?;
        st.serialize_field("filters", self.criteria.as_slice())?;
        st.serialize_field("match", &self.match_mode)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for FilterSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        FilterSpec::from_value(&value)
            .map_err(|errors| de::Error::custom(FilterError::join(&errors)))
    }
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// A problem in a filter spec, located like `criteria[1].operator`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FilterError {
    /// Where the problem is, e.g. `criteria[1].operator` or `filter.path`.
    pub path: String,
    /// What is wrong, e.g. `unknown operator "=>" (valid operators: …)`.
    pub message: String,
}

impl FilterError {
    /// Builds an error.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// All errors on one line, separated by `"; "` (for a reply's message).
    pub fn join(errors: &[FilterError]) -> String {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Names a JSON value's type for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Compiled filter.
// ---------------------------------------------------------------------------

/// The operators, in the order they are listed in error messages.
const OPERATORS: [&str; 9] = [
    "==", "!=", ">", ">=", "<", "<=", "contains", "exists", "matches",
];

/// A compiled filter: evaluate it with [`Filter::matches`].
///
/// Cheap to clone relative to compiling, `Send + Sync`, immutable.
#[derive(Debug, Clone)]
pub struct Filter {
    spec: FilterSpec,
    criteria: Vec<Compiled>,
}

impl Filter {
    /// Compiles `spec`, reporting every bad criterion (not just the first).
    pub fn compile(spec: &FilterSpec) -> Result<Filter, Vec<FilterError>> {
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
            match Compiled::new(criterion, &at) {
                Ok(c) => criteria.push(c),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Filter {
                spec: spec.clone(),
                criteria,
            })
        } else {
            Err(errors)
        }
    }

    /// Parses any shape [`FilterSpec::from_value`] accepts and compiles it.
    pub fn from_value(value: &Value) -> Result<Filter, Vec<FilterError>> {
        Filter::compile(&FilterSpec::from_value(value)?)
    }

    /// The spec this filter was compiled from (e.g. to show it in `/components`).
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Whether the message `v` passes the filter.
    pub fn matches(&self, v: &Value) -> bool {
        match self.spec.match_mode {
            MatchMode::All => self.criteria.iter().all(|c| c.matches(v)),
            MatchMode::Any => self.criteria.iter().any(|c| c.matches(v)),
        }
    }

    /// Parses `json` and evaluates it; bytes that are not JSON never match.
    pub fn matches_bytes(&self, json: &[u8]) -> bool {
        serde_json::from_slice::<Value>(json).is_ok_and(|v| self.matches(&v))
    }
}

/// One compiled criterion.
#[derive(Debug, Clone)]
struct Compiled {
    path: CompiledPath,
    test: Test,
}

/// A parsed path, navigated directly when it is simple.
#[derive(Debug, Clone)]
enum CompiledPath {
    /// Only names, indexes and wildcards: navigated without the engine.
    Direct(Vec<Step>),
    /// Anything else (slices, filters, descendants, unions).
    Query(Box<JpQuery>),
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    /// Negative counts from the end, as in RFC 9535.
    Index(i64),
    /// `*` / `[*]`: every element of an array or member of an object.
    Wildcard,
}

/// What is checked on each value the path resolves to.
#[derive(Debug, Clone)]
enum Test {
    Exists,
    Eq(Operand),
    Ne(Operand),
    /// `>`/`<` (`wanted` = Greater/Less), `>=`/`<=` with `or_equal`.
    Order {
        wanted: Ordering,
        or_equal: bool,
        operand: Operand,
    },
    Contains(Operand),
    Matches(Regex),
}

/// A criterion's value with its severity rank computed once.
#[derive(Debug, Clone)]
struct Operand {
    value: Value,
    severity: Option<u8>,
}

impl Operand {
    fn new(value: Value) -> Self {
        let severity = value.as_str().and_then(severity_rank);
        Self { value, severity }
    }
}

impl Compiled {
    /// Compiles one criterion located at `at`, collecting all its problems.
    fn new(c: &Criterion, at: &str) -> Result<Compiled, Vec<FilterError>> {
        let mut errors = Vec::new();
        let path = compile_path(&c.path)
            .map_err(|m| errors.push(FilterError::new(format!("{at}.path"), m)));
        let test = compile_test(&c.operator, c.value.as_ref(), at).map_err(|e| errors.push(e));
        match (path, test) {
            (Ok(path), Ok(test)) => Ok(Compiled { path, test }),
            _ => Err(errors),
        }
    }

    fn matches(&self, root: &Value) -> bool {
        match &self.path {
            CompiledPath::Direct(steps) => any_direct(steps, root, &mut |v| self.test.holds(v)),
            CompiledPath::Query(query) => {
                match jsonpath_rust::query::js_path_process(query, root) {
                    Ok(found) => found.iter().any(|r| self.test.holds(r.val)),
                    // The engine only errs on queries that do not yield
                    // references, which a parsed `$…` query never is; a
                    // filter must not fail a message, so treat it as no match.
                    Err(_) => false,
                }
            }
        }
    }
}

/// Parses a JSONPath once and picks the direct-navigation fast path when possible.
fn compile_path(path: &str) -> Result<CompiledPath, String> {
    let query = jsonpath_rust::parser::parse_json_path(path).map_err(|e| {
        let hint = if path.trim_start().starts_with('$') {
            ""
        } else {
            " (a JSONPath starts with \"$\", e.g. \"$.a.b\")"
        };
        format!(
            "invalid JSONPath {path:?}: {}{hint}",
            one_line_parse_error(&e.to_string())
        )
    })?;
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
        None => CompiledPath::Query(Box::new(query)),
    })
}

/// pest renders errors over several lines with an ASCII-art caret; config
/// errors are one line each, so keep "expected X at column N".
fn one_line_parse_error(rendered: &str) -> String {
    let expected = rendered
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("= "))
        .map(str::trim);
    let column = rendered
        .lines()
        .find_map(|l| l.split_once("--> "))
        .and_then(|(_, pos)| pos.trim().rsplit(':').next());
    match (expected, column) {
        (Some(expected), Some(column)) => format!("{expected} at column {column}"),
        _ => rendered.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Checks the operator and its value.
fn compile_test(operator: &str, value: Option<&Value>, at: &str) -> Result<Test, FilterError> {
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
            Regex::new(pattern).map(Test::Matches).map_err(|e| {
                FilterError::new(
                    value_at(),
                    format!("invalid regex {pattern:?}: {}", one_line_regex_error(&e)),
                )
            })
        }
        _ => unreachable!("checked against OPERATORS above"),
    }
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

/// Calls `found` on each value the steps lead to, in the engine's order,
/// until it returns true; returns whether it did.
///
/// Mirrors jsonpath-rust exactly: a name only selects in objects, an index
/// only in arrays (negative from the end), a wildcard every element or
/// member. Recursion depth is the number of steps in the (config-given)
/// path, not the depth of the message.
fn any_direct<'a, F: FnMut(&'a Value) -> bool>(
    steps: &[Step],
    v: &'a Value,
    found: &mut F,
) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return found(v);
    };
    match step {
        Step::Key(key) => v
            .as_object()
            .and_then(|map| map.get(key))
            .is_some_and(|child| any_direct(rest, child, found)),
        Step::Index(i) => v
            .as_array()
            .and_then(|items| {
                let index = if *i >= 0 {
                    usize::try_from(*i).ok()?
                } else {
                    items
                        .len()
                        .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
                };
                items.get(index)
            })
            .is_some_and(|child| any_direct(rest, child, found)),
        Step::Wildcard => match v {
            Value::Array(items) => items.iter().any(|child| any_direct(rest, child, found)),
            Value::Object(map) => map.values().any(|child| any_direct(rest, child, found)),
            _ => false,
        },
    }
}

// ---------------------------------------------------------------------------
// Value comparison.
// ---------------------------------------------------------------------------

impl Test {
    /// Whether one value found at the path satisfies the test.
    fn holds(&self, v: &Value) -> bool {
        match self {
            Test::Exists => true,
            Test::Eq(o) => equals_operand(v, o),
            Test::Ne(o) => !equals_operand(v, o),
            Test::Order {
                wanted,
                or_equal,
                operand,
            } => match order(v, operand) {
                Some(Ordering::Equal) => *or_equal,
                Some(ord) => ord == *wanted,
                None => false,
            },
            Test::Contains(o) => match v {
                Value::String(s) => o.value.as_str().is_some_and(|needle| s.contains(needle)),
                Value::Array(items) => items.iter().any(|item| values_equal(item, &o.value)),
                _ => false,
            },
            Test::Matches(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        }
    }
}

/// The severity words, lowest first; their index is the rank.
const SEVERITIES: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The rank of a severity word, case-insensitively.
fn severity_rank(s: &str) -> Option<u8> {
    // Length check first: most strings are not severity words and this
    // rejects them without eight comparisons.
    if !(4..=9).contains(&s.len()) {
        return None;
    }
    SEVERITIES
        .iter()
        .position(|w| w.eq_ignore_ascii_case(s))
        .map(|i| i as u8)
}

/// `==` against a pre-classified operand (saves the operand's severity lookup).
fn equals_operand(v: &Value, o: &Operand) -> bool {
    match (v, &o.value) {
        (Value::String(a), Value::String(b)) => match o.severity {
            Some(rank) => severity_rank(a) == Some(rank),
            None => a == b,
        },
        _ => values_equal(v, &o.value),
    }
}

/// `==` between any two JSON values (recursively for arrays and objects).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::String(x), Value::String(y)) => match (severity_rank(x), severity_rank(y)) {
            (Some(rx), Some(ry)) => rx == ry,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| values_equal(a, b)))
        }
        _ => false,
    }
}

/// The order of `v` relative to the operand, if they are comparable.
fn order(v: &Value, o: &Operand) -> Option<Ordering> {
    match (v, &o.value) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => match (severity_rank(a), o.severity) {
            (Some(ra), Some(rb)) => Some(ra.cmp(&rb)),
            _ => Some(a.as_str().cmp(b.as_str())),
        },
        _ => None,
    }
}

/// A JSON number without loss: every i64 and u64 fits an i128.
enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &serde_json::Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Numeric order; exact between integers and floats (`5 == 5.0`, and
/// `9007199254740993 > 9007199254740992.0` although both round to the same f64).
fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(i), Num::Float(f)) => compare_int_float(i, f),
        (Num::Float(f), Num::Int(i)) => compare_int_float(i, f).map(Ordering::reverse),
    }
}

fn compare_int_float(i: i128, f: f64) -> Option<Ordering> {
    // 2^127: every JSON integer lies strictly inside ±2^127, so floats at or
    // beyond it are larger/smaller outright; inside it the integer part of
    // `f` converts to i128 exactly and the fraction breaks ties.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f.is_nan() {
        return None;
    }
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f < -LIMIT {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Some(Ordering::Less),
        ord => Some(ord),
    }
}

#[cfg(test)]
mod tests {
    //! Internals: the direct-navigation fast path must agree with the
    //! jsonpath-rust engine on every simple path.

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
