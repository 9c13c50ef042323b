//! The `websocket` output's config (SPEC §4.2, §7): the same shape as the
//! input's — `mode`, `server`, `client`, `auth`, `backpressure` (per
//! connection), `replay`, `encoding`, `delivery`, `ports` — plus seed 004's
//! flat `http_port` / `path` as shorthand for server mode.
//!
//! Everything is checked here, before any socket exists; `resolve` turns the
//! parsed block into [`Settings`], the only form the runtime code reads.

use fednode_kit::config::{
    join, parse_strict, AuthConfig, ConfigError, Credential, PortRules, PortsConfig,
};
use fednode_kit::queue::OnFull;
use fednode_kit::Encoding;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

// The blocks both WebSocket components share, with their validation.
pub use fednode_websocket_input::config::{
    parse_bind, BidirectionalConfig, ClientConfig, Delivery, ServerConfig,
};

/// `components.<name>.config` of a `websocket` output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// `server`: peers connect to this node; `client`: this node connects to
    /// a hub's `websocket_input` server and pushes to it. Defaults to
    /// `client` when only a `client` block is given, else `server`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Server mode: where to listen.
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// Client mode: where to connect and how to reconnect.
    #[serde(default)]
    pub client: Option<ClientConfig>,
    /// Seed 004 shorthand for `server.http_port`.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Seed 004 shorthand for `server.path`.
    #[serde(default)]
    pub path: Option<String>,
    /// Server mode: the credential peers must present; client mode: the
    /// credential this node presents to the hub.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Each connection's own queue, so a slow peer never slows the others.
    #[serde(default)]
    pub backpressure: BackpressureConfig,
    /// The buffer `replay` and `GET …/buffer` read from.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// Data frames as JSON text (`json`) or MessagePack binary (`msgpack`);
    /// replies always use their request's encoding.
    #[serde(default)]
    pub encoding: Encoding,
    /// `at_most_once` (default) or `at_least_once`: keep data until the hub
    /// acknowledges it and resend it after a reconnect (client mode).
    #[serde(default)]
    pub delivery: Delivery,
    /// At-least-once: unacknowledged data kept at most; sending pauses when
    /// this many are unacknowledged.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Requests this node sends to peers (`POST /components/{name}/request`).
    #[serde(default)]
    pub bidirectional: BidirectionalConfig,
    /// A frame from a peer larger than this closes its connection with 1009.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// `inputs`: the subjects served (any names, at least one);
    /// `outputs`: optional `ws_upstream`, where data sent by peers goes.
    #[serde(default)]
    pub ports: PortsConfig,
}

/// Server or client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Server,
    Client,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Server => "server",
            Mode::Client => "client",
        }
    }
}

/// The `backpressure` block: one queue per connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackpressureConfig {
    /// Kept for seed 004; when false, peers may not change their rate
    /// (`backpressure` answers `unavailable`). The per-connection queue
    /// always exists: it is what isolates peers from each other.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Data frames waiting for one peer, at most.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// What a full queue does: `drop_oldest` (default), `drop_newest`, or
    /// `block` (lossless, but a stalled peer then stalls this output).
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

/// The `replay` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Newest data messages kept for `replay` (0 keeps none).
    #[serde(default = "default_buffer_size")]
    pub buffer_size: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            buffer_size: default_buffer_size(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_queue_size() -> usize {
    1000
}
fn default_buffer_size() -> usize {
    1000
}
fn default_max_in_flight() -> usize {
    1000
}
fn default_max_message_bytes() -> usize {
    1 << 20
}

/// The checked config, as the runtime uses it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// Server mode (the flat shorthand folded in).
    pub server: Option<ServerConfig>,
    /// Server mode: the address to bind.
    pub listen: Option<SocketAddr>,
    pub client: Option<ClientConfig>,
    /// Resolved from the environment at build time.
    pub credential: Credential,
    pub backpressure: BackpressureConfig,
    pub buffer_size: usize,
    pub encoding: Encoding,
    pub delivery: Delivery,
    pub max_in_flight: usize,
    pub bidirectional: BidirectionalConfig,
    pub max_message_bytes: usize,
    pub ports: PortsConfig,
}

