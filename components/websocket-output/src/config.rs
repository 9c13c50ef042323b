//! The `websocket` output's config: the same shape as the input's — `mode`,
//! `server`, `client`, `auth`, `backpressure` (per connection), `delivery`,
//! `ports` (the shared blocks live in `fednode_ws::config`) — plus `replay`
//! and `encoding`, and the flat `http_port` / `path` shorthand for server
//! mode.
//!
//! Everything is checked here, before any socket exists; `Config::parse`
//! turns the block into [`Settings`], the only form the runtime code reads.

use fednode_kit::component::Listen;
use fednode_kit::config::{join, parse_checked, ConfigError, Credential, PortRules, PortsConfig};
use fednode_kit::queue::OnFull;
use fednode_kit::Encoding;
use fednode_ws::config::{
    BackpressureConfig, BidirectionalConfig, ClientConfig, Delivery, HeartbeatConfig, Mode,
    ServerConfig,
};
use fednode_ws::server::PathTemplate;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest `store.max_bytes`.
const MIN_STORE_BYTES: u64 = 1 << 20;

fednode_ws::endpoint_config! {
    /// `components.<name>.config` of a `websocket` output.
    pub struct Config {
        /// The buffer `replay` and `GET …/buffer` read from.
        #[serde(default)]
        pub replay: ReplayConfig,
        /// Data frames as JSON text (`json`) or MessagePack binary (`msgpack`);
        /// replies always use their request's encoding.
        #[serde(default)]
        pub encoding: Encoding,
        /// At-least-once: data not acknowledged this long after it was written
        /// is sent again.
        #[schemars(with = "String")]
        #[serde(default = "default_ack_timeout", with = "humantime_serde")]
        pub ack_timeout: Duration,
        /// At-least-once: unacknowledged data kept at most; sending pauses when
        /// this many are unacknowledged.
        #[serde(default = "default_max_in_flight")]
        pub max_in_flight: usize,
        /// At-least-once: the wait before data nacked with `queue_full` or
        /// `unavailable` is sent again, doubling while nacks keep coming.
        #[serde(default)]
        pub nack_backoff: NackBackoffConfig,
        /// Store and forward: keep data in an append-only log on disk until the
        /// peer acknowledges it (client mode, `at_least_once`).
        #[serde(default)]
        pub store: Option<StoreConfig>,
        /// Subscriptions one connection may hold; a `subscribe` beyond them is
        /// refused.
        #[serde(default = "default_max_subscriptions")]
        pub max_subscriptions: usize,
        /// The largest filter a `subscribe` may send (its params as JSON).
        #[serde(default = "default_max_filter_bytes")]
        pub max_filter_bytes: usize,
        /// `inputs`: the subjects served (any names, at least one);
        /// `outputs`: optional `ws_upstream`, where data sent by peers goes.
        #[serde(default)]
        pub ports: PortsConfig,
    }
}

/// The `store` block.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The log's directory; defaults to `<data_dir>/<component name>/store`
    /// when the node has a top-level `data_dir`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Bytes the log may hold on disk; when full, the oldest messages are
    /// dropped (counted), or under `on_full: block` the output stops taking
    /// new ones.
    #[serde(default = "default_store_max_bytes")]
    pub max_bytes: u64,
    /// Longest time between two fsyncs of what was written.
    #[schemars(with = "String")]
    #[serde(default = "default_sync_interval", with = "humantime_serde")]
    pub sync_interval: Duration,
}

fn default_store_max_bytes() -> u64 {
    1 << 30
}
fn default_sync_interval() -> Duration {
    Duration::from_millis(100)
}

/// The `replay` block.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Newest data messages kept for `replay` (0 keeps none).
    #[serde(default = "default_buffer_size")]
    pub buffer_size: usize,
    /// Payload bytes the buffer holds at most (the oldest go first).
    #[serde(default = "default_buffer_max_bytes")]
    pub max_bytes: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            buffer_size: default_buffer_size(),
            max_bytes: default_buffer_max_bytes(),
        }
    }
}

fn default_buffer_max_bytes() -> usize {
    32 << 20
}

