//! The config blocks both WebSocket components share — `mode`, `server`
//! (or its flat `http_port`/`path` shorthand), `client`, `bidirectional`,
//! `backpressure`, `delivery` — their defaults, and their checks. Each
//! component's own `Config` holds these as fields and calls
//! [`Endpoint::resolve`] once; everything here is pure (no sockets, no DNS).

use fednode_kit::backoff::ReconnectConfig;
use fednode_kit::component::Listen;
use fednode_kit::config::{join, ConfigError};
use fednode_kit::queue::OnFull;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Listen for peers or connect to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// The delivery guarantee on a link.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// No acks; what is lost in flight is lost.
    #[default]
    AtMostOnce,
    /// Data is acked once the receiver's bus has it; the sender resends
    /// what is unacked, and the receiver drops duplicate ids.
    AtLeastOnce,
}

impl Delivery {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtMostOnce => "at_most_once",
            Delivery::AtLeastOnce => "at_least_once",
        }
    }
}

/// The `server` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// TCP port to listen on (0 picks a free one).
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
    /// The largest read from a peer's socket. Reads start at 16 KiB, double
    /// while they come back full (a producer sending at full rate is read
    /// in fewer, larger system calls), halve when they do not, and the
    /// buffer is freed whenever the socket has nothing more to give, so an
    /// idle connection holds no more than 16 KiB of read buffer.
    #[serde(default = "default_read_buffer_size")]
    pub read_buffer_size: usize,
    /// Bytes collected before a write reaches the socket.
    #[serde(default = "default_write_buffer_size")]
    pub write_buffer_size: usize,
    /// Only `false` is accepted: permessage-deflate is not available (the
    /// WebSocket library has none), and a flag that silently did nothing
    /// would mislead whoever set it.
    #[serde(default)]
    pub enable_compression: bool,
    /// A connection that has not sent its whole HTTP request head (the
    /// upgrade request) within this time is closed, as is an idle
    /// keep-alive connection between requests.
    #[schemars(with = "String")]
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Serve `wss://` (and HTTPS) with this certificate; with
    /// `client_ca_file`, clients must present a certificate of that CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::ServerTls>,
}

impl ServerConfig {
    /// The block the flat `http_port`/`path` shorthand stands for.
    fn shorthand(http_port: u16, path: Option<String>) -> Self {
        ServerConfig {
            http_port,
            path: path.unwrap_or_else(default_path),
            bind: default_bind(),
            max_connections: default_max_connections(),
            read_buffer_size: default_read_buffer_size(),
            write_buffer_size: default_write_buffer_size(),
            enable_compression: false,
            handshake_timeout: default_handshake_timeout(),
            tls: None,
        }
    }

    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.path.starts_with('/') {
            errors.push(ConfigError::new(
                join(base, "path"),
                format!("must start with \"/\", got \"{}\"", self.path),
            ));
        }
        if parse_bind(&self.bind).is_none() {
            errors.push(ConfigError::new(
                join(base, "bind"),
                format!(
                    "expected an IP address or \"localhost\", got \"{}\"",
                    self.bind
                ),
            ));
        }
        if self.enable_compression {
            errors.push(ConfigError::new(
                join(base, "enable_compression"),
                "permessage-deflate is not available (the WebSocket library has none); \
                 remove the key or set it to false",
            ));
        }
        if self.handshake_timeout.is_zero() {
            errors.push(ConfigError::new(
                join(base, "handshake_timeout"),
                "must be longer than 0s",
            ));
        }
        if let Some(tls) = &self.tls {
            errors.extend(tls.validate(&join(base, "tls")));
        }
        for (field, v) in [
            ("max_connections", self.max_connections),
            ("read_buffer_size", self.read_buffer_size),
            ("write_buffer_size", self.write_buffer_size),
        ] {
            if v == 0 {
                errors.push(ConfigError::new(join(base, field), "must be at least 1"));
            }
        }
        errors
    }
}

/// The `client` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The peer's `ws://` or `wss://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Several peers (hubs) to try in turn, instead of `url`: a failed
    /// attempt or a dropped link moves to the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Reconnect policy (exponential backoff with jitter).
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// How long one connection attempt (TCP + TLS + handshake) may take.
    #[schemars(with = "String")]
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// For `wss://`: the CA to trust instead of the system's roots, and a
    /// client certificate for servers that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::ClientTls>,
}

impl ClientConfig {
    /// The peers to try, in turn (`url` alone, or `urls`).
    pub fn targets(&self) -> Vec<String> {
        match &self.url {
            Some(url) => vec![url.clone()],
            None => self.urls.clone(),
        }
    }

