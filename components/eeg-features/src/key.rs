//! `key_path`: which value of a raw message names its stream.
//!
//! A key path must select exactly one value, so only the single-value
//! subset of JSONPath is accepted (the kit's [`ValuePath`]): `$.name`,
//! `$.a.b`, `$['a b']`, `$.a[0]`. Wildcards, filters, slices and recursive
//! descent are config errors. The first step must be a name: the message
//! parser captures that member while it reads the sample fields (one pass
//! over the payload); a longer path then walks into the captured value.

use fednode_kit::json::ValuePath;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// Members of a raw message that carry samples; a key cannot live there.
pub const INPUT_FIELDS: &[&str] = &["type", "timestamp", "timestamps", "channels", "samples"];

/// Members of the output message; the key's output name cannot be one.
pub const OUTPUT_FIELDS: &[&str] = &[
    "type",
    "timestamp",
    "window",
    "band_powers",
    "average",
    "channels",
    "metrics",
    "workload",
    "confidence",
];

/// Longest stream key, in bytes (the unescaped string, or the compact JSON
/// text of another value). Samples under a longer key are rejected
/// (`key_too_long`): a key is held by its stream for as long as the stream
/// lives, and written into every window and subject.
pub const MAX_KEY_BYTES: usize = 128;

/// Most of a key a log line shows.
const LOG_KEY_BYTES: usize = 64;

/// A parsed `key_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    path: ValuePath,
    /// The first step's name (validated to be one).
    first: String,
    /// The last name on the path: the key's member in the output.
    output_name: String,
}

/// A stream key as found in one message (borrowed from the payload where
/// possible).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    /// The path did not resolve, or resolved to `null`: the default stream.
    Missing,
    /// A string value (unescaped).
    Str(Cow<'a, str>),
    /// Any other value (a number, usually), as compact JSON text; numbers
    /// are told apart by their text (`17` and `17.0` are two streams, and
    /// `17` and `"17"` too).
    Json(Cow<'a, str>),
}

impl KeyRef<'_> {
    /// The key as a JSON value for the output message (`null` for the
    /// default stream).
    pub fn to_json(&self) -> Box<RawValue> {
        let text = match self {
            KeyRef::Missing => "null".to_string(),
            KeyRef::Str(s) => serde_json::to_string(s.as_ref()).expect("a string serialises"),
            KeyRef::Json(t) => t.to_string(),
        };
        RawValue::from_string(text).expect("valid JSON text")
    }

    /// The key's length in bytes, as [`MAX_KEY_BYTES`] counts it (0 for
    /// the default stream).
    pub fn len(&self) -> usize {
        match self {
            KeyRef::Missing => 0,
            KeyRef::Str(s) | KeyRef::Json(s) => s.len(),
        }
    }

    /// Whether this is the default stream's key (no key).
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRef::Missing)
    }

    /// Human-readable form for logs: at most its first 64 bytes (cut at a
    /// character boundary), so a hostile key cannot flood the log.
    pub fn display(&self) -> &str {
        match self {
            KeyRef::Missing => "_",
            KeyRef::Str(s) | KeyRef::Json(s) => {
                let mut end = s.len().min(LOG_KEY_BYTES);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                &s[..end]
            }
        }
    }
}

impl KeyPath {
    /// Parse `$.a.b`, `$['a b']`, `$.a[0]`; errors say what is allowed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let path = ValuePath::parse(raw)?;
        let Some(first) = path.first_name().map(str::to_string) else {
            return Err(format!(
                "the first step of key_path must be a field name (a raw message is an object), got {raw:?}"
            ));
        };
        if INPUT_FIELDS.contains(&first.as_str()) {
            return Err(format!(
                "key_path cannot point into the sample fields ({}), got {raw:?}",
                INPUT_FIELDS.join(", ")
            ));
        }
        let output_name = path.last_name().unwrap_or(&first).to_string();
        if OUTPUT_FIELDS.contains(&output_name.as_str()) {
            return Err(format!(
                "the key is written to the output under {output_name:?}, which the output already uses; \
                 pick a path whose last name is not one of {}",
                OUTPUT_FIELDS.join(", ")
            ));
        }
        Ok(KeyPath {
            path,
            first,
            output_name,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        self.path.as_str()
    }

    /// The top-level member the message parser captures.
    pub fn first(&self) -> &str {
        &self.first
    }

    /// The last name of the path: the key's member in the output message
    /// (`user_id` for `$.user_id`, `user` for `$.meta.user`).
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The key of one message, from the raw JSON text of its
    /// [`first`](Self::first) member (`None` when the message has no such
    /// member).
    pub fn resolve<'a>(&self, first: Option<&'a str>) -> KeyRef<'a> {
        let Some(raw) = first else {
            return KeyRef::Missing;
        };
        if self.path.steps().len() == 1 {
            return classify_raw(raw);
        }
        // A nested path: parse the member (only this one) and walk it.
        let Ok(member) = serde_json::from_str::<Value>(raw) else {
            return KeyRef::Missing;
        };
        match self.path.get_below_first(&member) {
            None | Some(Value::Null) => KeyRef::Missing,
            Some(Value::String(s)) => KeyRef::Str(Cow::Owned(s.clone())),
            Some(other) => KeyRef::Json(Cow::Owned(other.to_string())),
        }
    }
}

