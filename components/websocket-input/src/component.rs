//! The `websocket_input` component: start (bind or connect, spawn the
//! publisher, the control loop and the shutdown sequence), health and the
//! `/components` detail. The files below it hold the behaviour: `session`
//! (connections), `publish` (the data path), `control` (requests), and
//! `shared` (the state they share).

use async_trait::async_trait;
use fednode_kit::bus::SubscribeOptions;
use fednode_kit::component::Listen;
use fednode_kit::config::{ConfigError, PortsConfig};
use fednode_kit::{AdminError, AdminRequest, BuildContext, Component, Context, Health, StartError};
use fednode_ws::config::Mode;
use fednode_ws::server;
use fednode_ws::state::ConnectionState;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::{Config, Settings};
use crate::session::ws_handler;
use crate::shared::{round2, Running};

/// A queue full for longer than this makes the component unhealthy.
const FULL_UNHEALTHY_AFTER: Duration = Duration::from_secs(30);

/// The `websocket_input` component.
pub struct WebSocketInput {
    settings: Arc<Settings>,
    running: OnceLock<Arc<Running>>,
    local_addr: OnceLock<SocketAddr>,
}

/// Build from a `config` block (what the registration's `build` does),
/// keeping the concrete type (tests use [`WebSocketInput::local_addr`]).
pub fn build(
    cx: &BuildContext<'_>,
    value: &Value,
) -> Result<Arc<WebSocketInput>, Vec<ConfigError>> {
    let settings = Config::parse(value, cx.path)?;
    Ok(Arc::new(WebSocketInput::new(settings)))
}

impl WebSocketInput {
    /// A component from validated settings.
    pub fn new(settings: Settings) -> Self {
        WebSocketInput {
            settings: Arc::new(settings),
            running: OnceLock::new(),
            local_addr: OnceLock::new(),
        }
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Server mode: the address actually bound (after `start`; useful with
    /// `http_port: 0`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    /// Client mode: the current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.running
            .get()
            .map_or(ConnectionState::Init, |r| r.client.lock().state)
    }
}

#[async_trait]
impl Component for WebSocketInput {
    fn ports(&self) -> &PortsConfig {
        &self.settings.ports
    }

    fn listens(&self) -> Vec<Listen> {
        self.settings.listen.into_iter().collect()
    }

    fn reread_certificates(&self) -> Result<(), String> {
        self.running.get().map_or(Ok(()), |r| r.tls.reread())
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        if self.running.get().is_some() {
            return Err(StartError::new("websocket_input started twice"));
        }
        let s = self.settings.clone();
        let tls = fednode_ws::tls::EndpointTls::load(
            &ctx.name,
            s.server.as_ref().and_then(|v| v.tls.as_ref()),
            s.client.as_ref().and_then(|v| v.tls.as_ref()),
        )?;
        let listener = match (&s.mode, &s.server) {
            (Mode::Server, Some(srv)) => Some(server::bind(&srv.bind, srv.http_port).await?),
            _ => None,
        };
        let control_sub = if s.bidirectional.enabled {
            let subject = format!("{}.send", crate::shared::control_subject(&ctx, &s));
            Some(
                ctx.bus
                    .subscribe(
                        &subject,
                        SubscribeOptions {
                            requests: true,
                            ..SubscribeOptions::default()
                        },
                    )
                    .await
                    .map_err(|e| StartError::new(format!("cannot subscribe to {subject}: {e}")))?,
            )
        } else {
            None
        };
        let downstream_sub = match &s.downstream_subject {
            Some(subject) => Some(
                ctx.bus
                    .subscribe(subject, SubscribeOptions::default())
                    .await
                    .map_err(|e| StartError::new(format!("cannot subscribe to {subject}: {e}")))?,
            ),
            None => None,
        };
        let run = Arc::new(Running::new(ctx.clone(), s.clone(), tls.clone()));
        let _ = self.running.set(run.clone());
        let tracker = ctx.tracker.clone();

        tracker.spawn(run.clone().publish_loop());
        if let Some(sub) = control_sub {
            tracker.spawn(run.clone().control_send_loop(sub));
        }
        if let Some(sub) = downstream_sub {
            tracker.spawn(run.clone().downstream_loop(sub));
        }
        match s.mode {
            Mode::Server => {
                let listener = listener.expect("server mode binds");
                if let Ok(addr) = listener.local_addr() {
                    let _ = self.local_addr.set(addr);
                    tracing::info!(component = %ctx.name, %addr, path = %s.server.as_ref().map_or("/", |v| v.path.as_str()), "websocket_input listening");
                }
                let router = axum::Router::new()
                    .fallback(ws_handler)
                    .with_state(run.clone());
                let timeout = s
                    .server
                    .as_ref()
                    .map_or_else(fednode_ws::config::default_handshake_timeout, |v| {
                        v.handshake_timeout
                    });
                tracker.spawn(server::serve(
                    listener,
                    router,
                    timeout,
                    tls.acceptor.clone(),
                    ctx.cancel.clone(),
                    "websocket_input server",
                ));
            }
            Mode::Client => {
                let fut = run.clone().client_loop();
                tracker.spawn(run.conn_tracker.track_future(fut));
            }
        }
        tracker.spawn(run.clone().shutdown());
        Ok(())
    }

