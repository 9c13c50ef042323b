//! The `config` block of a `websocket_input` component (SPEC §4.1, seed 004)
//! and its validation. Everything here is pure: no sockets, no DNS.

use fednode_kit::backoff::ReconnectConfig;
use fednode_kit::config::{AuthConfig, ConfigError, Credential, PortRules, PortsConfig};
use fednode_kit::queue::OnFull;
use fednode_kit::subject::Template;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The output port carrying data payloads.
pub const PORT_DATA: &str = "ws_data";
/// The output port whose subject prefixes control subjects.
pub const PORT_CONTROL: &str = "ws_control";
/// Accepted instead of `ws_data` (seed 004's appendix).
pub const PORT_OUT: &str = "out";
/// The control subject when no `ws_control` port is configured.
pub const DEFAULT_CONTROL_SUBJECT: &str = "federated.control";

/// The whole `config` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `server` (listen for peers) or `client` (connect to one peer). May be
    /// left out when only a `server` block (or the flat `http_port`) or only
    /// a `client` block is given.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Server-mode settings (`mode: "server"`).
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// Shorthand for `server.http_port` (seed 004 appendix's flat form).
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Shorthand for `server.path`.
    #[serde(default)]
    pub path: Option<String>,
    /// Client-mode settings (`mode: "client"`).
    #[serde(default)]
    pub client: Option<ClientConfig>,
    /// Server mode: the credential peers must present. Client mode: the
    /// credential this node presents (SPEC §7).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Request/reply over the socket.
    #[serde(default)]
    pub bidirectional: BidirectionalConfig,
    /// The queue between socket readers and the bus.
    #[serde(default)]
    pub backpressure: BackpressureConfig,
    /// Largest accepted frame; a larger one closes the connection with 1009.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// `at_most_once` (no acks) or `at_least_once` (ack each published data
    /// envelope, drop duplicate ids, ask for `replay` after a reconnect).
    #[serde(default)]
    pub delivery: Delivery,
    /// How many recent data ids are remembered to drop duplicates
    /// (`at_least_once` only).
    #[serde(default = "default_dedup_window")]
    pub dedup_window: usize,
    /// Output ports: `ws_data` (or `out`) for data, `ws_control` for control.
    #[serde(default)]
    pub ports: PortsConfig,
}

/// Listen or connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Accept WebSocket peers on `server.http_port`.
    Server,
    /// Connect to `client.url` and keep reconnecting.
    Client,
}

impl Mode {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Server => "server",
            Mode::Client => "client",
        }
    }
}

/// Delivery guarantee on the link (SPEC §3 "Acknowledged delivery").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// No acks; what is lost in flight is lost.
    #[default]
    AtMostOnce,
    /// Ack what was published; duplicates dropped by id.
    AtLeastOnce,
}

/// The `server` block (also used by the `websocket` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// TCP port to listen on (0 picks a free one; tests).
    pub http_port: u16,
    /// The WebSocket endpoint path; other paths answer 404.
    #[serde(default = "default_path")]
    pub path: String,
    /// Address to bind (an IP address or `localhost`).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Concurrent connections; one more is answered with HTTP 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes read from the socket at once (tungstenite read buffer). Every
    /// connection holds one, idle or not, so it sets the memory per idle
    /// connection (30–35 KiB in all at the default).
    #[serde(default = "default_read_buffer_size")]
    pub read_buffer_size: usize,
    /// Bytes collected before a write reaches the socket.
    #[serde(default = "default_buffer_size")]
    pub write_buffer_size: usize,
    /// Accepted for seed 004 compatibility; permessage-deflate is not
    /// negotiated by this build (tungstenite 0.29 has no deflate), so
    /// frames are always sent uncompressed.
    #[serde(default)]
    pub enable_compression: bool,
}

/// The `client` block (also used by the `websocket` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The peer's `ws://` or `wss://` URL.
    pub url: String,
    /// Reconnect policy (exponential backoff with jitter).
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// How long one connection attempt (TCP + TLS + handshake) may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

