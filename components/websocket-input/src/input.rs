//! The `websocket_input` component itself: sessions (both modes) feeding one
//! bounded queue, one publisher task draining it onto the bus, the control
//! path (local `status`, forwarding to `<control>.request`, requests this
//! node sends), health and shutdown.

use async_trait::async_trait;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fednode_kit::bus::{BusError, Message, Meta, SubscribeOptions, Subscription};
use fednode_kit::config::{ConfigError, PortsConfig};
use fednode_kit::envelope::{
    now_millis, Encoding, Envelope, ErrorCode, Kind, ReplyPayload, RequestPayload,
};
use fednode_kit::queue::{BoundedQueue, OnFull, Pushed};
use fednode_kit::{AdminError, AdminRequest, BuildContext, Component, Context, Health, StartError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{self, ClientOptions, SessionEnd, StateChange};
use crate::config::{self, Delivery, Mode, Settings};
use crate::dedup::RecentIds;
use crate::frame::{self, ConnectionEnd, DriveOptions, FrameHandler, Outbound};
use crate::metrics::{error_type, reason, InputMetrics, StateGauge};
use crate::pending::PendingRequests;
use crate::server::{self, Gate};
use crate::state::ConnectionState;
use crate::throughput::RateMeter;

/// How long shutdown keeps trying to hand queued data to the bus.
const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// How long a closing connection waits for the peer's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames (replies, acks) queued for one peer.
const OUTBOUND_CAPACITY: usize = 1024;
/// Data taken from the queue per publisher round.
const PUBLISH_BATCH: usize = 256;
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
    let settings = config::parse(value, cx.path)?;
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

/// Client-mode status for health and describe.
struct ClientStatus {
    state: ConnectionState,
    last_error: Option<String>,
    retry: u32,
}

/// A data payload on its way to the bus.
struct Item {
    payload: Bytes,
    meta: Meta,
    /// `at_least_once`: where to send the ack once published.
    ack: Option<AckTo>,
}

struct AckTo {
    out: Outbound,
    encoding: Encoding,
}

/// One open connection.
struct Conn {
    id: String,
    remote: String,
    out: Outbound,
    pending: PendingRequests,
    connected_at: i64,
    received: AtomicU64,
    /// Requests from this peer being forwarded to the bus now.
    forwarding: AtomicUsize,
    /// The peer speaks MessagePack: send our requests that way too.
    msgpack: AtomicBool,
}

impl Conn {
    fn encoding(&self) -> Encoding {
        if self.msgpack.load(Ordering::Relaxed) {
            Encoding::Msgpack
        } else {
            Encoding::Json
        }
    }
}

/// Everything a started component shares between its tasks.
struct Running {
    ctx: Context,
    settings: Arc<Settings>,
    metrics: InputMetrics,
    state_gauge: Option<StateGauge>,
    queue: BoundedQueue<Item>,
    meter: RateMeter,
    conns: Mutex<BTreeMap<String, Arc<Conn>>>,
    conn_seq: AtomicU64,
    client: Mutex<ClientStatus>,
    dedup: Mutex<RecentIds>,
    last_received_id: Mutex<Option<Arc<str>>>,
    full_flag: AtomicBool,
    full_since: Mutex<Option<Instant>>,
    /// Connection tasks (and the client loop): shutdown waits for them
    /// before closing the queue.
    conn_tracker: TaskTracker,
    /// Fires when shutdown gives up flushing to the bus.
    flush_abort: CancellationToken,
    publisher_done: CancellationToken,
    ws_config: WebSocketConfig,
    gate: Option<Gate>,
}

#[async_trait]
impl Component for WebSocketInput {
    fn ports(&self) -> &PortsConfig {
        &self.settings.ports
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        if self.running.get().is_some() {
            return Err(StartError::new("websocket_input started twice"));
        }
        let s = self.settings.clone();
        let listener = match (&s.mode, &s.server) {
            (Mode::Server, Some(srv)) => Some(server::bind(&srv.bind, srv.http_port).await?),
            _ => None,
        };
        let control_sub = if s.bidirectional.enabled {
            let subject = format!("{}.send", s.control_subject);
            Some(
                ctx.bus
                    .subscribe(&subject, SubscribeOptions::default())
                    .await
                    .map_err(|e| StartError::new(format!("cannot subscribe to {subject}: {e}")))?,
            )
        } else {
            None
        };
        let run = Arc::new(Running::new(ctx.clone(), s.clone()));
        let _ = self.running.set(run.clone());
        let tracker = ctx.tracker.clone();

        tracker.spawn(run.clone().publish_loop());
        if let Some(sub) = control_sub {
            tracker.spawn(run.clone().control_send_loop(sub));
        }
        match s.mode {
            Mode::Server => {
                let listener = listener.expect("server mode binds");
                if s.server.as_ref().is_some_and(|v| v.enable_compression) {
                    tracing::warn!(component = %ctx.name, "enable_compression is not supported (no permessage-deflate in tungstenite 0.29); frames are sent uncompressed");
                }
                if let Ok(addr) = listener.local_addr() {
                    let _ = self.local_addr.set(addr);
                    tracing::info!(component = %ctx.name, %addr, path = %s.server.as_ref().map_or("/", |v| v.path.as_str()), "websocket_input listening");
                }
                let router = axum::Router::new()
                    .fallback(ws_handler)
                    .with_state(run.clone());
                tracker.spawn(server::serve(listener, router, ctx.cancel.clone()));
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

/// The one HTTP handler: the configured path upgrades, others are 404.
async fn ws_handler(
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
        move |ws| async move {
            let _slot = admission;
            conn_run
                .run_connection(ws, remote.to_string(), |_| {})
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
        match env.kind {
            Kind::Data => {
                self.burst += 1;
                self.run
                    .on_data(&self.conn, env, encoding, out, &mut self.burst)
                    .await;
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
            Kind::Ack | Kind::Nack => {
                self.run.metrics.dropped(reason::UNEXPECTED_ACK).inc();
            }
        }
    }

    fn on_undecodable(&mut self, _error: &fednode_kit::envelope::DecodeError, _encoding: Encoding) {
        self.run.metrics.parse_errors.inc();
    }

    /// The end of a burst: wake the publisher once, count once.
    fn on_idle(&mut self) {
        let n = std::mem::take(&mut self.burst);
        if n > 0 {
            self.run.queue.wake();
            self.run.note_depth();
            self.run.count_received(&self.conn, n);
        }
    }
}

impl Running {
    fn new(ctx: Context, settings: Arc<Settings>) -> Self {
        let metrics = InputMetrics::new(&ctx.metrics);
        let state_gauge = (settings.mode == Mode::Client)
            .then(|| StateGauge::new(&ctx.metrics, "websocket_input"));
        let mut ws_config = WebSocketConfig::default()
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        if let Some(s) = &settings.server {
            ws_config = ws_config
                .read_buffer_size(s.read_buffer_size)
                .write_buffer_size(s.write_buffer_size);
        }
        let gate = settings
            .server
            .as_ref()
            .map(|s| Gate::new(settings.credential.clone(), s.max_connections));
        Running {
            queue: BoundedQueue::new(
                settings.backpressure.queue_size,
                settings.backpressure.policy(),
            ),
            dedup: Mutex::new(RecentIds::new(settings.dedup_window)),
            metrics,
            state_gauge,
            meter: RateMeter::new(),
            conns: Mutex::new(BTreeMap::new()),
            conn_seq: AtomicU64::new(0),
            client: Mutex::new(ClientStatus {
                state: ConnectionState::Init,
                last_error: None,
                retry: 0,
            }),
            last_received_id: Mutex::new(None),
            full_flag: AtomicBool::new(false),
            full_since: Mutex::new(None),
            conn_tracker: TaskTracker::new(),
            flush_abort: CancellationToken::new(),
            publisher_done: CancellationToken::new(),
            ws_config,
            gate,
            ctx,
            settings,
        }
    }

    // ---- sessions -------------------------------------------------------

    /// Run one connection (either mode) until it ends.
    async fn run_connection<S>(
        self: &Arc<Self>,
        ws: WebSocketStream<S>,
        remote: String,
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
        });
        {
            let mut conns = self.conns.lock();
            conns.insert(conn.id.clone(), conn.clone());
            self.metrics.connections_active.set(conns.len() as i64);
        }
        self.metrics.connections_total.inc();
        tracing::info!(component = %self.ctx.name, conn = %conn.id, remote = %conn.remote, "peer connected");
        on_open(&conn);
        let opts = DriveOptions {
            label: format!("{} {}", conn.id, conn.remote),
            close_timeout: CLOSE_TIMEOUT,
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
        match &end {
            ConnectionEnd::TooLarge(_) => self.metrics.error(error_type::TOO_LARGE).inc(),
            ConnectionEnd::Dropped(_) => self.metrics.error(error_type::CONNECTION).inc(),
            _ => {}
        }
        tracing::info!(component = %self.ctx.name, conn = %conn.id, remote = %conn.remote, %end, "peer disconnected");
        end
    }

    /// Client mode: connect and reconnect until shutdown or FAILED.
    async fn client_loop(self: Arc<Self>) {
        let c = self
            .settings
            .client
            .clone()
            .expect("client mode has a client block");
        let opts = ClientOptions {
            url: c.url.clone(),
            credential: self.settings.credential.clone(),
            reconnect: c.reconnect.clone(),
            connect_timeout: c.connect_timeout,
            ws_config: self.ws_config,
        };
        let on_state = {
            let run = self.clone();
            move |change: &StateChange| run.on_client_state(change)
        };
        let session = {
            let run = self.clone();
            move |ws: client::ClientStream| {
                let run = run.clone();
                async move {
                    let url = run
                        .settings
                        .client
                        .as_ref()
                        .map(|c| c.url.clone())
                        .unwrap_or_default();
                    let replay_run = run.clone();
                    let end = run
                        .run_connection(ws, url, move |conn| replay_run.ask_for_replay(conn))
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

    fn on_client_state(&self, change: &StateChange) {
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

    /// `at_least_once`, after a reconnect: ask for what came after the last
    /// id received (SPEC §3). The reply is only logged; the replayed data
    /// arrives as data and duplicates are dropped by id.
    fn ask_for_replay(self: &Arc<Self>, conn: &Arc<Conn>) {
        if self.settings.delivery != Delivery::AtLeastOnce {
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
                tracing::info!(component = %name, after_id = %after, result = ?reply.result, "replay requested");
            } else {
                tracing::warn!(component = %name, after_id = %after, error = ?reply.error, "replay request failed");
            }
        });
    }

    // ---- data path ------------------------------------------------------

    /// One data frame of a burst: `burst` frames (this one included) are
    /// not counted yet, and the publisher not woken, until the burst ends.
    async fn on_data(
        &self,
        conn: &Conn,
        env: Envelope,
        encoding: Encoding,
        out: &Outbound,
        burst: &mut u64,
    ) {
        let had_id = !env.id.is_empty();
        let id: Arc<str> = if had_id {
            env.id
        } else {
            Arc::from(fast_uuid())
        };
        if had_id && self.settings.mode == Mode::Client {
            *self.last_received_id.lock() = Some(id.clone());
        }
        let ack = if had_id && self.settings.delivery == Delivery::AtLeastOnce {
            if !self.dedup.lock().insert(&id) {
                self.metrics.dropped(reason::DUPLICATE).inc();
                // Published before; the sender missed our ack.
                out.try_send(frame::encode(&Envelope::ack(&id, None), encoding));
                return;
            }
            Some(AckTo {
                out: out.clone(),
                encoding,
            })
        } else {
            None
        };
        let item = Item {
            payload: env.payload,
            meta: Meta {
                id: Some(id),
                timestamp: Some(env.timestamp.unwrap_or_else(now_millis)),
                node: None,
                replay: env.replay,
            },
            ack,
        };
        self.enqueue(item, conn, burst).await;
    }

    fn count_received(&self, conn: &Conn, n: u64) {
        self.metrics.received.inc_by(n);
        self.meter.record(n);
        conn.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Queue without waking the publisher (the session does, once per
    /// burst), except when `block` has to wait for room: then the burst so
    /// far is counted and the publisher woken first.
    async fn enqueue(&self, item: Item, conn: &Conn, burst: &mut u64) {
        let pushed = match self.queue.try_push_quiet(item) {
            Pushed::Rejected(item)
                if self.queue.policy() == OnFull::Block && !self.queue.is_closed() =>
            {
                // Full: let the publisher make room, and wait for it
                // (health and the counters see it meanwhile).
                self.count_received(conn, std::mem::take(burst));
                self.note_depth();
                self.queue.wake();
                let push = self.queue.push(item);
                tokio::pin!(push);
                tokio::select! {
                    biased;
                    r = &mut push => r,
                    _ = self.ctx.cancel.cancelled() => match tokio::time::timeout(FLUSH_GRACE, &mut push).await {
                        Ok(r) => r,
                        Err(_) => {
                            self.metrics.dropped(reason::SHUTDOWN).inc();
                            return;
                        }
                    },
                }
            }
            other => other,
        };
        match pushed {
            Pushed::Queued => {}
            Pushed::EvictedOldest(old) => {
                self.metrics.dropped_queue_full.inc();
                self.refuse(old, reason::QUEUE_FULL);
            }
            Pushed::Rejected(new) => {
                if self.queue.is_closed() {
                    self.metrics.dropped(reason::SHUTDOWN).inc();
                    self.refuse(new, "shutting_down");
                } else {
                    self.metrics.dropped_queue_full.inc();
                    self.refuse(new, reason::QUEUE_FULL);
                }
            }
        }
    }

    /// The queue's depth into the gauges, and when it became full (a burst
    /// ends with this; the publisher updates the gauges as it drains).
    fn note_depth(&self) {
        let len = self.queue.len();
        self.set_queue_gauges(len);
        if len >= self.queue.capacity() && !self.full_flag.swap(true, Ordering::AcqRel) {
            *self.full_since.lock() = Some(Instant::now());
        }
    }

    fn set_queue_gauges(&self, len: usize) {
        self.metrics.queue_depth.set(len as i64);
        self.metrics
            .queue_utilization
            .set(len as f64 / self.queue.capacity() as f64);
    }

    /// Data that will not reach the bus: nack it (`at_least_once`) and let
    /// a resend of the same id through.
    fn refuse(&self, item: Item, why: &str) {
        self.nack(item.ack, item.meta.id, why);
    }

    fn nack(&self, ack: Option<AckTo>, id: Option<Arc<str>>, why: &str) {
        if let (Some(ack), Some(id)) = (ack, id) {
            self.dedup.lock().forget(&id);
            ack.out
                .try_send(frame::encode(&Envelope::ack(&id, Some(why)), ack.encoding));
        }
    }

    async fn publish_loop(self: Arc<Self>) {
        let template = self.settings.data_subject.clone();
        let fixed: Option<Arc<str>> = template.is_static().then(|| Arc::from(template.as_str()));
        let mut buf: Vec<Item> = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            if self.queue.pop_many(&mut buf, PUBLISH_BATCH).await == 0 {
                break;
            }
            let len = self.queue.len();
            self.set_queue_gauges(len);
            if len < self.queue.capacity() && self.full_flag.swap(false, Ordering::AcqRel) {
                *self.full_since.lock() = None;
            }
            for item in buf.drain(..) {
                let subject: Arc<str> = match &fixed {
                    Some(s) => s.clone(),
                    None => Arc::from(template.render_bytes(&item.payload)),
                };
                self.publish_one(subject, item).await;
            }
        }
        self.publisher_done.cancel();
    }

    async fn publish_one(&self, subject: Arc<str>, item: Item) {
        let Item { payload, meta, ack } = item;
        // The message moves to the bus; an ack or nack needs only the id.
        let id = ack.as_ref().and(meta.id.clone());
        let msg = Message {
            subject,
            payload,
            meta,
            reply: None,
        };
        // Most messages go without waiting and without a copy kept for a
        // retry; the rest wait for room, and failures retry with backoff.
        let result = match self.ctx.bus.try_publish_message(msg) {
            Ok(result) => result,
            Err(msg) => match self.ctx.bus.publish_message(msg.clone()).await {
                Ok(()) => Ok(()),
                Err(e @ BusError::InvalidSubject(_)) => Err(e),
                Err(e) => {
                    self.metrics.error(error_type::PUBLISH).inc();
                    tracing::warn!(component = %self.ctx.name, subject = %msg.subject, error = %e, "publish failed; retrying with backoff");
                    self.ctx.bus.publish_retrying(msg, &self.flush_abort).await
                }
            },
        };
        match result {
            Ok(()) => {
                self.metrics.published.inc();
                if let (Some(ack), Some(id)) = (&ack, &id) {
                    ack.out
                        .try_send(frame::encode(&Envelope::ack(id, None), ack.encoding));
                }
            }
            Err(e) => {
                let why = if matches!(e, BusError::InvalidSubject(_)) {
                    "invalid_subject"
                } else {
                    reason::SHUTDOWN
                };
                self.metrics.dropped(why).inc();
                tracing::error!(component = %self.ctx.name, error = %e, reason = why, "data message lost");
                self.nack(ack, id, why);
            }
        }
    }

    /// Shutdown order: connections close (1001) and the client loop ends,
    /// then the queue closes and the publisher flushes it to the bus.
    async fn shutdown(self: Arc<Self>) {
        self.ctx.cancel.cancelled().await;
        self.conn_tracker.close();
        self.conn_tracker.wait().await;
        self.queue.close();
        tokio::select! {
            _ = self.publisher_done.cancelled() => {}
            _ = tokio::time::sleep(FLUSH_GRACE) => {
                tracing::warn!(component = %self.ctx.name, left = self.queue.len(), "bus did not take the queued data in time");
                self.flush_abort.cancel();
            }
        }
    }

    // ---- control path ---------------------------------------------------

    async fn on_request(self: &Arc<Self>, conn: &Arc<Conn>, env: Envelope, encoding: Encoding) {
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
                payload,
            };
            conn.out.send_envelope(&reply, encoding).await;
        });
    }

    /// Publish a peer's request on `<control>.request` and return the reply
    /// payload to send back.
    async fn forward(&self, req: &RequestPayload) -> Bytes {
        let subject = format!("{}.request", self.settings.control_subject);
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

    /// The `status` result (SPEC §3).
    fn status(&self) -> Value {
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
        })
    }

    /// Send an operator's request to the peer(s).
    async fn admin(self: &Arc<Self>, req: AdminRequest) -> Result<Value, AdminError> {
        if !self.settings.bidirectional.enabled {
            return Err(AdminError::NotSupported(
                "bidirectional control is disabled on this input".into(),
            ));
        }
        let conns: Vec<Arc<Conn>> = self.conns.lock().values().cloned().collect();
        let pick = |name: &str| {
            conns
                .iter()
                .find(|c| c.id == name)
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
    async fn control_send_loop(self: Arc<Self>, mut sub: Subscription) {
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

    // ---- health ---------------------------------------------------------

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
                details["url"] = json!(self.settings.client.as_ref().map(|c| &c.url));
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
                    "connected_at": c.connected_at,
                    "messages_received": c.received.load(Ordering::Relaxed),
                    "requests_in_flight": c.pending.in_flight(),
                })
            })
            .collect();
        let mut d = json!({
            "mode": self.settings.mode.as_str(),
            "delivery": match self.settings.delivery {
                Delivery::AtMostOnce => "at_most_once",
                Delivery::AtLeastOnce => "at_least_once",
            },
            "connections": conns,
        });
        if self.settings.mode == Mode::Client {
            d["state"] = json!(self.client.lock().state.as_str());
            d["url"] = json!(self.settings.client.as_ref().map(|c| &c.url));
        }
        d
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

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A v4 UUID from the thread-local RNG (no syscall per message, unlike
/// `Uuid::new_v4`'s OS randomness).
fn fast_uuid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queue_full_for_30s_is_unhealthy() {
        let (ctx, _bus, _metrics) = fednode_kit::testing::context("ws_in");
        let settings = config::parse(
            &json!({"mode": "server", "server": {"http_port": 0},
                    "ports": {"outputs": [{"name": "ws_data", "subject": "d"}]}}),
            "c",
        )
        .unwrap();
        let run = Running::new(ctx, Arc::new(settings));
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
