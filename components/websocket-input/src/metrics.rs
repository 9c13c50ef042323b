//! The `websocket_input_*` metric families, each child carrying the
//! `component` label (the kit's `ComponentMetrics` adds it).

use fednode_kit::metrics::{ComponentMetrics, LabelledCounter};
use fednode_ws::metrics::RequestMetrics;
use prometheus::{Gauge, IntCounter, IntGauge};

/// Every `websocket_input_*` family.
#[derive(Clone)]
pub struct InputMetrics {
    pub received: IntCounter,
    pub published: IntCounter,
    dropped: LabelledCounter,
    pub connections_active: IntGauge,
    pub connections_total: IntCounter,
    pub reconnect_attempts: IntCounter,
    /// Connections closed because nothing was heard for the heartbeat
    /// timeout.
    pub heartbeat_timeouts: IntCounter,
    pub requests: RequestMetrics,
    pub queue_depth: IntGauge,
    pub queue_utilization: Gauge,
    errors: LabelledCounter,
    /// `dropped{reason="queue_full"}`, cached for the hot path.
    pub dropped_queue_full: IntCounter,
    /// `errors{type="parse_error"}`, cached for the hot path.
    pub parse_errors: IntCounter,
    /// `ws_downstream` data sent to a peer.
    pub downstream_sent: IntCounter,
    downstream_dropped: LabelledCounter,
    /// Relays' auth messages, by result.
    auth_messages: LabelledCounter,
}

/// Why `ws_downstream` data reached no peer (`reason` label of
/// `websocket_input_downstream_dropped_total`).
pub mod downstream {
    /// No connection has sent data with the message's key (or it left).
    pub const NO_ROUTE: &str = "no_route";
    /// The message has no key (`downstream_key` does not resolve to text).
    pub const NO_KEY: &str = "no_key";
    /// The peer's outgoing queue was full.
    pub const PEER_FULL: &str = "peer_full";
    /// Client mode: the link is down.
    pub const NOT_CONNECTED: &str = "not_connected";
}

/// Why data was dropped (`reason` label).
pub mod reason {
    /// The queue was full (`drop_oldest` evicted it, `drop_newest` refused it).
    pub const QUEUE_FULL: &str = "queue_full";
    /// `at_least_once`: an id seen recently.
    pub const DUPLICATE: &str = "duplicate";
    /// Shutdown came before the bus took it.
    pub const SHUTDOWN: &str = "shutdown";
    /// Its connection failed while it waited for room in a full `block`
    /// queue.
    pub const CONNECTION_LOST: &str = "connection_lost";
    /// A reply for a request id this node is not waiting for.
    pub const UNKNOWN_REPLY: &str = "unknown_reply";
    /// An ack/nack sent to an input, which sends no data.
    pub const UNEXPECTED_ACK: &str = "unexpected_ack";
    /// A relay bound to one user sent data naming another.
    pub const USER_MISMATCH: &str = "user_mismatch";
}

/// Error kinds (`type` label).
pub mod error_type {
    /// A frame that is neither JSON nor MessagePack.
    pub const PARSE: &str = "parse_error";
    /// Well-formed but not a valid envelope (an `id` over 256 bytes).
    pub const INVALID_ENVELOPE: &str = "invalid_envelope";
    /// A publish that failed (it is retried).
    pub const PUBLISH: &str = "publish_error";
    /// A frame over `max_message_bytes` (connection closed with 1009).
    pub const TOO_LARGE: &str = "message_too_large";
    /// A request whose payload is not `{method, params}`.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// A connection attempt or an established connection failed.
    pub const CONNECTION: &str = "connection_error";
}

impl InputMetrics {
    /// Register the families for one component.
    pub fn new(m: &ComponentMetrics) -> Self {
        let dropped = m.counter_vec(
            "websocket_input_messages_dropped_total",
            "Data messages dropped, by reason",
            &["reason"],
        );
        let dropped_queue_full = dropped.with(&[reason::QUEUE_FULL]);
        let errors = m.counter_vec("websocket_input_errors_total", "Errors, by type", &["type"]);
        let parse_errors = errors.with(&[error_type::PARSE]);
        errors.with(&[error_type::PUBLISH]);
        errors.with(&[error_type::INVALID_ENVELOPE]);
        InputMetrics {
            received: m.counter(
                "websocket_input_messages_received_total",
                "Data messages received from peers",
            ),
            published: m.counter(
                "websocket_input_messages_published_total",
                "Data messages published on the bus",
            ),
            dropped,
            connections_active: m.int_gauge(
                "websocket_input_connections_active",
                "Open WebSocket connections",
            ),
            connections_total: m.counter(
                "websocket_input_connections_total",
                "WebSocket connections established since start",
            ),
            reconnect_attempts: m.counter(
                "websocket_input_reconnect_attempts_total",
                "Client-mode reconnection attempts",
            ),
            heartbeat_timeouts: m.counter(
                "websocket_input_heartbeat_timeouts_total",
                "Connections closed because nothing was heard from the peer for the heartbeat timeout",
            ),
            requests: RequestMetrics::new(m, "websocket_input"),
            queue_depth: m.int_gauge(
                "websocket_input_queue_depth",
                "Data messages waiting for the bus",
            ),
            queue_utilization: m.gauge(
                "websocket_input_queue_utilization",
                "queue_depth / queue_size",
            ),
            errors,
            dropped_queue_full,
            parse_errors,
            downstream_sent: m.counter(
                "websocket_input_downstream_sent_total",
                "Messages from the ws_downstream subject sent to a peer",
            ),
            downstream_dropped: m.counter_vec(
                "websocket_input_downstream_dropped_total",
                "Messages from the ws_downstream subject that reached no peer, by reason",
                &["reason"],
            ),
            auth_messages: m.counter_vec(
                "websocket_input_auth_messages_total",
                "Relays' first (auth) messages, by result: ok, invalid_key, invalid_message, timeout",
                &["result"],
            ),
        }
    }

    /// Count a dropped data message.
    pub fn dropped(&self, reason: &str) -> IntCounter {
        self.dropped.with(&[reason])
    }

    /// Count an error.
    pub fn error(&self, kind: &str) -> IntCounter {
        self.errors.with(&[kind])
    }

    /// Count `ws_downstream` data that reached no peer.
    pub fn downstream_dropped(&self, reason: &str) -> IntCounter {
        self.downstream_dropped.with(&[reason])
    }

    /// Count an auth message by result.
    pub fn auth_message(&self, result: &str) -> IntCounter {
        self.auth_messages.with(&[result])
    }
}