/// The `bidirectional` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidirectionalConfig {
    /// Answer and send requests; when off, peers' requests get `unavailable`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a request may wait for its reply before it fails with `timeout`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests in flight per connection and direction; one more answers
    /// `too_many_requests`.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
}

impl Default for BidirectionalConfig {
    fn default() -> Self {
        BidirectionalConfig {
            enabled: true,
            request_timeout: default_request_timeout(),
            max_concurrent_requests: default_max_concurrent(),
        }
    }
}

/// The `backpressure` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackpressureConfig {
    /// Apply `on_full`; when off the queue never drops and readers wait for
    /// the bus (as with `block`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Data payloads held between the sockets and the bus.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// `drop_oldest`, `drop_newest` or `block` (stop reading the sockets, so
    /// TCP pushes back on the peers).
    #[serde(default)]
    pub on_full: OnFull,
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        BackpressureConfig {
            enabled: true,
            queue_size: default_queue_size(),
            on_full: OnFull::default(),
        }
    }
}

impl BackpressureConfig {
    /// The policy in force (`block` when backpressure is disabled).
    pub fn policy(&self) -> OnFull {
        if self.enabled {
            self.on_full
        } else {
            OnFull::Block
        }
    }
}

fn default_true() -> bool {
    true
}
/// 1 MiB.
pub fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_dedup_window() -> usize {
    10_000
}
fn default_path() -> String {
    "/".into()
}
fn default_bind() -> String {
    "0.0.0.0".into()
}
fn default_max_connections() -> usize {
    100
}
/// Write side: tungstenite's own default (128 KiB); seed 004's 4 KiB example
/// would flush every few frames. The buffer grows only while writing.
fn default_buffer_size() -> usize {
    128 * 1024
}
/// Read side: 16 KiB. tungstenite's 128 KiB default is held by every idle
/// connection (≈ 146 KiB each in all); at 16 KiB an idle connection costs
/// 30–35 KiB and one client still pushes ≈ 0.79 M msgs/s (BENCHMARKS.md).
fn default_read_buffer_size() -> usize {
    16 * 1024
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_concurrent() -> usize {
    10
}
fn default_queue_size() -> usize {
    1000
}

/// A validated configuration, with everything resolved that `start` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub server: Option<ServerConfig>,
    pub client: Option<ClientConfig>,
    /// Resolved from the environment at build time.
    pub credential: Credential,
    pub bidirectional: BidirectionalConfig,
    pub backpressure: BackpressureConfig,
    pub max_message_bytes: usize,
    pub delivery: Delivery,
    pub dedup_window: usize,
    pub ports: PortsConfig,
    /// Where data goes (may hold placeholders).
    pub data_subject: Template,
    /// Prefix of `<control>.request` / `<control>.send`.
    pub control_subject: String,
}

impl ServerConfig {
    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.path.starts_with('/') {
            errors.push(ConfigError::new(
                format!("{base}.path"),
                format!("must start with \"/\", got \"{}\"", self.path),
            ));
        }
        if parse_bind(&self.bind).is_none() {
            errors.push(ConfigError::new(
                format!("{base}.bind"),
                format!(
                    "expected an IP address or \"localhost\", got \"{}\"",
                    self.bind
                ),
            ));
        }
        if self.max_connections == 0 {
            errors.push(ConfigError::new(
                format!("{base}.max_connections"),
                "must be at least 1",
            ));
        }
        for (field, v) in [
            ("read_buffer_size", self.read_buffer_size),
            ("write_buffer_size", self.write_buffer_size),
        ] {
            if v == 0 {
                errors.push(ConfigError::new(
                    format!("{base}.{field}"),
                    "must be at least 1",
                ));
            }
        }
        errors
    }
}

impl ClientConfig {
    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = validate_url(&self.url, &format!("{base}.url"));
        errors.extend(self.reconnect.validate(&format!("{base}.reconnect")));
        if self.connect_timeout.is_zero() {
            errors.push(ConfigError::new(
                format!("{base}.connect_timeout"),
                "must be more than 0",
            ));
        }
        errors
    }
}

