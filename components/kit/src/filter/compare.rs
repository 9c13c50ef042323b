//! How a compiled test compares the values at its path with its
//! operand: numbers as numbers, severity words by rank, the rest exactly.

use std::cmp::Ordering;

use serde_json::Value;

use regex::Regex;

/// What is checked on each value the path resolves to.
#[derive(Debug, Clone)]
pub(super) enum Test {
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
pub(super) struct Operand {
    value: Value,
    severity: Option<u8>,
}

impl Operand {
    pub(super) fn new(value: Value) -> Self {
        let severity = value.as_str().and_then(severity_rank);
        Self { value, severity }
    }
}

impl Test {
    /// Whether one value found at the path satisfies the test.
    pub(super) fn holds(&self, v: &Value) -> bool {
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
pub(super) fn severity_rank(s: &str) -> Option<u8> {
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
pub(super) fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
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
