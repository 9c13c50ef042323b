//! The `config` block of a `websocket_input` component and its validation.
//! The blocks it shares with the `websocket` output (`server`, `client`,
//! `bidirectional`, `backpressure`, `delivery`) live in `fednode_ws::config`.
//! Everything here is pure: no sockets, no DNS.

use fednode_kit::component::Listen;
use fednode_kit::config::{join, parse_checked, ConfigError, Credential, PortRules, PortsConfig};
use fednode_kit::json::ValuePath;
use fednode_kit::queue::OnFull;
use fednode_kit::subject::Template;
use fednode_ws::config::{
    BackpressureConfig, BidirectionalConfig, ClientConfig, Delivery, HeartbeatConfig, Mode,
    ServerConfig,
};
use serde::Deserialize;
use std::time::Duration;

/// The output port carrying data payloads.
pub const PORT_DATA: &str = "ws_data";
/// The output port whose subject prefixes control subjects.
pub const PORT_CONTROL: &str = "ws_control";
/// Accepted instead of `ws_data`.
pub const PORT_OUT: &str = "out";
/// The optional input port whose data goes back to the peers.
pub const PORT_DOWNSTREAM: &str = "ws_downstream";
/// The optional output port for session start and end events.
pub const PORT_SESSIONS: &str = "ws_sessions";
/// The member a relay's first message binds its connection to.
pub const BOUND_MEMBER: &str = "user_id";

fednode_ws::endpoint_config! {
    /// The whole `config` block.
    pub struct Config {
        /// How many recent data ids are remembered to drop duplicates
        /// (`at_least_once` only).
        #[serde(default = "default_dedup_window")]
        pub dedup_window: usize,
        /// Server mode: every connection must first send
        /// `{"type":"auth","api_key","user_id","device_info"}`; the connection
        /// is then bound to that user.
        #[serde(default)]
        pub auth_message: Option<AuthMessageConfig>,
        /// The member of a data message that names its stream (a user):
        /// `ws_downstream` data goes to the connection that sent data with the
        /// same value (or was bound to it by `auth_message`).
        #[serde(default = "default_downstream_key")]
        pub downstream_key: String,
        /// Server mode: how often to ask each connected fednode peer for its
        /// `status` (its queue depth, data in flight and store backlog), shown
        /// per connection in `/components`; `"0s"` turns it off.
        #[schemars(with = "String")]
        #[serde(default = "default_peer_status_interval", with = "humantime_serde")]
        pub peer_status_interval: Duration,
        /// Output ports: `ws_data` (or `out`) for data, `ws_control` for
        /// control, `ws_sessions` for session events. Input port:
        /// `ws_downstream`, data to send back to the peers.
        #[serde(default)]
        pub ports: PortsConfig,
    }
}

/// The `auth_message` block: the API keys a relay's first message may
/// carry.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthMessageConfig {
    /// Keys written in the config.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// An environment variable holding keys, separated by commas.
    #[serde(default)]
    pub api_keys_env: Option<String>,
    /// How long a new connection has to send its auth message.
    #[schemars(with = "String")]
    #[serde(default = "default_auth_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_peer_status_interval() -> Duration {
    Duration::from_secs(10)
}

/// A resolved `auth_message` block.
#[derive(Debug, Clone)]
pub struct AuthMessage {
    pub keys: Vec<String>,
    pub timeout: Duration,
}

fn default_dedup_window() -> usize {
    10_000
}

fn default_downstream_key() -> String {
    "$.user_id".into()
}

fn default_auth_timeout() -> Duration {
    Duration::from_secs(10)
}

