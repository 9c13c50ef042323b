//! Config helpers shared by every component: errors that carry their JSON
//! path, a strict parser that reports every problem of a block at once, the
//! `ports` block, durations, and the auth block both WebSocket components use.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

use crate::subject::{self, Template};

/// One config problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path such as `components.ws_in.config.mode`.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Join a base path and a child segment (`a` + `b` = `a.b`, `a` + `[0]` = `a[0]`).
pub fn join(base: &str, child: &str) -> String {
    if base.is_empty() || base == "." {
        child.to_string()
    } else if child.is_empty() || child == "." {
        base.to_string()
    } else if child.starts_with('[') {
        format!("{base}{child}")
    } else {
        format!("{base}.{child}")
    }
}

/// Deserialize `value` into `T`, reporting every problem rather than the
/// first: after each error the offending value is removed (or, for an
/// unknown field, the field) and parsing is retried, so a typo and a wrong
/// enum value in one block are both reported. Errors that only follow from
/// a removal (a now-missing required field at a path already reported) are
/// not repeated.
pub fn parse_strict<T: DeserializeOwned>(value: &Value, base: &str) -> Result<T, Vec<ConfigError>> {
    let mut work = value.clone();
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut reported: Vec<Vec<String>> = Vec::new();
    // Required fields we filled with a stand-in, and which stand-in.
    let mut filling: Vec<(Vec<String>, usize)> = Vec::new();
    for _ in 0..64 {
        let de = work.clone();
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(t) if errors.is_empty() => return Ok(t),
            Ok(_) => return Err(errors),
            Err(e) => {
                let segments: Vec<String> = e
                    .path()
                    .iter()
                    .map(|s| match s {
                        serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
                        other => other.to_string(),
                    })
                    .collect();
                let raw = e.inner().to_string();
                let (mut segs, message, unknown_field) = describe(&segments, &raw);
                // serde reports `missing field x` at the parent: point at x.
                if let Some(field) = missing_field(&raw) {
                    segs.push(field);
                }
                // Errors inside a value already reported (or being filled in
                // by us) follow from that one problem: don't repeat them.
                let already = reported.iter().any(|r| segs.starts_with(r));
                if !already {
                    errors.push(ConfigError::new(
                        join(base, &render_path(&segs)),
                        message.clone(),
                    ));
                    reported.push(segs.clone());
                }
                let progressed = if let Some(field) = unknown_field {
                    let mut parent = segs.clone();
                    parent.pop();
                    remove_at(&mut work, &parent, Some(&field))
                } else if missing_field(&raw).is_some() {
                    // A required field is absent: put a stand-in there so the
                    // rest of the block is still checked.
                    filling.push((segs.clone(), 0));
                    insert_at(&mut work, &segs, STAND_INS[0].clone())
                } else if let Some(slot) = filling.iter_mut().find(|(p, _)| segs.starts_with(p)) {
                    // Our stand-in has the wrong type: try the next one.
                    slot.1 += 1;
                    match STAND_INS.get(slot.1) {
                        Some(v) => insert_at(&mut work, &slot.0.clone(), v.clone()),
                        None => false,
                    }
                } else {
                    remove_at(&mut work, &segs, None)
                };
                if !progressed {
                    return Err(errors);
                }
            }
        }
    }
    Err(errors)
}

/// Parse `value` with [`parse_strict`] and check the result with `check`,
/// reporting problems of both kinds in one run: when some values do not
/// parse, they are left out and what remains is still checked, so a typo in
/// one field does not hide a bad value in another. A check's problem at a
/// path already reported is not repeated.
///
/// This is the one way a component's `Config::parse` turns a `config` block
/// into its settings.
pub fn parse_checked<T: DeserializeOwned, S>(
    value: &Value,
    base: &str,
    check: impl Fn(T) -> Result<S, Vec<ConfigError>>,
) -> Result<S, Vec<ConfigError>> {
    let mut errors = match parse_strict::<T>(value, base) {
        Ok(parsed) => return check(parsed),
        Err(errors) => errors,
    };
    let mut rest = value.clone();
    for e in &errors {
        let relative = e.path.strip_prefix(base).unwrap_or(&e.path);
        remove_at(&mut rest, &split_path(relative), None);
    }
    if let Ok(parsed) = parse_strict::<T>(&rest, base) {
        if let Err(more) = check(parsed) {
            for m in more {
                if !errors.iter().any(|e| e.path == m.path) {
                    errors.push(m);
                }
            }
        }
    }
    Err(errors)
}

