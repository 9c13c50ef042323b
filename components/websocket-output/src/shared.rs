//! What the tasks of a started output share ([`Shared`]): the settings,
//! the connections, the replay buffer, the metrics, and the command channel
//! to the fan-out. The files that use it sit above it; the component file
//! sits on top.

use arc_swap::ArcSwap;
use fednode_kit::envelope::Encoding;
use fednode_kit::subject::Template;
use fednode_kit::{BusHandle, NodeIdentity};
use fednode_ws::client::StateChange;
use fednode_ws::config::{Delivery, Mode};
use fednode_ws::identity::Identity;
use fednode_ws::pending::PendingRequests;
use fednode_ws::server::Gate;
use fednode_ws::state::ConnectionState;
use fednode_ws::throughput::RateMeter;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::{ReplayBuffer, ReplayParams};
use crate::config::Settings;
use crate::conn::{Conn, Out};
use crate::inflight::AckLimits;
use crate::metrics::OutputMetrics;
use crate::routing::Binding;
use crate::spool::Spool;

/// Work for the fan-out task besides data.
pub(crate) enum Cmd {
    Replay {
        conn: Arc<Conn>,
        request_id: Arc<str>,
        encoding: Encoding,
        params: ReplayParams,
    },
}

/// What the tasks of a started output share.
pub(crate) struct Shared {
    pub name: String,
    pub s: Settings,
    pub node: NodeIdentity,
    pub metrics: OutputMetrics,
    pub bus: BusHandle,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub buffer: ReplayBuffer,
    pub conns: ArcSwap<Vec<Arc<Conn>>>,
    pub conns_edit: Mutex<()>,
    pub next_conn: AtomicU64,
    /// Data messages taken from the bus (`status` throughput).
    pub throughput: RateMeter,
    pub started: Instant,
    pub connections_total: AtomicU64,
    pub cmds: mpsc::Sender<Cmd>,
    pub upstream: Option<Template>,
    /// Server mode: authentication and `max_connections`.
    pub gate: Option<Gate>,
    pub ws_config: WebSocketConfig,
    /// Client mode: where the connection stands, and why it last failed.
    pub client_state: Mutex<(ConnectionState, Option<String>)>,
    /// What this output announces on every handshake.
    pub identity: Identity,
    /// `server.tls` and `client.tls`.
    pub tls: fednode_ws::tls::EndpointTls,
    /// Client mode with a `store`: the log the hub connection is fed from.
    pub spool: Option<Arc<Spool>>,
}

impl Shared {
    /// Data is sent `at_least_once`: every data frame is tracked until the
    /// peer acknowledges it.
    pub fn acked(&self) -> bool {
        self.s.delivery == Delivery::AtLeastOnce
    }

    /// The open connections (server mode) or the hub connection (client).
    pub fn conns(&self) -> Arc<Vec<Arc<Conn>>> {
        self.conns.load_full()
    }

    /// The placeholders of the server path (none in client mode, or for a
    /// path without any).
    pub fn placeholders(&self) -> &[Arc<str>] {
        self.s.path.as_ref().map_or(&[], |p| p.names())
    }

    /// The store that feeds the connection (client mode); a server-mode
    /// store is only the history `replay` reads.
    pub fn feeder(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref().filter(|_| self.s.mode == Mode::Client)
    }

    /// A new connection, bound to the values of its URL path's
    /// placeholders (when the path has any), registered with the fan-out.
    pub fn open_conn(&self, remote: Option<SocketAddr>, bound: Option<Binding>) -> Arc<Conn> {
        let n = self.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
        let id = match self.s.mode {
            Mode::Server => format!("conn-{n}"),
            Mode::Client => "hub".to_string(),
        };
        // Fed from the store, the queue only waits for room: the store is
        // where `on_full` applies.
        let on_full = match self.feeder() {
            Some(_) => fednode_kit::queue::OnFull::Block,
            None => self.s.on_full,
        };
        let conn = Arc::new(
            Conn::new(
                id,
                remote,
                self.s.encoding,
                Out::queue(
                    self.s.backpressure.queue_size,
                    self.s.backpressure.queue_bytes,
                    on_full,
                ),
                PendingRequests::new(
                    self.s.bidirectional.max_concurrent_requests,
                    self.s.bidirectional.request_timeout,
                    Some(self.metrics.requests.clone()),
                ),
                !self.acked() && self.feeder().is_none(),
            )
            .with_acks(self.acked().then_some(AckLimits {
                timeout: self.s.ack_timeout,
                max_in_flight: self.s.max_in_flight,
                nack_backoff: self.s.nack_backoff,
            }))
            .with_binding(bound),
        );
        if let Some(sp) = self.feeder() {
            conn.set_spool(sp.clone());
        }
        let _edit = self.conns_edit.lock();
        let mut v = (**self.conns.load()).clone();
        v.push(conn.clone());
        self.conns.store(Arc::new(v));
        conn
    }

    /// Forget a connection: the fan-out stops offering it data.
    pub fn close_conn(&self, conn: &Arc<Conn>) {
        {
            let _edit = self.conns_edit.lock();
            let v: Vec<Arc<Conn>> = self
                .conns
                .load()
                .iter()
                .filter(|c| !Arc::ptr_eq(c, conn))
                .cloned()
                .collect();
            self.conns.store(Arc::new(v));
        }
        conn.queue.close();
        conn.pending.fail_all("the connection closed");
    }

    /// A session started (both modes).
    pub fn session_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.metrics.connections_total.inc();
        self.metrics.connections_active.inc();
    }

    pub fn session_closed(&self) {
        self.metrics.connections_active.dec();
    }

    /// Peers connected now.
    pub fn active(&self) -> usize {
        match self.s.mode {
            Mode::Server => self.conns.load().len(),
            Mode::Client => usize::from(self.client_state.lock().0 == ConnectionState::Connected),
        }
    }

    /// Data waiting in every connection's queue.
    pub fn queue_depth(&self) -> usize {
        self.conns.load().iter().map(|c| c.depth()).sum()
    }

    pub fn find(&self, id: &str) -> Option<Arc<Conn>> {
        self.conns.load().iter().find(|c| c.id == id).cloned()
    }

    /// Client mode: a state change from the reconnect loop.
    pub fn on_state(&self, change: &StateChange) {
        *self.client_state.lock() = (change.state, change.error.clone());
        if let Some(g) = &self.metrics.state {
            g.set(change.state);
        }
        if change.state == ConnectionState::Reconnecting {
            self.metrics.reconnect_attempts.inc();
        }
    }

    /// The `status` result.
    pub fn status(&self, conn: Option<&Conn>) -> Value {
        let mut v = json!({
            "throughput": {
                "current": self.throughput.current(),
                "average_1m": self.throughput.average_1m(),
                "unit": "msg/sec",
            },
            "queue_depth": conn.map_or_else(|| self.queue_depth(), Conn::depth),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "connections": {
                "active": self.active(),
                "total": self.connections_total.load(Ordering::Relaxed),
            },
            "node": {"id": self.node.id, "region": self.node.region},
            "buffer": {"size": self.buffer.len(), "capacity": self.s.buffer_size,
                "bytes": self.buffer.bytes(), "max_bytes": self.s.buffer_max_bytes},
        });
        if let Some(sp) = &self.spool {
            v["store"] = sp.describe();
        }
        if let Some(c) = conn {
            v["connection"] = c.describe();
        }
        v
    }
}
