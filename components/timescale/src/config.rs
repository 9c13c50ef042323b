//! The `config` block of a `timescale` component and its pure validation
//! (no I/O: `build` runs it, `start` touches the database).

use std::path::PathBuf;
use std::time::Duration;

use fednode_kit::config::{parse_strict, PortRules};
use fednode_kit::{ConfigError, PortsConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::KeyPath;
use crate::table::Ident;

/// Which tables messages go to.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Every message becomes one row of the generic `table`.
    #[default]
    Messages,
    /// The typed EEG tables (`sessions`, `raw_samples`, `features`,
    /// `predictions`) for messages of those types; every other message goes
    /// to the generic `table`.
    Eeg,
}

/// Retry delays after a failed write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay after a failure; doubles (with jitter) per failure.
    #[schemars(with = "String")]
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest delay between two attempts while the database stays down.
    #[schemars(with = "String")]
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub max_interval: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: default_retry_initial(),
            max_interval: default_retry_max(),
        }
    }
}

fn default_retry_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(5)
}

/// The JetStream side of `durable: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JetStreamConfig {
    /// Stream to read from. When absent, a stream already holding the input
    /// subjects is used, else one named `FEDNODE_<INSTANCE>` is created
    /// for them.
    #[serde(default)]
    pub stream: Option<String>,
    /// Durable consumer name (default `fednode_<instance>`); a restarted
    /// node resumes where this consumer left off. With several input ports
    /// each gets `<consumer>_<index>`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// How long the server waits for the ack of a delivered message before
    /// delivering it again (after a crash, the time until redelivery).
    #[schemars(with = "String")]
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            stream: None,
            consumer: None,
            ack_wait: default_ack_wait(),
        }
    }
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

/// The `config` block of a `timescale` component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PostgreSQL URL (`postgres://user:pass@host:5432/db`), usually
    /// `"${DATABASE_URL}"`. Its query carries TLS: `sslmode` (`disable`,
    /// `prefer`, `require`, `verify-ca`, `verify-full`), `sslrootcert`
    /// (the CA file to verify the server with), `sslcert` and `sslkey` (a
    /// client certificate).
    pub url: String,
    /// The generic table (`name` or `schema.name`), created when
    /// `manage_schema` is true.
    #[serde(default = "default_table")]
    pub table: String,
    /// Create tables and indexes at start (idempotent). `false` writes into
    /// existing tables without any DDL; they must have the needed columns.
    #[serde(default = "default_true")]
    pub manage_schema: bool,
    /// `messages` (the generic table only) or `eeg` (the typed EEG tables).
    #[serde(default)]
    pub profile: Profile,
    /// JSONPath of the row key (`$.user_id`): `$.a.b`, `$['a b']`, `$.a[0]`.
    #[serde(default = "default_key_path")]
    pub key_path: String,
    /// Rows per write; a batch is written as soon as it is full.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest time a row waits for its batch to fill.
    #[schemars(with = "String")]
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Rows held in memory while the database is slow or down; beyond this
    /// the component stops reading its input (backpressure).
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// Read through a JetStream durable consumer (NATS bus only) and ack
    /// messages only once their rows are committed: at-least-once across a
    /// crash of this node.
    #[serde(default)]
    pub durable: bool,
    /// Stream and consumer settings for `durable: true`.
    #[serde(default)]
    pub jetstream: JetStreamConfig,
    /// Start even when the database is unreachable (buffer and retry)
    /// instead of failing the node's start.
    #[serde(default)]
    pub retry_on_start: bool,
    /// Backoff between write attempts while the database fails.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Where rows still held at shutdown go when PostgreSQL cannot take
    /// them in time (an append-only log, written first at the next start).
    /// Default `<data_dir>/<instance>/spill` when the node has a
    /// `data_dir`; with neither, such rows are lost (logged and counted).
    #[serde(default)]
    pub spill_path: Option<PathBuf>,
    /// Input ports (any names, at least one); no outputs.
    #[serde(default)]
    pub ports: PortsConfig,
}

