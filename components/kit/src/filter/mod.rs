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
//! visits) and gives the same answers (see the tests). Other paths without
//! filter selectors (`..`, slices, unions) are walked the same way; paths
//! with filter selectors `[?…]` go to jsonpath-rust.
//!
//! # Limits
//!
//! A filter is compiled within [`Limits`] (the defaults with
//! [`Filter::compile`]): its canonical JSON form is at most
//! `max_filter_bytes` (4 KiB), a `matches` regex compiles to at most
//! `max_regex_bytes` (256 KiB), and the JSONPath functions `match()` and
//! `search()` are refused. Evaluating it on one message visits at most
//! `max_visits` (10,000) nodes; a message that would need more does not
//! match, and [`Filter::evaluate`] says so with [`Outcome::OverBudget`] so
//! that the caller can count it. How visits are counted is in `walk.rs`.

mod compare;
mod compile;
mod error;
mod inspect;
mod limits;
mod spec;
mod walk;

pub use compile::Filter;
pub use error::FilterError;
pub use limits::{
    Limits, Outcome, DEFAULT_MAX_FILTER_BYTES, DEFAULT_MAX_REGEX_BYTES, DEFAULT_MAX_VISITS,
};
pub use spec::{CriteriaSpec, Criterion, FilterSpec, MatchMode};