    /// The peers as shown by `/health` and `/components`: one URL, or the
    /// list joined by commas.
    pub fn display(&self) -> String {
        self.targets().join(",")
    }

    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        match (&self.url, self.urls.is_empty()) {
            (Some(url), true) => errors.extend(validate_url(url, &join(base, "url"))),
            (None, false) => {
                for (i, url) in self.urls.iter().enumerate() {
                    errors.extend(validate_url(url, &format!("{}[{i}]", join(base, "urls"))));
                }
            }
            (Some(_), false) => errors.push(ConfigError::new(
                join(base, "urls"),
                "give either url or urls, not both",
            )),
            (None, true) => errors.push(ConfigError::new(
                join(base, "url"),
                "required in client mode (or urls, a list of peers to try in turn)",
            )),
        }
        errors.extend(self.reconnect.validate(&join(base, "reconnect")));
        if let Some(tls) = &self.tls {
            errors.extend(tls.validate(&join(base, "tls")));
            if !self.targets().iter().any(|u| u.starts_with("wss://")) {
                errors.push(ConfigError::new(
                    join(base, "tls"),
                    "applies to wss:// URLs only, and no URL here is wss://",
                ));
            }
        }
        if self.connect_timeout.is_zero() {
            errors.push(ConfigError::new(
                join(base, "connect_timeout"),
                "must be more than 0",
            ));
        }
        errors
    }
}

/// The `bidirectional` block: requests over the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BidirectionalConfig {
    /// Answer and send requests; when off, peers' requests get `unavailable`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a request may wait for its reply before it fails with `timeout`.
    #[schemars(with = "String")]
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

impl BidirectionalConfig {
    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.max_concurrent_requests == 0 {
            errors.push(ConfigError::new(
                join(base, "max_concurrent_requests"),
                "must be at least 1",
            ));
        }
        if self.request_timeout.is_zero() {
            errors.push(ConfigError::new(
                join(base, "request_timeout"),
                "must be more than 0",
            ));
        }
        errors
    }
}

/// The `backpressure` block: a bounded queue and what a full one does. The
/// input has one queue between its sockets and the bus; the output one per
/// connection, so a slow peer never slows the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackpressureConfig {
    /// Input: apply `on_full` (when off, the queue never drops and readers
    /// wait for the bus, as with `block`). Output: let peers change their
    /// rate with `backpressure` (when off, it answers `unavailable`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Data messages the queue holds.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Payload bytes the queue holds (a second bound beside `queue_size`,
    /// so large messages cannot make a queue hold gigabytes); `on_full`
    /// applies when either is reached.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    /// `drop_oldest`, `drop_newest`, or `block` (lossless: the input stops
    /// reading its sockets so TCP pushes back on the peers; the output
    /// waits for a stalled peer). Unset: `block` for an output with
    /// `at_least_once` delivery, else `drop_oldest` (see [`Self::policy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_full: Option<OnFull>,
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        BackpressureConfig {
            enabled: true,
            queue_size: default_queue_size(),
            queue_bytes: default_queue_bytes(),
            on_full: None,
        }
    }
}

impl BackpressureConfig {
    /// The `on_full` policy in force: the one given, else `block` when the
    /// data is sent `at_least_once` (which never drops silently), else
    /// `drop_oldest`.
    pub fn policy(&self, delivery: Delivery) -> OnFull {
        self.on_full.unwrap_or(match delivery {
            Delivery::AtLeastOnce => OnFull::Block,
            Delivery::AtMostOnce => OnFull::DropOldest,
        })
    }
}

impl BackpressureConfig {
    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        [
            ("queue_size", self.queue_size),
            ("queue_bytes", self.queue_bytes),
        ]
        .into_iter()
        .filter(|(_, v)| *v == 0)
        .map(|(field, _)| ConfigError::new(join(base, field), "must be at least 1"))
        .collect()
    }
}

/// The `heartbeat` block: every connection is pinged while it is quiet, and
/// one on which nothing at all arrived for `timeout` is closed (a client
/// then reconnects). This catches half-open links: a frozen peer, a dropped
/// NAT entry. `null` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// How often a WebSocket Ping goes out while nothing else is read.
    #[schemars(with = "String")]
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Silence after which the connection is closed.
    #[schemars(with = "String")]
    #[serde(default = "default_heartbeat_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: default_heartbeat_interval(),
            timeout: default_heartbeat_timeout(),
        }
    }
}

impl HeartbeatConfig {
    /// Problems with the values; `base` is the block's JSON path.
    pub fn validate(&self, base: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.interval.is_zero() {
            errors.push(ConfigError::new(
                join(base, "interval"),
                "must be more than 0",
            ));
        }
        if self.timeout <= self.interval {
            errors.push(ConfigError::new(
                join(base, "timeout"),
                format!(
                    "must be longer than interval ({}), or a quiet peer would always time out",
                    humantime::format_duration(self.interval)
                ),
            ));
        }
        errors
    }
}

