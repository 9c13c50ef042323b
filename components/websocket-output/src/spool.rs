//! Store and forward (client mode with a `store`): every message the
//! fan-out takes for the hub is appended to the kit's disk log first, and
//! the connection is fed from the log. So the log holds everything not yet
//! acknowledged (with `at_least_once`; everything not yet written, with
//! `at_most_once`): it survives a `kill -9` of this node and any hub
//! outage it has room for, and after a restart the unacknowledged messages
//! go first, in order.
//!
//! Three parts:
//! - the **log task** owns the [`Log`] and runs every operation on a
//!   blocking thread, one batch at a time: appends, reads, releases, and an
//!   fsync at most `sync_interval` after anything was written;
//! - [`Spool::take`] reads the log from where the connection stands (the
//!   component's feeder moves what it reads into the connection's queue,
//!   waiting for room);
//! - **releases**: each message fed is *outstanding* until the hub acks it
//!   (or it is written, at most once); the log is acknowledged through the
//!   message before the oldest outstanding one, and whole segments are
//!   freed as that moves.
//!
//! When the log is full the oldest segment goes (counted in
//! `…_store_dropped_total`), or under `on_full: block` appends wait for the
//! hub's acks to free room, and the fan-out (and so the bus) waits too.

use fednode_kit::store::{Log, LogOptions, StoreError, HEADER_BYTES};
use fednode_kit::StartError;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::buffer::ReplayParams;
use crate::config::StoreConfig;
use crate::item::Item;
use crate::metrics::{reason::STORE_FAILED, OutputMetrics};

/// Records read from the log per feeder round.
const READ_BATCH: usize = 256;
/// Bytes read per feeder round (at least one record).
const READ_BYTES: u64 = 4 << 20;

enum Op {
    /// Append, then answer (under `block`, once there is room).
    Append(Vec<Vec<u8>>, oneshot::Sender<()>),
    /// Read from a sequence number on.
    Read(u64, oneshot::Sender<Vec<(u64, bytes::Bytes)>>),
    /// The fan-out has stopped: sync and close.
    Close(oneshot::Sender<()>),
    /// The oldest sequence number kept and the next one to be given.
    Bounds(oneshot::Sender<(u64, u64)>),
}

/// What the rest of the output holds of the store.
pub(crate) struct Spool {
    ops: mpsc::Sender<Op>,
    /// Signalled after appends.
    appended: Notify,
    book: Mutex<Book>,
    path: String,
    bytes: AtomicU64,
    messages: AtomicU64,
    dropped: AtomicU64,
    /// Timestamp of the oldest message not done with (0 when none).
    oldest: AtomicI64,
    /// Every message through this sequence number is on disk (fsynced).
    synced_through: AtomicU64,
    /// A write or fsync failed: the log takes nothing more until the node
    /// restarts (health says so).
    failed: std::sync::atomic::AtomicBool,
    /// The log may be released through here (releases coalesce: only the
    /// latest matters).
    release_to: AtomicU64,
    release_ready: Notify,
    /// The component is stopping: appends stop waiting for room.
    cancel: CancellationToken,
}

/// Where the feeder stands and what it fed that is not done with.
struct Book {
    /// The next sequence number to read.
    next: u64,
    outstanding: BTreeSet<u64>,
    /// The log is released through here.
    released: u64,
}

