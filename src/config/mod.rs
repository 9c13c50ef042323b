//! Loading a node config: read, interpolate `${VAR}`, parse the
//! top level strictly, then let each component's factory validate its own
//! `config` block. Every problem is collected, each with its JSON path; no
//! I/O happens here beyond reading the file.

mod interpolate;
mod schema;

use fednode_kit::component::Listen;
use fednode_kit::config::{parse_strict, AuthConfig, ConfigError, Credential};
use fednode_kit::{BuildContext, Component, ComponentKind, NodeIdentity};
use fednode_ws::tls::{ClientTls, ServerTls};
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::registry;

pub use interpolate::{interpolate, interpolate_with, Found, Unresolved};
pub use schema::schema;

/// A validated config, with every enabled component built (not started).
pub struct NodeConfig {
    pub node: NodeIdentity,
    pub bus: BusConfig,
    /// The admin server's address; `None` when `http.listen` is null.
    pub http_listen: Option<SocketAddr>,
    /// The credential every admin path but the health probes needs
    /// (`http.auth`).
    pub http_auth: Credential,
    /// `http.tls`: the admin server speaks HTTPS.
    pub http_tls: Option<ServerTls>,
    pub shutdown_timeout: Duration,
    /// In config order.
    pub components: Vec<ComponentSpec>,
    /// The top-level sections a reload cannot change (`node`, `bus`,
    /// `http`, `data_dir`), as written (after `${VAR}` substitution).
    pub fixed: Value,
}

/// One entry of `components`.
pub struct ComponentSpec {
    /// The instance name (the key).
    pub name: String,
    pub kind: ComponentKind,
    /// The canonical factory name.
    pub factory: &'static str,
    pub enabled: bool,
    /// Built when enabled.
    pub component: Option<Arc<dyn Component>>,
    /// The entry as written (after `${VAR}` substitution): a reload
    /// restarts the component when this changes.
    pub source: Value,
}

/// Which bus to use (`bus`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `memory` (in-process, the default) or `nats`.
    #[serde(default)]
    pub kind: BusKind,
    /// NATS server URL (`nats://host:4222`); required for `nats`.
    #[serde(default)]
    pub url: Option<String>,
    /// NATS token authentication.
    #[serde(default)]
    pub token: Option<String>,
    /// NATS user (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// NATS password (with `user`).
    #[serde(default)]
    pub password: Option<String>,
    /// NATS credentials file (JWT + nkey).
    #[serde(default)]
    pub creds_file: Option<String>,
    /// How long `run` waits for the first connection before giving up.
    #[schemars(with = "String")]
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a publisher waits for the NATS server to confirm that it
    /// holds what was published (the round trip before an input acks a
    /// round); a flush that takes longer acks nothing and the senders
    /// resend.
    #[schemars(with = "String")]
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// TLS to the NATS server (`{ca_file?, cert_file?, key_file?}`): the
    /// connection then requires TLS (also implied by a `tls://` URL).
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Memory,
            url: None,
            token: None,
            user: None,
            password: None,
            creds_file: None,
            connect_timeout: default_connect_timeout(),
            flush_timeout: default_flush_timeout(),
            tls: None,
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_flush_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The bus transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    Memory,
    Nats,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The JSON Schema editors check the file against (`fednode schema`
    /// writes it); the node ignores it.
    #[serde(rename = "$schema", default)]
    #[allow(dead_code)]
    schema: Option<String>,
    /// Who this node is.
    #[serde(default)]
    node: NodeSection,
    /// The bus.
    #[serde(default)]
    bus: BusConfig,
    /// The admin server; `null` turns it off.
    #[serde(default = "default_http")]
    http: Option<HttpSection>,
    /// How long a stop may drain.
    #[schemars(with = "String")]
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    shutdown_timeout: Duration,
    /// Where components keep files (an output's `store`) unless their
    /// config names a path.
    #[serde(default)]
    data_dir: Option<std::path::PathBuf>,
    /// The graph: instance name → entry (validated one by one below).
    #[serde(default)]
    components: serde_json::Map<String, Value>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    /// Stamped on everything this node publishes (`Fednode-Node`).
    #[serde(default = "default_node_id")]
    id: String,
    /// Shown by `status`.
    #[serde(default)]
    region: Option<String>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: default_node_id(),
            region: None,
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    /// Address of the admin server; `null` turns it off.
    #[serde(default = "default_listen")]
    listen: Option<String>,
    /// Protects every admin path except `GET /health` and `/health/ready`.
    #[serde(default)]
    auth: AuthConfig,
    /// Serve the admin API over HTTPS.
    #[serde(default)]
    tls: Option<ServerTls>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ComponentEntry {
    /// `input`, `processor`, `output` or `storage`.
    #[serde(rename = "type")]
    kind: String,
    /// The factory.
    name: String,
    /// Disabled components are validated for their type and name only.
    #[serde(default = "default_true")]
    enabled: bool,
    /// The factory's own config block.
    #[serde(default)]
    config: Value,
}

fn default_true() -> bool {
    true
}
fn default_http() -> Option<HttpSection> {
    Some(HttpSection {
        listen: default_listen(),
        auth: AuthConfig::default(),
        tls: None,
    })
}
fn default_listen() -> Option<String> {
    Some("127.0.0.1:9090".into())
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "fednode".into())
}

