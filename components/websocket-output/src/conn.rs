//! One peer connection's state: its own bounded queue, rate limit, filters,
//! announced capabilities, and the values its URL path bound it to. Nothing here is shared between connections,
//! which is what keeps a slow peer from slowing the others: the fan-out
//! hands each connection its share without waiting (only `on_full: block`
//! makes it wait for room, and then after every connection had its share).
//!
//! Besides the queue a connection has a *script*: frames that must be
//! written before anything still queued — a `replay` reply followed by the
//! replayed data, or (client mode, at-least-once) unacknowledged data to
//! resend after a reconnect. The writer always empties the script first.

use arc_swap::{ArcSwap, ArcSwapOption};
use fednode_kit::filter::Filter;
use fednode_kit::log::LogThrottle;
use fednode_kit::queue::{BoundedQueue, OnFull, Pushed};
use fednode_kit::Encoding;
use fednode_ws::throughput::RateMeter;
use governor::DefaultDirectRateLimiter;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use fednode_ws::frame::{Outbound, WsMessage};
use fednode_ws::identity::PeerInfo;
use fednode_ws::pending::PendingRequests;

use crate::inflight::{nack_is_retryable, AckLimits, Due, InFlight, Nacked};
use crate::item::Item;
use crate::metrics::OutputMetrics;
use crate::routing::{build_limiter, Binding, Limits, Routing};
use crate::spool::Spool;

/// What waits to be written to a peer.
pub(crate) enum Out {
    /// Live data.
    Data(Arc<Item>),
    /// Data replayed from the buffer (`"replay": true`).
    Replay(Arc<Item>),
    /// A frame that must keep its place among the data (a replay's reply).
    Frame(WsMessage),
}

impl Out {
    fn seq(&self) -> Option<u64> {
        match self {
            Out::Data(i) | Out::Replay(i) => Some(i.seq),
            Out::Frame(_) => None,
        }
    }

    /// What `backpressure.queue_bytes` counts: the payload (a frame's whole
    /// length).
    fn weight(&self) -> usize {
        match self {
            Out::Data(i) | Out::Replay(i) => i.payload.len(),
            Out::Frame(f) => f.len(),
        }
    }

    /// A connection's queue: `size` messages and `bytes` of payload at most.
    pub fn queue(size: usize, bytes: usize, on_full: OnFull) -> BoundedQueue<Out> {
        BoundedQueue::new(size, on_full).with_max_bytes(bytes, Out::weight)
    }
}

/// One peer.
pub(crate) struct Conn {
    pub id: String,
    pub remote: Option<SocketAddr>,
    pub connected_at: i64,
    /// How data frames are encoded for this peer.
    pub encoding: Encoding,
    pub queue: BoundedQueue<Out>,
    script: Mutex<VecDeque<Out>>,
    /// Signalled when the script gains frames.
    pub script_ready: Notify,
    /// The current session's writer (none between client reconnects).
    outbound: ArcSwapOption<Outbound>,
    /// Frames in the queue, the script or the pump's hands. While it is 0
    /// (and no rate limit applies) the fan-out hands live data straight to
    /// the writer, skipping the pump: one task hop less per message, and
    /// still in order, since nothing older is waiting anywhere.
    waiting: AtomicUsize,
    /// Whether that shortcut may be used at all (not with at-least-once,
    /// where the pump tracks what is in flight and keeps to
    /// `max_in_flight`, nor when fed from a store).
    direct: bool,
    /// Acknowledged delivery (`at_least_once`).
    acks: Option<AckLimits>,
    /// The pump waits for an ack to free room under `max_in_flight`.
    room_wanted: AtomicBool,
    /// Requests this node sent to the peer, waiting for replies.
    pub pending: PendingRequests,
    pub routing: ArcSwap<Routing>,
    routing_edit: Mutex<()>,
    next_subscription: AtomicU64,
    limits: Mutex<Limits>,
    pub limiter: ArcSwapOption<DefaultDirectRateLimiter>,
    /// Signalled when the limiter is swapped.
    pub limit_changed: Notify,
    capabilities: Mutex<Option<Value>>,
    /// Data frames written to this peer.
    pub meter: RateMeter,
    pub sent: AtomicU64,
    /// Replays waiting for the fan-out task (bounded by
    /// `max_concurrent_requests`).
    pub replays_pending: AtomicUsize,
    /// Acknowledged delivery: data written and not yet acknowledged.
    in_flight: Mutex<InFlight>,
    /// Signalled when an ack frees room under `max_in_flight`.
    pub in_flight_changed: Notify,
    /// Signalled when a nack makes data due sooner than the ack timeout.
    pub resend_soon: Notify,
    /// The peer of the current session, as it announced itself.
    peer: Mutex<PeerInfo>,
    /// The peer of this session acknowledged nothing within the ack
    /// timeout and is not a fednode node: data goes at most once.
    ack_fallback: AtomicBool,
    /// Store and forward: the log this connection is fed from, told when
    /// a message is done with.
    spool: std::sync::OnceLock<Arc<Spool>>,
    /// Bad frames from this peer are logged at most once per second.
    error_log: Mutex<LogThrottle>,
}