impl Spool {
    /// Open (and recover) the log at `cfg.path` and start its task. A
    /// `history` log (server mode) feeds no connection: every message is
    /// done with once appended, and the log is only what `replay` reads.
    pub fn open(
        name: &str,
        cfg: &StoreConfig,
        history: bool,
        block: bool,
        metrics: &OutputMetrics,
        tracker: &tokio_util::task::TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<Arc<Spool>, StartError> {
        let path = cfg.path.clone().expect("resolved at build");
        // Acknowledged messages stay until their room is needed: the log is
        // also the history `replay` reads.
        let opts = LogOptions::with_max_bytes(cfg.max_bytes).retaining();
        let (log, recovery) =
            Log::open(&path, opts).map_err(|e| StartError::new(format!("store: {e}")))?;
        for cut in &recovery.cuts {
            tracing::warn!(component = name, path = %cut.path.display(), offset = cut.offset,
                bytes = cut.bytes, reason = cut.reason, "store: cut a damaged tail at the last whole record");
        }
        let first = log.first_unacked();
        let waiting = log.next_seq() - first;
        if waiting > 0 && !history {
            tracing::info!(component = name, messages = waiting, path = %path.display(),
                "store: unacknowledged messages from before go first");
        }
        let (tx, rx) = mpsc::channel(64);
        let spool = Arc::new(Spool {
            ops: tx,
            appended: Notify::new(),
            book: Mutex::new(Book {
                next: first,
                outstanding: BTreeSet::new(),
                released: first - 1,
            }),
            path: path.display().to_string(),
            bytes: AtomicU64::new(log.bytes()),
            messages: AtomicU64::new(log.messages()),
            dropped: AtomicU64::new(0),
            oldest: AtomicI64::new(0),
            synced_through: AtomicU64::new(first - 1),
            failed: std::sync::atomic::AtomicBool::new(false),
            // A history is released as it is written.
            release_to: AtomicU64::new(if history { u64::MAX } else { first - 1 }),
            release_ready: Notify::new(),
            cancel: cancel.clone(),
        });
        let task = LogTask {
            log: Arc::new(Mutex::new(log)),
            spool: spool.clone(),
            block,
            sync_interval: cfg.sync_interval,
            metrics: metrics.clone(),
            name: name.to_string(),
        };
        tracker.spawn(task.run(rx));
        Ok(spool)
    }

    /// Append the fan-out's share, in order; under `block` this waits while
    /// the log is full.
    pub async fn append(&self, items: &mut Vec<Arc<Item>>) {
        if items.is_empty() {
            return;
        }
        let records = items.drain(..).map(|i| i.record()).collect();
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Append(records, tx)).await.is_ok() {
            // Stopping, a full store (under `block`) will not make room:
            // the append stays queued and is stored if room comes before
            // the log closes.
            tokio::select! {
                _ = rx => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    /// The fan-out has handed over its last message: make everything
    /// durable and stop the log task.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// This message (fed earlier) is done with: acked, refused for good, or
    /// written at most once.
    pub fn release(&self, seq: u64) {
        let through = {
            let mut b = self.book.lock();
            if !b.outstanding.remove(&seq) {
                return;
            }
            let low = b.outstanding.first().copied().unwrap_or(b.next);
            if low <= b.released + 1 {
                return;
            }
            b.released = low - 1;
            b.released
        };
        self.release_to.fetch_max(through, Ordering::AcqRel);
        self.release_ready.notify_one();
    }

    /// Whether a write or fsync failed (the node must restart to recover
    /// the log).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Detail for `status`, `/components` and health.
    pub fn describe(&self) -> serde_json::Value {
        let oldest = self.oldest.load(Ordering::Relaxed);
        serde_json::json!({
            "path": self.path,
            "bytes": self.bytes.load(Ordering::Relaxed),
            "messages": self.messages.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "synced_through": self.synced_through.load(Ordering::Relaxed),
            "failed": self.failed(),
            "oldest_timestamp": (oldest > 0).then_some(oldest),
        })
    }

    /// The next messages in the log after what was taken before, in order,
    /// each outstanding until [`Spool::release`]; waits while there are
    /// none. `None` once `cancel` fires or the log task is gone.
    pub async fn take(&self, cancel: &CancellationToken) -> Option<Vec<Arc<Item>>> {
        loop {
            let from = self.book.lock().next;
            let (tx, rx) = oneshot::channel();
            self.ops.send(Op::Read(from, tx)).await.ok()?;
            let records = rx.await.ok()?;
            if records.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = self.appended.notified() => continue,
                }
            }
            let mut items = Vec::with_capacity(records.len());
            let mut unreadable = Vec::new();
            {
                let mut b = self.book.lock();
                for (seq, body) in records {
                    b.next = seq + 1;
                    b.outstanding.insert(seq);
                    match Item::from_record(seq, &body) {
                        Some(item) => items.push(Arc::new(item)),
                        None => unreadable.push(seq),
                    }
                }
            }
            for seq in unreadable {
                tracing::error!(seq, path = %self.path, "store: a record is not a data envelope; skipped");
                self.release(seq);
            }
            if !items.is_empty() {
                return Some(items);
            }
        }
    }
}

impl Spool {
    /// `replay` from the log, which reaches back further than the replay
    /// buffer (to before a restart, and as far as `max_bytes` keeps):
    /// after `after_id`, from `start_time`, at most `cap` messages from
    /// there; or, with only `count`, the newest `count`. `None` when the log
    /// task is gone; the flag says whether `after_id` was found.
    ///
    /// With `own_numbers`, items keep their place in the log as `seq` (the
    /// connection was fed from the log, client mode); else their `seq` is
    /// 0, outside the fan-out's numbering (server mode).
    pub async fn history(
        &self,
        p: &ReplayParams,
        cap: usize,
        own_numbers: bool,
    ) -> Option<(Vec<Arc<Item>>, bool)> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(Op::Bounds(tx)).await.ok()?;
        let (oldest, next) = rx.await.ok()?;
        let only_count = p.after_id.is_none() && p.start_time.is_none();
        let mut from = match (only_count, p.count) {
            (true, Some(n)) => next.saturating_sub(n as u64).max(oldest),
            _ => oldest,
        };
        let mut found = p.after_id.is_none();
        let mut items = Vec::new();
        while from < next && items.len() < cap {
            let (tx, rx) = oneshot::channel();
            self.ops.send(Op::Read(from, tx)).await.ok()?;
            let records = rx.await.ok()?;
            let Some(last) = records.last().map(|(seq, _)| *seq) else {
                break;
            };
            for (seq, body) in records {
                if seq >= next || items.len() >= cap {
                    break;
                }
                let Some(item) = Item::from_record(if own_numbers { seq } else { 0 }, &body) else {
                    continue;
                };
                if !found {
                    found = p.after_id.as_deref() == Some(&*item.id);
                    continue;
                }
                if p.start_time.is_some_and(|t| item.timestamp < t) {
                    continue;
                }
                items.push(Arc::new(item));
            }
            from = last + 1;
        }
        Some((items, found))
    }
}