/// Check a peer URL without any I/O: `ws://` or `wss://`, with a host.
pub fn validate_url(url: &str, path: &str) -> Vec<ConfigError> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
        return vec![ConfigError::new(
            path,
            format!("expected a ws:// or wss:// URL, got \"{url}\""),
        )];
    }
    match url.into_client_request() {
        Ok(_) => Vec::new(),
        Err(e) => vec![ConfigError::new(
            path,
            format!("invalid URL \"{url}\": {e}"),
        )],
    }
}

/// The address `bind` names.
pub fn parse_bind(bind: &str) -> Option<IpAddr> {
    if bind.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::from([127, 0, 0, 1]));
    }
    bind.parse().ok()
}

impl Config {
    /// Validate the parsed block (`base` is its JSON path) and resolve it.
    pub fn into_settings(self, base: &str) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let at = |f: &str| fednode_kit::config::join(base, f);

        // Server block, possibly from the flat shorthand.
        let flat = self.http_port.is_some() || self.path.is_some();
        let mut server = self.server.clone();
        if flat {
            if server.is_some() {
                errors.push(ConfigError::new(
                    at(if self.http_port.is_some() {
                        "http_port"
                    } else {
                        "path"
                    }),
                    "use either the flat http_port/path shorthand or the server block, not both",
                ));
            } else if let Some(port) = self.http_port {
                server = Some(ServerConfig {
                    http_port: port,
                    path: self.path.clone().unwrap_or_else(default_path),
                    bind: default_bind(),
                    max_connections: default_max_connections(),
                    read_buffer_size: default_read_buffer_size(),
                    write_buffer_size: default_buffer_size(),
                    enable_compression: false,
                });
            } else {
                errors.push(ConfigError::new(
                    at("http_port"),
                    "required when the flat path shorthand is used",
                ));
            }
        }

        let mode = match self.mode {
            Some(m) => Some(m),
            None if server.is_some() || flat => Some(Mode::Server),
            None if self.client.is_some() => Some(Mode::Client),
            None => {
                errors.push(ConfigError::new(
                    at("mode"),
                    "required field is missing (expected \"server\" or \"client\")",
                ));
                None
            }
        };

        match mode {
            Some(Mode::Server) => match &server {
                Some(s) => {
                    errors.extend(s.validate(&if flat { base.to_string() } else { at("server") }))
                }
                None if !flat => errors.push(ConfigError::new(
                    at("server.http_port"),
                    "required when mode is \"server\"",
                )),
                None => {}
            },
            Some(Mode::Client) => {
                match &self.client {
                    Some(c) => errors.extend(c.validate(&at("client"))),
                    None => errors.push(ConfigError::new(
                        at("client.url"),
                        "required when mode is \"client\"",
                    )),
                }
                if flat {
                    errors.push(ConfigError::new(
                        at(if self.http_port.is_some() {
                            "http_port"
                        } else {
                            "path"
                        }),
                        "only used when mode is \"server\"",
                    ));
                }
            }
            None => {}
        }

        if self.backpressure.queue_size == 0 {
            errors.push(ConfigError::new(
                at("backpressure.queue_size"),
                "must be at least 1",
            ));
        }
        if self.bidirectional.max_concurrent_requests == 0 {
            errors.push(ConfigError::new(
                at("bidirectional.max_concurrent_requests"),
                "must be at least 1",
            ));
        }
        if self.bidirectional.request_timeout.is_zero() {
            errors.push(ConfigError::new(
                at("bidirectional.request_timeout"),
                "must be more than 0",
            ));
        }
        if self.max_message_bytes < 64 {
            errors.push(ConfigError::new(
                at("max_message_bytes"),
                format!("must be at least 64, got {}", self.max_message_bytes),
            ));
        }
        if self.delivery == Delivery::AtLeastOnce && self.dedup_window == 0 {
            errors.push(ConfigError::new(
                at("dedup_window"),
                "must be at least 1 with at_least_once delivery",
            ));
        }