/// `.a.b[0].c` as the segments `a`, `b`, `[0]`, `c`.
fn split_path(path: &str) -> Vec<String> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            segs.push(name.to_string());
        }
        segs.extend(
            rest.split_inclusive(']')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    segs
}

/// The keys a config struct accepts: the field names serde's derive gives
/// its `deserialize_struct` (renames applied). The configuration reference
/// is checked against these, so a key added to a struct and left out of
/// `docs/config.md` fails a test.
///
/// Panics when `T` is not a derived struct (a map, an enum, a struct with a
/// flattened field).
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut capture = FieldCapture(None);
    let _ = T::deserialize(&mut capture);
    capture.0.unwrap_or_else(|| {
        panic!(
            "{} is not deserialized as a struct with named fields",
            std::any::type_name::<T>()
        )
    })
}

/// A deserializer that only records the fields a struct asks for.
struct FieldCapture(Option<&'static [&'static str]>);

#[derive(Debug)]
struct Captured;

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names captured")
    }
}

impl std::error::Error for Captured {}

impl serde::de::Error for Captured {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Captured
    }
}

impl<'de> serde::Deserializer<'de> for &mut FieldCapture {
    type Error = Captured;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Captured> {
        self.0 = Some(fields);
        Err(Captured)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Values tried, in order, in place of a missing required field, so parsing
/// can go on to report the block's other problems.
static STAND_INS: std::sync::LazyLock<[Value; 6]> = std::sync::LazyLock::new(|| {
    [
        Value::String(String::new()),
        Value::from(0),
        Value::Array(vec![]),
        Value::Object(Default::default()),
        Value::Bool(false),
        Value::Null,
    ]
});

/// The value at `segs` (`key` or `[index]` segments), if present.
fn walk<'v>(mut cur: &'v mut Value, segs: &[String]) -> Option<&'v mut Value> {
    for s in segs {
        cur = match (cur, s.strip_prefix('[').and_then(|x| x.strip_suffix(']'))) {
            (Value::Array(a), Some(i)) => a.get_mut(i.parse::<usize>().ok()?)?,
            (Value::Object(m), _) => m.get_mut(s)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Set the value at `segs` (creating the last key).
fn insert_at(root: &mut Value, segs: &[String], value: Value) -> bool {
    let Some((last, parent)) = segs.split_last() else {
        return false;
    };
    match walk(root, parent) {
        Some(Value::Object(m)) => {
            m.insert(last.clone(), value);
            true
        }
        _ => false,
    }
}

fn render_path(segs: &[String]) -> String {
    let mut out = String::new();
    for s in segs {
        out = join(&out, s);
    }
    out
}

/// Turn serde's message into ours; returns the path segments (with the
/// unknown field appended when there is one), the message, and the unknown
/// field's name.
fn describe(segments: &[String], raw: &str) -> (Vec<String>, String, Option<String>) {
    let mut segs = segments.to_vec();
    // serde: "unknown variant `serverr`, expected `server` or `client`"
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        if let Some((got, expected)) = rest.split_once("`, expected ") {
            return (
                segs,
                format!("expected {}, got \"{}\"", quote_list(expected), got),
                None,
            );
        }
    }
    // serde: "unknown field `prot`, expected one of `a`, `b`"
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let field = field.to_string();
            if segs.last() != Some(&field) {
                segs.push(field.clone());
            }
            let expected = expected.trim_start_matches(", ");
            let message = if let Some(list) = expected.strip_prefix("expected one of ") {
                format!("unknown field, expected one of {}", quote_list(list))
            } else if let Some(list) = expected.strip_prefix("expected ") {
                format!("unknown field, expected {}", quote_list(list))
            } else {
                "unknown field".to_string()
            };
            return (segs, message, Some(field));
        }
    }
    if let Some(field) = missing_field(raw) {
        let _ = field;
        return (segs, "required field is missing".to_string(), None);
    }
    (segs, raw.replace('`', "\""), None)
}

fn missing_field(raw: &str) -> Option<String> {
    raw.strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f.to_string())
}

fn quote_list(list: &str) -> String {
    list.replace('`', "\"")
}