    fn health(&self) -> Health {
        match self.running.get() {
            Some(run) => run.health(),
            None => Health::ok("init", json!({"mode": self.settings.mode.as_str()})),
        }
    }

    fn describe(&self) -> Value {
        match self.running.get() {
            Some(run) => run.describe(),
            None => json!({"mode": self.settings.mode.as_str(), "connections": []}),
        }
    }

    async fn admin_request(&self, req: AdminRequest) -> Result<Value, AdminError> {
        match self.running.get() {
            Some(run) => run.admin(req).await,
            None => Err(AdminError::Unavailable(
                "the component is not started".into(),
            )),
        }
    }
}

impl Running {
    fn health(&self) -> Health {
        let active = self.conns.lock().len();
        let depth = self.queue.len();
        let mut details = json!({
            "mode": self.settings.mode.as_str(),
            "connections": {"active": active, "total": self.metrics.connections_total.get()},
            "queue": {
                "depth": depth,
                "utilization": round2(depth as f64 / self.queue.capacity() as f64),
            },
            "throughput": {
                "messages_per_second": self.meter.current(),
                "average_1m": round2(self.meter.average_1m()),
            },
        });
        let full_for = self.full_since.lock().map(|t| t.elapsed());
        if let Some(d) = full_for.filter(|d| *d > FULL_UNHEALTHY_AFTER) {
            details["queue"]["full_for_seconds"] = json!(d.as_secs());
            return Health::failing("backpressure", details);
        }
        match self.settings.mode {
            Mode::Server => {
                if active == 0 {
                    Health::ok("idle", details)
                } else {
                    Health::ok("connected", details)
                }
            }
            Mode::Client => {
                let c = self.client.lock();
                details["state"] = json!(c.state.as_str());
                details["url"] = json!(self.settings.client.as_ref().map(|c| c.display()));
                if let Some(e) = &c.last_error {
                    details["last_error"] = json!(e);
                }
                if c.retry > 0 {
                    details["retry"] = json!(c.retry);
                }
                match c.state {
                    ConnectionState::Failed => Health::failing("failed", details),
                    ConnectionState::Connected => Health::ok("connected", details),
                    ConnectionState::Reconnecting => Health::ok("reconnecting", details),
                    ConnectionState::Init | ConnectionState::Connecting => {
                        Health::ok("connecting", details)
                    }
                }
            }
        }
    }

    fn describe(&self) -> Value {
        let conns: Vec<Value> = self
            .conns
            .lock()
            .values()
            .map(|c| {
                json!({
                    "id": c.id,
                    "remote": c.remote,
                    "peer_node": c.peer.node,
                    "peer_region": c.peer.region,
                    "peer_certificate": c.peer.certificate,
                    "acks": c.acks,
                    "batch_acks": c.acks && c.peer.batch_acks,
                    "peer_status": c.peer.is_fednode().then(|| c.peer_status.lock().describe()),
                    "connected_at": c.connected_at,
                    "last_seen": match c.last_seen.load(Ordering::Relaxed) {
                        0 => Value::Null,
                        t => json!(t),
                    },
                    "messages_received": c.received.load(Ordering::Relaxed),
                    "messages_per_second": c.meter.current(),
                    "downstream_sent": c.sent_down.load(Ordering::Relaxed),
                    "user_id": c.session.get().map(|s| &*s.user_id),
                    "session_id": c.session.get().map(|s| s.session_id.as_str()),
                    "requests_in_flight": c.pending.in_flight(),
                })
            })
            .collect();
        let mut d = json!({
            "mode": self.settings.mode.as_str(),
            "delivery": self.settings.delivery.as_str(),
            "connections": conns,
        });
        if self.settings.mode == Mode::Client {
            d["state"] = json!(self.client.lock().state.as_str());
            d["url"] = json!(self.settings.client.as_ref().map(|c| c.display()));
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_queue_full_for_30s_is_unhealthy() {
        let (ctx, _bus, _metrics) = fednode_kit::testing::context("ws_in");
        let settings = Config::parse(
            &json!({"mode": "server", "server": {"http_port": 0},
                    "ports": {"outputs": [{"name": "ws_data", "subject": "d"}]}}),
            "c",
        )
        .unwrap();
        let run = Running::new(ctx, Arc::new(settings), Default::default());
        let h = run.health();
        assert!(h.healthy);
        assert_eq!(h.status, "idle");
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(31)) else {
            return;
        };
        *run.full_since.lock() = Some(long_ago);
        let h = run.health();
        assert!(!h.healthy);
        assert_eq!(h.status, "backpressure");
        *run.full_since.lock() = Some(Instant::now());
        assert!(run.health().healthy, "full for a moment is fine");
    }
}
