//! The component: [`WebSocketOutput`] (what `build` returns): start (bind
//! or connect, subscribe, spawn the fan-out), health, the `/components`
//! detail, admin requests and the buffer.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use fednode_kit::component::Listen;
use fednode_kit::config::PortsConfig;
use fednode_kit::queue::OnFull;
use fednode_kit::{
    AdminError, AdminRequest, Component, Context, Health, Overflow, StartError, SubscribeOptions,
};
use fednode_ws::server::Gate;
use fednode_ws::state::ConnectionState;
use fednode_ws::throughput::RateMeter;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::buffer::ReplayBuffer;
use crate::config::{Settings, PORT_UPSTREAM};
use crate::conn::Conn;
use crate::fanout::{self, Source};
use crate::metrics::OutputMetrics;
use crate::shared::Shared;
use crate::spool::Spool;
use crate::{client, server};
use fednode_ws::config::{Delivery, Mode};
use fednode_ws::identity::Identity;

/// A `websocket` output, built and possibly started.
pub struct WebSocketOutput {
    settings: Settings,
    running: OnceLock<Arc<Shared>>,
    local_addr: Mutex<Option<SocketAddr>>,
}

impl WebSocketOutput {
    pub fn new(settings: Settings) -> Self {
        WebSocketOutput {
            settings,
            running: OnceLock::new(),
            local_addr: Mutex::new(None),
        }
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Server mode: the bound address once started (tests bind port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.lock()
    }

    fn ws_config(&self) -> WebSocketConfig {
        let max = self.settings.max_message_bytes;
        let mut c = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        if let Some(s) = &self.settings.server {
            c = c
                .read_buffer_size(s.read_buffer_size)
                .write_buffer_size(s.write_buffer_size);
        }
        c
    }
}

#[async_trait]
impl Component for WebSocketOutput {
    fn ports(&self) -> &PortsConfig {
        &self.settings.ports
    }

    fn listens(&self) -> Vec<Listen> {
        self.settings.listen.into_iter().collect()
    }

    fn reread_certificates(&self) -> Result<(), String> {
        self.running.get().map_or(Ok(()), |sh| sh.tls.reread())
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let s = self.settings.clone();
        // Bind first: nothing else is worth doing when the port is taken.
        let listener = match (s.mode, &s.server) {
            (Mode::Server, Some(srv)) => {
                let l = fednode_ws::server::bind(&srv.bind, srv.http_port).await?;
                *self.local_addr.lock() = l.local_addr().ok();
                Some(l)
            }
            _ => None,
        };
        // Under `block` nothing may be lost on the way in either: the bus
        // then waits for the fan-out (memory bus), which waits for the
        // slowest peer. Otherwise a slow fan-out drops and counts.
        //
        // The fan-out only moves messages into the peers' queues, so the
        // subscription needs no more room than one peer's queue. A deeper
        // one (the bus default is 65,536) only fills under load, and then
        // costs cache misses and page faults: with it, relay_bench's RSS
        // swung between 28 and 55 MB as pages were returned and faulted
        // back; with 1,000 slots it stays flat.
        //
        // With a store the fan-out only appends to it, and the store is
        // where `on_full` applies: the subscription always waits.
        let opts = SubscribeOptions {
            overflow: if s.on_full == OnFull::Block || s.store.is_some() {
                Overflow::Block
            } else {
                Overflow::Drop
            },
            capacity: s.backpressure.queue_size.max(fanout::BATCH * 4),
            ..SubscribeOptions::default()
        };
        let subs = ctx
            .bus
            .subscribe_all(&s.ports.input_subjects(), &opts)
            .await?;
        let tls = fednode_ws::tls::EndpointTls::load(
            &ctx.name,
            s.server.as_ref().and_then(|v| v.tls.as_ref()),
            s.client.as_ref().and_then(|v| v.tls.as_ref()),
        )?;
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let metrics = OutputMetrics::new(&ctx.metrics, s.mode == Mode::Client);
        let spool = match &s.store {
            Some(cfg) => Some(Spool::open(
                &ctx.name,
                cfg,
                s.mode == Mode::Server,
                s.on_full == OnFull::Block,
                &metrics,
                &ctx.tracker,
                &ctx.cancel,
            )?),
            None => None,
        };
        let shared = Arc::new(Shared {
            name: ctx.name.clone(),
            node: ctx.node.clone(),
            bus: ctx.bus.clone(),
            cancel: ctx.cancel.clone(),
            tracker: ctx.tracker.clone(),
            buffer: ReplayBuffer::new(s.buffer_size, s.buffer_max_bytes),
            conns: ArcSwap::from_pointee(Vec::new()),
            conns_edit: Mutex::new(()),
            next_conn: AtomicU64::new(0),
            throughput: RateMeter::new(),
            started: Instant::now(),
            connections_total: AtomicU64::new(0),
            cmds: cmd_tx,
            upstream: s.ports.output(PORT_UPSTREAM),
            gate: (s.mode == Mode::Server).then(|| {
                Gate::new(
                    s.credential.clone(),
                    s.server.as_ref().map_or(100, |v| v.max_connections),
                )
            }),
            ws_config: self.ws_config(),
            client_state: Mutex::new((ConnectionState::Init, None)),
            identity: Identity {
                node: Some(ctx.node.id.as_str().into()),
                region: ctx.node.region.as_deref().map(Arc::from),
                wants_acks: s.delivery == Delivery::AtLeastOnce,
                batch_acks: true,
            },
            spool,
            metrics,
            tls: tls.clone(),
            s,
        });
        if self.running.set(shared.clone()).is_err() {
            return Err(StartError::new("already started"));
        }

        ctx.tracker
            .spawn(fanout::run(shared.clone(), Source::new(subs), cmd_rx));
        ctx.tracker.spawn(gauges(shared.clone()));
        match listener {
            Some(l) => {
                if let Ok(addr) = l.local_addr() {
                    tracing::info!(component = %ctx.name, %addr,
                        path = %shared.s.server.as_ref().map_or("/", |v| v.path.as_str()), "websocket output listening");
                }
                let router = server::router(shared.clone());
                let timeout = shared
                    .s
                    .server
                    .as_ref()
                    .map_or_else(fednode_ws::config::default_handshake_timeout, |v| {
                        v.handshake_timeout
                    });
                ctx.tracker.spawn(fednode_ws::server::serve(
                    l,
                    router,
                    timeout,
                    tls.acceptor.clone(),
                    ctx.cancel.clone(),
                    "websocket output server",
                ));
            }
            None => {
                let conn = shared.open_conn(None, None);
                if let Some(sp) = &shared.spool {
                    ctx.tracker
                        .spawn(feed(sp.clone(), conn.clone(), ctx.cancel.clone()));
                }
                ctx.tracker.spawn(client::run(shared.clone(), conn));
            }
        }
        Ok(())
    }

