//! The metric families both WebSocket components register: requests sent
//! to peers and the client connection state. Each takes the family prefix
//! (`websocket_input`, `websocket_output`) as an argument; every child
//! carries the `component` label (the kit's `ComponentMetrics` adds it).

use fednode_kit::metrics::{
    ComponentMetrics, LabelledCounter, LabelledHistogram, LabelledIntGauge,
};
use prometheus::IntCounter;

use crate::state::ConnectionState;

/// Metrics of requests this node sends to a peer and the replies it gets.
#[derive(Clone)]
pub struct RequestMetrics {
    sent: LabelledCounter,
    replies: LabelledCounter,
    /// Requests that got no reply within `request_timeout`.
    pub timeouts: IntCounter,
    duration: LabelledHistogram,
}

impl RequestMetrics {
    /// Register `{prefix}_requests_sent_total{method}`,
    /// `{prefix}_replies_received_total{status}`, `{prefix}_request_timeouts_total`
    /// and `{prefix}_request_duration_seconds{method}`.
    pub fn new(m: &ComponentMetrics, prefix: &str) -> Self {
        let replies = m.counter_vec(
            &format!("{prefix}_replies_received_total"),
            "Replies received for requests this node sent, by status",
            &["status"],
        );
        replies.with(&["ok"]);
        replies.with(&["error"]);
        RequestMetrics {
            sent: m.counter_vec(
                &format!("{prefix}_requests_sent_total"),
                "Requests this node sent to peers, by method",
                &["method"],
            ),
            replies,
            timeouts: m.counter(
                &format!("{prefix}_request_timeouts_total"),
                "Requests sent to peers that got no reply within request_timeout",
            ),
            duration: m.histogram_vec(
                &format!("{prefix}_request_duration_seconds"),
                "Time from sending a request to receiving its reply",
                &["method"],
            ),
        }
    }

    /// A request left for the peer.
    pub fn on_sent(&self, method: &str) {
        self.sent.with(&[method]).inc();
    }

    /// Its reply came back (`status` is the reply's `status`).
    pub fn on_reply(&self, method: &str, status: &str, elapsed: std::time::Duration) {
        let status = if status == "ok" { "ok" } else { "error" };
        self.replies.with(&[status]).inc();
        self.duration.with(&[method]).observe(elapsed.as_secs_f64());
    }
}

/// `{prefix}_connection_state{state}`: 1 for the current state, 0 for the others.
#[derive(Clone)]
pub struct StateGauge {
    family: LabelledIntGauge,
}

impl StateGauge {
    /// Register the family with every state at 0 except `INIT`.
    pub fn new(m: &ComponentMetrics, prefix: &str) -> Self {
        let g = StateGauge {
            family: m.int_gauge_vec(
                &format!("{prefix}_connection_state"),
                "Client-mode connection state: 1 for the current state, 0 for the others",
                &["state"],
            ),
        };
        g.set(ConnectionState::Init);
        g
    }

    /// Make `state` the current one.
    pub fn set(&self, state: ConnectionState) {
        for s in ConnectionState::ALL {
            self.family.with(&[s.as_str()]).set(i64::from(s == state));
        }
    }
}