fn default_buffer_size() -> usize {
    1000
}
fn default_max_subscriptions() -> usize {
    32
}
fn default_max_filter_bytes() -> usize {
    4096
}
fn default_max_in_flight() -> usize {
    1000
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `nack_backoff`: the first wait before a nacked message is sent again,
/// and the longest; the wait doubles while nacks keep coming and starts
/// over at the next ack.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NackBackoffConfig {
    /// The first wait.
    #[schemars(with = "String")]
    #[serde(default = "default_nack_initial", with = "humantime_serde")]
    pub initial: Duration,
    /// The longest wait.
    #[schemars(with = "String")]
    #[serde(default = "default_nack_max", with = "humantime_serde")]
    pub max: Duration,
}

impl Default for NackBackoffConfig {
    fn default() -> Self {
        NackBackoffConfig {
            initial: default_nack_initial(),
            max: default_nack_max(),
        }
    }
}

fn default_nack_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_nack_max() -> Duration {
    Duration::from_secs(5)
}

/// The checked config, as the runtime uses it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// Server mode (the flat shorthand folded in).
    pub server: Option<ServerConfig>,
    /// Server mode: the address to bind, and the key that set its port.
    pub listen: Option<Listen>,
    /// Server mode: `server.path` (or the flat `path`) as a template; its
    /// `{name}` placeholders bind each connection to the values in its URL.
    pub path: Option<PathTemplate>,
    pub client: Option<ClientConfig>,
    /// Resolved from the environment at build time.
    pub credential: Credential,
    pub backpressure: BackpressureConfig,
    /// `backpressure.on_full`, or its default for the `delivery`.
    pub on_full: OnFull,
    pub buffer_size: usize,
    /// `replay.max_bytes`.
    pub buffer_max_bytes: usize,
    pub encoding: Encoding,
    pub delivery: Delivery,
    pub ack_timeout: Duration,
    pub max_in_flight: usize,
    pub nack_backoff: NackBackoffConfig,
    pub bidirectional: BidirectionalConfig,
    pub max_message_bytes: usize,
    pub heartbeat: Option<HeartbeatConfig>,
    /// The `store` block; its `path` is resolved by [`Settings::resolve_store`].
    pub store: Option<StoreConfig>,
    pub max_subscriptions: usize,
    pub max_filter_bytes: usize,
    pub ports: PortsConfig,
}