        // Ports: ws_data (or out) and an optional ws_control.
        let ports_at = at("ports");
        errors.extend(self.ports.validate(
            &ports_at,
            &PortRules {
                inputs: &[],
                outputs: &[PORT_DATA, PORT_CONTROL, PORT_OUT],
                required_inputs: &[],
                required_outputs: &[],
                any_input_name: false,
            },
        ));
        let has = |n: &str| self.ports.outputs.iter().any(|p| p.name == n);
        if has(PORT_DATA) && has(PORT_OUT) {
            errors.push(ConfigError::new(
                format!("{ports_at}.outputs"),
                "name the data port either \"ws_data\" or \"out\", not both",
            ));
        } else if !has(PORT_DATA) && !has(PORT_OUT) {
            errors.push(ConfigError::new(
                format!("{ports_at}.outputs"),
                "a port named \"ws_data\" (or \"out\") is required",
            ));
        }
        if let Some((i, p)) = self
            .ports
            .outputs
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == PORT_CONTROL)
        {
            if p.subject.contains('{') {
                errors.push(ConfigError::new(
                    format!("{ports_at}.outputs[{i}].subject"),
                    "the control subject cannot hold placeholders",
                ));
            }
        }

        let credential = match self.auth.resolve(&at("auth")) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.extend(e);
                None
            }
        };

        if !errors.is_empty() {
            return Err(errors);
        }
        let data_subject = self
            .ports
            .output(PORT_DATA)
            .or_else(|| self.ports.output(PORT_OUT))
            .expect("validated: a data port exists");
        let control_subject = self
            .ports
            .outputs
            .iter()
            .find(|p| p.name == PORT_CONTROL)
            .map(|p| p.subject.clone())
            .unwrap_or_else(|| DEFAULT_CONTROL_SUBJECT.to_string());
        let mode = mode.expect("validated");
        Ok(Settings {
            mode,
            server: if mode == Mode::Server { server } else { None },
            client: if mode == Mode::Client {
                self.client
            } else {
                None
            },
            credential: credential.expect("validated"),
            bidirectional: self.bidirectional,
            backpressure: self.backpressure,
            max_message_bytes: self.max_message_bytes,
            delivery: self.delivery,
            dedup_window: self.dedup_window,
            ports: self.ports,
            data_subject,
            control_subject,
        })
    }
}

/// Parse and validate a `config` block, reporting every problem with its
/// JSON path under `base`.
pub fn parse(value: &serde_json::Value, base: &str) -> Result<Settings, Vec<ConfigError>> {
    let mut errors = match fednode_kit::config::parse_strict::<Config>(value, base) {
        Ok(config) => return config.into_settings(base),
        Err(errors) => errors,
    };
    // Check the rest too, so that one run reports everything: drop what was
    // wrong and validate what remains (problems at paths already reported
    // are not repeated).
    let mut rest = value.clone();
    for e in &errors {
        remove_path(&mut rest, e.path.strip_prefix(base).unwrap_or(&e.path));
    }
    if let Ok(config) = fednode_kit::config::parse_strict::<Config>(&rest, base) {
        if let Err(more) = config.into_settings(base) {
            for m in more {
                if !errors.iter().any(|e| e.path == m.path) {
                    errors.push(m);
                }
            }
        }
    }
    Err(errors)
}

/// Remove the value at a relative JSON path such as `.a.b[0].c`.
fn remove_path(root: &mut serde_json::Value, path: &str) {
    let mut segs: Vec<&str> = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            segs.push(name);
        }
        segs.extend(rest.split_inclusive(']').filter(|s| !s.is_empty()));
    }
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = root;
    for s in parents {
        let next = match (cur, index(s)) {
            (serde_json::Value::Array(a), Some(i)) => a.get_mut(i),
            (serde_json::Value::Object(m), None) => m.get_mut(*s),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return,
        }
    }
    match (cur, index(last)) {
        (serde_json::Value::Array(a), Some(i)) if i < a.len() => {
            a.remove(i);
        }
        (serde_json::Value::Object(m), None) => {
            m.shift_remove(*last);
        }
        _ => {}
    }
}

