//! The control path: requests from peers (answered here for `status`,
//! else forwarded to `<control>.request` on the bus), and requests this
//! node sends to its peers (the admin API and `<control>.send`).

use bytes::Bytes;
use fednode_kit::bus::{BusError, Subscription};
use fednode_kit::envelope::{
    now_millis, Encoding, Envelope, ErrorCode, Kind, ReplyPayload, RequestPayload,
};
use fednode_kit::{AdminError, AdminRequest};
use fednode_ws::config::Mode;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::error_type;
use crate::shared::{round2, Conn, Running};

impl Running {
    pub async fn on_request(self: &Arc<Self>, conn: &Arc<Conn>, env: Envelope, encoding: Encoding) {
        let id = env.id;
        let req: RequestPayload = match serde_json::from_slice(&env.payload) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.error(error_type::INVALID_REQUEST).inc();
                let reply = ReplyPayload::error(
                    ErrorCode::InvalidParams,
                    format!("a request payload is {{method, params}}: {e}"),
                );
                conn.out
                    .send_envelope(&Envelope::reply(&id, &reply), encoding)
                    .await;
                return;
            }
        };
        if !self.settings.bidirectional.enabled {
            let reply = ReplyPayload::error(
                ErrorCode::Unavailable,
                "bidirectional control is disabled on this input",
            );
            conn.out
                .send_envelope(&Envelope::reply(&id, &reply), encoding)
                .await;
            return;
        }
        if req.method == "status" {
            let reply = ReplyPayload::ok(self.status());
            conn.out
                .send_envelope(&Envelope::reply(&id, &reply), encoding)
                .await;
            return;
        }
        let max = self.settings.bidirectional.max_concurrent_requests;
        if conn.forwarding.fetch_add(1, Ordering::AcqRel) >= max {
            conn.forwarding.fetch_sub(1, Ordering::AcqRel);
            let reply = ReplyPayload::error(
                ErrorCode::TooManyRequests,
                format!("{max} requests from this connection are already being answered"),
            );
            conn.out
                .send_envelope(&Envelope::reply(&id, &reply), encoding)
                .await;
            return;
        }
        let run = self.clone();
        let conn = conn.clone();
        self.ctx.tracker.spawn(async move {
            let payload = run.forward(&req).await;
            conn.forwarding.fetch_sub(1, Ordering::AcqRel);
            let reply = Envelope {
                kind: Kind::Reply,
                id,
                timestamp: Some(now_millis()),
                replay: false,
                origin: None,
                payload,
            };
            conn.out.send_envelope(&reply, encoding).await;
        });
    }

    /// Publish a peer's request on `<control>.request` and return the reply
    /// payload to send back.
    pub async fn forward(&self, req: &RequestPayload) -> Bytes {
        let subject = format!("{}.request", self.control_subject);
        let timeout = self.settings.bidirectional.request_timeout;
        let body = serde_json::to_vec(&json!({"method": req.method, "params": req.params}))
            .expect("request body serialises");
        let error = |code: ErrorCode, message: String| {
            Bytes::from(
                serde_json::to_vec(&ReplyPayload::error(code, message)).expect("reply serialises"),
            )
        };
        match self
            .ctx
            .bus
            .request(&subject, Bytes::from(body), timeout)
            .await
        {
            Ok(msg) => {
                let valid = serde_json::from_slice::<Value>(&msg.payload)
                    .is_ok_and(|v| v.get("status").is_some_and(Value::is_string));
                if valid {
                    msg.payload
                } else {
                    error(
                        ErrorCode::Unavailable,
                        format!("the responder on {subject} sent a reply that is not {{status, result|error}}"),
                    )
                }
            }
            Err(BusError::NoResponders(_)) => error(
                ErrorCode::Unavailable,
                format!("nobody answers {} on {subject}", req.method),
            ),
            Err(BusError::Timeout(_)) => error(
                ErrorCode::Timeout,
                format!(
                    "no reply to {} from {subject} within {}",
                    req.method,
                    humantime::format_duration(timeout)
                ),
            ),
            Err(e) => error(ErrorCode::Unavailable, format!("bus request failed: {e}")),
        }
    }

    /// The `status` result.
    pub fn status(&self) -> Value {
        json!({
            "throughput": {
                "current": self.meter.current(),
                "average_1m": round2(self.meter.average_1m()),
                "unit": "msg/sec",
            },
            "queue_depth": self.queue.len(),
            "uptime_seconds": self.meter.uptime_seconds(),
            "connections": {
                "active": self.conns.lock().len(),
                "total": self.metrics.connections_total.get(),
            },
            "node": {"id": self.ctx.node.id, "region": self.ctx.node.region},
            "peers": self.conns.lock().values()
                .filter(|c| c.peer.is_fednode())
                .map(|c| c.peer_summary())
                .collect::<Vec<_>>(),
        })
    }

    /// Send an operator's request to the peer(s).
    pub async fn admin(self: &Arc<Self>, req: AdminRequest) -> Result<Value, AdminError> {
        if !self.settings.bidirectional.enabled {
            return Err(AdminError::NotSupported(
                "bidirectional control is disabled on this input".into(),
            ));
        }
        let conns: Vec<Arc<Conn>> = self.conns.lock().values().cloned().collect();
        // A connection id, or the node id the peer announced.
        let pick = |name: &str| {
            conns
                .iter()
                .find(|c| c.id == name)
                .or_else(|| conns.iter().find(|c| c.peer.node.as_deref() == Some(name)))
                .cloned()
                .ok_or_else(|| AdminError::NotFound(format!("no connection named {name}")))
        };
        let one = |c: Arc<Conn>, req: AdminRequest| async move {
            c.pending
                .request(&c.out, &req.method, req.params, c.encoding())
                .await
                .to_value()
        };
        match (self.settings.mode, &req.connection) {
            (_, Some(name)) => {
                let c = pick(name)?;
                Ok(one(c, req).await)
            }
            (Mode::Client, None) => {
                let Some(c) = conns.first().cloned() else {
                    let state = self.client.lock().state;
                    return Err(AdminError::Unavailable(format!(
                        "not connected to the peer (state: {state})"
                    )));
                };
                Ok(one(c, req).await)
            }
            (Mode::Server, None) => {
                let asks = conns.into_iter().map(|c| {
                    let req = req.clone();
                    async move { (c.id.clone(), one(c, req).await) }
                });
                let replies: serde_json::Map<String, Value> =
                    futures::future::join_all(asks).await.into_iter().collect();
                Ok(json!({ "replies": replies }))
            }
        }
    }

    /// Answer requests on `<control>.send` like `POST …/request`.
    pub async fn control_send_loop(self: Arc<Self>, mut sub: Subscription) {
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = self.ctx.cancel.cancelled() => None,
            };
            let Some(msg) = msg else { break };
            let run = self.clone();
            self.ctx.tracker.spawn(async move {
                let answer = match serde_json::from_slice::<AdminRequest>(&msg.payload) {
                    Err(e) => ReplyPayload::error(
                        ErrorCode::InvalidParams,
                        format!("expected {{method, params, connection?}}: {e}"),
                    )
                    .to_value(),
                    Ok(req) => match run.admin(req).await {
                        Ok(v) => v,
                        Err(e) => admin_error_reply(&e).to_value(),
                    },
                };
                let body = Bytes::from(serde_json::to_vec(&answer).expect("json serialises"));
                if let Err(e) = run.ctx.bus.reply(&msg, body).await {
                    tracing::debug!(error = %e, "could not answer a control send request");
                }
            });
        }
    }
}

/// An admin failure as a reply payload (`<control>.send` answers).
fn admin_error_reply(e: &AdminError) -> ReplyPayload {
    let code = match e {
        AdminError::NotFound(_) | AdminError::BadRequest(_) => ErrorCode::InvalidParams,
        AdminError::Unavailable(_) | AdminError::NotSupported(_) => ErrorCode::Unavailable,
    };
    ReplyPayload::error(code, e.to_string())
}