impl Settings {
    /// Give the store its path: the one configured, else
    /// `<data_dir>/<instance>/store`; an error names the missing key.
    pub fn resolve_store(
        &mut self,
        base: &str,
        instance: &str,
        data_dir: Option<&std::path::Path>,
    ) -> Result<(), Vec<ConfigError>> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        if store.path.is_none() {
            match data_dir {
                Some(dir) => store.path = Some(dir.join(instance).join("store")),
                None => {
                    return Err(vec![ConfigError::new(
                        join(base, "store.path"),
                        "required when the node has no top-level data_dir",
                    )])
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Parse and check the block at `path`, reporting every problem.
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Settings, Vec<ConfigError>> {
        parse_checked(value, path, |config: Config| config.resolve(path))
    }

    /// Check the values and fold the server shorthand in.
    fn resolve(mut self, base: &str) -> Result<Settings, Vec<ConfigError>> {
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
        let endpoint = self.resolve_endpoint(base, &mut errors);
        if self.ack_timeout.is_zero() {
            errors.push(ConfigError::new(at("ack_timeout"), "must be more than 0"));
        }
        if self.nack_backoff.initial.is_zero() {
            errors.push(ConfigError::new(
                at("nack_backoff.initial"),
                "must be more than 0",
            ));
        }
        if self.nack_backoff.max < self.nack_backoff.initial {
            errors.push(ConfigError::new(
                at("nack_backoff.max"),
                "must be at least nack_backoff.initial",
            ));
        }
        for (field, v) in [
            ("max_in_flight", self.max_in_flight),
            ("max_subscriptions", self.max_subscriptions),
            ("max_filter_bytes", self.max_filter_bytes),
            ("replay.max_bytes", self.replay.max_bytes),
        ] {
            if v == 0 {
                errors.push(ConfigError::new(at(field), "must be at least 1"));
            }
        }
        if let Some(st) = &self.store {
            if st.max_bytes < MIN_STORE_BYTES {
                errors.push(ConfigError::new(
                    at("store.max_bytes"),
                    format!("must be at least {MIN_STORE_BYTES} (1 MiB)"),
                ));
            }
            if st.sync_interval.is_zero() {
                errors.push(ConfigError::new(
                    at("store.sync_interval"),
                    "must be more than 0",
                ));
            }
            if st.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                errors.push(ConfigError::new(at("store.path"), "must not be empty"));
            }
        }
        let credential = match self.auth.resolve(&at("auth")) {
            Ok(c) => c,
            Err(e) => {
                errors.extend(e);
                Credential::None
            }
        };
        // The path's placeholders (its leading "/" is checked with the
        // rest of the server block).
        let path = endpoint.as_ref().and_then(|e| {
            let server = e.server.as_ref()?;
            let field = match e.listen.as_ref()?.field {
                "http_port" => "path",
                _ => "server.path",
            };
            PathTemplate::parse(&server.path)
                .map_err(|why| errors.push(ConfigError::new(at(field), why)))
                .ok()
        });
        let endpoint = match endpoint {
            Some(e) if errors.is_empty() => e,
            _ => return Err(errors),
        };
        Ok(Settings {
            mode: endpoint.mode,
            server: endpoint.server,
            listen: endpoint.listen,
            path,
            client: endpoint.client,
            credential,
            on_full: self.backpressure.policy(self.delivery),
            backpressure: self.backpressure,
            buffer_size: self.replay.buffer_size,
            buffer_max_bytes: self.replay.max_bytes,
            encoding: self.encoding,
            delivery: self.delivery,
            ack_timeout: self.ack_timeout,
            max_in_flight: self.max_in_flight,
            nack_backoff: self.nack_backoff,
            bidirectional: self.bidirectional,
            max_message_bytes: self.max_message_bytes,
            heartbeat: self.heartbeat,
            store: self.store,
            max_subscriptions: self.max_subscriptions,
            max_filter_bytes: self.max_filter_bytes,
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
        Config::parse(&v, "c")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn the_flat_form_is_server_shorthand() {
        let s = Config::parse(
            &json!({"http_port": 8080, "path": "/federation",
                    "ports": {"inputs": [{"name": "in", "subject": "filtered.data"}]}}),
            "c",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Server);
        assert_eq!(s.listen.unwrap().to_string(), "TCP 0.0.0.0:8080");
        assert_eq!(s.listen.unwrap().field, "http_port");
        assert_eq!(s.server.unwrap().path, "/federation");
        assert_eq!(s.buffer_size, 1000);
        assert_eq!(s.backpressure.queue_size, 1000);
        assert_eq!(s.delivery, Delivery::AtMostOnce);
    }

    #[test]
    fn a_lone_client_block_means_client_mode() {
        let s = Config::parse(
            &json!({"client": {"url": "ws://hub:8081/ingest"},
                    "ports": {"inputs": [{"name": "in", "subject": "a"}]}}),
            "c",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Client);
        assert!(s.listen.is_none());
    }

    #[test]
    fn a_client_block_in_server_mode_is_refused() {
        let l = lines(json!({
            "mode": "server", "server": {"http_port": 8080},
            "client": {"url": "ws://hub:8081/ingest"},
            "ports": {"inputs": [{"name": "in", "subject": "a"}]}
        }));
        assert_eq!(l, vec!["c.client: only used when mode is \"client\""]);
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
            "nack_backoff": {"initial": "2s", "max": "1s"},
            "ports": {"outputs": [{"name": "up", "subject": "a"}]}
        }));
        for want in [
            "c.nack_backoff.max: must be at least nack_backoff.initial",
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
    fn path_placeholders_are_checked_at_config_time() {
        let ports = json!({"inputs": [{"name": "a", "subject": "x"}]});
        let s = Config::parse(
            &json!({"server": {"http_port": 1, "path": "/subscribe/{user_id}"}, "ports": ports}),
            "c",
        )
        .unwrap();
        let path = s.path.unwrap();
        assert_eq!(path.as_str(), "/subscribe/{user_id}");
        assert_eq!(&*path.names()[0], "user_id");
        let l = lines(json!({"server": {"http_port": 1, "path": "/a{b}"}, "ports": ports}));
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].starts_with(
                "c.server.path: the segment \"a{b}\" of \"/a{b}\" mixes text and braces"
            ),
            "{l:?}"
        );
        let l = lines(json!({"http_port": 1, "path": "/x/{}", "ports": ports}));
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(l[0].starts_with("c.path: "), "{l:?}");
        assert!(l[0].contains("without a name"), "{l:?}");
        let l = lines(json!({"http_port": 1, "path": "/{id}/x/{id}", "ports": ports}));
        assert!(
            l[0].starts_with("c.path: ") && l[0].contains("twice"),
            "{l:?}"
        );
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
