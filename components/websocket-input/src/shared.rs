//! The state a started `websocket_input` shares between its tasks: the
//! connections, the queue between the sockets and the bus, and the client
//! status. The session, publish and control files add the behaviour; the
//! component file sits on top.

use bytes::Bytes;
use fednode_kit::bus::Meta;
use fednode_kit::envelope::Encoding;
use fednode_kit::queue::BoundedQueue;
use fednode_kit::Context;
use fednode_ws::config::Mode;
use fednode_ws::dedup::RecentIds;
use fednode_ws::frame::Outbound;
use fednode_ws::metrics::StateGauge;
use fednode_ws::pending::PendingRequests;
use fednode_ws::server::Gate;
use fednode_ws::state::ConnectionState;
use fednode_ws::throughput::RateMeter;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::metrics::InputMetrics;

/// Client-mode status for health and describe.
pub(crate) struct ClientStatus {
    pub(crate) state: ConnectionState,
    pub(crate) last_error: Option<String>,
    pub(crate) retry: u32,
}

/// A data payload on its way to the bus.
pub(crate) struct Item {
    pub(crate) payload: Bytes,
    pub(crate) meta: Meta,
    /// `at_least_once`: where to send the ack once published.
    pub(crate) ack: Option<AckTo>,
}

pub(crate) struct AckTo {
    pub(crate) out: Outbound,
    pub(crate) encoding: Encoding,
}

/// One open connection.
pub(crate) struct Conn {
    pub(crate) id: String,
    pub(crate) remote: String,
    pub(crate) out: Outbound,
    pub(crate) pending: PendingRequests,
    pub(crate) connected_at: i64,
    pub(crate) received: AtomicU64,
    /// Requests from this peer being forwarded to the bus now.
    pub(crate) forwarding: AtomicUsize,
    /// The peer speaks MessagePack: send our requests that way too.
    pub(crate) msgpack: AtomicBool,
}

impl Conn {
    pub(crate) fn encoding(&self) -> Encoding {
        if self.msgpack.load(Ordering::Relaxed) {
            Encoding::Msgpack
        } else {
            Encoding::Json
        }
    }
}

/// Everything a started component shares between its tasks.
pub(crate) struct Running {
    pub(crate) ctx: Context,
    pub(crate) settings: Arc<Settings>,
    pub(crate) metrics: InputMetrics,
    pub(crate) state_gauge: Option<StateGauge>,
    pub(crate) queue: BoundedQueue<Item>,
    pub(crate) meter: RateMeter,
    pub(crate) conns: Mutex<BTreeMap<String, Arc<Conn>>>,
    pub(crate) conn_seq: AtomicU64,
    pub(crate) client: Mutex<ClientStatus>,
    pub(crate) dedup: Mutex<RecentIds>,
    pub(crate) last_received_id: Mutex<Option<Arc<str>>>,
    pub(crate) full_flag: AtomicBool,
    pub(crate) full_since: Mutex<Option<Instant>>,
    /// Connection tasks (and the client loop): shutdown waits for them
    /// before closing the queue.
    pub(crate) conn_tracker: TaskTracker,
    /// Fires when shutdown gives up flushing to the bus.
    pub(crate) flush_abort: CancellationToken,
    pub(crate) publisher_done: CancellationToken,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) gate: Option<Gate>,
}

impl Running {
    pub(crate) fn new(ctx: Context, settings: Arc<Settings>) -> Self {
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
            queue: BoundedQueue::new(settings.backpressure.queue_size, settings.queue_policy()),
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
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