    fn health(&self) -> Health {
        let Some(sh) = self.running.get() else {
            return Health::ok("init", json!({"mode": self.settings.mode.as_str()}));
        };
        let mut details = json!({
            "mode": sh.s.mode.as_str(),
            "connections": {"active": sh.active(), "total": sh.connections_total.load(Ordering::Relaxed)},
            "queue_depth": sh.queue_depth(),
            "throughput": {"messages_per_second": sh.throughput.current(), "average_1m": sh.throughput.average_1m()},
        });
        if let Some(sp) = &sh.spool {
            details["store"] = sp.describe();
        }
        let fallen_back: Vec<String> = sh
            .conns()
            .iter()
            .filter(|c| c.ack_fallback())
            .map(|c| c.id.clone())
            .collect();
        if !fallen_back.is_empty() {
            // Peers that acknowledge nothing get data at most once.
            details["not_acking"] = json!(fallen_back);
        }
        if sh.spool.as_ref().is_some_and(|sp| sp.failed()) {
            // Nothing more can be stored: data would be lost.
            return Health::failing("store_failed", details);
        }
        match sh.s.mode {
            Mode::Server if sh.active() == 0 => Health::ok("idle", details),
            Mode::Server => Health::ok("serving", details),
            Mode::Client => {
                let (state, error) = sh.client_state.lock().clone();
                let mut details = details;
                details["url"] = json!(sh.s.client.as_ref().map(|c| c.display()));
                details["last_error"] = json!(error);
                match state {
                    ConnectionState::Failed => Health::failing(state.as_str(), details),
                    other => Health::ok(other.as_str(), details),
                }
            }
        }
    }