fn default_true() -> bool {
    true
}
fn default_table() -> String {
    "fednode_messages".into()
}
fn default_key_path() -> String {
    "$.user_id".into()
}
fn default_batch_size() -> usize {
    500
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_buffered() -> usize {
    100_000
}

/// A validated config with its parsed parts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub table: Ident,
    pub key_path: KeyPath,
}

impl Config {
    /// Parse and check the `config` block at JSON path `base`, collecting
    /// every problem: the value checks run on the raw JSON too, so a typo
    /// elsewhere does not hide them.
    pub fn parse(value: &Value, base: &str) -> Result<Settings, Vec<ConfigError>> {
        let parsed = parse_strict::<Config>(value, base);
        let mut errors = parsed.as_ref().err().cloned().unwrap_or_default();
        for e in check_values(value, base) {
            if !errors.iter().any(|x| x.path == e.path) {
                errors.push(e);
            }
        }
        match parsed {
            Ok(config) if errors.is_empty() => {
                let table = Ident::parse(&config.table)
                    .map_err(|e| vec![ConfigError::new(format!("{base}.table"), e)])?;
                let key_path = KeyPath::parse(&config.key_path)
                    .map_err(|e| vec![ConfigError::new(format!("{base}.key_path"), e)])?;
                Ok(Settings {
                    config,
                    table,
                    key_path,
                })
            }
            _ => Err(errors),
        }
    }
}

/// The certificate and key files the URL's query names (`sslrootcert`,
/// `sslcert`, `sslkey`, or sqlx's spellings `ssl-root-cert`/`ssl-ca`,
/// `ssl-cert`, `ssl-key`) as `(parameter, path)`, decoded as sqlx decodes
/// them. `start` reads each before connecting, so that a missing file is
/// named rather than reported by sqlx as "error communicating with
/// database: No such file or directory".
pub fn tls_files(url: &str) -> Vec<(&'static str, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let param = match form_decode(key).as_str() {
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => "sslrootcert",
                "sslcert" | "ssl-cert" => "sslcert",
                "sslkey" | "ssl-key" => "sslkey",
                _ => return None,
            };
            Some((param, form_decode(value)))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a
/// byte), as the `url` crate's `query_pairs` that sqlx uses.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if bytes.len() >= i + 3
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("0");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn duration(v: Option<&Value>) -> Option<Duration> {
    v.and_then(|v| humantime_serde::deserialize::<Duration, _>(v.clone()).ok())
}