fn index(seg: &str) -> Option<usize> {
    seg.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(v: serde_json::Value) -> Vec<String> {
        parse(&v, "components.ws_in.config")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn data_port() -> serde_json::Value {
        json!({"outputs": [{"name": "ws_data", "subject": "federated.data"}]})
    }

    #[test]
    fn a_minimal_server_config_gets_the_defaults() {
        let s = parse(
            &json!({"mode": "server", "server": {"http_port": 8081}, "ports": data_port()}),
            "c",
        )
        .unwrap();
        let server = s.server.unwrap();
        assert_eq!(server.path, "/");
        assert_eq!(server.bind, "0.0.0.0");
        assert_eq!(server.max_connections, 100);
        assert_eq!(s.max_message_bytes, 1 << 20);
        assert_eq!(s.backpressure.queue_size, 1000);
        assert_eq!(s.backpressure.on_full, OnFull::DropOldest);
        assert_eq!(s.bidirectional.request_timeout, Duration::from_secs(5));
        assert_eq!(s.bidirectional.max_concurrent_requests, 10);
        assert_eq!(s.control_subject, "federated.control");
        assert_eq!(s.data_subject.as_str(), "federated.data");
        assert_eq!(s.delivery, Delivery::AtMostOnce);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let lines = errs(json!({
            "mode": "serverr",
            "server": {"http_port": 8081, "pathh": "/x"},
            "backpressure": {"on_full": "drop_all"},
            "ports": {"outputs": [{"name": "data", "subject": "a.b"}]}
        }));
        let want = [
            "components.ws_in.config.mode: expected \"server\" or \"client\", got \"serverr\"",
            "components.ws_in.config.server.pathh: unknown field",
            "components.ws_in.config.backpressure.on_full: expected one of \"drop_oldest\", \"drop_newest\", \"block\", got \"drop_all\"",
        ];
        for w in want {
            assert!(
                lines.iter().any(|l| l.starts_with(w)),
                "missing {w:?} in {lines:#?}"
            );
        }
    }

    #[test]
    fn mode_specific_requirements() {
        let lines = errs(json!({"mode": "server", "ports": data_port()}));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.server.http_port: required when mode is \"server\""]
        );
        let lines = errs(json!({"mode": "client", "ports": data_port()}));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.client.url: required when mode is \"client\""]
        );
        let lines =
            errs(json!({"mode": "client", "client": {"url": "http://x:1/"}, "ports": data_port()}));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.client.url: expected a ws:// or wss:// URL, got \"http://x:1/\""]
        );
        let lines = errs(json!({"ports": data_port()}));
        assert!(lines[0].starts_with("components.ws_in.config.mode: required field is missing"));
    }

    #[test]
    fn ports_need_a_data_port() {
        let lines = errs(json!({"mode": "server", "server": {"http_port": 1}}));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.ports.outputs: a port named \"ws_data\" (or \"out\") is required"]
        );
        let s = parse(
            &json!({"mode": "client", "client": {"url": "ws://edge:8080/federation"},
                    "ports": {"outputs": [{"name": "out", "subject": "federated.data"},
                                          {"name": "ws_control", "subject": "ctl"}]}}),
            "c",
        )
        .unwrap();
        assert_eq!(s.data_subject.as_str(), "federated.data");
        assert_eq!(s.control_subject, "ctl");
    }

    #[test]
    fn flat_shorthand_is_server_mode() {
        let s = parse(
            &json!({"http_port": 8080, "path": "/federation", "ports": data_port()}),
            "c",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Server);
        assert_eq!(s.server.unwrap().path, "/federation");
    }

    #[test]
    fn auth_env_is_resolved_at_build_time() {
        let lines = errs(json!({
            "mode": "server", "server": {"http_port": 1}, "ports": data_port(),
            "auth": {"type": "bearer", "bearer_token_env": "FEDNODE_TEST_SURELY_UNSET_VAR"}
        }));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.auth.bearer_token_env: environment variable FEDNODE_TEST_SURELY_UNSET_VAR is not set"]
        );
    }
}
