//! The writer task: batches rows, writes each batch through [`db`], never
//! drops a row because the database failed, never stops for a row the
//! database refuses, and keeps what it holds at shutdown in the spill.
//!
//! * A batch is the oldest `batch_size` items; it is written when full, when
//!   its oldest row is `flush_interval` old, or at shutdown.
//! * On a connection error (or any error that is not a row's) the batch
//!   stays at the front and is retried with backoff; input keeps being read
//!   until `max_buffered` items are held, then reading stops (the bus
//!   subscription fills and, with `Overflow::Block`, the publisher waits;
//!   JetStream stops delivering at `max_ack_pending`).
//! * A write whose outcome is unknown (the connection died while the
//!   statement or its `COMMIT` was being answered) is verified on retry:
//!   rows whose `msg_id` is already in the table are skipped, so a
//!   PostgreSQL crash does not duplicate them.
//! * A batch refused for a row (SQLSTATE class 22, 23 or 54: a value too
//!   long, an index entry too large, JSON nested too deep…) is split in
//!   halves, and the halves again, until each refused row is alone; the
//!   other rows are written, each refused row is logged (throttled) and
//!   counted in `timescale_rows_rejected_total{reason}`, and dropped (in
//!   durable mode its message is terminated, so it is not redelivered).
//! * Durable mode inserts with `ON CONFLICT DO NOTHING` (a unique index on
//!   `(msg_id, time)` exists), counts the skipped duplicates, and acks each
//!   JetStream message only after its batch committed.
//! * At shutdown, with a spill: every row held only in memory goes to the
//!   spill first (fsynced, without waiting for the database), then the
//!   writer goes on writing to PostgreSQL while it can; when the database
//!   fails, it stops at once and the rows wait in the spill. At the next
//!   start, the spill is read before the input. Without a spill it retries
//!   until the runtime's deadline and reports what it lost.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fednode_kit::backoff::Backoff;
use fednode_kit::log::LogThrottle;
use sqlx::postgres::PgConnection;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::db::{self, Outcome, Settings};
use crate::failure::{classify, Failure, RowClass};
use crate::metrics::{Metrics, DROPPED_SHUTDOWN, DROPPED_SPILL_UNREADABLE};
use crate::rows::{Converter, Incoming, Item, Reject};
use crate::schema::Layout;
use crate::source::Input;
use crate::spill::Spill;
use crate::status::Shared;

/// How often an idle writer checks that the database is still there.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Messages read per round while draining into the spill (one fsync each).
const DRAIN_READ: usize = 4096;
/// Records loaded from the spill per round.
const SPILL_LOAD: usize = 1024;

/// The connection and what we know of the tables; moved into a write while
/// it runs.
struct Db {
    conn: Option<PgConnection>,
    layout: Option<Arc<Layout>>,
}

/// A write in flight. It shares its items with the writer, which keeps
/// converting new messages (the next batch) while the database works on
/// this one, and can spill them at shutdown.
struct Job {
    db: Db,
    items: Arc<Vec<Item>>,
    dedup: bool,
    verify: bool,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
}

/// A finished write: the connection comes back (the items are the
/// writer's again once the job has let go of them).
struct Done {
    db: Db,
    result: Result<Outcome, Failure>,
    took: Duration,
}

type InFlight = Pin<Box<dyn Future<Output = Done> + Send>>;

async fn run_job(job: Job) -> Done {
    let Job {
        mut db,
        items,
        dedup,
        verify,
        settings,
        shared,
    } = job;
    let started = Instant::now();
    let result = match ensure_connected(&mut db, &settings, &shared).await {
        Ok(()) => {
            let conn = db.conn.as_mut().expect("connected");
            let layout = db.layout.as_deref().expect("prepared");
            db::write_items(conn, layout, &items, dedup, verify).await
        }
        Err(f) => Err(f.of_database()),
    };
    drop(items);
    Done {
        db,
        result,
        took: started.elapsed(),
    }
}

