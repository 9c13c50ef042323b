//! The `websocket_output_*` families, named after the input's
//! (`websocket_input_*`); the request and connection-state families come
//! from `fednode_ws::metrics`, registered under this prefix.

use fednode_kit::metrics::{ComponentMetrics, LabelledCounter};
use fednode_ws::metrics::{RequestMetrics, StateGauge};
use prometheus::{IntCounter, IntGauge};

pub(crate) const PREFIX: &str = "websocket_output";

/// Why data was not sent (`reason` label).
pub mod reason {
    /// A connection's queue was full (evicted under `drop_oldest`, refused
    /// under `drop_newest`).
    pub const QUEUE_FULL: &str = "queue_full";
    /// Data from a peer with no `ws_upstream` port configured.
    pub const NO_UPSTREAM: &str = "no_upstream";
    /// Data from a connection bound by its URL path (`/subscribe/{user_id}`)
    /// that holds another value for a bound member, or is not an object.
    pub const BOUND_MISMATCH: &str = "bound_mismatch";
    /// The hub refused it (`nack`, at-least-once).
    pub const NACK: &str = "nack";
    /// Still queued when the shutdown drain time ran out.
    pub const SHUTDOWN: &str = "shutdown";
    /// Upstream data whose publish failed for good (an invalid subject).
    pub const PUBLISH_FAILED: &str = "publish_failed";
    /// The store could not take it (a write failed, or it is larger than
    /// the whole store).
    pub const STORE_FAILED: &str = "store_failed";
}

/// Error kinds (`type` label).
pub mod error_type {
    /// A frame that is neither JSON nor MessagePack.
    pub const PARSE: &str = "parse_error";
    /// Well-formed but not a valid envelope (an `id` over 256 bytes).
    pub const INVALID_ENVELOPE: &str = "invalid_envelope";
    /// A frame over `max_message_bytes` (connection closed with 1009).
    pub const TOO_LARGE: &str = "message_too_large";
    /// A request whose payload is not `{method, params}`.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// Writing to or reading from a socket failed, or a connection attempt did.
    pub const CONNECTION: &str = "connection_error";
    /// Publishing upstream data failed (retried).
    pub const PUBLISH: &str = "publish_error";
    /// A connection refused for a missing or wrong credential (HTTP 401).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// A connection refused at `max_connections` (HTTP 503).
    pub const CONNECTION_LIMIT: &str = "connection_limit";
}

#[derive(Clone)]
pub(crate) struct OutputMetrics {
    pub sent: IntCounter,
    /// Messages a subscription filter gave up on (evaluation budget).
    pub filter_over_budget: IntCounter,
    dropped: LabelledCounter,
    pub dropped_queue_full: IntCounter,
    pub connections_active: IntGauge,
    pub connections_total: IntCounter,
    pub queue_depth: IntGauge,
    requests_received: LabelledCounter,
    pub replay_messages: IntCounter,
    pub rate_limited: IntCounter,
    errors: LabelledCounter,
    pub upstream: IntCounter,
    pub acks: IntCounter,
    nacked: LabelledCounter,
    pub resent: IntCounter,
    pub in_flight: IntGauge,
    pub store_bytes: IntGauge,
    pub store_messages: IntGauge,
    pub store_dropped: IntCounter,
    pub reconnect_attempts: IntCounter,
    /// Connections closed because nothing was heard for the heartbeat
    /// timeout.
    pub heartbeat_timeouts: IntCounter,
    pub requests: RequestMetrics,
    /// Client mode only.
    pub state: Option<StateGauge>,
}