/// The checks serde cannot express, on the raw block (fields of the wrong
/// type are skipped here: `parse_strict` reports them).
fn check_values(value: &Value, base: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let at = |field: &str| format!("{base}.{field}");
    let get = |field: &str| value.get(field);

    if let Some(url) = get("url").and_then(Value::as_str) {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            errors.push(ConfigError::new(
                at("url"),
                format!(
                    "expected a URL starting with postgres:// or postgresql://, got \"{}\"",
                    crate::redact_url(url)
                ),
            ));
        } else if let Err(e) = url.parse::<sqlx::postgres::PgConnectOptions>() {
            errors.push(ConfigError::new(
                at("url"),
                format!(
                    "invalid PostgreSQL URL: {}",
                    crate::redact_url(&e.to_string())
                ),
            ));
        }
    }
    if get("spill_path").and_then(Value::as_str) == Some("") {
        errors.push(ConfigError::new(at("spill_path"), "must not be empty"));
    }
    if let Some(t) = get("table").and_then(Value::as_str) {
        if let Err(e) = Ident::parse(t) {
            errors.push(ConfigError::new(at("table"), e));
        }
    }
    if let Some(p) = get("key_path").and_then(Value::as_str) {
        if let Err(e) = KeyPath::parse(p) {
            errors.push(ConfigError::new(at("key_path"), e));
        }
    }
    let batch_size = get("batch_size").and_then(Value::as_u64);
    if batch_size == Some(0) {
        errors.push(ConfigError::new(at("batch_size"), "must be at least 1"));
    }
    let batch_size = batch_size.unwrap_or(default_batch_size() as u64);
    if let Some(m) = get("max_buffered").and_then(Value::as_u64) {
        if m < batch_size {
            errors.push(ConfigError::new(
                at("max_buffered"),
                format!("must be at least batch_size ({batch_size})"),
            ));
        }
    }
    if duration(get("flush_interval")).is_some_and(|d| d.is_zero()) {
        errors.push(ConfigError::new(
            at("flush_interval"),
            "must be longer than 0s",
        ));
    }
    if let Some(r) = get("retry") {
        let initial = duration(r.get("initial_interval"));
        if initial.is_some_and(|d| d.is_zero()) {
            errors.push(ConfigError::new(
                at("retry.initial_interval"),
                "must be longer than 0s",
            ));
        }
        let initial = initial.unwrap_or_else(default_retry_initial);
        let max = duration(r.get("max_interval")).unwrap_or_else(default_retry_max);
        if initial > max {
            errors.push(ConfigError::new(
                at("retry.initial_interval"),
                "must not exceed retry.max_interval",
            ));
        }
    }
    if let Some(js) = get("jetstream") {
        for field in ["stream", "consumer"] {
            if let Some(n) = js.get(field).and_then(Value::as_str) {
                if n.is_empty()
                    || n.chars()
                        .any(|c| matches!(c, '.' | '*' | '>' | ' ' | '\t' | '/' | '\\'))
                {
                    errors.push(ConfigError::new(
                        at(&format!("jetstream.{field}")),
                        format!("\"{n}\" is not a valid JetStream name (no '.', '*', '>', '/', or spaces)"),
                    ));
                }
            }
        }
        if duration(js.get("ack_wait")).is_some_and(|d| d < Duration::from_secs(1)) {
            errors.push(ConfigError::new(
                at("jetstream.ack_wait"),
                "must be at least 1s",
            ));
        }
    }
    let ports = match get("ports") {
        None => Some(PortsConfig::default()),
        Some(p) => serde_json::from_value::<PortsConfig>(p.clone()).ok(),
    };
    if let Some(ports) = ports {
        errors.extend(ports.validate(
            &at("ports"),
            &PortRules {
                inputs: &[],
                outputs: &[],
                required_inputs: &[],
                required_outputs: &[],
                any_input_name: true,
            },
        ));
        if ports.inputs.is_empty() {
            errors.push(ConfigError::new(
                at("ports.inputs"),
                "at least one input port is required",
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "url": "postgres://u:secret@localhost/db",
            "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
        })
    }

    fn errors(v: Value) -> Vec<String> {
        Config::parse(&v, "components.ts.config")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults() {
        let v = Config::parse(&base(), "c").unwrap();
        let c = v.config;
        assert_eq!(c.table, "fednode_messages");
        assert!(c.manage_schema);
        assert_eq!(c.profile, Profile::Messages);
        assert_eq!(c.key_path, "$.user_id");
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.max_buffered, 100_000);
        assert!(!c.durable);
        assert!(!c.retry_on_start);
        assert_eq!(c.jetstream.ack_wait, Duration::from_secs(30));
        assert_eq!(c.spill_path, None);
    }

    #[test]
    fn full_config_parses() {
        let v = json!({
            "url": "postgresql://localhost/db", "table": "metrics.events", "manage_schema": false,
            "profile": "eeg", "key_path": "$['user id']", "batch_size": 10,
            "flush_interval": "250ms", "max_buffered": 1000, "durable": true,
            "jetstream": {"stream": "S", "consumer": "c1", "ack_wait": "5s"},
            "retry_on_start": true, "retry": {"initial_interval": "50ms", "max_interval": "2s"},
            "spill_path": "/var/lib/fednode/ts/spill",
            "ports": {"inputs": [{"name": "a", "subject": "x.*"}, {"name": "b", "subject": "y"}]}
        });
        let c = Config::parse(&v, "c").unwrap();
        assert_eq!(c.table.qualified(), "\"metrics\".\"events\"");
        assert_eq!(c.config.profile, Profile::Eeg);
        assert_eq!(c.config.flush_interval, Duration::from_millis(250));
        assert_eq!(
            c.config.spill_path.as_deref(),
            Some(std::path::Path::new("/var/lib/fednode/ts/spill"))
        );
    }

    #[test]
    fn spill_path_must_not_be_empty() {
        let mut v = base();
        v["spill_path"] = json!("");
        let e = errors(v);
        assert!(
            e.iter()
                .any(|l| l == "components.ts.config.spill_path: must not be empty"),
            "{e:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut v = base();
        v["url"] = json!("mysql://root:pw@h/db");
        v["batch_size"] = json!(0);
        v["table"] = json!("bad table");
        v["key_path"] = json!("$.a[*]");
        v["flush_intervl"] = json!("1s");
        let e = errors(v);
        assert!(
            e.iter().any(|l| l
                .starts_with("components.ts.config.url: expected a URL starting with postgres://")),
            "{e:?}"
        );
        assert!(
            e.iter().all(|l| !l.contains(":pw@")),
            "password leaked: {e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.batch_size:")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.table:")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.key_path:")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.flush_intervl: unknown field")),
            "{e:?}"
        );
    }

    #[test]
    fn url_is_required_and_inputs_too() {
        let e = errors(json!({"ports": {"outputs": [{"name": "out", "subject": "x"}]}}));
        assert!(
            e.iter()
                .any(|l| l == "components.ts.config.url: required field is missing"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.ports.outputs[0]:")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.ports.inputs:")),
            "{e:?}"
        );
    }

    #[test]
    fn profile_and_durations_are_checked() {
        let mut v = base();
        v["profile"] = json!("zander");
        v["flush_interval"] = json!("soon");
        let e = errors(v);
        assert!(e.iter().any(|l| l == "components.ts.config.profile: expected \"messages\" or \"eeg\", got \"zander\""), "{e:?}");
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.flush_interval:")),
            "{e:?}"
        );
    }

    #[test]
    fn max_buffered_must_hold_a_batch() {
        let mut v = base();
        v["max_buffered"] = json!(10);
        let e = errors(v);
        assert!(
            e.iter()
                .any(|l| l
                    .starts_with("components.ts.config.max_buffered: must be at least batch_size")),
            "{e:?}"
        );
    }

    #[test]
    fn tls_files_are_read_from_the_query_as_sqlx_reads_them() {
        assert!(tls_files("postgres://h/db").is_empty());
        assert!(tls_files("postgres://h/db?sslmode=require").is_empty());
        assert_eq!(
            tls_files(
                "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/etc/ca%20dir/ca.crt\
                 &ssl-cert=/c+d.crt&sslkey=&x=1#frag"
            ),
            [
                ("sslrootcert", "/etc/ca dir/ca.crt".to_string()),
                ("sslcert", "/c d.crt".to_string()),
                ("sslkey", String::new()),
            ]
        );
        assert_eq!(
            tls_files("postgres://h/db?ssl-ca=%2Fa%zz%4"),
            [("sslrootcert", "/a%zz%4".to_string())]
        );
        // What sqlx makes of the same URL: the parse succeeds.
        assert!("postgres://h/db?sslmode=verify-ca&sslrootcert=/x/ca.crt&sslcert=/x/c.crt&sslkey=/x/c.key"
            .parse::<sqlx::postgres::PgConnectOptions>()
            .is_ok());
        let e = errors({
            let mut v = base();
            v["url"] = json!("postgres://h/db?sslmode=sometimes");
            v
        });
        assert!(
            e.iter()
                .any(|l| l.starts_with("components.ts.config.url: invalid PostgreSQL URL")),
            "{e:?}"
        );
    }
}