    fn describe(&self) -> Value {
        let Some(sh) = self.running.get() else {
            return json!({"mode": self.settings.mode.as_str(), "connections": []});
        };
        let mut v = json!({
            "mode": sh.s.mode.as_str(),
            "connections": sh.conns().iter().map(|c| c.describe()).collect::<Vec<_>>(),
            "buffer": {"size": sh.buffer.len(), "capacity": sh.s.buffer_size,
                "bytes": sh.buffer.bytes(), "max_bytes": sh.s.buffer_max_bytes},
            "encoding": sh.s.encoding,
            "delivery": sh.s.delivery,
        });
        if let Some(sp) = &sh.spool {
            v["store"] = sp.describe();
        }
        match sh.s.mode {
            Mode::Server => {
                v["listen"] = json!(self.local_addr().map(|a| a.to_string()));
                v["path"] = json!(sh.s.server.as_ref().map(|s| s.path.clone()));
            }
            Mode::Client => {
                let (state, error) = sh.client_state.lock().clone();
                v["url"] = json!(sh.s.client.as_ref().map(|c| c.display()));
                v["connection_state"] = json!(state.as_str());
                v["last_error"] = json!(error);
            }
        }
        v
    }

    async fn admin_request(&self, req: AdminRequest) -> Result<Value, AdminError> {
        let sh = self
            .running
            .get()
            .ok_or_else(|| AdminError::Unavailable("the component is not running".into()))?;
        if !sh.s.bidirectional.enabled {
            return Err(AdminError::Unavailable(
                "bidirectional.enabled is false: this component sends no requests".into(),
            ));
        }
        if !req.params.is_object() {
            return Err(AdminError::BadRequest("params must be an object".into()));
        }
        let ask = |conn: Arc<Conn>| {
            let (method, params, enc) = (req.method.clone(), req.params.clone(), sh.s.encoding);
            async move {
                match conn.outbound() {
                    Some(out) => conn
                        .pending
                        .request(&out, &method, params, enc)
                        .await
                        .to_value(),
                    None => fednode_kit::ReplyPayload::error(
                        fednode_kit::ErrorCode::Unavailable,
                        "the connection is closed",
                    )
                    .to_value(),
                }
            }
        };
        match (sh.s.mode, &req.connection) {
            (Mode::Client, named) => {
                let conn = sh
                    .conns()
                    .first()
                    .cloned()
                    .expect("client mode has its connection");
                if named.as_deref().is_some_and(|n| n != conn.id) {
                    return Err(AdminError::NotFound(format!(
                        "no connection {:?}: in client mode the only connection is \"hub\"",
                        named.as_deref().unwrap_or_default()
                    )));
                }
                if conn.outbound().is_none() {
                    return Err(AdminError::Unavailable(format!(
                        "not connected to {} ({})",
                        sh.s.client.as_ref().map_or(String::new(), |c| c.display()),
                        sh.client_state.lock().0
                    )));
                }
                Ok(ask(conn).await)
            }
            (Mode::Server, Some(id)) => {
                let conn = sh
                    .find(id)
                    .ok_or_else(|| AdminError::NotFound(format!("no connection {id:?}")))?;
                Ok(ask(conn).await)
            }
            (Mode::Server, None) => {
                let conns = sh.conns();
                let replies = futures::future::join_all(conns.iter().map(|c| {
                    let id = c.id.clone();
                    let f = ask(c.clone());
                    async move { (id, f.await) }
                }))
                .await;
                Ok(json!({"replies": replies.into_iter().collect::<serde_json::Map<_, _>>()}))
            }
        }
    }

    async fn buffer(
        &self,
        count: Option<usize>,
        start_time: Option<i64>,
    ) -> Result<Value, AdminError> {
        let sh = self
            .running
            .get()
            .ok_or_else(|| AdminError::Unavailable("the component is not running".into()))?;
        let items = sh.buffer.snapshot(count, start_time);
        Ok(json!({"messages": items.iter().map(|i| i.to_json()).collect::<Vec<_>>()}))
    }
}

/// Store and forward: move what the store holds into the hub connection's
/// queue, in order, waiting for room, until the component stops.
async fn feed(spool: Arc<Spool>, conn: Arc<Conn>, cancel: tokio_util::sync::CancellationToken) {
    while let Some(items) = spool.take(&cancel).await {
        for item in items {
            if !conn.feed(item, &cancel).await {
                return;
            }
        }
    }
}

/// Keep the summed gauges current (they are cheap to compute, but not per
/// message).
async fn gauges(sh: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = sh.cancel.cancelled() => break,
            _ = tick.tick() => {
                let conns = sh.conns();
                sh.metrics.queue_depth.set(conns.iter().map(|c| c.depth() as i64).sum());
                sh.metrics.in_flight.set(conns.iter().map(|c| c.in_flight_len() as i64).sum());
            }
        }
    }
}