/// Remove the value at `segs` (or the key `field` inside it) from `root`.
fn remove_at(root: &mut Value, segs: &[String], field: Option<&str>) -> bool {
    let cur = root;
    let (target, last) = match field {
        Some(f) => (segs, f.to_string()),
        None => match segs.split_last() {
            Some((last, parent)) => (parent, last.clone()),
            None => return false,
        },
    };
    let Some(cur) = walk(cur, target) else {
        return false;
    };
    match (
        cur,
        last.strip_prefix('[').and_then(|x| x.strip_suffix(']')),
    ) {
        (Value::Array(a), Some(i)) => match i.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        (Value::Object(m), _) => m.shift_remove(&last).is_some(),
        _ => false,
    }
}

/// A port as written in `config.ports.inputs` / `outputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The port's name (`in`, `out`, `ws_data`, …), which the component
    /// looks up.
    pub name: String,
    /// The bus subject: a pattern for inputs, a template for outputs.
    pub subject: String,
    /// Transport; only `"nats"` (the bus) exists. Accepted so that configs
    /// may name it.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The `ports` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortsConfig {
    /// Subjects the component reads.
    #[serde(default)]
    pub inputs: Vec<PortConfig>,
    /// Subjects the component publishes to.
    #[serde(default)]
    pub outputs: Vec<PortConfig>,
}

/// What a port list must contain for one component.
pub struct PortRules<'a> {
    /// Input port names the component knows; empty = it takes no inputs.
    pub inputs: &'a [&'a str],
    /// Output port names the component knows.
    pub outputs: &'a [&'a str],
    /// Inputs that must be present.
    pub required_inputs: &'a [&'a str],
    /// Outputs that must be present.
    pub required_outputs: &'a [&'a str],
    /// Accept any input port name (processors with several inputs).
    pub any_input_name: bool,
}

impl PortRules<'static> {
    /// An input: no input ports, one output port `out`.
    pub const SOURCE: PortRules<'static> = PortRules {
        inputs: &[],
        outputs: &["out"],
        required_inputs: &[],
        required_outputs: &["out"],
        any_input_name: false,
    };

    /// A processor: input ports of any name (`in` by convention), one
    /// output port `out`.
    pub const PROCESSOR: PortRules<'static> = PortRules {
        inputs: &["in"],
        outputs: &["out"],
        required_inputs: &[],
        required_outputs: &["out"],
        any_input_name: true,
    };
}

impl PortsConfig {
    /// Check names, subjects and port kinds; `base` is the path of the
    /// `ports` block.
    pub fn validate(&self, base: &str, rules: &PortRules<'_>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (list, known, required, is_input, name) in [
            (
                &self.inputs,
                rules.inputs,
                rules.required_inputs,
                true,
                "inputs",
            ),
            (
                &self.outputs,
                rules.outputs,
                rules.required_outputs,
                false,
                "outputs",
            ),
        ] {
            for (i, p) in list.iter().enumerate() {
                let at = format!("{base}.{name}[{i}]");
                if known.is_empty() && !(is_input && rules.any_input_name) {
                    errors.push(ConfigError::new(
                        at.clone(),
                        format!("this component has no {name} ports"),
                    ));
                    continue;
                }
                let any_name = is_input && rules.any_input_name;
                if !any_name && !known.contains(&p.name.as_str()) {
                    errors.push(ConfigError::new(
                        format!("{at}.name"),
                        format!(
                            "expected {}, got \"{}\"",
                            known
                                .iter()
                                .map(|k| format!("\"{k}\""))
                                .collect::<Vec<_>>()
                                .join(" or "),
                            p.name
                        ),
                    ));
                }
                if let Some(kind) = &p.kind {
                    if kind != "nats" {
                        errors.push(ConfigError::new(
                            format!("{at}.type"),
                            format!("expected \"nats\", got \"{kind}\""),
                        ));
                    }
                }
                let checked = if is_input {
                    subject::validate_pattern(&p.subject)
                } else {
                    subject::validate_publish(&p.subject)
                };
                if let Err(e) = checked {
                    errors.push(ConfigError::new(format!("{at}.subject"), e.0));
                }
                if list[..i].iter().any(|q| q.name == p.name) {
                    errors.push(ConfigError::new(
                        format!("{at}.name"),
                        format!("port \"{}\" is listed twice", p.name),
                    ));
                }
            }
            for r in required {
                if !list.iter().any(|p| p.name == *r) {
                    errors.push(ConfigError::new(
                        format!("{base}.{name}"),
                        format!("a port named \"{r}\" is required"),
                    ));
                }
            }
        }
        errors
    }

    /// The subject of input port `name`.
    pub fn input(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.subject.as_str())
    }

    /// The subject template of output port `name`.
    pub fn output(&self, name: &str) -> Option<Template> {
        self.outputs
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| Template::parse(&p.subject).ok())
    }

    /// Every input subject.
    pub fn input_subjects(&self) -> Vec<String> {
        self.inputs.iter().map(|p| p.subject.clone()).collect()
    }
}