/// The owner of the log.
struct LogTask {
    log: Arc<Mutex<Log>>,
    spool: Arc<Spool>,
    block: bool,
    sync_interval: Duration,
    metrics: OutputMetrics,
    name: String,
}

impl LogTask {
    /// Until the fan-out closes the log ([`Spool::close`]): it outlives the
    /// component's cancellation, so what the fan-out hands over while
    /// stopping is still stored.
    async fn run(self, mut rx: mpsc::Receiver<Op>) {
        let mut ops = Vec::new();
        // Appends held back while the log is full (`block`).
        let mut parked: Vec<Op> = Vec::new();
        // Appended and not yet fsynced since this instant.
        let mut unsynced: Option<Instant> = None;
        let mut closed = None;
        loop {
            // Due at most `sync_interval` after the first unsynced append,
            // however busy the log is.
            let sync_due = unsynced.map(|since| since + self.sync_interval);
            tokio::select! {
                biased;
                _ = sleep_until_due(sync_due) => {
                    if self.blocking(true, |log, _| log.sync()).await.is_ok() {
                        unsynced = None;
                    } else {
                        // Try again one interval later.
                        unsynced = Some(Instant::now());
                    }
                    continue;
                }
                n = rx.recv_many(&mut ops, 64) => if n == 0 { break },
                _ = self.spool.release_ready.notified() => {}
            }
            let mut batch: Vec<Op> = std::mem::take(&mut parked);
            batch.append(&mut ops);
            let (block, release) = (self.block, self.spool.release_to.load(Ordering::Acquire));
            let ((appended, left, result), lost) = self
                .blocking(false, move |log, dropped| {
                    // A failed release only keeps space a while longer.
                    if let Err(e) = log.ack_through(release) {
                        tracing::error!(error = %e, "store release failed");
                    }
                    let mut lost = 0;
                    let applied = apply(log, batch, block, dropped, &mut lost);
                    Ok((applied, lost))
                })
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(component = %self.name, error = %e, "store failed");
                    ((false, Vec::new(), Ok(())), 0)
                });
            if lost > 0 {
                self.metrics.dropped(STORE_FAILED).inc_by(lost);
            }
            parked = left;
            if let Some(closing) = closing_of(&mut parked) {
                closed = Some(closing);
            }
            if let Err(e) = result {
                tracing::error!(component = %self.name, error = %e, "store operation failed");
                self.spool.failed.store(true, Ordering::Release);
            }
            if appended {
                unsynced.get_or_insert_with(Instant::now);
                self.spool.appended.notify_one();
            }
            if closed.is_some() {
                break;
            }
        }
        // Stopping: what was appended (and released) is made durable.
        let release = self.spool.release_to.load(Ordering::Acquire);
        let _ = self
            .blocking(true, move |log, _| {
                log.ack_through(release)?;
                log.sync()
            })
            .await;
        if !parked.is_empty() {
            tracing::error!(component = %self.name, "store full at shutdown: messages waiting for room were not stored");
        }
        if let Some(done) = closed {
            let _ = done.send(());
        }
    }

    /// Run `f` on the log on a blocking thread, then refresh the gauges
    /// (the oldest timestamp too when `look_back`: that reads the log, so
    /// only after a sync, when buffered appends are written anyway).
    async fn blocking<T: Send + 'static>(
        &self,
        look_back: bool,
        f: impl FnOnce(&mut Log, &mut u64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let log = self.log.clone();
        let previous = self.spool.oldest.load(Ordering::Relaxed);
        let out = tokio::task::spawn_blocking(move || {
            let mut log = log.lock();
            let mut dropped = 0;
            let r = f(&mut log, &mut dropped);
            let oldest = if look_back {
                oldest_timestamp(&mut log)
            } else {
                previous
            };
            (
                r,
                dropped,
                log.bytes(),
                log.messages(),
                oldest,
                log.synced_through(),
            )
        })
        .await
        .map_err(|e| StoreError::Options(format!("store task: {e}")))?;
        let (r, dropped, bytes, messages, oldest, synced) = out;
        let sp = &self.spool;
        sp.synced_through.store(synced, Ordering::Relaxed);
        sp.bytes.store(bytes, Ordering::Relaxed);
        sp.messages.store(messages, Ordering::Relaxed);
        sp.oldest.store(oldest, Ordering::Relaxed);
        self.metrics.store_bytes.set(bytes as i64);
        self.metrics.store_messages.set(messages as i64);
        if dropped > 0 {
            sp.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.metrics.store_dropped.inc_by(dropped);
            tracing::warn!(component = %self.name, dropped, "store full: the oldest messages were dropped");
        }
        r
    }
}

