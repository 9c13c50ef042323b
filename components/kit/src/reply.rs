//! The payloads of requests (`{method, params}`) and replies (`{status,
//! result}` or `{status, error: {code, message}}`), and the error codes.

use serde::{Deserialize, Serialize};

/// The payload of a request envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestPayload {
    pub method: String,
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The error codes
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnknownMethod,
    InvalidParams,
    InvalidFilter,
    Timeout,
    TooManyRequests,
    Unauthorized,
    Unavailable,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// The `error` object of an error reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyError {
    pub code: String,
    pub message: String,
}

/// The payload of a reply envelope: `{status: "ok", result}` or
/// `{status: "error", error: {code, message}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyPayload {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ReplyError>,
}

impl ReplyPayload {
    /// A successful reply.
    pub fn ok(result: serde_json::Value) -> Self {
        ReplyPayload {
            status: "ok".into(),
            result: Some(result),
            error: None,
        }
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ReplyPayload {
            status: "error".into(),
            result: None,
            error: Some(ReplyError {
                code: code.as_str().into(),
                message: message.into(),
            }),
        }
    }

    /// Whether `status` is `ok`.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// As a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("reply serialises")
    }
}
