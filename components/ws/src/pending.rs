//! Requests this node sent on one connection and is waiting to hear back
//! about.
//!
//! Each request gets a fresh id and an entry in the map; the reply with that
//! id resolves it. No reply within `request_timeout` fails it with
//! `timeout`; more than `max_concurrent_requests` in flight answers
//! `too_many_requests` at once; a connection that goes away fails what is
//! left with `unavailable`. Replies for ids nobody waits for are reported to
//! the caller ([`PendingRequests::resolve`] returns false) to count and drop.

use fednode_kit::envelope::{Encoding, Envelope, ErrorCode, ReplyPayload};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::frame::{encode, Outbound};
use crate::metrics::RequestMetrics;

struct Waiter {
    tx: oneshot::Sender<ReplyPayload>,
    method: String,
    started: Instant,
}

/// The pending-request map of one connection.
pub struct PendingRequests {
    waiters: Mutex<HashMap<Arc<str>, Waiter>>,
    max_concurrent: usize,
    timeout: Duration,
    metrics: Option<RequestMetrics>,
}

/// Removes an entry when the waiting future is dropped early.
struct Forget<'a> {
    map: &'a PendingRequests,
    id: Arc<str>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.map.waiters.lock().remove(&self.id);
    }
}

impl PendingRequests {
    /// A map allowing `max_concurrent` requests in flight, each waiting at
    /// most `timeout`; `metrics` counts requests, replies and timeouts.
    pub fn new(max_concurrent: usize, timeout: Duration, metrics: Option<RequestMetrics>) -> Self {
        PendingRequests {
            waiters: Mutex::new(HashMap::new()),
            max_concurrent: max_concurrent.max(1),
            timeout,
            metrics,
        }
    }

    /// Requests waiting for a reply now.
    pub fn in_flight(&self) -> usize {
        self.waiters.lock().len()
    }

    /// The reply timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `method(params)` to the peer behind `out` in `encoding` and wait
    /// for the reply. Never fails: errors come back as error replies
    /// (`too_many_requests`, `timeout`, `unavailable`).
    pub async fn request(
        &self,
        out: &Outbound,
        method: &str,
        params: Value,
        encoding: Encoding,
    ) -> ReplyPayload {
        let env = Envelope::request(method, &params);
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.waiters.lock();
            if w.len() >= self.max_concurrent {
                return ReplyPayload::error(
                    ErrorCode::TooManyRequests,
                    format!(
                        "{} requests already in flight on this connection (max_concurrent_requests)",
                        w.len()
                    ),
                );
            }
            w.insert(
                env.id.clone(),
                Waiter {
                    tx,
                    method: method.to_string(),
                    started: Instant::now(),
                },
            );
        }
        let _forget = Forget {
            map: self,
            id: env.id.clone(),
        };
        // One deadline for queueing the frame (a peer that does not read
        // fills its outbound queue) and for the reply.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let exchange = async {
            if !out.send(encode(&env, encoding)).await {
                return ReplyPayload::error(ErrorCode::Unavailable, "the connection is closed");
            }
            if let Some(m) = &self.metrics {
                m.on_sent(method);
            }
            rx.await.unwrap_or_else(|_| {
                ReplyPayload::error(
                    ErrorCode::Unavailable,
                    "the connection closed before the reply",
                )
            })
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(reply) => reply,
            Err(_) => {
                if let Some(m) = &self.metrics {
                    m.timeouts.inc();
                }
                ReplyPayload::error(
                    ErrorCode::Timeout,
                    format!(
                        "no reply to {method} within {}",
                        humantime::format_duration(self.timeout)
                    ),
                )
            }
        }
    }

    /// Hand a reply (its payload as JSON bytes) to the request with `id`;
    /// false when no request with that id is waiting.
    pub fn resolve(&self, id: &str, payload: &[u8]) -> bool {
        let Some(w) = self.waiters.lock().remove(id) else {
            return false;
        };
        let reply = parse_reply(payload);
        if let Some(m) = &self.metrics {
            m.on_reply(&w.method, &reply.status, w.started.elapsed());
        }
        let _ = w.tx.send(reply);
        true
    }

    /// Fail every waiting request with `unavailable` (the connection is gone).
    pub fn fail_all(&self, message: &str) {
        let drained: Vec<Waiter> = self.waiters.lock().drain().map(|(_, w)| w).collect();
        for w in drained {
            let _ =
                w.tx.send(ReplyPayload::error(ErrorCode::Unavailable, message));
        }
    }
}

/// A reply payload as sent by a peer; one that is not `{status, …}` becomes
/// an `unavailable` error naming the problem.
pub fn parse_reply(payload: &[u8]) -> ReplyPayload {
    match serde_json::from_slice::<ReplyPayload>(payload) {
        Ok(r) => r,
        Err(e) => ReplyPayload::error(
            ErrorCode::Unavailable,
            format!("the peer sent a malformed reply: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{classify, outbound, Incoming};
    use std::sync::Arc;

    #[tokio::test]
    async fn correlates_out_of_order_times_out_and_limits() {
        let pending = Arc::new(PendingRequests::new(2, Duration::from_millis(300), None));
        let (out, mut rx) = outbound(16);
        let p1 = {
            let (p, o) = (pending.clone(), out.clone());
            tokio::spawn(async move { p.request(&o, "a", Value::Null, Encoding::Json).await })
        };
        let p2 = {
            let (p, o) = (pending.clone(), out.clone());
            tokio::spawn(async move { p.request(&o, "b", Value::Null, Encoding::Json).await })
        };
        let mut ids = Vec::new();
        for _ in 0..2 {
            let Incoming::Envelope(env, _) = classify(rx_next(&mut rx).await) else {
                panic!()
            };
            ids.push((env.id.clone(), env.payload_value()["method"].clone()));
        }
        // A third is refused while two are in flight.
        let third = pending
            .request(&out, "c", Value::Null, Encoding::Json)
            .await;
        assert_eq!(third.error.unwrap().code, "too_many_requests");
        // Answer in reverse order.
        for (id, method) in ids.iter().rev() {
            let body = serde_json::json!({"status": "ok", "result": {"m": method}});
            assert!(pending.resolve(id, body.to_string().as_bytes()));
        }
        assert_eq!(p1.await.unwrap().result.unwrap()["m"], "a");
        assert_eq!(p2.await.unwrap().result.unwrap()["m"], "b");
        assert!(!pending.resolve("nobody", b"{}"));
        let t = pending
            .request(&out, "silent", Value::Null, Encoding::Json)
            .await;
        assert_eq!(t.error.unwrap().code, "timeout");
        assert_eq!(pending.in_flight(), 0);
    }

    async fn rx_next(rx: &mut crate::frame::OutboundRx) -> crate::frame::WsMessage {
        rx.queue.pop().await.unwrap()
    }
}