/// The key from a member's raw JSON text, borrowing when it can.
fn classify_raw(text: &str) -> KeyRef<'_> {
    let text = text.trim();
    if text == "null" {
        return KeyRef::Missing;
    }
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !inner.contains('\\') {
            return KeyRef::Str(Cow::Borrowed(inner));
        }
        return match serde_json::from_str::<String>(text) {
            Ok(s) => KeyRef::Str(Cow::Owned(s)),
            Err(_) => KeyRef::Missing,
        };
    }
    if text.starts_with(['{', '[']) {
        // Canonical compact text, so whitespace does not split streams.
        return match serde_json::from_str::<Value>(text) {
            Ok(v) => KeyRef::Json(Cow::Owned(v.to_string())),
            Err(_) => KeyRef::Missing,
        };
    }
    KeyRef::Json(Cow::Borrowed(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> &str {
        s
    }

    #[test]
    fn parses_single_value_paths() {
        let p = KeyPath::parse("$.user_id").unwrap();
        assert_eq!((p.first(), p.output_name()), ("user_id", "user_id"));
        let p = KeyPath::parse("$.meta.user").unwrap();
        assert_eq!((p.first(), p.output_name()), ("meta", "user"));
        let p = KeyPath::parse("$['user id']").unwrap();
        assert_eq!(p.output_name(), "user id");
        let p = KeyPath::parse("$.ids[1]").unwrap();
        assert_eq!(p.output_name(), "ids");
        for bad in [
            "user_id",
            "$",
            "$.*",
            "$..a",
            "$.a[*]",
            "$[0]",
            "$.a[?(@.x)]",
            "$.channels",
            "$.m.window",
            "$.a[1:2]",
        ] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_keys() {
        let p = KeyPath::parse("$.user_id").unwrap();
        let r = raw("\"u17\"");
        assert_eq!(p.resolve(Some(r)), KeyRef::Str(Cow::Borrowed("u17")));
        let r = raw("\"a\\u0062\"");
        assert_eq!(p.resolve(Some(r)), KeyRef::Str(Cow::Borrowed("ab")));
        let r = raw("17");
        assert_eq!(p.resolve(Some(r)), KeyRef::Json(Cow::Borrowed("17")));
        assert_eq!(p.resolve(Some(r)).to_json().get(), "17");
        let r = raw("null");
        assert_eq!(p.resolve(Some(r)), KeyRef::Missing);
        assert_eq!(p.resolve(None), KeyRef::Missing);
        let nested = KeyPath::parse("$.meta.ids[1]").unwrap();
        let r = raw(r#"{"ids": ["x", "y"]}"#);
        assert_eq!(nested.resolve(Some(r)), KeyRef::Str(Cow::Borrowed("y")));
        let r = raw(r#"{"other": 1}"#);
        assert_eq!(nested.resolve(Some(r)), KeyRef::Missing);
        assert_eq!(KeyRef::Str("q\"".into()).to_json().get(), r#""q\"""#);
    }

    #[test]
    fn key_length_and_log_form() {
        let p = KeyPath::parse("$.user_id").unwrap();
        // Unescaped bytes: six bytes of JSON text are one byte of key.
        assert_eq!(p.resolve(Some(r#""a\u0062""#)).len(), 2);
        assert_eq!(p.resolve(Some("17.50")).len(), 5);
        assert_eq!(KeyRef::Missing.len(), 0);
        assert!(KeyRef::Missing.is_empty());
        let long = "é".repeat(100);
        let key = KeyRef::Str(long.as_str().into());
        assert_eq!(key.len(), 200);
        // Cut at a character boundary, never inside `é`.
        assert_eq!(key.display(), "é".repeat(32));
        assert_eq!(KeyRef::Str("u17".into()).display(), "u17");
    }
}