/// Sleep until `due`; forever when there is nothing to sync.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Apply a batch of operations in order. Returns whether anything was
/// appended, the appends held back (the log is full under `block`), and
/// the first error.
fn apply(
    log: &mut Log,
    batch: Vec<Op>,
    block: bool,
    dropped: &mut u64,
    lost: &mut u64,
) -> (bool, Vec<Op>, Result<(), StoreError>) {
    let mut appended = false;
    let mut parked = Vec::new();
    let mut result = Ok(());
    for op in batch {
        match op {
            Op::Read(from, reply) => {
                let records = log
                    .read_batch(from, READ_BATCH, READ_BYTES)
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "store read failed");
                        Vec::new()
                    });
                let _ = reply.send(records);
            }
            Op::Close(reply) => parked.push(Op::Close(reply)),
            Op::Bounds(reply) => {
                let _ = reply.send((log.oldest_seq(), log.next_seq()));
            }
            Op::Append(records, reply) => {
                // Under `block`, wait for room rather than drop what the
                // hub has not acknowledged (an empty log takes anything).
                let need: u64 = records.iter().map(|r| r.len() as u64 + HEADER_BYTES).sum();
                let room = !block
                    || log.messages() == 0
                    || !log.would_exceed((need - HEADER_BYTES) as usize);
                if !parked.is_empty() || !room {
                    parked.push(Op::Append(records, reply));
                    continue;
                }
                match log.append_batch(&records) {
                    Ok(a) => {
                        appended = true;
                        *dropped += a.dropped;
                    }
                    // One record the log can never hold: the others go in.
                    Err(StoreError::TooLarge { .. }) => {
                        for r in &records {
                            match log.append(r) {
                                Ok(a) => {
                                    appended = true;
                                    *dropped += a.dropped;
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "store: message lost");
                                    *lost += 1;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, lost = records.len(), "store append failed; messages lost");
                        *lost += records.len() as u64;
                        result = result.and(Err(e));
                    }
                }
                let _ = reply.send(());
            }
        }
    }
    (appended, parked, result)
}

/// Take the close request out of what `apply` held back (it comes last:
/// the fan-out sends nothing after it).
fn closing_of(parked: &mut Vec<Op>) -> Option<oneshot::Sender<()>> {
    match parked.last() {
        Some(Op::Close(_)) => match parked.pop() {
            Some(Op::Close(done)) => Some(done),
            _ => None,
        },
        _ => None,
    }
}

/// The timestamp of the oldest message not done with, 0 when none.
fn oldest_timestamp(log: &mut Log) -> i64 {
    let first = log.first_unacked();
    match log.read_batch(first, 1, 0) {
        Ok(r) => r
            .first()
            .and_then(|(seq, body)| Item::from_record(*seq, body))
            .map_or(0, |i| i.timestamp),
        Err(_) => 0,
    }
}