impl OutputMetrics {
    pub fn new(m: &ComponentMetrics, client_mode: bool) -> Self {
        let dropped = m.counter_vec(
            "websocket_output_messages_dropped_total",
            "Data messages not sent (or not published, from peers), by reason",
            &["reason"],
        );
        let errors = m.counter_vec(
            "websocket_output_errors_total",
            "Errors, by type",
            &["type"],
        );
        errors.with(&[error_type::PARSE]);
        errors.with(&[error_type::INVALID_ENVELOPE]);
        OutputMetrics {
            sent: m.counter(
                "websocket_output_messages_sent_total",
                "Data frames written to peers (one per message and connection)",
            ),
            filter_over_budget: m.counter(
                "websocket_output_filter_over_budget_total",
                "Message and connection pairs where a subscription would have visited more than 10,000 JSON nodes; the message does not match",
            ),
            dropped_queue_full: dropped.with(&[reason::QUEUE_FULL]),
            dropped,
            connections_active: m.int_gauge(
                "websocket_output_connections_active",
                "Open WebSocket connections",
            ),
            connections_total: m.counter(
                "websocket_output_connections_total",
                "WebSocket connections established since start",
            ),
            queue_depth: m.int_gauge(
                "websocket_output_queue_depth",
                "Data messages waiting in the connections' queues, summed",
            ),
            requests_received: m.counter_vec(
                "websocket_output_requests_received_total",
                "Requests received from peers, by method (\"other\" for unknown ones)",
                &["method"],
            ),
            replay_messages: m.counter(
                "websocket_output_replay_messages_total",
                "Replayed data frames written to peers",
            ),
            rate_limited: m.counter(
                "websocket_output_rate_limited_total",
                "Data frames that waited for a connection's rate limit",
            ),
            errors,
            upstream: m.counter(
                "websocket_output_upstream_messages_total",
                "Data messages from peers published on the ws_upstream subject",
            ),
            acks: m.counter(
                "websocket_output_acks_received_total",
                "Acks received for data sent with at_least_once delivery",
            ),
            nacked: m.counter_vec(
                "websocket_output_nacked_total",
                "Nacks received for data sent with at_least_once delivery, by reason (queue_full and unavailable are retried; others lose the message, also counted as dropped with reason nack)",
                &["reason"],
            ),
            resent: m.counter(
                "websocket_output_resent_total",
                "Data frames sent again under at_least_once delivery (no ack within ack_timeout, a retried nack, or a reconnect)",
            ),
            in_flight: m.int_gauge(
                "websocket_output_in_flight",
                "Data sent with at_least_once delivery and not yet acknowledged",
            ),
            store_bytes: m.int_gauge(
                "websocket_output_store_bytes",
                "Bytes of the store's log on disk",
            ),
            store_messages: m.int_gauge(
                "websocket_output_store_messages",
                "Messages in the store not yet done with (unacknowledged, or not yet sent)",
            ),
            store_dropped: m.counter(
                "websocket_output_store_dropped_total",
                "Messages dropped from a full store (the oldest go first)",
            ),
            reconnect_attempts: m.counter(
                "websocket_output_reconnect_attempts_total",
                "Client-mode reconnection attempts",
            ),
            heartbeat_timeouts: m.counter(
                "websocket_output_heartbeat_timeouts_total",
                "Connections closed because nothing was heard from the peer for the heartbeat timeout",
            ),
            requests: RequestMetrics::new(m, PREFIX),
            state: client_mode.then(|| StateGauge::new(m, PREFIX)),
        }
    }

    pub fn dropped(&self, reason: &str) -> IntCounter {
        self.dropped.with(&[reason])
    }

    /// Count a nack; the label is one of the reasons fednode sends, else
    /// `other` (a peer cannot grow the label set).
    pub fn nacked(&self, reason: &str) {
        let label = match reason {
            "queue_full" | "unavailable" | "invalid_subject" | "no_upstream" => reason,
            _ => "other",
        };
        self.nacked.with(&[label]).inc();
    }

    pub fn error(&self, kind: &str) -> IntCounter {
        self.errors.with(&[kind])
    }

    pub fn request_received(&self, method: &str) {
        let label = match method {
            "backpressure" | "subscribe" | "unsubscribe" | "replay" | "status" | "announce" => {
                method
            }
            _ => "other",
        };
        self.requests_received.with(&[label]).inc();
    }
}