async fn in_flight(f: &mut Option<InFlight>) -> Done {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn ensure_connected(db: &mut Db, s: &Settings, shared: &Shared) -> Result<(), Failure> {
    if db.conn.is_none() {
        db.conn = Some(db::connect(&s.connect).await?);
        tracing::info!(url = %s.url_display, "connected to PostgreSQL");
    }
    if db.layout.is_none() {
        let conn = db.conn.as_mut().expect("connected above");
        let layout = db::prepare(conn, s).await?;
        shared.set_timescaledb(layout.timescaledb);
        db.layout = Some(Arc::new(layout));
    }
    Ok(())
}

/// Where an item to spill sits.
enum Slot {
    InFlight(usize),
    Pending(usize),
}

pub struct Writer {
    s: Arc<Settings>,
    metrics: Metrics,
    shared: Arc<Shared>,
    /// `None` while a write holds it.
    db: Option<Db>,
    converter: Converter,
    /// Items not yet being written, oldest first.
    pending: VecDeque<Item>,
    inflight: Option<InFlight>,
    /// The items of the write in flight.
    inflight_items: Option<Arc<Vec<Item>>>,
    /// Spill sequence numbers given to in-flight items while they were
    /// being written (set on the items when they come back).
    inflight_seqs: Vec<Option<u64>>,
    backoff: Backoff,
    /// When the next attempt may start after a failure.
    retry_at: Option<Instant>,
    /// The last write failed (the next one is a retry).
    failing: bool,
    /// The front batch may already be committed: check before writing.
    verify_next: bool,
    /// Isolating a refused row: the lengths of the front runs of `pending`
    /// to write on their own, the next one last.
    isolate: Vec<usize>,
    /// Insert with `ON CONFLICT DO NOTHING` (duplicates skipped, counted).
    dedup: bool,
    /// Flushed at the end so the last acks leave the process.
    nats: Option<async_nats::Client>,
    spill: Option<Spill>,
    reject_log: LogThrottle,
    /// `run` came to its end: nothing it held was lost.
    finished: bool,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        s: Settings,
        metrics: Metrics,
        shared: Arc<Shared>,
        conn: Option<PgConnection>,
        layout: Option<Layout>,
        converter: Converter,
        nats: Option<async_nats::Client>,
        spill: Option<Spill>,
    ) -> Self {
        let backoff = Backoff::new(s.retry.initial_interval, s.retry.max_interval, 2.0);
        let dedup = s.durable;
        if let Some(l) = &layout {
            shared.set_timescaledb(l.timescaledb);
        }
        Writer {
            s: Arc::new(s),
            metrics,
            shared,
            db: Some(Db {
                conn,
                layout: layout.map(Arc::new),
            }),
            converter,
            pending: VecDeque::new(),
            inflight: None,
            inflight_items: None,
            inflight_seqs: Vec::new(),
            backoff,
            retry_at: None,
            failing: false,
            verify_next: false,
            isolate: Vec::new(),
            dedup,
            nats,
            spill,
            reject_log: LogThrottle::default(),
            finished: false,
        }
    }

    fn held(&self) -> usize {
        self.pending.len() + self.inflight_items.as_ref().map_or(0, |i| i.len())
    }

    /// Read `input` until it is finished (after `cancel`: see
    /// [`Input::recv_many`]), writing as batches fill; then flush everything
    /// held, or leave it in the spill when the database fails.
    pub async fn run(mut self, mut input: Input, cancel: CancellationToken) {
        let mut incoming: Vec<Incoming> = Vec::with_capacity(self.s.batch_size);
        let mut closed = false;
        let mut draining = false;
        // Without a connection (retry_on_start), try at once.
        let connected = self.db.as_ref().is_some_and(|d| d.conn.is_some());
        let mut idle_check = Instant::now()
            + if connected {
                IDLE_CHECK
            } else {
                Duration::ZERO
            };
        self.spill_gauge();
        loop {
            let held = self.held();
            self.metrics.buffered.set(held as i64);
            if closed && held == 0 {
                break;
            }
            if !draining && cancel.is_cancelled() {
                draining = true;
                self.start_drain().await;
                continue;
            }
            if draining && closed && self.can_leave() {
                self.leave();
                break;
            }
            // Rows spilled before this start go first: they are loaded
            // while there is room, and the input waits until they all are.
            let loading = !draining && self.spill.as_ref().is_some_and(|s| s.waiting() > 0);
            if loading && held < self.s.max_buffered {
                self.load_spill(self.s.max_buffered - held).await;
                continue;
            }
            let now = Instant::now();
            let idle = self.inflight.is_none();
            let flush_at = self
                .pending
                .front()
                .map(|i| i.arrived + self.s.flush_interval);
            let due = !self.pending.is_empty()
                && (self.pending.len() >= self.s.batch_size
                    || !self.isolate.is_empty()
                    || draining
                    || closed
                    || flush_at.is_some_and(|t| t <= now));
            if due && idle && self.retry_at.is_none_or(|t| t <= now) {
                self.launch();
                continue;
            }
            let room = if draining && self.spill.is_some() {
                DRAIN_READ.max(self.s.batch_size)
            } else if draining {
                self.s.batch_size
            } else {
                self.s
                    .max_buffered
                    .saturating_sub(held)
                    .min(self.s.batch_size)
            };
            let read = !closed && room > 0 && !loading;
            // Timers only matter while no write is running (its end wakes us).
            let mut wake = idle_check;
            if idle {
                for t in [flush_at, self.retry_at].into_iter().flatten() {
                    wake = wake.min(t);
                }
            }
            tokio::select! {
                biased;
                done = in_flight(&mut self.inflight), if !idle => {
                    self.inflight = None;
                    self.finish(done).await;
                }
                _ = cancel.cancelled(), if !draining => {
                    draining = true;
                    self.start_drain().await;
                }
                n = input.recv_many(&mut incoming, room, draining), if read => {
                    if n == 0 {
                        closed = true;
                    }
                    let arrived = Instant::now();
                    let before = self.pending.len();
                    for m in incoming.drain(..) {
                        self.accept(m, arrived).await;
                    }
                    if draining {
                        self.spill_from(before).await;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= idle_check {
                        idle_check = Instant::now() + IDLE_CHECK;
                        if self.inflight.is_none() && self.pending.is_empty() {
                            self.check_idle().await;
                        }
                    }
                }
            }
        }
        self.finished = true;
        self.metrics.buffered.set(0);
        if let Some(c) = &self.nats {
            let _ = c.flush().await;
        }
        if let Some(conn) = self.db.take().and_then(|d| d.conn) {
            let _ = conn.close().await;
        }
        self.shared.set(true, "stopped", None);
    }

    async fn accept(&mut self, m: Incoming, arrived: Instant) {
        match self.converter.convert(m, arrived) {
            Ok(item) => self.pending.push_back(item),
            Err((Reject::Parse(why), ack)) => {
                self.metrics.errors.with(&["parse_error"]).inc();
                tracing::debug!(reason = %why, "message dropped");
                if let Some(a) = ack {
                    // Poison for every redelivery too: tell JetStream to stop.
                    let _ = a.ack_with(async_nats::jetstream::AckKind::Term).await;
                }
            }
        }
    }

    /// Nothing to write: make sure health reflects the database anyway.
    async fn check_idle(&mut self) {
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        let Some(db) = self.db.as_mut() else {
            return;
        };
        let r = match ensure_connected(db, &self.s, &self.shared).await {
            Ok(()) => match db.conn.as_mut() {
                Some(c) => c.ping().await.map_err(|e| classify(&e, false)),
                None => Ok(()),
            },
            Err(f) => Err(f),
        };
        match r {
            Ok(()) => {
                self.retry_at = None;
                self.failing = false;
                self.backoff.reset();
                self.shared.set(true, "running", None);
            }
            Err(f) => self.failed(f),
        }
    }

    fn failed(&mut self, f: Failure) {
        let (status, kind) = match &f {
            Failure::Connection { ambiguous, .. } => {
                if *ambiguous {
                    self.verify_next = true;
                }
                ("database_unreachable", "connection")
            }
            _ => ("write_failing", "database"),
        };
        if let Some(db) = self.db.as_mut() {
            db.conn = None;
        }
        self.failing = true;
        self.metrics.errors.with(&[kind]).inc();
        let delay = self.backoff.next_delay();
        self.retry_at = Some(Instant::now() + delay);
        if self.backoff.attempts() <= 1 || self.backoff.attempts().is_power_of_two() {
            tracing::warn!(
                error = %f.message(), buffered = self.pending.len(), retry_in = ?delay,
                "PostgreSQL write failed; holding rows and retrying"
            );
        }
        self.shared
            .set(false, status, Some(f.message().to_string()));
    }

    /// Start writing the oldest batch (or the next run being isolated).
    fn launch(&mut self) {
        let n = match self.isolate.last() {
            Some(&k) => k.min(self.pending.len()),
            None => self.pending.len().min(self.s.batch_size),
        };
        if self.failing {
            self.metrics.retries.inc();
        }
        let items: Vec<Item> = self.pending.drain(..n).collect();
        // Rows spilled before this start may have been committed already.
        let verify = self.verify_next
            || self.spill.as_ref().is_some_and(|s| {
                items
                    .iter()
                    .any(|i| i.spill_seq.is_some_and(|q| s.older_than_start(q)))
            });
        let items = Arc::new(items);
        self.inflight_seqs = vec![None; n];
        self.inflight_items = Some(items.clone());
        let job = Job {
            db: self.db.take().expect("no write is running"),
            items,
            dedup: self.dedup,
            verify,
            settings: self.s.clone(),
            shared: self.shared.clone(),
        };
        self.inflight = Some(Box::pin(run_job(job)));
    }

    async fn finish(&mut self, done: Done) {
        self.db = Some(done.db);
        let items = self.inflight_items.take().expect("a write was in flight");
        let mut items = Arc::into_inner(items).expect("the finished write let go of its items");
        for (item, seq) in items.iter_mut().zip(self.inflight_seqs.drain(..)) {
            if seq.is_some() {
                item.spill_seq = seq;
            }
        }
        let n = items.len();
        let f = match done.result {
            Ok(out) => {
                self.metrics.batches.inc();
                self.metrics.batch_duration.observe(done.took.as_secs_f64());
                self.metrics.rows_written.inc_by(out.inserted);
                if out.duplicates > 0 {
                    self.metrics.duplicates.inc_by(out.duplicates);
                    tracing::info!(duplicates = out.duplicates, "skipped rows already stored");
                }
                self.isolate.pop();
                self.verify_next = false;
                self.backoff.reset();
                self.retry_at = None;
                if self.failing {
                    self.failing = false;
                    tracing::info!(buffered = self.pending.len(), "PostgreSQL writes resumed");
                }
                self.shared.set(true, "running", None);
                let mut spilled = Vec::new();
                for item in items {
                    if let Some(a) = item.ack {
                        if a.ack().await.is_err() {
                            self.metrics.errors.with(&["ack"]).inc();
                        }
                    }
                    spilled.extend(item.spill_seq);
                }
                self.spill_done(spilled).await;
                return;
            }
            Err(f) => f,
        };
        // Not written: the items go back to the front, in order.
        for item in items.into_iter().rev() {
            self.pending.push_front(item);
        }
        match f {
            Failure::Unique(m) if !self.dedup => {
                // A unique index exists (rows from an earlier durable run,
                // or an upstream resending ids): skip duplicates from now on.
                tracing::info!(error = %m, "unique index hit; writing with ON CONFLICT DO NOTHING from now on");
                self.dedup = true;
            }
            // Another unique index than the dedup one: the row's own.
            Failure::Unique(message) => {
                self.refused(n, RowClass::Integrity, "23505", &message)
                    .await
            }
            Failure::Row {
                class,
                sqlstate,
                message,
            } => self.refused(n, class, &sqlstate, &message).await,
            f => self.failed(f),
        }
    }

    /// The database refused a row of the `n` items just put back in front:
    /// split them, or drop the row when it is alone.
    async fn refused(&mut self, n: usize, class: RowClass, sqlstate: &str, message: &str) {
        self.isolate.pop();
        if n > 1 {
            if self.isolate.is_empty() {
                tracing::debug!(rows = n, sqlstate, error = %message, "batch refused; splitting it to find the refused rows");
            }
            let first = n / 2;
            self.isolate.push(n - first);
            self.isolate.push(first);
            return;
        }
        let Some(item) = self.pending.pop_front() else {
            return;
        };
        self.metrics.rejected.with(&[class.reason()]).inc();
        self.metrics.errors.with(&["rejected_row"]).inc();
        if let Some(suppressed) = self.reject_log.allow() {
            tracing::warn!(
                subject = %item.record.subject, msg_id = %item.record.msg_id, sqlstate,
                reason = class.reason(), error = %message, suppressed,
                "row refused by PostgreSQL; dropped"
            );
        }
        if let Some(a) = item.ack {
            // Refused on every redelivery too: tell JetStream to stop.
            let _ = a.ack_with(async_nats::jetstream::AckKind::Term).await;
        }
        self.spill_done(item.spill_seq).await;
    }

    /// The stop began: with a spill, put every row held only in memory
    /// there now, before anything waits for the database.
    async fn start_drain(&mut self) {
        let held = self.held();
        if self.spill.is_some() {
            self.spill_from(0).await;
        } else if held > 0 && self.failing {
            tracing::warn!(
                rows = held,
                "stopping while PostgreSQL fails and timescale has no spill (spill_path, or the node's data_dir): \
                 rows not written before the shutdown deadline will be lost"
            );
        }
        tracing::debug!(buffered = held, "stopping: flushing what is held");
    }

    /// Spill the in-flight items and those of `pending` from index `from`
    /// on that exist only in memory.
    async fn spill_from(&mut self, from: usize) {
        if self.spill.as_ref().is_none_or(|s| s.is_broken()) {
            return;
        }
        let mut bodies = Vec::new();
        let mut slots = Vec::new();
        if let (0, Some(items)) = (from, &self.inflight_items) {
            for (i, item) in items.iter().enumerate() {
                if item.only_in_memory() && self.inflight_seqs[i].is_none() {
                    bodies.push(item.record.encode());
                    slots.push(Slot::InFlight(i));
                }
            }
        }
        for (i, item) in self.pending.iter().enumerate().skip(from) {
            if item.only_in_memory() {
                bodies.push(item.record.encode());
                slots.push(Slot::Pending(i));
            }
        }
        if bodies.is_empty() {
            return;
        }
        let given = bodies.len();
        let spill = self.spill.as_mut().expect("checked above");
        match spill.append(bodies).await {
            Ok((first, taken)) => {
                for (seq, slot) in (first..).zip(slots.into_iter().take(taken)) {
                    match slot {
                        Slot::InFlight(i) => self.inflight_seqs[i] = Some(seq),
                        Slot::Pending(i) => self.pending[i].spill_seq = Some(seq),
                    }
                }
                self.metrics.spilled.inc_by(taken as u64);
                if taken < given {
                    tracing::error!(
                        path = %spill.path().display(), rows = given - taken, max_bytes = crate::spill::MAX_BYTES,
                        "spill full: these rows stay in memory only"
                    );
                }
            }
            Err(e) => {
                self.metrics.errors.with(&["spill"]).inc();
                tracing::error!(error = %e, rows = given, "cannot write the spill: these rows stay in memory only");
            }
        }
        self.spill_gauge();
    }

    /// Whether the drain may end with rows still held: they are all in
    /// the spill (or JetStream will deliver them again), and the database
    /// fails, or older spilled rows must still go before them.
    fn can_leave(&self) -> bool {
        let Some(spill) = &self.spill else {
            return false;
        };
        let kept = self.pending.iter().all(|i| !i.only_in_memory())
            && self.inflight_items.as_ref().is_none_or(|items| {
                items
                    .iter()
                    .zip(&self.inflight_seqs)
                    .all(|(i, s)| s.is_some() || !i.only_in_memory())
            });
        kept && !spill.is_broken() && (self.failing || spill.waiting() > 0)
    }

    fn leave(&self) {
        let spill = self.spill.as_ref().expect("leaving with a spill");
        tracing::warn!(
            held = self.held(), spill_rows = spill.rows(), path = %spill.path().display(),
            "stopping before PostgreSQL took every row: they are kept in the spill and written first at the next start"
        );
    }

    /// Load spilled rows (at most `room`) into `pending`, oldest first.
    async fn load_spill(&mut self, room: usize) {
        let spill = self.spill.as_mut().expect("loading");
        let loaded = match spill.load(room.min(SPILL_LOAD)).await {
            Ok(l) => l,
            Err(e) => {
                self.metrics.errors.with(&["spill"]).inc();
                tracing::error!(error = %e, path = %spill.path().display(),
                    "cannot read the spill; what it holds stays there for the next start");
                return;
            }
        };
        let arrived = Instant::now();
        let mut given_up = Vec::new();
        for (seq, record) in loaded {
            let converted =
                record.map(|r| self.converter.convert(Incoming::from_record(r), arrived));
            match converted {
                Ok(Ok(mut item)) => {
                    item.spill_seq = Some(seq);
                    self.pending.push_back(item);
                }
                Ok(Err((Reject::Parse(why), _))) => {
                    self.metrics.errors.with(&["parse_error"]).inc();
                    tracing::debug!(reason = %why, seq, "spilled message dropped");
                    given_up.push(seq);
                }
                Err(why) => {
                    self.metrics.dropped.with(&[DROPPED_SPILL_UNREADABLE]).inc();
                    tracing::warn!(error = %why, seq, "spill record unreadable; dropped");
                    given_up.push(seq);
                }
            }
        }
        self.spill_done(given_up).await;
    }

    /// These spill records are committed or given up: release them.
    async fn spill_done(&mut self, seqs: impl IntoIterator<Item = u64>) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        let mut seqs = seqs.into_iter().peekable();
        if seqs.peek().is_none() {
            return;
        }
        if let Err(e) = spill.done(seqs).await {
            self.metrics.errors.with(&["spill"]).inc();
            tracing::warn!(error = %e, "cannot release committed rows from the spill; they are checked and skipped at the next start");
        }
        self.spill_gauge();
    }

    fn spill_gauge(&self) {
        if let Some(s) = &self.spill {
            self.metrics.spill_rows.set(s.rows() as i64);
        }
    }
}

impl Drop for Writer {
    /// Stopped before `run` ended (the runtime's shutdown deadline): count
    /// and report the rows that are neither written nor in the spill.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let in_flight = self.inflight_items.as_ref().map_or(0, |items| {
            items
                .iter()
                .zip(&self.inflight_seqs)
                .filter(|(i, s)| s.is_none() && i.only_in_memory())
                .count()
        });
        let lost = in_flight + self.pending.iter().filter(|i| i.only_in_memory()).count();
        if lost == 0 {
            return;
        }
        self.metrics
            .dropped
            .with(&[DROPPED_SHUTDOWN])
            .inc_by(lost as u64);
        tracing::error!(
            rows = lost,
            spill = %self.spill.as_ref().map_or_else(|| "none".to_string(), |s| s.path().display().to_string()),
            "stopped at the shutdown deadline with rows neither written to PostgreSQL nor spilled: they are lost \
             (give timescale a spill_path, or the node a data_dir, to keep them)"
        );
    }
}
