//! Sessions of either mode: the server's HTTP handler (the configured path
//! upgrades, others are 404), the client's reconnect loop, and one
//! connection's frames handed to the data and control paths.

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use fednode_kit::envelope::{now_millis, Encoding, Envelope, Kind};
use fednode_ws::client::{self, ClientOptions, SessionEnd, StateChange};
use fednode_ws::config::Delivery;
use fednode_ws::frame::{self, ConnectionEnd, DriveOptions, FrameHandler, Outbound};
use fednode_ws::identity::PeerInfo;
use fednode_ws::pending::PendingRequests;
use fednode_ws::server;
use fednode_ws::state::ConnectionState;
use fednode_ws::throughput::RateMeter;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::metrics::{error_type, reason};
use crate::shared::{Conn, PeerStatus, Running};

/// How long a closing connection waits for the peer's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames (replies, acks) queued for one peer.
const OUTBOUND_CAPACITY: usize = 1024;

/// The one HTTP handler: the configured path upgrades, others are 404.
pub async fn ws_handler(
    State(run): State<Arc<Running>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = run
        .settings
        .server
        .as_ref()
        .map_or("/", |s| s.path.as_str());
    if req.uri().path() != path {
        return (http::StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    if run.ctx.cancel.is_cancelled() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let gate = run.gate.as_ref().expect("server mode has a gate");
    let admission = match gate.admit(req.headers()) {
        Ok(a) => a,
        Err(rejection) => {
            let kind = match rejection {
                server::Rejection::Unauthorized { .. } => "unauthorized",
                server::Rejection::Full { .. } => "connection_limit",
            };
            run.metrics.error(kind).inc();
            tracing::info!(component = %run.ctx.name, %remote, kind, "connection refused");
            return rejection.into_response();
        }
    };
    let conn_run = run.clone();
    server::upgrade(
        req,
        run.ws_config,
        &run.conn_tracker,
        &run.identity,
        move |ws, peer| async move {
            let _slot = admission;
            conn_run
                .run_connection(ws, remote.to_string(), peer, |_| {})
                .await;
        },
    )
}

struct Session {
    run: Arc<Running>,
    conn: Arc<Conn>,
    /// Data frames of the current burst: counted, and queued without
    /// waking the publisher, until `on_idle`.
    burst: u64,
}

/// A burst longer than this wakes the publisher and updates the counters
/// on the way, so a peer that never pauses is not held back.
const MAX_BURST: u64 = 64;

impl FrameHandler for Session {
    async fn on_envelope(&mut self, env: Envelope, encoding: Encoding, out: &Outbound) {
        if encoding == Encoding::Msgpack {
            self.conn.msgpack.store(true, Ordering::Relaxed);
        }
        if self.run.settings.auth_message.is_some()
            && self.conn.session.get().is_none()
            && env.kind != Kind::Data
        {
            // Nothing but the auth message before the auth message.
            self.run.refuse_before_auth(&self.conn, out);
            return;
        }
        match env.kind {
            Kind::Data => {
                if self.conn.received.load(Ordering::Relaxed) == 0 && self.burst == 0 {
                    // Answer in kind: a peer whose first data is plain
                    // JSON gets plain JSON back.
                    self.conn.plain.store(env.is_plain(), Ordering::Relaxed);
                }
                let (run, conn) = (&self.run, &self.conn);
                let env = match run.settings.auth_message {
                    Some(_) => run.relay_data(conn, env, out).await,
                    None => Some(env),
                };
                if let Some(env) = env {
                    self.burst += 1;
                    if let Some(item) = run.take_data(conn, env, encoding, out, &mut self.burst) {
                        run.enqueue_waiting(item).await;
                    }
                }
                if self.burst >= MAX_BURST {
                    self.on_idle();
                }
            }
            Kind::Request => self.run.on_request(&self.conn, env, encoding).await,
            Kind::Reply => {
                if !self.conn.pending.resolve(&env.id, &env.payload) {
                    self.run.metrics.dropped(reason::UNKNOWN_REPLY).inc();
                    tracing::debug!(conn = %self.conn.id, id = %env.id, "reply for an unknown request dropped");
                }
            }
            // A peer that acks what it receives acks the downstream data
            // too; that data goes at most once, so there is nothing to do.
            Kind::Ack | Kind::Nack if self.run.settings.downstream_subject.is_some() => {}
            Kind::Ack | Kind::Nack => {
                self.run.metrics.dropped(reason::UNEXPECTED_ACK).inc();
            }
        }
    }

    fn on_undecodable(&mut self, error: &fednode_kit::envelope::DecodeError, _encoding: Encoding) {
        match error.error_type() {
            error_type::PARSE => self.run.metrics.parse_errors.inc(),
            other => self.run.metrics.error(other).inc(),
        }
    }

    /// The end of a burst: count once, and wake the publisher once if
    /// there is anything queued. A burst that went straight onto the bus
    /// wakes nobody: a needless wake would push the bus's subscriber, just
    /// woken on this worker, over to another one (a thread woken, and the
    /// data's cache lines moved, for every burst).
    fn on_idle(&mut self) {
        let n = std::mem::take(&mut self.burst);
        if n > 0 {
            if self.run.note_depth() > 0 {
                self.run.queue.wake();
            }
            self.run.count_received(&self.conn, n);
        }
    }
}

impl Running {
    /// Run one connection (either mode) until it ends.
    pub async fn run_connection<S>(
        self: &Arc<Self>,
        ws: WebSocketStream<S>,
        remote: String,
        peer: PeerInfo,
        on_open: impl FnOnce(&Arc<Conn>),
    ) -> ConnectionEnd
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (out, out_rx) = frame::outbound(OUTBOUND_CAPACITY);
        let n = self.conn_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Conn {
            id: format!("conn-{n}"),
            remote,
            acks: peer.wants_acks || self.settings.delivery == Delivery::AtLeastOnce,
            peer,
            out: out.clone(),
            pending: PendingRequests::new(
                self.settings.bidirectional.max_concurrent_requests,
                self.settings.bidirectional.request_timeout,
                Some(self.metrics.requests.clone()),
            ),
            connected_at: now_millis(),
            received: AtomicU64::new(0),
            forwarding: AtomicUsize::new(0),
            msgpack: AtomicBool::new(false),
            plain: AtomicBool::new(false),
            last_seen: AtomicI64::new(0),
            meter: RateMeter::new(),
            session: OnceLock::new(),
            keys: Mutex::new(HashSet::new()),
            last_key: Mutex::new(None),
            sent_down: AtomicU64::new(0),
            peer_status: Mutex::new(PeerStatus::default()),
        });
        {
            let mut conns = self.conns.lock();
            conns.insert(conn.id.clone(), conn.clone());
            self.metrics.connections_active.set(conns.len() as i64);
        }
        self.metrics.connections_total.inc();
        tracing::info!(component = %self.ctx.name, conn = %conn.id, remote = %conn.remote,
            peer_node = conn.peer.node.as_deref(), acks = conn.acks, "peer connected");
        on_open(&conn);
        let ended = tokio_util::sync::CancellationToken::new();
        let _ended = ended.clone().drop_guard();
        self.watch_auth_timeout(&conn, ended.clone());
        self.watch_peer_status(&conn, ended);
        let opts = DriveOptions {
            label: format!("{} {}", conn.id, conn.remote),
            close_timeout: CLOSE_TIMEOUT,
            heartbeat: self.settings.heartbeat,
        };
        let mut session = Session {
            run: self.clone(),
            conn: conn.clone(),
            burst: 0,
        };
        let end = frame::drive(ws, &out, out_rx, &mut session, &self.ctx.cancel, &opts).await;
        conn.pending
            .fail_all("the connection closed before the reply");
        {
            let mut conns = self.conns.lock();
            conns.remove(&conn.id);
            self.metrics.connections_active.set(conns.len() as i64);
        }
        self.forget_keys(&conn);
        self.publish_session(&conn, "session_end").await;
        match &end {
            ConnectionEnd::TooLarge(_) => self.metrics.error(error_type::TOO_LARGE).inc(),
            ConnectionEnd::Dropped(_) => self.metrics.error(error_type::CONNECTION).inc(),
            ConnectionEnd::HeartbeatTimeout(_) => self.metrics.heartbeat_timeouts.inc(),
            _ => {}
        }
        tracing::info!(component = %self.ctx.name, conn = %conn.id, remote = %conn.remote, %end, "peer disconnected");
        end
    }

    /// Client mode: connect and reconnect until shutdown or FAILED.
    pub async fn client_loop(self: Arc<Self>) {
        let c = self
            .settings
            .client
            .clone()
            .expect("client mode has a client block");
        let opts = ClientOptions::for_component(
            &c,
            self.identity.clone(),
            self.settings.credential.clone(),
            self.ws_config,
            self.tls.client.clone(),
        );
        let on_state = {
            let run = self.clone();
            move |change: &StateChange| run.on_client_state(change)
        };
        let session = {
            let run = self.clone();
            move |ws: client::ClientStream, link: client::Link| {
                let run = run.clone();
                async move {
                    let replay_run = run.clone();
                    let end = run
                        .run_connection(ws, link.url, link.peer, move |conn| {
                            replay_run.ask_for_replay(conn)
                        })
                        .await;
                    if run.ctx.cancel.is_cancelled() {
                        SessionEnd::Stop
                    } else {
                        SessionEnd::Reconnect(end.to_string())
                    }
                }
            }
        };
        let last = client::run_reconnecting(opts, self.ctx.cancel.clone(), on_state, session).await;
        tracing::debug!(component = %self.ctx.name, state = %last, "client loop ended");
    }

    pub fn on_client_state(&self, change: &StateChange) {
        if let Some(g) = &self.state_gauge {
            g.set(change.state);
        }
        if change.state == ConnectionState::Reconnecting {
            self.metrics.reconnect_attempts.inc();
        }
        let mut c = self.client.lock();
        c.state = change.state;
        c.retry = change.retry;
        if change.error.is_some() {
            c.last_error = change.error.clone();
        }
    }

    /// Acknowledged delivery, after a reconnect: ask for what came after
    /// the last id received. The reply is only logged; the replayed data
    /// arrives as data and duplicates are dropped by id.
    pub fn ask_for_replay(self: &Arc<Self>, conn: &Arc<Conn>) {
        if !conn.acks {
            return;
        }
        let Some(after) = self.last_received_id.lock().clone() else {
            return;
        };
        let conn = conn.clone();
        let name = self.ctx.name.clone();
        self.ctx.tracker.spawn(async move {
            let reply = conn
                .pending
                .request(&conn.out, "replay", json!({"after_id": &*after}), conn.encoding())
                .await;
            if reply.is_ok() {
                let result = reply.result.as_ref().map_or_else(String::new, |r| r.to_string());
                tracing::info!(component = %name, after_id = %after, %result, "replay requested");
            } else {
                let error = reply.error.as_ref().map_or_else(String::new, |e| format!("{}: {}", e.code, e.message));
                tracing::warn!(component = %name, after_id = %after, %error, "replay request failed");
            }
        });
    }
}