impl Conn {
    pub fn new(
        id: String,
        remote: Option<SocketAddr>,
        encoding: Encoding,
        queue: BoundedQueue<Out>,
        pending: PendingRequests,
        direct: bool,
    ) -> Self {
        Conn {
            id,
            remote,
            connected_at: fednode_kit::envelope::now_millis(),
            encoding,
            queue,
            script: Mutex::new(VecDeque::new()),
            script_ready: Notify::new(),
            outbound: ArcSwapOption::empty(),
            waiting: AtomicUsize::new(0),
            direct,
            acks: None,
            room_wanted: AtomicBool::new(false),
            pending,
            routing: ArcSwap::from_pointee(Routing::default()),
            routing_edit: Mutex::new(()),
            next_subscription: AtomicU64::new(1),
            limits: Mutex::new(Limits::default()),
            limiter: ArcSwapOption::empty(),
            limit_changed: Notify::new(),
            capabilities: Mutex::new(None),
            meter: RateMeter::new(),
            sent: AtomicU64::new(0),
            replays_pending: AtomicUsize::new(0),
            in_flight: Mutex::new(InFlight::default()),
            in_flight_changed: Notify::new(),
            resend_soon: Notify::new(),
            peer: Mutex::new(PeerInfo::default()),
            ack_fallback: AtomicBool::new(false),
            spool: std::sync::OnceLock::new(),
            error_log: Mutex::new(LogThrottle::default()),
        }
    }

    /// Bind the connection to the values of its URL path's placeholders:
    /// a routing condition no request removes.
    pub fn with_binding(self, bound: Option<Binding>) -> Self {
        self.routing.store(Arc::new(Routing {
            bound: bound.map(Arc::new),
            ..Routing::default()
        }));
        self
    }

    /// The values the connection's URL path bound it to, if any.
    pub fn binding(&self) -> Option<Arc<Binding>> {
        self.routing.load().bound.clone()
    }

    /// Track every data frame until the peer acks it.
    pub fn with_acks(mut self, acks: Option<AckLimits>) -> Self {
        if let Some(limits) = &acks {
            *self.in_flight.get_mut() = InFlight::new(limits.nack_backoff);
        }
        self.acks = acks;
        self
    }

    /// The ack limits in force: none at most once, or once the peer was
    /// found not to ack.
    pub fn tracking(&self) -> Option<AckLimits> {
        self.acks.filter(|_| !self.ack_fallback())
    }

    /// Room under `max_in_flight` (unbounded at most once).
    pub fn in_flight_room(&self) -> usize {
        match self.tracking() {
            Some(a) => a.max_in_flight.saturating_sub(self.in_flight_len()),
            None => usize::MAX,
        }
    }