impl AuthMessageConfig {
    fn resolve(&self, base: &str) -> Result<AuthMessage, Vec<ConfigError>> {
        let mut keys: Vec<String> = self.api_keys.clone();
        let mut errors = Vec::new();
        if let Some(name) = &self.api_keys_env {
            match std::env::var(name) {
                Ok(v) => keys.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(String::from),
                ),
                Err(_) => errors.push(ConfigError::new(
                    join(base, "api_keys_env"),
                    format!("environment variable {name} is not set"),
                )),
            }
        }
        if let Some(i) = self.api_keys.iter().position(|k| k.trim().is_empty()) {
            errors.push(ConfigError::new(
                format!("{}[{i}]", join(base, "api_keys")),
                "an API key cannot be empty",
            ));
        }
        if self.timeout.is_zero() {
            errors.push(ConfigError::new(
                join(base, "timeout"),
                "must be more than 0",
            ));
        }
        if errors.is_empty() && keys.is_empty() {
            errors.push(ConfigError::new(
                base,
                "no API key: list api_keys or name api_keys_env (comma-separated keys)",
            ));
        }
        if errors.is_empty() {
            Ok(AuthMessage {
                keys,
                timeout: self.timeout,
            })
        } else {
            Err(errors)
        }
    }
}

/// A validated configuration, with everything resolved that `start` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub server: Option<ServerConfig>,
    /// Server mode: the address to bind, and the key that set its port.
    pub listen: Option<Listen>,
    pub client: Option<ClientConfig>,
    /// Resolved from the environment at build time.
    pub credential: Credential,
    pub bidirectional: BidirectionalConfig,
    pub backpressure: BackpressureConfig,
    pub max_message_bytes: usize,
    pub delivery: Delivery,
    pub dedup_window: usize,
    pub heartbeat: Option<HeartbeatConfig>,
    pub ports: PortsConfig,
    /// Where data goes (may hold placeholders).
    pub data_subject: Template,
    /// Prefix of `<control>.request` / `<control>.send`, when the
    /// `ws_control` port names one; else the node's own
    /// `_fednode.<node>.<component>.control`.
    pub control_subject: Option<String>,
    /// Relays authenticate with a first message.
    pub auth_message: Option<AuthMessage>,
    /// Names a data message's stream, for routing `ws_downstream` data.
    pub downstream_key: ValuePath,
    /// The `ws_downstream` port's subject.
    pub downstream_subject: Option<String>,
    /// The `ws_sessions` port's subject.
    pub sessions_subject: Option<Template>,
    /// Server mode: how often each fednode peer is asked for its `status`.
    pub peer_status_interval: Option<Duration>,
}

impl Settings {
    /// The input queue's policy: `block` when backpressure is disabled;
    /// else `on_full`, by default `block` under `at_least_once` (a burst,
    /// such as a replay, waits rather than being dropped) and `drop_oldest`
    /// otherwise.
    pub fn queue_policy(&self) -> OnFull {
        if !self.backpressure.enabled {
            return OnFull::Block;
        }
        match (self.backpressure.on_full, self.delivery) {
            (Some(policy), _) => policy,
            (None, Delivery::AtLeastOnce) => OnFull::Block,
            (None, Delivery::AtMostOnce) => OnFull::default(),
        }
    }
}

impl Config {
    /// Parse and validate a `config` block, reporting every problem with its
    /// JSON path under `base`.
    pub fn parse(value: &serde_json::Value, base: &str) -> Result<Settings, Vec<ConfigError>> {
        parse_checked(value, base, |config: Config| config.resolve(base))
    }

