//! JSONPath parsing for the whole node, on jsonpath-rust's parser, and
//! [`ValuePath`]: the single-value subset (`$.a.b`, `$['a b']`, `$.a[0]`)
//! that names one value of a message, such as a stream or row key.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use serde_json::Value;
use std::borrow::Cow;

use super::scan::{scan, Members};
use super::span::Shape;

/// Parse a JSONPath, with an error on one line that says where it broke.
pub fn parse_query(path: &str) -> Result<JpQuery, String> {
    jsonpath_rust::parser::parse_json_path(path).map_err(|e| {
        let hint = if path.trim_start().starts_with('$') {
            ""
        } else {
            " (a JSONPath starts with \"$\", e.g. \"$.a.b\")"
        };
        format!(
            "invalid JSONPath {path:?}: {}{hint}",
            one_line_parse_error(&e.to_string())
        )
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

/// One step of a [`ValuePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A member of an object.
    Name(String),
    /// An element of an array, from the start.
    Index(usize),
}

/// A JSONPath that selects at most one value: names and non-negative
/// indexes only. Wildcards, filters, slices, unions and recursive descent
/// select several values and are refused when the path is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePath {
    raw: String,
    steps: Vec<Step>,
}

impl ValuePath {
    /// Parse `$` followed by `.name`, `['name']`, `["name"]` or `[index]`
    /// steps (at least one).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "expected a path to one value such as $.user_id, $.meta.user or $['user id'] \
                 (wildcards, filters, slices and recursive descent select several), got {raw:?}"
            )
        };
        let query = parse_query(raw.trim())?;
        let steps = query
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Selector(Selector::Name(name)) => Some(Step::Name(name.clone())),
                Segment::Selector(Selector::Index(i)) => usize::try_from(*i).ok().map(Step::Index),
                _ => None,
            })
            .collect::<Option<Vec<Step>>>()
            .ok_or_else(refuse)?;
        if steps.is_empty() {
            return Err(format!(
                "{raw:?} is the whole message, not one value in it; name a member such as $.user_id"
            ));
        }
        Ok(ValuePath {
            raw: raw.to_string(),
            steps,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The steps, outermost first (never empty).
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The name of the first step, when it is a member of the top-level
    /// object.
    pub fn first_name(&self) -> Option<&str> {
        match &self.steps[0] {
            Step::Name(n) => Some(n),
            Step::Index(_) => None,
        }
    }

    /// The last name on the path (`user` for `$.meta.user`, `tags` for
    /// `$.tags[0]`).
    pub fn last_name(&self) -> Option<&str> {
        self.steps.iter().rev().find_map(|s| match s {
            Step::Name(n) => Some(n.as_str()),
            Step::Index(_) => None,
        })
    }

    /// The value at this path, if every step resolves.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        walk(root, &self.steps)
    }

    /// The value at this path inside `member`, the value of the first
    /// step (the rest of the path walked into it).
    pub fn get_below_first<'a>(&self, member: &'a Value) -> Option<&'a Value> {
        walk(member, &self.steps[1..])
    }

    /// Validate `text` as one JSON value and find the value at this path in
    /// the same pass, without building the whole tree: `Ok(None)` when the
    /// path does not resolve. The value comes back as its JSON text.
    pub fn find<'t>(&self, text: &'t str) -> Result<Option<Cow<'t, str>>, serde_json::Error> {
        let Some(first) = self.first_name() else {
            // Rare: a path into a top-level array.
            let root: Value = serde_json::from_str(text)?;
            return Ok(self.get(&root).map(|v| Cow::Owned(v.to_string())));
        };
        let mut members = Members::new();
        let shape = match scan(text, &[first], &mut members) {
            Ok(shape) => shape,
            Err(_) => {
                return Err(serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .expect_err("the scanner refuses only what serde_json refuses"))
            }
        };
        let Some(span) = members.values[0].filter(|_| shape == Shape::Object) else {
            return Ok(None);
        };
        let raw = span.raw(text);
        if self.steps.len() == 1 {
            return Ok(Some(Cow::Borrowed(raw)));
        }
        let member: Value = serde_json::from_str(raw)?;
        Ok(self
            .get_below_first(&member)
            .map(|v| Cow::Owned(v.to_string())))
    }
}

fn walk<'a>(mut cur: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    for step in steps {
        cur = match (step, cur) {
            (Step::Name(n), Value::Object(m)) => m.get(n)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(p: &str) -> Vec<Step> {
        ValuePath::parse(p).unwrap().steps().to_vec()
    }

    #[test]
    fn names_quotes_and_indexes() {
        let n = |s: &str| Step::Name(s.into());
        assert_eq!(steps("$.user_id"), [n("user_id")]);
        assert_eq!(steps("$.meta.user"), [n("meta"), n("user")]);
        assert_eq!(steps("$['user id']"), [n("user id")]);
        assert_eq!(steps("$[\"a\"][2].b"), [n("a"), Step::Index(2), n("b")]);
        let p = ValuePath::parse("$.tags[0]").unwrap();
        assert_eq!(
            (p.first_name(), p.last_name()),
            (Some("tags"), Some("tags"))
        );
        assert_eq!(ValuePath::parse("$[0]").unwrap().first_name(), None);
    }

    #[test]
    fn paths_to_several_values_are_refused() {
        for p in [
            "$.*",
            "$..a",
            "$.a[*]",
            "$.a[1:2]",
            "$.a[-1]",
            "$[?@.a]",
            "$['a','b']",
        ] {
            let e = ValuePath::parse(p).unwrap_err();
            assert!(e.starts_with("expected a path to one value"), "{p}: {e}");
        }
        assert!(ValuePath::parse("$").unwrap_err().contains("whole message"));
        assert!(ValuePath::parse("user_id")
            .unwrap_err()
            .starts_with("invalid JSONPath \"user_id\""));
    }

    #[test]
    fn find_agrees_with_the_tree_walk() {
        let docs = [
            json!({"user_id": "u1", "meta": {"user": 7, "tags": ["a", {"b": null}]}}),
            json!({"meta": [1, 2], "user_id": {"x": 1.5}}),
            json!([{"user_id": 1}]),
            json!("just text"),
        ];
        for path in [
            "$.user_id",
            "$.meta.user",
            "$.meta.tags[1].b",
            "$.meta[1]",
            "$[0].user_id",
            "$.none",
        ] {
            let p = ValuePath::parse(path).unwrap();
            for doc in &docs {
                let text = doc.to_string();
                let found = p
                    .find(&text)
                    .unwrap()
                    .map(|t| serde_json::from_str::<Value>(&t).unwrap());
                assert_eq!(found.as_ref(), p.get(doc), "{path} in {text}");
            }
        }
        let p = ValuePath::parse("$.a").unwrap();
        assert!(p.find("{\"a\": 1").is_err());
        assert!(p.find("{\"a\": 1} x").is_err());
    }
}