    /// The pump is about to wait for room: the next ack wakes it.
    pub fn want_room(&self) {
        self.room_wanted.store(true, Ordering::Release);
    }

    // ---- data path ------------------------------------------------------

    /// Hand over this connection's share of a fan-out batch, in order and
    /// without waiting: straight to the writer while nothing waits for this
    /// connection (as much as the writer's queue has room for), the rest
    /// into the connection's queue. The writer and the pump are woken once
    /// each, for the whole batch. `items` is left empty; `frames` is the
    /// caller's buffer for the frames built on the way (left empty too).
    ///
    /// What the queue has no room for under `block` is left in `rest`, in
    /// order: the fan-out waits with it ([`push_waiting`](Self::push_waiting))
    /// once every connection has had its share.
    pub fn hand_over(
        &self,
        items: &mut Vec<Arc<Item>>,
        frames: &mut VecDeque<WsMessage>,
        rest: &mut VecDeque<Out>,
        metrics: &OutputMetrics,
    ) {
        let mut handed = 0;
        if self.direct && self.waiting.load(Ordering::Acquire) == 0 && self.limiter.load().is_none()
        {
            if let Some(out) = self.outbound.load().as_ref() {
                // Frames are built only for the room there is: an unshared
                // frame that did not fit would be built again by the pump.
                let n = out.room().min(items.len());
                if n > 0 {
                    frames.extend(items[..n].iter().map(|i| i.message(self.encoding, false)));
                    out.offer_many(frames);
                    handed = n - frames.len();
                    frames.clear();
                }
            }
        }
        if handed > 0 {
            metrics.sent.inc_by(handed as u64);
            self.sent.fetch_add(handed as u64, Ordering::Relaxed);
            self.meter.record(handed as u64);
        }
        if handed == items.len() {
            items.clear();
            return;
        }
        rest.extend(items.drain(..).skip(handed).map(Out::Data));
        let offered = rest.len();
        self.waiting.fetch_add(offered, Ordering::AcqRel);
        let mut evicted = Vec::new();
        self.queue.try_push_many_quiet(rest, &mut evicted);
        if rest.len() < offered {
            self.queue.wake();
        }
        let mut dropped = evicted.len();
        if self.queue.policy() != OnFull::Block || self.queue.is_closed() {
            dropped += rest.len();
            rest.clear();
        }
        self.lose(dropped, metrics);
    }

    /// Queue what [`hand_over`](Self::hand_over) left in `rest`, in order,
    /// waiting for room, but not past `cancel` (then what is left is
    /// dropped and counted).
    pub async fn push_waiting(
        &self,
        rest: &mut VecDeque<Out>,
        metrics: &OutputMetrics,
        cancel: &CancellationToken,
    ) {
        while let Some(out) = rest.pop_front() {
            let queued = tokio::select! {
                r = self.queue.push(out) => matches!(r, Pushed::Queued),
                _ = cancel.cancelled() => false,
            };
            if !queued {
                self.lose(1, metrics);
            }
        }
    }

    /// `n` live messages that were counted as waiting did not find room:
    /// dropped, and counted as such.
    fn lose(&self, n: usize, metrics: &OutputMetrics) {
        if n > 0 {
            self.waiting.fetch_sub(n, Ordering::AcqRel);
            metrics.dropped_queue_full.inc_by(n as u64);
        }
    }

    /// Move up to `max` scripted frames into `buf`.
    pub fn take_script(&self, buf: &mut Vec<Out>, max: usize) -> usize {
        let mut s = self.script.lock();
        let n = s.len().min(max);
        buf.extend(s.drain(..n));
        n
    }

    /// Data waiting for this peer (queue and script).
    pub fn depth(&self) -> usize {
        self.queue.len()
            + self
                .script
                .lock()
                .iter()
                .filter(|o| !matches!(o, Out::Frame(_)))
                .count()
    }