    /// Validate the parsed block (`base` is its JSON path) and resolve it.
    fn resolve(mut self, base: &str) -> Result<Settings, Vec<ConfigError>> {
        let at = |f: &str| join(base, f);
        let mut errors = Vec::new();
        let endpoint = self.resolve_endpoint(base, &mut errors);
        if self.delivery == Delivery::AtLeastOnce && self.dedup_window == 0 {
            errors.push(ConfigError::new(
                at("dedup_window"),
                "must be at least 1 with at_least_once delivery",
            ));
        }

        // Ports: ws_data (or out), optional ws_control and ws_sessions, and
        // an optional ws_downstream input.
        let ports_at = at("ports");
        errors.extend(self.ports.validate(
            &ports_at,
            &PortRules {
                inputs: &[PORT_DOWNSTREAM],
                outputs: &[PORT_DATA, PORT_CONTROL, PORT_OUT, PORT_SESSIONS],
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

        let downstream_key = match ValuePath::parse(&self.downstream_key) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(ConfigError::new(at("downstream_key"), e));
                None
            }
        };
        let auth_message = match &self.auth_message {
            None => None,
            Some(a) => match a.resolve(&at("auth_message")) {
                Ok(a) => Some(a),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
        };
        if self.auth_message.is_some() && endpoint.as_ref().is_some_and(|e| e.mode == Mode::Client)
        {
            errors.push(ConfigError::new(
                at("auth_message"),
                "only for server mode: relays connecting to this node send it",
            ));
        }

        let credential = match self.auth.resolve(&at("auth")) {
            Ok(c) => c,
            Err(e) => {
                errors.extend(e);
                Credential::None
            }
        };
        let endpoint = match endpoint {
            Some(e) if errors.is_empty() => e,
            _ => return Err(errors),
        };
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
            .map(|p| p.subject.clone());
        let downstream_subject = self.ports.input(PORT_DOWNSTREAM).map(String::from);
        let sessions_subject = self.ports.output(PORT_SESSIONS);
        Ok(Settings {
            auth_message,
            downstream_key: downstream_key.expect("no errors: the key parsed"),
            downstream_subject,
            sessions_subject,
            peer_status_interval: (endpoint.mode == Mode::Server
                && !self.peer_status_interval.is_zero())
            .then_some(self.peer_status_interval),
            mode: endpoint.mode,
            server: endpoint.server,
            listen: endpoint.listen,
            client: endpoint.client,
            credential,
            bidirectional: self.bidirectional,
            backpressure: self.backpressure,
            max_message_bytes: self.max_message_bytes,
            delivery: self.delivery,
            dedup_window: self.dedup_window,
            heartbeat: self.heartbeat,
            ports: self.ports,
            data_subject,
            control_subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn errs(v: serde_json::Value) -> Vec<String> {
        Config::parse(&v, "components.ws_in.config")
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
        let s = Config::parse(
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
        assert_eq!(s.backpressure.on_full, None);
        assert_eq!(s.bidirectional.request_timeout, Duration::from_secs(5));
        assert_eq!(s.bidirectional.max_concurrent_requests, 10);
        assert_eq!(s.control_subject, None);
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
            vec!["components.ws_in.config.server.http_port: required when mode is \"server\" (or the flat http_port shorthand)"]
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
        assert_eq!(
            lines,
            vec!["components.ws_in.config.server.http_port: required when mode is \"server\" (or the flat http_port shorthand)"]
        );
    }

    #[test]
    fn ports_need_a_data_port() {
        let lines = errs(json!({"mode": "server", "server": {"http_port": 1}}));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.ports.outputs: a port named \"ws_data\" (or \"out\") is required"]
        );
        let s = Config::parse(
            &json!({"mode": "client", "client": {"url": "ws://edge:8080/federation"},
                    "ports": {"outputs": [{"name": "out", "subject": "federated.data"},
                                          {"name": "ws_control", "subject": "ctl"}]}}),
            "c",
        )
        .unwrap();
        assert_eq!(s.data_subject.as_str(), "federated.data");
        assert_eq!(s.control_subject.as_deref(), Some("ctl"));
    }

    #[test]
    fn the_listen_and_the_other_modes_block() {
        let s = Config::parse(
            &json!({"server": {"http_port": 8081, "bind": "127.0.0.1"}, "ports": data_port()}),
            "c",
        )
        .unwrap();
        let listen = s.listen.unwrap();
        assert_eq!(listen.to_string(), "TCP 127.0.0.1:8081");
        assert_eq!(listen.field, "server.http_port");
        let lines = errs(json!({
            "mode": "client", "client": {"url": "ws://edge:8080/federation"},
            "server": {"http_port": 8081}, "ports": data_port()
        }));
        assert_eq!(
            lines,
            vec!["components.ws_in.config.server: only used when mode is \"server\""]
        );
    }

    #[test]
    fn flat_shorthand_is_server_mode() {
        let s = Config::parse(
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