/// The top-level sections that only a restart applies.
pub const FIXED_SECTIONS: [&str; 4] = ["node", "bus", "http", "data_dir"];

/// Read and validate a config file; `Err` holds one line per problem.
pub fn load(path: &Path) -> Result<NodeConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::new(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )]
    })?;
    load_str(&text, &|name| std::env::var(name).ok())
}

/// Validate config text with an explicit environment (tests).
pub fn load_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<NodeConfig, Vec<ConfigError>> {
    load_value(text, env, Unresolved::Error).0
}

/// What `check --no-env` found in a config that is valid apart from its
/// unresolved variables.
pub struct Placeheld {
    /// The config, when no placeholder stood in the way of building it.
    pub config: Option<NodeConfig>,
    /// The variables without a value (`${VAR}` and auth `*_env`), each
    /// once, in document order.
    pub unresolved: Vec<String>,
    /// The problems found only at a placeholder's path (a value the check
    /// could not judge without the variable), one line each.
    pub unchecked: Vec<ConfigError>,
}

/// `check --no-env`: validate structure and types with every `${VAR}`
/// that has no value (and no default) taken as a placeholder, and auth
/// blocks whose `*_env` variables are unset accepted. `Err` holds the
/// problems that are not about a placeholder, as [`load`] reports them.
pub fn load_no_env(path: &Path) -> Result<Placeheld, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::new(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )]
    })?;
    load_str_no_env(&text, &|name| std::env::var(name).ok())
}

/// [`load_no_env`] on config text with an explicit environment.
pub fn load_str_no_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Placeheld, Vec<ConfigError>> {
    let (result, placeholders) = load_value(text, env, Unresolved::Placeholder);
    let mut unresolved: Vec<String> = Vec::new();
    let mut note = |var: &str| {
        if !unresolved.iter().any(|v| v == var) {
            unresolved.push(var.to_string());
        }
    };
    for (_, vars) in &placeholders {
        for v in vars {
            note(v);
        }
    }
    let errors = match result {
        Ok(cfg) => {
            return Ok(Placeheld {
                config: Some(cfg),
                unresolved,
                unchecked: Vec::new(),
            })
        }
        Err(errors) => errors,
    };
    let mut real = Vec::new();
    let mut unchecked = Vec::new();
    for e in errors {
        if placeholders.iter().any(|(p, _)| under(&e.path, p)) {
            unchecked.push(e);
        } else if let Some(var) = auth_env_unset(&e) {
            note(var);
        } else {
            real.push(e);
        }
    }
    if real.is_empty() {
        Ok(Placeheld {
            config: None,
            unresolved,
            unchecked,
        })
    } else {
        Err(real)
    }
}

/// The variable of an auth block's "`*_env`: environment variable X is
/// not set" error.
fn auth_env_unset(e: &ConfigError) -> Option<&str> {
    if !e.path.ends_with("_env") {
        return None;
    }
    e.message
        .strip_prefix("environment variable ")?
        .strip_suffix(" is not set")
}