    /// Install a replay (fan-out task, so nothing newer than `selected` has
    /// been queued yet): the reply first, then the selection and whatever
    /// was still waiting, merged in arrival order. Waiting data that is part
    /// of the selection is sent once, as replayed data.
    pub fn install_replay(&self, reply: WsMessage, selected: Vec<Arc<Item>>) {
        let mut script = self.script.lock();
        let pending = self.queue.take_all();
        let before = script.len() + pending.len();
        let chosen: HashSet<u64> = selected.iter().map(|i| i.seq).collect();
        let mut frames = Vec::new();
        let mut data: Vec<Out> = selected.into_iter().map(Out::Replay).collect();
        for out in script.drain(..).chain(pending) {
            match out.seq() {
                None => frames.push(out),
                Some(seq) if chosen.contains(&seq) => {}
                Some(_) => data.push(out),
            }
        }
        data.sort_by_key(|o| o.seq());
        script.extend(frames);
        script.push_back(Out::Frame(reply));
        script.extend(data);
        self.adjust_waiting(before, script.len());
        drop(script);
        self.script_ready.notify_one();
    }

    fn adjust_waiting(&self, before: usize, after: usize) {
        if after > before {
            self.waiting.fetch_add(after - before, Ordering::AcqRel);
        } else {
            self.waiting.fetch_sub(before - after, Ordering::AcqRel);
        }
    }

