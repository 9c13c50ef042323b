//! `key_path`: a single-value JSONPath (`$.a.b`, `$['a b']`, `$.a[0]`)
//! walked directly over a `serde_json::Value` — the key of a row must be one
//! value, so wildcards and filters are refused at validation.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Name(String),
    Index(usize),
}

/// A parsed key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    steps: Vec<Step>,
}

impl KeyPath {
    /// Parse `$` followed by `.name`, `['name']`, `["name"]` or `[index]`.
    pub fn parse(path: &str) -> Result<Self, String> {
        let err = |why: &str| {
            Err(format!(
                "\"{path}\" is not a supported key path ({why}); use $.a.b, $['a b'] or $.a[0]"
            ))
        };
        let Some(mut rest) = path.trim().strip_prefix('$') else {
            return err("must start with $");
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() || name == "*" || name.starts_with('.') {
                    return err("wildcards and recursive descent select several values");
                }
                steps.push(Step::Name(name.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let Some(end) = r.find(']') else {
                    return err("unclosed [");
                };
                let inner = r[..end].trim();
                if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Name(q.to_string()));
                } else if let Ok(i) = inner.parse::<usize>() {
                    steps.push(Step::Index(i));
                } else {
                    return err("only names and non-negative indexes may stand in []");
                }
                rest = &r[end + 1..];
            } else {
                return err("expected . or [");
            }
        }
        if steps.is_empty() {
            return err("$ alone is the whole message, not a key");
        }
        Ok(KeyPath { steps })
    }

    /// The value at this path, if every step resolves.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut cur = root;
        for s in &self.steps {
            cur = match (s, cur) {
                (Step::Name(n), Value::Object(m)) => m.get(n)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// The key as text: strings as they are, numbers and booleans printed,
    /// objects and arrays as JSON; `None` when absent or `null`.
    pub fn key(&self, root: &Value) -> Option<String> {
        match self.get(root)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Check that `json` is one valid JSON document and find the key in the
    /// same pass, without building a `Value` (the generic table stores the
    /// payload bytes as they are, so nothing else needs the tree).
    pub fn key_from_json(&self, json: &[u8]) -> Result<Option<String>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let key = Seek(&self.steps).deserialize(&mut de)?;
        de.end()?;
        Ok(key)
    }

    /// The field name when the path is one top-level field (`$.user_id`).
    pub fn single_name(&self) -> Option<&str> {
        match self.steps.as_slice() {
            [Step::Name(n)] => Some(n),
            _ => None,
        }
    }
}

fn key_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Walks `steps` while deserializing, skipping (but validating) the rest.
struct Seek<'p>(&'p [Step]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.is_empty() {
            return Ok(key_text(Value::deserialize(d)?));
        }
        d.deserialize_any(self)
    }
}

/// Whether a map key equals the name sought.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (name, rest) = match self.0.split_first() {
            Some((Step::Name(n), rest)) => (Some(n.as_str()), rest),
            _ => (None, &[][..]),
        };
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(name.unwrap_or("")))? {
            if hit && name.is_some() && found.is_none() {
                found = map.next_value_seed(Seek(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (index, rest) = match self.0.split_first() {
            Some((Step::Index(i), rest)) => (Some(*i), rest),
            _ => (None, &[][..]),
        };
        let mut found = None;
        let mut i = 0;
        loop {
            let more = if Some(i) == index {
                seq.next_element_seed(Seek(rest))?.map(|k| found = k)
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if more.is_none() {
                return Ok(found);
            }
            i += 1;
        }
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
