//! The state a started `websocket_input` shares between its tasks: the
//! connections, the queue between the sockets and the bus, and the client
//! status. The session, publish and control files add the behaviour; the
//! component file sits on top.

use fednode_kit::bus::Message;
use fednode_kit::envelope::Encoding;
use fednode_kit::queue::BoundedQueue;
use fednode_kit::Context;
use fednode_ws::config::Mode;
use fednode_ws::dedup::RecentIds;
use fednode_ws::frame::Outbound;
use fednode_ws::identity::{Identity, PeerInfo};
use fednode_ws::metrics::StateGauge;
use fednode_ws::pending::PendingRequests;
use fednode_ws::server::Gate;
use fednode_ws::state::ConnectionState;
use fednode_ws::throughput::RateMeter;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::metrics::InputMetrics;

/// Client-mode status for health and describe.
pub struct ClientStatus {
    pub state: ConnectionState,
    pub last_error: Option<String>,
    pub retry: u32,
}

/// A data message on its way to the bus (its subject rendered once, when
/// it arrives).
pub struct Item {
    pub msg: Message,
    /// `at_least_once`: where to send the ack once published.
    pub ack: Option<AckTo>,
}

impl Item {
    /// The id an ack or nack names: acknowledged data's own id (the
    /// message moves to the bus; the answer needs only this).
    pub fn acked_id(&self) -> Option<Arc<str>> {
        self.ack.as_ref().and(self.msg.meta.id.clone())
    }
}

pub struct AckTo {
    pub out: Outbound,
    pub encoding: Encoding,
    /// The peer takes one ack frame for many envelopes.
    pub batch: bool,
}

/// One open connection.
pub struct Conn {
    pub id: String,
    pub remote: String,
    /// Who the peer said it is on the handshake.
    pub peer: PeerInfo,
    /// Ack every data envelope with an id: the peer asked for it, or this
    /// input's own `delivery` is `at_least_once`.
    pub acks: bool,
    pub out: Outbound,
    pub pending: PendingRequests,
    pub connected_at: i64,
    pub received: AtomicU64,
    /// Requests from this peer being forwarded to the bus now.
    pub forwarding: AtomicUsize,
    /// The peer speaks MessagePack: send our requests that way too.
    pub msgpack: AtomicBool,
    /// The peer sends plain JSON, not envelopes: `ws_downstream` data goes
    /// to it as plain JSON too.
    pub plain: AtomicBool,
    /// When data last arrived (ms since the epoch; 0: never).
    pub last_seen: AtomicI64,
    /// Data rate of this connection.
    pub meter: RateMeter,
    /// `auth_message`: the relay's session, once its first message passed.
    pub session: OnceLock<RelaySession>,
    /// The keys (users) whose `ws_downstream` data goes to this connection.
    pub keys: Mutex<HashSet<Arc<str>>>,
    /// The key of the last data message, so routing is updated only when it
    /// changes.
    pub last_key: Mutex<Option<Arc<str>>>,
    /// `ws_downstream` data sent to this peer.
    pub sent_down: AtomicU64,
    /// Server mode: what the peer (a fednode node) last said of itself.
    pub peer_status: Mutex<PeerStatus>,
}

/// A fednode peer's last answer to `status`, and whether the last ask
/// failed (server mode, `peer_status_interval`).
#[derive(Default)]
pub struct PeerStatus {
    /// The figures of the last good answer, with `updated_at`.
    pub last: Option<serde_json::Value>,
    /// Why the latest ask got no answer (cleared by the next good one).
    pub error: Option<String>,
}

/// A relay that authenticated with its first message.
pub struct RelaySession {
    pub user_id: Arc<str>,
    pub session_id: String,
    pub device_info: serde_json::Value,
    /// ms since the epoch.
    pub started_at: i64,
}

impl Conn {
    pub fn encoding(&self) -> Encoding {
        if self.msgpack.load(Ordering::Relaxed) {
            Encoding::Msgpack
        } else {
            Encoding::Json
        }
    }
}