/// Whether the JSON path `path` is `p` or inside it.
fn under(path: &str, p: &str) -> bool {
    path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// A config file's text as plain JSON: `//` and `/* */` comments and
/// trailing commas are blanked out in place, so line and column numbers
/// stay the file's.
pub fn strip_comments(text: &str) -> Result<String, String> {
    let mut stripped = text.to_string();
    json_strip_comments::strip(&mut stripped).map_err(|e| e.to_string())?;
    // The stripper blanks a block comment's line breaks too: put them back
    // (whitespace either way), so errors name the file's own lines.
    let mut bytes = stripped.into_bytes();
    if bytes.len() == text.len() {
        for (now, was) in bytes.iter_mut().zip(text.bytes()) {
            if was == b'\n' && *now == b' ' {
                *now = b'\n';
            }
        }
    }
    // Only ASCII spaces became line breaks: still UTF-8.
    Ok(String::from_utf8(bytes).expect("UTF-8 in, UTF-8 out"))
}

/// Strings left unresolved: (path, the variables they name).
type Placeholders = Vec<(String, Vec<String>)>;

/// Parse, interpolate and build; also returns the placeholders left.
/// With [`Unresolved::Error`], a value that holds an unset variable has
/// one problem, the variable: what building found at its path (a type
/// error, a value that is not the real one) is dropped.
fn load_value(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    unresolved: Unresolved,
) -> (Result<NodeConfig, Vec<ConfigError>>, Placeholders) {
    let text = match strip_comments(text) {
        Ok(t) => t,
        Err(e) => {
            return (
                Err(vec![ConfigError::new("$", format!("invalid JSON: {e}"))]),
                Vec::new(),
            )
        }
    };
    let mut value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return (
                Err(vec![ConfigError::new(
                    "$",
                    format!(
                        "invalid JSON at line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                )]),
                Vec::new(),
            )
        }
    };
    let mut found = Found::default();
    interpolate_with(&mut value, "", env, unresolved, &mut found);
    let Found {
        mut errors,
        mut typed,
        placeholders,
    } = found;

    // A `"${VAR}"` that became a number or a boolean (or the stand-in for
    // an unset one) but sits in a field of another type goes back to being
    // a string; retry until no such error remains.
    let mut result = build(&value, &placeholders);
    for _ in 0..8 {
        let Err(errs) = &result else { break };
        let reverts: Vec<&(String, String)> = typed
            .iter()
            .filter(|(p, _)| {
                errs.iter().any(|e| {
                    &e.path == p
                        && (e.message.starts_with("invalid type: integer")
                            || e.message.starts_with("invalid type: floating point")
                            || e.message.starts_with("invalid type: boolean"))
                })
            })
            .collect();
        if reverts.is_empty() {
            break;
        }
        for (p, text) in reverts {
            set_at(&mut value, p, Value::String(text.clone()));
        }
        typed.retain(|(p, _)| !errs.iter().any(|e| &e.path == p));
        result = build(&value, &placeholders);
    }
    let result = match result {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(errors),
        Err(mut errs) => {
            if unresolved == Unresolved::Error {
                errs.retain(|e| !placeholders.iter().any(|(p, _)| under(&e.path, p)));
            }
            // Missing variables first, in document order, then the rest.
            errors.append(&mut errs);
            Err(errors)
        }
    };
    (result, placeholders)
}

fn set_at(root: &mut Value, path: &str, new: Value) {
    let mut cur = root;
    for seg in split_path(path) {
        cur = match seg {
            Seg::Key(k) => match cur.get_mut(&k) {
                Some(v) => v,
                None => return,
            },
            Seg::Index(i) => match cur.get_mut(i) {
                Some(v) => v,
                None => return,
            },
        };
    }
    *cur = new;
}

enum Seg {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}

/// Build every enabled component and check the whole node. A port that
/// is still a placeholder (in `placeholders`) is not compared with others.
fn build(value: &Value, placeholders: &Placeholders) -> Result<NodeConfig, Vec<ConfigError>> {
    let raw: RawConfig = parse_strict(value, "")?;
    let mut errors = Vec::new();

    if raw.node.id.trim().is_empty() {
        errors.push(ConfigError::new("node.id", "must not be empty"));
    }
    if raw.bus.kind == BusKind::Nats {
        match &raw.bus.url {
            None => errors.push(ConfigError::new(
                "bus.url",
                "required when kind is \"nats\"",
            )),
            Some(u)
                if !(u.starts_with("nats://") || u.starts_with("tls://") || u.contains(':')) =>
            {
                errors.push(ConfigError::new(
                    "bus.url",
                    format!("expected a NATS URL like \"nats://127.0.0.1:4222\", got {u:?}"),
                ))
            }
            _ => {}
        }
        if raw.bus.flush_timeout.is_zero() {
            errors.push(ConfigError::new("bus.flush_timeout", "must be more than 0"));
        }
        if raw.bus.user.is_some() != raw.bus.password.is_some() {
            errors.push(ConfigError::new(
                "bus.user",
                "user and password go together",
            ));
        }
    }
    let http_auth = match &raw.http {
        Some(h) => h.auth.resolve("http.auth").unwrap_or_else(|mut e| {
            errors.append(&mut e);
            Credential::None
        }),
        None => Credential::None,
    };
    let http_tls = raw.http.as_ref().and_then(|h| h.tls.clone());
    if let Some(tls) = &http_tls {
        errors.extend(tls.validate("http.tls"));
    }
    if let Some(tls) = &raw.bus.tls {
        errors.extend(tls.validate("bus.tls"));
    }
    let http_listen = match raw.http.and_then(|h| h.listen) {
        None => None,
        Some(addr) => match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errors.push(ConfigError::new(
                    "http.listen",
                    format!("expected an address like \"127.0.0.1:9090\", got {addr:?}"),
                ));
                None
            }
        },
    };
    if raw
        .data_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        errors.push(ConfigError::new("data_dir", "must not be empty"));
    }
    let node = NodeIdentity {
        id: raw.node.id.clone(),
        region: raw.node.region.clone(),
        data_dir: raw.data_dir.clone(),
    };

    let mut components = Vec::new();
    for (instance, entry) in &raw.components {
        let base = format!("components.{instance}");
        if instance.is_empty() || instance.contains(['/', ' ', '.']) {
            errors.push(ConfigError::new(
                base.clone(),
                "instance names may not be empty or contain '/', '.' or spaces",
            ));
        }
        let entry: ComponentEntry = match parse_strict(entry, &base) {
            Ok(e) => e,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        let Some(kind) = ComponentKind::parse(&entry.kind) else {
            errors.push(ConfigError::new(
                format!("{base}.type"),
                format!(
                    "expected \"input\", \"processor\", \"output\" or \"storage\", got \"{}\"",
                    entry.kind
                ),
            ));
            continue;
        };
        let Some(reg) = registry::find(&entry.name) else {
            errors.push(ConfigError::new(
                format!("{base}.name"),
                format!(
                    "unknown component {:?}; expected one of {}",
                    entry.name,
                    registry::names()
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        };
        if !reg.kinds.contains(&kind) {
            errors.push(ConfigError::new(
                format!("{base}.type"),
                format!(
                    "\"{}\" is {}, got \"{}\"",
                    reg.name,
                    reg.kinds
                        .iter()
                        .map(|k| format!("\"{}\"", k.as_str()))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    entry.kind
                ),
            ));
            continue;
        }
        let component = if entry.enabled {
            let path = format!("{base}.config");
            let cx = BuildContext {
                instance,
                path: &path,
                node: &node,
            };
            let config = if entry.config.is_null() {
                Value::Object(Default::default())
            } else {
                entry.config.clone()
            };
            match (reg.build)(&cx, &config) {
                Ok(c) => Some(c),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            }
        } else {
            None
        };
        components.push(ComponentSpec {
            name: instance.clone(),
            kind,
            factory: reg.name,
            enabled: entry.enabled,
            component,
            source: value
                .get("components")
                .and_then(|c| c.get(instance))
                .cloned()
                .unwrap_or(Value::Null),
        });
    }

    check_listens(http_listen, &components, placeholders, &mut errors);

    if errors.is_empty() {
        Ok(NodeConfig {
            node,
            bus: raw.bus,
            http_listen,
            http_auth,
            http_tls,
            shutdown_timeout: raw.shutdown_timeout,
            components,
            fixed: FIXED_SECTIONS
                .iter()
                .map(|k| (k.to_string(), value.get(k).cloned().unwrap_or(Value::Null)))
                .collect(),
        })
    } else {
        Err(errors)
    }
}

/// Each socket that would collide with one bound before it — the admin
/// server's first, then the components' in config order — is an error at
/// the key that set its port, naming who holds the port.
fn check_listens(
    http_listen: Option<SocketAddr>,
    components: &[ComponentSpec],
    placeholders: &Placeholders,
    errors: &mut Vec<ConfigError>,
) {
    let mut bound: Vec<(String, Listen)> = Vec::new();
    if let Some(addr) = http_listen {
        bound.push(("the admin server".into(), Listen::tcp(addr, "http.listen")));
    }
    for spec in components {
        let Some(component) = &spec.component else {
            continue;
        };
        for listen in component.listens() {
            let path = format!("components.{}.config.{}", spec.name, listen.field);
            if placeholders.iter().any(|(p, _)| *p == path) {
                continue;
            }
            if let Some((owner, other)) = bound.iter().find(|(_, b)| b.collides(&listen)) {
                errors.push(ConfigError::new(
                    path,
                    format!(
                        "port {} is already used by {owner} ({other})",
                        listen.addr.port()
                    ),
                ));
            }
            bound.push((format!("component \"{}\"", spec.name), listen));
        }
    }
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests;