    /// The pump handed `n` frames to the writer.
    pub fn forwarded(&self, n: usize) {
        if n > 0 {
            self.waiting.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Put all unacknowledged data back in front of everything (after a
    /// reconnect). Returns how many.
    pub fn resend_all(&self) -> usize {
        let items = self.in_flight.lock().take_all(Instant::now());
        let n = items.len();
        self.requeue(items);
        n
    }

    /// Put what fell due (late acks, nack retries) back in front of
    /// everything, in the order first sent.
    pub fn resend_due(&self, now: Instant) -> Due {
        let due = self.in_flight.lock().take_due(now);
        self.requeue(due.items.clone());
        due
    }

    fn requeue(&self, items: Vec<Arc<Item>>) {
        if !items.is_empty() {
            let mut script = self.script.lock();
            let before = script.len();
            let resend: HashSet<u64> = items.iter().map(|i| i.seq).collect();
            script.retain(|o| o.seq().is_none_or(|s| !resend.contains(&s)));
            for item in items.into_iter().rev() {
                script.push_front(Out::Data(item));
            }
            self.adjust_waiting(before, script.len());
            drop(script);
            self.script_ready.notify_one();
        }
    }

    // ---- the session's writer ------------------------------------------------

    pub fn set_outbound(&self, out: Option<Outbound>) {
        self.outbound.store(out.map(Arc::new));
    }

    pub fn outbound(&self) -> Option<Outbound> {
        self.outbound.load().as_deref().cloned()
    }

    /// Put frames back in front of the script (a session ended while they
    /// were on their way).
    pub fn unshift_script(&self, items: Vec<Out>) {
        if items.is_empty() {
            return;
        }
        let mut script = self.script.lock();
        for o in items.into_iter().rev() {
            script.push_front(o);
        }
        drop(script);
        self.script_ready.notify_one();
    }

    // ---- at-least-once ------------------------------------------------------

    /// `item` was written; it is due again at `due` unless acknowledged.
    pub fn track_in_flight(&self, item: &Arc<Item>, due: Instant) {
        self.in_flight.lock().track(item, due);
    }

    /// The data of `batch` is about to be written: each is due again at
    /// `due` unless acknowledged (one lock for the batch).
    pub fn track_batch(&self, batch: &[Out], due: Instant) {
        let mut book = self.in_flight.lock();
        for o in batch {
            if let Out::Data(item) | Out::Replay(item) = o {
                book.track(item, due);
            }
        }
    }

    /// Feed this connection from `spool`.
    pub fn set_spool(&self, spool: Arc<Spool>) {
        let _ = self.spool.set(spool);
    }

    /// A message from the store is done with (acked, refused for good, or
    /// written at most once).
    pub fn done_with(&self, seq: u64) {
        if let Some(sp) = self.spool.get() {
            sp.release(seq);
        }
    }

    /// Queue a message read from the store, waiting for room; false when
    /// the queue closed or `cancel` fired first.
    pub async fn feed(&self, item: Arc<Item>, cancel: &CancellationToken) -> bool {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let queued = tokio::select! {
            r = self.queue.push(Out::Data(item)) => matches!(r, Pushed::Queued),
            _ = cancel.cancelled() => false,
        };
        if !queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        queued
    }

    /// An ack for `ids` (one, or a batch): how many of them freed data in
    /// flight.
    pub fn ack<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> usize {
        let mut freed = Vec::new();
        {
            let mut book = self.in_flight.lock();
            freed.extend(ids.into_iter().filter_map(|id| book.ack(id)));
        }
        if !freed.is_empty() && self.room_wanted.swap(false, Ordering::AcqRel) {
            self.in_flight_changed.notify_one();
        }
        for item in &freed {
            self.done_with(item.seq);
        }
        freed.len()
    }

    /// A nack for `id` with `reason`.
    pub fn nack(&self, id: &str, reason: &str) -> Nacked {
        let mut book = self.in_flight.lock();
        if nack_is_retryable(reason) {
            if !book.retry_later(id, Instant::now()) {
                return Nacked::Unknown;
            }
            drop(book);
            self.resend_soon.notify_one();
            return Nacked::Retry;
        }
        let Some(item) = book.refuse(id) else {
            return Nacked::Unknown;
        };
        drop(book);
        self.in_flight_changed.notify_one();
        self.done_with(item.seq);
        Nacked::Lost
    }

    /// When the next unacknowledged item falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.in_flight.lock().next_due()
    }

    pub fn in_flight_len(&self) -> usize {
        self.in_flight.lock().len()
    }

    /// A session began with `peer`.
    pub fn begin_session(&self, peer: PeerInfo) {
        *self.peer.lock() = peer;
        self.in_flight.lock().new_session();
        self.ack_fallback.store(false, Ordering::Release);
    }

    pub fn peer(&self) -> PeerInfo {
        self.peer.lock().clone()
    }

    /// Whether the peer acked or nacked anything this session.
    pub fn peer_acked(&self) -> bool {
        self.in_flight.lock().heard()
    }

    /// Stop waiting for acks from this session's peer; what was in flight
    /// counts as sent. Returns how many were in flight.
    pub fn fall_back_to_at_most_once(&self) -> usize {
        self.ack_fallback.store(true, Ordering::Release);
        let seqs = self.in_flight.lock().clear();
        self.in_flight_changed.notify_one();
        for &seq in &seqs {
            self.done_with(seq);
        }
        seqs.len()
    }

    pub fn ack_fallback(&self) -> bool {
        self.ack_fallback.load(Ordering::Acquire)
    }

    // ---- routing and limits -------------------------------------------------

    /// Subscriptions held now.
    pub fn subscription_count(&self) -> usize {
        self.routing.load().subscriptions.len()
    }

    /// Add a subscription unless `max` are held; returns its id.
    pub fn subscribe(&self, filter: Filter, max: usize) -> Option<String> {
        let _edit = self.routing_edit.lock();
        let cur = self.routing.load();
        if cur.subscriptions.len() >= max {
            return None;
        }
        let id = format!(
            "sub-{}",
            self.next_subscription.fetch_add(1, Ordering::Relaxed)
        );
        let mut subs = cur.subscriptions.clone();
        subs.push((id.clone(), filter));
        self.routing.store(Arc::new(Routing {
            bound: cur.bound.clone(),
            subscriptions: subs,
            message_types: cur.message_types.clone(),
        }));
        Some(id)
    }

    /// Remove a subscription; false when there is none with that id.
    pub fn unsubscribe(&self, id: &str) -> bool {
        let _edit = self.routing_edit.lock();
        let cur = self.routing.load();
        if !cur.subscriptions.iter().any(|(s, _)| s == id) {
            return false;
        }
        self.routing.store(Arc::new(Routing {
            bound: cur.bound.clone(),
            subscriptions: cur
                .subscriptions
                .iter()
                .filter(|(s, _)| s != id)
                .cloned()
                .collect(),
            message_types: cur.message_types.clone(),
        }));
        true
    }

    /// `announce`: remember the capabilities, route by `message_types`, cap
    /// the rate at `max_rate`.
    pub fn announce(
        &self,
        capabilities: Value,
        message_types: Option<HashSet<String>>,
        max_rate: Option<f64>,
    ) {
        {
            let _edit = self.routing_edit.lock();
            let cur = self.routing.load();
            self.routing.store(Arc::new(Routing {
                bound: cur.bound.clone(),
                subscriptions: cur.subscriptions.clone(),
                message_types,
            }));
        }
        *self.capabilities.lock() = Some(capabilities);
        let mut limits = self.limits.lock();
        limits.max_rate = max_rate;
        self.apply_limits(*limits);
    }

    /// `backpressure`: the new limit (`None` lifts it); returns the limit
    /// now in force (the lower of this and `max_rate`).
    pub fn set_rate_limit(&self, rate: Option<f64>) -> Option<f64> {
        let mut limits = self.limits.lock();
        limits.rate_limit = rate;
        self.apply_limits(*limits)
    }

    fn apply_limits(&self, limits: Limits) -> Option<f64> {
        let effective = limits.effective();
        self.limiter.store(effective.and_then(build_limiter));
        self.limit_changed.notify_one();
        effective
    }

    #[cfg(test)]
    pub fn effective_rate_limit(&self) -> Option<f64> {
        self.limits.lock().effective()
    }

    pub fn capabilities(&self) -> Option<Value> {
        self.capabilities.lock().clone()
    }

    /// Whether to log a bad frame from this peer now: `Some(n)` at most
    /// once per second, with the `n` held back since the last line.
    pub fn log_error(&self) -> Option<u64> {
        self.error_log.lock().allow()
    }

    /// Detail for `status`, `/components` and health.
    pub fn describe(&self) -> Value {
        let limits = *self.limits.lock();
        let routing = self.routing.load();
        let peer = self.peer();
        json!({
            "id": self.id,
            "remote_addr": self.remote.map(|a| a.to_string()),
            "peer_node": peer.node,
            "peer_region": peer.region,
            "peer_certificate": peer.certificate,
            "peer_acks": !self.ack_fallback(),
            "connected_at": self.connected_at,
            "encoding": match self.encoding { Encoding::Json => "json", Encoding::Msgpack => "msgpack" },
            "bound": routing.bound.as_ref().map(|b| b.describe()),
            "filters": routing.subscriptions.iter().map(|(id, f)| json!({
                "subscription_id": id,
                "filter": f.spec(),
            })).collect::<Vec<_>>(),
            "message_types": routing.message_types.as_ref().map(|t| {
                let mut v: Vec<&String> = t.iter().collect();
                v.sort();
                v
            }),
            "rate_limit": limits.rate_limit,
            "max_rate": limits.max_rate,
            "effective_rate_limit": limits.effective(),
            "capabilities": self.capabilities(),
            "queue_depth": self.depth(),
            "queue_size": self.queue.capacity(),
            "queue_bytes": self.queue.bytes(),
            "queue_max_bytes": self.queue.max_bytes(),
            "messages_sent": self.sent.load(Ordering::Relaxed),
            "current_rate": self.meter.current(),
            "in_flight": self.in_flight_len(),
        })
    }
}

#[cfg(test)]
mod tests;
