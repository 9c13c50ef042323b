//! Server mode: what each connected fednode peer says of itself. Every
//! `peer_status_interval` the input asks the peer for `status` over its
//! own connection and keeps the figures a hub's operator watches per edge:
//! its queue depth, the data it sent and has not had acknowledged, and its
//! store backlog. `/components` shows them under each connection.

use fednode_kit::envelope::now_millis;
use fednode_kit::ReplyPayload;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::shared::{Conn, PeerStatus, Running};

impl PeerStatus {
    fn update(&mut self, reply: ReplyPayload) {
        match (reply.status.as_str(), reply.result, reply.error) {
            ("ok", Some(result), _) => {
                self.last = Some(summary(&result));
                self.error = None;
            }
            (_, _, Some(e)) => self.error = Some(format!("{}: {}", e.code, e.message)),
            _ => self.error = Some("an answer without a result".into()),
        }
    }

    /// For `/components`: the figures (null before the first answer) and
    /// the last error.
    pub fn describe(&self) -> Value {
        match &self.last {
            Some(v) => {
                let mut v = v.clone();
                v["error"] = json!(self.error);
                v
            }
            None => json!({ "error": self.error }),
        }
    }
}

/// The figures of a `status` result that tell whether an edge keeps up.
fn summary(status: &Value) -> Value {
    let store = &status["store"];
    json!({
        "updated_at": now_millis(),
        "queue_depth": status["queue_depth"],
        "in_flight": status["connection"]["in_flight"],
        "rate": status["throughput"]["current"],
        "store_messages": store["messages"],
        "store_bytes": store["bytes"],
        "store_dropped": store["dropped"],
        "store_oldest_timestamp": store["oldest_timestamp"],
    })
}

impl Conn {
    /// This connection in the input's `status`: who the peer is, its rate,
    /// when it last sent, and what it last said of itself.
    pub fn peer_summary(&self) -> Value {
        json!({
            "connection": self.id,
            "node": self.peer.node,
            "region": self.peer.region,
            "messages_per_second": self.meter.current(),
            "last_seen": match self.last_seen.load(Ordering::Relaxed) {
                0 => Value::Null,
                t => json!(t),
            },
            "status": self.peer_status.lock().describe(),
        })
    }
}

impl Running {
    /// Ask `conn`'s peer for its status now and every interval after, until
    /// `closed` fires; only fednode peers (a device does not answer
    /// requests), and only when `peer_status_interval` is set.
    pub fn watch_peer_status(self: &Arc<Self>, conn: &Arc<Conn>, closed: CancellationToken) {
        let Some(every) = self.settings.peer_status_interval else {
            return;
        };
        if !conn.peer.is_fednode() {
            return;
        }
        let conn = conn.clone();
        self.ctx.tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let reply = conn
                    .pending
                    .request(&conn.out, "status", json!({}), conn.encoding())
                    .await;
                if closed.is_cancelled() {
                    return;
                }
                conn.peer_status.lock().update(reply);
            }
        });
    }
}