impl OutputConfig {
    /// Parse and check the block at `path`, reporting every problem.
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Settings, Vec<ConfigError>> {
        let cfg: OutputConfig = parse_strict(value, path)?;
        cfg.resolve(path)
    }

    /// Check the values and fold the server shorthand in.
    pub fn resolve(self, base: &str) -> Result<Settings, Vec<ConfigError>> {
        let at = |field: &str| join(base, field);
        let mut errors = self.ports.validate(
            &at("ports"),
            &PortRules {
                inputs: &[],
                outputs: &[PORT_UPSTREAM],
                required_inputs: &[],
                required_outputs: &[],
                any_input_name: true,
            },
        );
        if self.ports.inputs.is_empty() {
            errors.push(ConfigError::new(
                at("ports.inputs"),
                "at least one input port (the subjects to serve) is required",
            ));
        }

        let flat = self.http_port.is_some() || self.path.is_some();
        let flat_field = if self.http_port.is_some() {
            "http_port"
        } else {
            "path"
        };
        let mode =
            self.mode
                .unwrap_or(if self.client.is_some() && self.server.is_none() && !flat {
                    Mode::Client
                } else {
                    Mode::Server
                });
        let mut server = None;
        let mut listen = None;
        match mode {
            Mode::Server => {
                let (block, block_at) = match (&self.server, flat) {
                    (Some(_), true) => {
                        errors.push(ConfigError::new(
                            at(flat_field),
                            "use either the flat http_port/path shorthand or the server block, not both",
                        ));
                        (None, String::new())
                    }
                    (Some(s), false) => (Some(s.clone()), at("server")),
                    (None, true) => match self.http_port {
                        Some(port) => {
                            // The shorthand is a server block with defaults.
                            let mut v = serde_json::json!({"http_port": port});
                            if let Some(p) = &self.path {
                                v["path"] = p.clone().into();
                            }
                            let s: ServerConfig = serde_json::from_value(v)
                                .expect("a port and a path make a server block");
                            (Some(s), base.to_string())
                        }
                        None => {
                            errors.push(ConfigError::new(
                                at("http_port"),
                                "required when the flat path shorthand is used",
                            ));
                            (None, String::new())
                        }
                    },
                    (None, false) => {
                        errors.push(ConfigError::new(
                            at("server.http_port"),
                            "required when mode is \"server\" (or the flat http_port shorthand)",
                        ));
                        (None, String::new())
                    }
                };
                if let Some(s) = block {
                    let problems = s.validate(&block_at);
                    if problems.is_empty() {
                        let ip = parse_bind(&s.bind).expect("validated bind");
                        listen = Some(SocketAddr::new(ip, s.http_port));
                    }
                    errors.extend(problems);
                    server = Some(s);
                }
            }
            Mode::Client => {
                match &self.client {
                    Some(c) => errors.extend(c.validate(&at("client"))),
                    None => errors.push(ConfigError::new(
                        at("client.url"),
                        "required when mode is \"client\"",
                    )),
                }
                if flat {
                    errors.push(ConfigError::new(
                        at(flat_field),
                        "only used when mode is \"server\"",
                    ));
                }
            }
        }

        if self.backpressure.queue_size == 0 {
            errors.push(ConfigError::new(
                at("backpressure.queue_size"),
                "must be at least 1",
            ));
        }
        if self.max_in_flight == 0 {
            errors.push(ConfigError::new(at("max_in_flight"), "must be at least 1"));
        }
        if self.max_message_bytes < 64 {
            errors.push(ConfigError::new(
                at("max_message_bytes"),
                format!("must be at least 64, got {}", self.max_message_bytes),
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
        let credential = match self.auth.resolve(&at("auth")) {
            Ok(c) => c,
            Err(e) => {
                errors.extend(e);
                Credential::None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Settings {
            mode,
            server,
            listen,
            client: if mode == Mode::Client {
                self.client
            } else {
                None
            },
            credential,
            backpressure: self.backpressure,
            buffer_size: self.replay.buffer_size,
            encoding: self.encoding,
            delivery: self.delivery,
            max_in_flight: self.max_in_flight,
            bidirectional: self.bidirectional,
            max_message_bytes: self.max_message_bytes,
            ports: self.ports,
        })
    }
}

/// The output port where data sent by peers is published.
pub const PORT_UPSTREAM: &str = "ws_upstream";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(v: serde_json::Value) -> Vec<String> {
        OutputConfig::parse(&v, "c")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn seed_flat_form_is_server_shorthand() {
        let s = OutputConfig::parse(
            &json!({"http_port": 8080, "path": "/federation",
                    "ports": {"inputs": [{"name": "in", "subject": "filtered.data"}]}}),
            "c",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Server);
        assert_eq!(s.listen.unwrap().to_string(), "0.0.0.0:8080");
        assert_eq!(s.server.unwrap().path, "/federation");
        assert_eq!(s.buffer_size, 1000);
        assert_eq!(s.backpressure.queue_size, 1000);
        assert_eq!(s.delivery, Delivery::AtMostOnce);
    }

    #[test]
    fn a_lone_client_block_means_client_mode() {
        let s = OutputConfig::parse(
            &json!({"client": {"url": "ws://hub:8081/ingest"},
                    "ports": {"inputs": [{"name": "in", "subject": "a"}]}}),
            "c",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Client);
        assert!(s.listen.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        // Type errors are all reported first…
        let l = lines(json!({
            "mode": "client", "http_port": "x", "replay": {"buffer_size": -1},
            "backpressure": {"queue_size": 0, "on_full": "drop_all"},
        }));
        for want in [
            "c.backpressure.on_full: expected one of \"drop_oldest\", \"drop_newest\", \"block\", got \"drop_all\"",
            "c.http_port: invalid type: string \"x\", expected u16",
            "c.replay.buffer_size: invalid value: integer \"-1\", expected usize",
        ] {
            assert!(l.iter().any(|x| x == want), "missing {want:?} in {l:#?}");
        }
        // …then every value problem.
        let l = lines(json!({
            "mode": "client", "http_port": 1,
            "client": {"url": "http://x", "reconnect": {"multiplier": 0.5}},
            "backpressure": {"queue_size": 0},
            "ports": {"outputs": [{"name": "up", "subject": "a"}]}
        }));
        for want in [
            "c.backpressure.queue_size: must be at least 1",
            "c.ports.outputs[0].name: expected \"ws_upstream\", got \"up\"",
            "c.ports.inputs: at least one input port (the subjects to serve) is required",
            "c.http_port: only used when mode is \"server\"",
            "c.client.url: expected a ws:// or wss:// URL, got \"http://x\"",
            "c.client.reconnect.multiplier: expected a number >= 1, got 0.5",
        ] {
            assert!(l.iter().any(|x| x == want), "missing {want:?} in {l:#?}");
        }
    }

    #[test]
    fn server_needs_a_port_and_client_a_url() {
        let ports = json!({"inputs": [{"name": "a", "subject": "x.>"}]});
        let l = lines(json!({"ports": ports}));
        assert_eq!(
            l,
            vec!["c.server.http_port: required when mode is \"server\" (or the flat http_port shorthand)"]
        );
        let l = lines(json!({"mode": "client", "ports": ports}));
        assert_eq!(l, vec!["c.client.url: required when mode is \"client\""]);
        let l = lines(json!({"server": {"http_port": 1, "prot": 1}, "ports": ports}));
        assert!(
            l.iter()
                .any(|x| x.starts_with("c.server.prot: unknown field")),
            "{l:?}"
        );
        let l = lines(
            json!({"server": {"http_port": 1, "bind": "nowhere", "path": "x"}, "ports": ports}),
        );
        assert!(l.iter().any(|x| x.starts_with("c.server.bind: ")), "{l:?}");
        assert!(l.iter().any(|x| x.starts_with("c.server.path: ")), "{l:?}");
        let l = lines(json!({"server": {"http_port": 1}, "http_port": 2, "ports": ports}));
        assert!(l[0].starts_with("c.http_port: use either"), "{l:?}");
    }

    #[test]
    fn missing_auth_variable_is_a_config_error() {
        let l = lines(json!({
            "http_port": 1,
            "auth": {"type": "bearer", "bearer_token_env": "FEDNODE_WS_OUT_SURELY_UNSET"},
            "ports": {"inputs": [{"name": "a", "subject": "x"}]}
        }));
        assert_eq!(
            l,
            vec!["c.auth.bearer_token_env: environment variable FEDNODE_WS_OUT_SURELY_UNSET is not set"]
        );
    }
}
