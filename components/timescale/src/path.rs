//! `key_path`: the row key, one value of the message named by a
//! single-value JSONPath (`$.a.b`, `$['a b']`, `$.a[0]`; the kit's
//! [`ValuePath`]). Strings are keys as they are, other values their JSON
//! text; a missing or `null` value is no key.

use fednode_kit::json::ValuePath;
use serde::de::Error as _;
use serde_json::Value;

/// A parsed key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(ValuePath);

impl KeyPath {
    /// Parse a single-value JSONPath; paths to several values are refused.
    pub fn parse(path: &str) -> Result<Self, String> {
        ValuePath::parse(path).map(KeyPath)
    }

    /// The key of a message already parsed.
    pub fn key(&self, root: &Value) -> Option<String> {
        key_text(self.0.get(root)?)
    }

    /// Check that `json` is one valid JSON document and find the key in the
    /// same pass, without building a `Value` (the generic table stores the
    /// payload bytes as they are, so nothing else needs the tree).
    pub fn key_from_json(&self, json: &[u8]) -> Result<Option<String>, serde_json::Error> {
        let text = std::str::from_utf8(json).map_err(serde_json::Error::custom)?;
        let Some(raw) = self.0.find(text)? else {
            return Ok(None);
        };
        if let Some(plain) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            if !plain.contains('\\') {
                return Ok(Some(plain.to_string()));
            }
        }
        Ok(key_text(&serde_json::from_str::<Value>(&raw)?))
    }

    /// The field name when the path is one top-level field (`$.user_id`).
    pub fn single_name(&self) -> Option<&str> {
        match self.0.steps() {
            [_] => self.0.first_name(),
            _ => None,
        }
    }
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_names_quotes_and_indexes() {
        let v = json!({"user_id": "jamie", "a": {"b c": [10, {"d": true}]}, "n": 3.5, "z": null});
        let k = |p: &str| KeyPath::parse(p).unwrap().key(&v);
        assert_eq!(k("$.user_id").as_deref(), Some("jamie"));
        assert_eq!(k("$.a['b c'][0]").as_deref(), Some("10"));
        assert_eq!(k("$.a[\"b c\"][1].d").as_deref(), Some("true"));
        assert_eq!(k("$.n").as_deref(), Some("3.5"));
        assert_eq!(k("$.z"), None);
        assert_eq!(k("$.missing"), None);
        assert_eq!(k("$.user_id.x"), None);
        assert_eq!(k("$.a").as_deref(), Some(r#"{"b c":[10,{"d":true}]}"#));
        assert_eq!(
            KeyPath::parse("$.user").unwrap().single_name(),
            Some("user")
        );
        assert_eq!(KeyPath::parse("$.a.user").unwrap().single_name(), None);
    }

    #[test]
    fn streaming_key_agrees_with_the_tree_walk() {
        let docs = [
            json!({"user_id": "jamie", "a": {"b c": [10, {"d": true}]}, "n": 3.5, "z": null}),
            json!({"user_id": 7, "a": [1, 2]}),
            json!([{"user_id": "x"}]),
            json!("plain"),
            json!({"a": {"b c": "deep", "x": [[], {}]}, "user_id": {"nested": [1]}}),
            json!({"esc\"aped": 1, "user_id": "q\"uote"}),
        ];
        for p in [
            "$.user_id",
            "$.a['b c'][0]",
            "$.a[\"b c\"][1].d",
            "$.n",
            "$.z",
            "$.a[1]",
            "$[0].user_id",
            "$.a.x[1]",
        ] {
            let path = KeyPath::parse(p).unwrap();
            for d in &docs {
                let bytes = serde_json::to_vec(d).unwrap();
                assert_eq!(
                    path.key_from_json(&bytes).unwrap(),
                    path.key(d),
                    "{p} on {d}"
                );
            }
        }
        let path = KeyPath::parse("$.user_id").unwrap();
        for bad in [&b"{"[..], b"{\"a\":}", b"[1,]", b"{} x", b"nul", b"\"\\x\""] {
            assert!(
                path.key_from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refuses_multi_value_paths() {
        for p in [
            "user_id",
            "$",
            "$.*",
            "$..a",
            "$.a[*]",
            "$.a[?(@.b)]",
            "$.a[",
            "$x",
        ] {
            assert!(KeyPath::parse(p).is_err(), "{p}");
        }
    }
}
