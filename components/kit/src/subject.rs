//! NATS subject semantics (shared by the memory bus and config checks) and
//! the subject templates

use crate::meta::Origin;
use std::fmt;

/// Longest token a template fills in; a longer value is cut (at a
/// character boundary) so a peer cannot make subjects of any size.
pub const MAX_FILLED_TOKEN_BYTES: usize = 128;

/// Whether `pattern` (which may hold `*` and a trailing `>`) matches the
/// concrete `subject`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    if pattern == subject {
        return true;
    }
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether two patterns can match a common subject (used by `check` to see
/// if a subscriber pattern can receive what a publisher pattern sends).
pub fn overlaps(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(&x), Some(&y)) if x == "*" || y == "*" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

/// Why a subject is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SubjectError(pub String);

/// Validate a subject a component subscribes to (`*` and a final `>` allowed).
pub fn validate_pattern(subject: &str) -> Result<(), SubjectError> {
    validate(subject, true, false)
}

/// Validate a subject a component publishes to (placeholders `{a.b}` allowed,
/// no wildcards).
pub fn validate_publish(subject: &str) -> Result<(), SubjectError> {
    validate(subject, false, true)
}

fn validate(subject: &str, wildcards: bool, templates: bool) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError("subject is empty".into()));
    }
    // Template placeholders may hold dots: blank them before tokenising.
    let flat = if templates {
        Template::parse(subject)
            .map_err(SubjectError)?
            .parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.clone(),
                Part::Field(_) | Part::Origin(_) => "x".to_string(),
            })
            .collect::<String>()
    } else {
        subject.to_string()
    };
    let tokens: Vec<&str> = flat.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(SubjectError(format!(
                "subject {subject:?} has an empty token"
            )));
        }
        if t.chars().any(|c| c.is_whitespace()) {
            return Err(SubjectError(format!(
                "subject {subject:?} contains whitespace"
            )));
        }
        let wild = *t == "*" || *t == ">";
        if wild && !wildcards {
            return Err(SubjectError(format!(
                "subject {subject:?} has a wildcard, which only input subjects may use"
            )));
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(SubjectError(format!(
                "subject {subject:?}: `>` must be the last token"
            )));
        }
        if !wild && (t.contains('*') || t.contains('>')) {
            return Err(SubjectError(format!(
                "subject {subject:?}: `*` and `>` must stand alone as a token"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Field(Vec<String>),
    /// `{$origin.node}` (false) or `{$origin.region}` (true).
    Origin(bool),
}

/// A publish subject with `{field}` / `{a.b}` placeholders filled from the
/// payload, and `{$origin.node}` / `{$origin.region}` filled from where the
/// data first entered a fednode bus. A subject without placeholders costs
/// nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    raw: String,
    parts: Vec<Part>,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Template {
    /// Parse a subject template; an unbalanced brace is an error.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("subject {raw:?} has an unclosed `{{`"));
            };
            let field = &rest[open + 1..open + close];
            if field.is_empty() || field.contains('{') {
                return Err(format!(
                    "subject {raw:?} has an empty or nested placeholder"
                ));
            }
            parts.push(match field {
                "$origin.node" => Part::Origin(false),
                "$origin.region" => Part::Origin(true),
                f if f.starts_with('$') => {
                    return Err(format!(
                        "subject {raw:?}: unknown placeholder {{{f}}} (known: {{$origin.node}}, {{$origin.region}})"
                    ))
                }
                f => Part::Field(f.split('.').map(str::to_string).collect()),
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("subject {raw:?} has a `}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template {
            raw: raw.to_string(),
            parts,
        })
    }

    /// Whether the subject is the same for every message.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Whether filling it needs the payload parsed.
    fn reads_payload(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Fill the placeholders from a parsed payload and the data's origin.
    /// A missing field (or origin, or region) becomes `_`; characters a NATS
    /// token may not hold become `_`; a value longer than
    /// [`MAX_FILLED_TOKEN_BYTES`] is cut.
    pub fn render(&self, payload: &serde_json::Value, origin: Option<&Origin>) -> String {
        if self.is_static() {
            return self.raw.clone();
        }
        let mut out = String::with_capacity(self.raw.len() + 16);
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Origin(region) => {
                    let value = match (origin, region) {
                        (Some(o), false) => Some(&*o.node),
                        (Some(o), true) => o.region.as_deref(),
                        (None, _) => None,
                    };
                    push_token(&mut out, value.unwrap_or("_"));
                }
                Part::Field(path) => {
                    let mut v = Some(payload);
                    for key in path {
                        v = v.and_then(|v| match v {
                            serde_json::Value::Object(m) => m.get(key),
                            serde_json::Value::Array(a) => {
                                key.parse::<usize>().ok().and_then(|i| a.get(i))
                            }
                            _ => None,
                        });
                    }
                    let text = match v {
                        None | Some(serde_json::Value::Null) => "_".to_string(),
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    };
                    push_token(&mut out, &text);
                }
            }
        }
        out
    }

    /// Fill from raw JSON bytes (parsed only when a placeholder reads the
    /// payload).
    pub fn render_bytes(&self, payload: &[u8], origin: Option<&Origin>) -> String {
        if self.is_static() {
            return self.raw.clone();
        }
        let v: serde_json::Value = if self.reads_payload() {
            serde_json::from_slice(payload).unwrap_or_default()
        } else {
            serde_json::Value::Null
        };
        self.render(&v, origin)
    }
}

/// Root of the control subjects fednode makes up itself, outside any data
/// namespace.
pub const CONTROL_ROOT: &str = "_fednode";

/// The control subject of component `component` on node `node` when its
/// config names none: `_fednode.<node>.<component>.control` (characters a
/// token may not hold become `_`).
pub fn default_control_subject(node: &str, component: &str) -> String {
    let mut s = String::from(CONTROL_ROOT);
    for token in [node, component] {
        s.push('.');
        push_token(&mut s, token);
    }
    s.push_str(".control");
    s
}

fn push_token(out: &mut String, text: &str) {
    if text.is_empty() {
        out.push('_');
        return;
    }
    let mut end = text.len().min(MAX_FILLED_TOKEN_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for c in text[..end].chars() {
        if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
            out.push('_');
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcard_matching() {
        assert!(matches("a.b", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "a"));
        assert!(!matches("a.b", "a.c"));
        assert!(matches("*.b.*", "x.b.y"));
    }

    #[test]
    fn overlapping_patterns() {
        assert!(overlaps(
            "user.*.raw",
            "user.{user_id}.raw".replace("{user_id}", "*").as_str()
        ));
        assert!(overlaps("a.>", "a.b.*"));
        assert!(!overlaps("a.b", "a.c"));
    }

    #[test]
    fn templates_fill_from_payload() {
        let t = Template::parse("user.{user_id}.{type}").unwrap();
        assert_eq!(
            t.render(&json!({"type":"raw","user_id":"jamie"}), None),
            "user.jamie.raw"
        );
        assert_eq!(t.render(&json!({"type":"raw"}), None), "user._.raw");
        assert_eq!(
            t.render(&json!({"type":"a.b c","user_id":7}), None),
            "user.7.a_b_c"
        );
        let nested = Template::parse("dev.{meta.site}").unwrap();
        assert_eq!(
            nested.render(&json!({"meta":{"site":"lab"}}), None),
            "dev.lab"
        );
        assert!(Template::parse("a.{b").is_err());
        let long = "x".repeat(500);
        assert_eq!(
            t.render(&json!({"type":"raw","user_id":long}), None).len(),
            "user..raw".len() + MAX_FILLED_TOKEN_BYTES
        );
    }

    #[test]
    fn templates_fill_from_the_origin() {
        let t = Template::parse("edges.{$origin.region}.{$origin.node}.data").unwrap();
        assert!(!t.is_static());
        let origin = Origin::from_wire(Some("edge-01"), Some("eu.west")).unwrap();
        assert_eq!(
            t.render_bytes(b"not json", Some(&origin)),
            "edges.eu_west.edge-01.data"
        );
        let no_region = Origin::from_wire(Some("edge-01"), None).unwrap();
        assert_eq!(
            t.render_bytes(b"{}", Some(&no_region)),
            "edges._.edge-01.data"
        );
        assert_eq!(t.render_bytes(b"{}", None), "edges._._.data");
        let err = Template::parse("a.{$node}").unwrap_err();
        assert!(err.contains("unknown placeholder {$node}"), "{err}");
        assert!(validate_publish("edges.{$origin.region}.data").is_ok());
    }

    #[test]
    fn default_control_subjects_sit_outside_data() {
        assert_eq!(
            default_control_subject("edge-01", "ws_in"),
            "_fednode.edge-01.ws_in.control"
        );
        assert_eq!(
            default_control_subject("eu.west 1", "in"),
            "_fednode.eu_west_1.in.control"
        );
        assert!(validate_publish(&default_control_subject("a>b", "*")).is_ok());
    }

    #[test]
    fn subject_validation() {
        assert!(validate_pattern("a.*.>").is_ok());
        assert!(validate_pattern("a.>.b").is_err());
        assert!(validate_publish("a.*").is_err());
        assert!(validate_publish("user.{user_id}.raw").is_ok());
        assert!(validate_publish("a..b").is_err());
        assert!(validate_pattern("").is_err());
    }
}