/// The `ws_control` port's subject, else this node's own.
pub fn control_subject(ctx: &Context, settings: &Settings) -> String {
    settings
        .control_subject
        .clone()
        .unwrap_or_else(|| fednode_kit::subject::default_control_subject(&ctx.node.id, &ctx.name))
}

/// Everything a started component shares between its tasks.
pub struct Running {
    pub ctx: Context,
    pub settings: Arc<Settings>,
    pub metrics: InputMetrics,
    pub state_gauge: Option<StateGauge>,
    pub queue: BoundedQueue<Item>,
    /// Data in the queue or taken from it by the publisher, not yet on the
    /// bus. While there is any, new data queues behind it; with none, data
    /// the bus takes at once goes there straight from the connection.
    pub backlog: AtomicUsize,
    /// `ws_data` when it has no placeholders.
    pub fixed_subject: Option<Arc<str>>,
    pub meter: RateMeter,
    pub conns: Mutex<BTreeMap<String, Arc<Conn>>>,
    pub conn_seq: AtomicU64,
    pub client: Mutex<ClientStatus>,
    pub dedup: Mutex<RecentIds>,
    pub last_received_id: Mutex<Option<Arc<str>>>,
    pub full_flag: AtomicBool,
    pub full_since: Mutex<Option<Instant>>,
    /// Connection tasks (and the client loop): shutdown waits for them
    /// before closing the queue.
    pub conn_tracker: TaskTracker,
    /// Fires when shutdown gives up flushing to the bus.
    pub flush_abort: CancellationToken,
    pub publisher_done: CancellationToken,
    pub ws_config: WebSocketConfig,
    pub gate: Option<Gate>,
    /// What this input announces on every handshake.
    pub identity: Identity,
    /// Prefix of `<control>.request` / `<control>.send`.
    pub control_subject: String,
    /// `server.tls` and `client.tls`.
    pub tls: fednode_ws::tls::EndpointTls,
    /// Where `ws_downstream` data for a key goes: the connection that last
    /// sent data with it, or was bound to it by `auth_message`.
    pub routes: Mutex<HashMap<Arc<str>, Arc<Conn>>>,
    /// Client mode with a `data_dir`: where a replay resumes after a
    /// restart.
    pub resume: Option<crate::resume::ResumePoint>,
}

/// The most keys routed at once; beyond it new keys are not remembered
/// (their `ws_downstream` data counts as `no_route`).
pub const MAX_ROUTES: usize = 100_000;

impl Running {
    pub fn new(ctx: Context, settings: Arc<Settings>, tls: fednode_ws::tls::EndpointTls) -> Self {
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
        let resume = (settings.mode == Mode::Client)
            .then(|| crate::resume::ResumePoint::new(ctx.node.data_dir.as_deref(), &ctx.name))
            .flatten();
        let gate = settings
            .server
            .as_ref()
            .map(|s| Gate::new(settings.credential.clone(), s.max_connections));
        Running {
            queue: BoundedQueue::new(settings.backpressure.queue_size, settings.queue_policy())
                .with_max_bytes(settings.backpressure.queue_bytes, |item: &Item| {
                    item.msg.payload.len()
                }),
            backlog: AtomicUsize::new(0),
            fixed_subject: settings
                .data_subject
                .is_static()
                .then(|| Arc::from(settings.data_subject.as_str())),
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
            last_received_id: Mutex::new(resume.as_ref().and_then(|r| r.load())),
            resume,
            full_flag: AtomicBool::new(false),
            full_since: Mutex::new(None),
            conn_tracker: TaskTracker::new(),
            flush_abort: CancellationToken::new(),
            publisher_done: CancellationToken::new(),
            ws_config,
            gate,
            control_subject: control_subject(&ctx, &settings),
            tls,
            routes: Mutex::new(HashMap::new()),
            identity: Identity {
                node: Some(ctx.node.id.as_str().into()),
                region: ctx.node.region.as_deref().map(Arc::from),
                wants_acks: false,
                batch_acks: false,
            },
            ctx,
            settings,
        }
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