/// The `heartbeat` a WebSocket component gets when its config has none.
pub fn default_heartbeat() -> Option<HeartbeatConfig> {
    Some(HeartbeatConfig::default())
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_heartbeat_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_true() -> bool {
    true
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
/// Write side: tungstenite's own default (128 KiB). The buffer grows only
/// while writing.
fn default_write_buffer_size() -> usize {
    128 * 1024
}
/// Read side: reads grow up to 128 KiB under load (tungstenite's own
/// default); an idle connection holds 16 KiB.
fn default_read_buffer_size() -> usize {
    128 * 1024
}
/// How long a peer may take over its HTTP request head (also used by the
/// HTTP servers that have no `server` block: `http_input`, the admin server).
pub fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
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
fn default_queue_bytes() -> usize {
    16 << 20
}
fn default_queue_size() -> usize {
    1000
}
/// The largest accepted frame by default: 1 MiB.
pub fn default_max_message_bytes() -> usize {
    1 << 20
}

/// Check `max_message_bytes` (at JSON path `path`).
pub fn validate_max_message_bytes(value: usize, path: &str) -> Vec<ConfigError> {
    if value < 64 {
        vec![ConfigError::new(
            path,
            format!("must be at least 64, got {value}"),
        )]
    } else {
        Vec::new()
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

/// The fields of a component's config that say where its connections come
/// from, as written.
#[derive(Debug, Clone, Default)]
pub struct EndpointFields {
    pub mode: Option<Mode>,
    pub server: Option<ServerConfig>,
    pub client: Option<ClientConfig>,
    /// The flat shorthand for `server.http_port`.
    pub http_port: Option<u16>,
    /// The flat shorthand for `server.path`.
    pub path: Option<String>,
}

/// Where a component's connections come from, resolved: exactly one of
/// `server` (with the address to bind) and `client` is set, as `mode` says.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub mode: Mode,
    pub server: Option<ServerConfig>,
    /// Server mode: the address to bind, and the key that set its port
    /// (`server.http_port`, or the flat `http_port`).
    pub listen: Option<Listen>,
    pub client: Option<ClientConfig>,
}

impl Endpoint {
    /// Resolve the mode (written, or `client` when only a `client` block is
    /// given, else `server`), fold the flat shorthand into a `server` block,
    /// and check the block the mode uses; the other mode's block is an
    /// error, not silently ignored. Problems go to `errors` with their
    /// paths under `base`; `None` when there were any.
    pub fn resolve(
        fields: EndpointFields,
        base: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Endpoint> {
        let at = |field: &str| join(base, field);
        let before = errors.len();
        let flat = fields.http_port.is_some() || fields.path.is_some();
        let flat_field = if fields.http_port.is_some() {
            "http_port"
        } else {
            "path"
        };
        let only_client = fields.client.is_some() && fields.server.is_none() && !flat;
        let mode = fields.mode.unwrap_or(if only_client {
            Mode::Client
        } else {
            Mode::Server
        });
        let mut endpoint = Endpoint {
            mode,
            server: None,
            listen: None,
            client: None,
        };
        match mode {
            Mode::Server => {
                let block = match (fields.server, flat, fields.http_port) {
                    (Some(_), true, _) => {
                        errors.push(ConfigError::new(
                            at(flat_field),
                            "use either the flat http_port/path shorthand or the server block, not both",
                        ));
                        None
                    }
                    (Some(s), false, _) => Some((s, at("server"), "server.http_port")),
                    (None, true, Some(port)) => Some((
                        ServerConfig::shorthand(port, fields.path),
                        base.to_string(),
                        "http_port",
                    )),
                    (None, true, None) => {
                        errors.push(ConfigError::new(
                            at("http_port"),
                            "required when the flat path shorthand is used",
                        ));
                        None
                    }
                    (None, false, _) => {
                        errors.push(ConfigError::new(
                            at("server.http_port"),
                            "required when mode is \"server\" (or the flat http_port shorthand)",
                        ));
                        None
                    }
                };
                if let Some((server, server_at, port_field)) = block {
                    let problems = server.validate(&server_at);
                    if problems.is_empty() {
                        let ip = parse_bind(&server.bind).expect("validated bind");
                        endpoint.listen = Some(Listen::tcp(
                            SocketAddr::new(ip, server.http_port),
                            port_field,
                        ));
                    }
                    errors.extend(problems);
                    endpoint.server = Some(server);
                }
                if fields.client.is_some() {
                    errors.push(ConfigError::new(
                        at("client"),
                        if fields.mode.is_some() {
                            "only used when mode is \"client\""
                        } else {
                            "only used when mode is \"client\" (server settings are given, so the \
                             mode is \"server\"; set \"mode\" to choose)"
                        },
                    ));
                }
            }
            Mode::Client => {
                match fields.client {
                    Some(c) => {
                        errors.extend(c.validate(&at("client")));
                        endpoint.client = Some(c);
                    }
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
                if fields.server.is_some() {
                    errors.push(ConfigError::new(
                        at("server"),
                        "only used when mode is \"server\"",
                    ));
                }
            }
        }
        (errors.len() == before).then_some(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(fields: EndpointFields) -> Result<Endpoint, Vec<String>> {
        let mut errors = Vec::new();
        Endpoint::resolve(fields, "c", &mut errors)
            .ok_or_else(|| errors.iter().map(ToString::to_string).collect())
    }

    fn client(url: &str) -> ClientConfig {
        serde_json::from_value(serde_json::json!({ "url": url })).unwrap()
    }

    #[test]
    fn the_mode_follows_the_blocks_given() {
        let e = resolve(EndpointFields {
            client: Some(client("ws://hub:8081/ingest")),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.mode, Mode::Client);
        assert!(e.server.is_none() && e.listen.is_none());

        let e = resolve(EndpointFields {
            http_port: Some(8080),
            path: Some("/federation".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.mode, Mode::Server);
        assert_eq!(e.listen.unwrap().to_string(), "TCP 0.0.0.0:8080");
        assert_eq!(e.listen.unwrap().field, "http_port");
        assert_eq!(e.server.unwrap().path, "/federation");
    }

    #[test]
    fn each_mode_needs_its_block() {
        assert_eq!(
            resolve(EndpointFields::default()).unwrap_err(),
            vec!["c.server.http_port: required when mode is \"server\" (or the flat http_port shorthand)"]
        );
        assert_eq!(
            resolve(EndpointFields {
                mode: Some(Mode::Client),
                ..Default::default()
            })
            .unwrap_err(),
            vec!["c.client.url: required when mode is \"client\""]
        );
        assert_eq!(
            resolve(EndpointFields {
                mode: Some(Mode::Client),
                client: Some(client("http://x:1/")),
                path: Some("/x".into()),
                ..Default::default()
            })
            .unwrap_err(),
            vec![
                "c.client.url: expected a ws:// or wss:// URL, got \"http://x:1/\"",
                "c.path: only used when mode is \"server\"",
            ]
        );
        let mut compressed = ServerConfig::shorthand(1, None);
        compressed.enable_compression = true;
        assert_eq!(
            compressed.validate("c.server"),
            vec![ConfigError::new(
                "c.server.enable_compression",
                "permessage-deflate is not available (the WebSocket library has none); \
                 remove the key or set it to false"
            )]
        );
        let both = resolve(EndpointFields {
            server: Some(ServerConfig::shorthand(1, None)),
            http_port: Some(2),
            ..Default::default()
        })
        .unwrap_err();
        assert!(both[0].starts_with("c.http_port: use either"), "{both:?}");
    }

    #[test]
    fn the_other_modes_block_is_refused() {
        assert_eq!(
            resolve(EndpointFields {
                mode: Some(Mode::Client),
                client: Some(client("ws://hub:8081/ingest")),
                server: Some(ServerConfig::shorthand(8080, None)),
                ..Default::default()
            })
            .unwrap_err(),
            vec!["c.server: only used when mode is \"server\""]
        );
        assert_eq!(
            resolve(EndpointFields {
                mode: Some(Mode::Server),
                server: Some(ServerConfig::shorthand(8080, None)),
                client: Some(client("ws://hub:8081/ingest")),
                ..Default::default()
            })
            .unwrap_err(),
            vec!["c.client: only used when mode is \"client\""]
        );
        // Without `mode`, server settings make it server mode.
        let implied = resolve(EndpointFields {
            http_port: Some(8080),
            client: Some(client("ws://hub:8081/ingest")),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(implied.len(), 1, "{implied:?}");
        assert!(
            implied[0].starts_with(
                "c.client: only used when mode is \"client\" (server settings are given"
            ),
            "{implied:?}"
        );
    }

    #[test]
    fn the_listen_names_the_key_that_set_its_port() {
        let e = resolve(EndpointFields {
            server: Some(ServerConfig {
                bind: "localhost".into(),
                ..ServerConfig::shorthand(9000, None)
            }),
            ..Default::default()
        })
        .unwrap();
        let listen = e.listen.unwrap();
        assert_eq!(listen.to_string(), "TCP 127.0.0.1:9000");
        assert_eq!(listen.field, "server.http_port");
        let client_mode = resolve(EndpointFields {
            client: Some(client("ws://hub:8081/ingest")),
            ..Default::default()
        })
        .unwrap();
        assert!(client_mode.listen.is_none());
    }
}