/// The `auth` block of the WebSocket and HTTP components. The
/// secrets themselves come from the environment variables it names, never
/// from the config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `none`, `bearer` or `basic`.
    #[serde(rename = "type", default)]
    pub kind: AuthKind,
    /// Environment variable holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// Environment variables holding the basic-auth credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuthConfig>,
}

/// Which credential is checked or presented.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    #[default]
    None,
    Bearer,
    Basic,
}

/// Where the basic-auth credentials are read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Environment variable holding the user name.
    pub username_env: String,
    /// Environment variable holding the password.
    pub password_env: String,
}

/// A resolved credential: what a server expects or a client presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

impl AuthConfig {
    /// Read the credential from the environment; `base` is the path of the
    /// `auth` block, for errors (a missing variable is a config error, so a
    /// server never starts open by accident).
    pub fn resolve(&self, base: &str) -> Result<Credential, Vec<ConfigError>> {
        let var = |name: &str, field: &str| {
            std::env::var(name).map_err(|_| {
                ConfigError::new(
                    format!("{base}.{field}"),
                    format!("environment variable {name} is not set"),
                )
            })
        };
        match self.kind {
            AuthKind::None => Ok(Credential::None),
            AuthKind::Bearer => {
                let Some(env) = &self.bearer_token_env else {
                    return Err(vec![ConfigError::new(
                        format!("{base}.bearer_token_env"),
                        "required when type is \"bearer\"",
                    )]);
                };
                var(env, "bearer_token_env")
                    .map(Credential::Bearer)
                    .map_err(|e| vec![e])
            }
            AuthKind::Basic => {
                let Some(b) = &self.basic_auth else {
                    return Err(vec![ConfigError::new(
                        format!("{base}.basic_auth"),
                        "required when type is \"basic\"",
                    )]);
                };
                let user = var(&b.username_env, "basic_auth.username_env");
                let password = var(&b.password_env, "basic_auth.password_env");
                match (user, password) {
                    (Ok(user), Ok(password)) => Ok(Credential::Basic { user, password }),
                    (u, p) => Err(u.err().into_iter().chain(p.err()).collect()),
                }
            }
        }
    }
}

impl Credential {
    /// The `Authorization` header value a client sends, if any.
    pub fn header_value(&self) -> Option<String> {
        use base64::Engine;
        match self {
            Credential::None => None,
            Credential::Bearer(t) => Some(format!("Bearer {t}")),
            Credential::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
        }
    }

    /// Whether a request's `Authorization` header satisfies this credential
    /// (constant-time comparison of the expected value).
    pub fn accepts(&self, header: Option<&str>) -> bool {
        match (self, self.header_value()) {
            (Credential::None, _) => true,
            (_, Some(expected)) => header.is_some_and(|h| same_credential(h, &expected)),
            _ => false,
        }
    }
}

/// Whether an `Authorization` value carries the expected credential. As
/// HTTP says, the scheme (`Bearer`, `Basic`) is case-insensitive and may be
/// followed by more than one space; the credential itself is compared
/// exactly, in constant time.
fn same_credential(given: &str, expected: &str) -> bool {
    let parts = |s: &str| -> Option<(String, String)> {
        let (scheme, rest) = s.trim().split_once(char::is_whitespace)?;
        Some((scheme.to_ascii_lowercase(), rest.trim_start().to_string()))
    };
    match (parts(given), parts(expected)) {
        (Some((gs, gc)), Some((es, ec))) => gs == es && constant_eq(&gc, &ec),
        _ => false,
    }
}

/// Whether two secrets are equal, in time that depends only on their
/// lengths.
pub fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serde helper for `Option<Duration>` and `Duration` fields written as
/// human strings (`"250ms"`, `"5s"`, `"1m"`).
pub use humantime_serde as duration;

#[cfg(test)]
mod tests;
