//! Why a filter was refused, with the JSON path of the problem.

use serde_json::Value;

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
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
