//! The writer task: batches rows, writes each batch with one
//! `INSERT … SELECT FROM UNNEST(…)` per table, and never drops a row because
//! the database failed.
//!
//! * A batch is the oldest `batch_size` items; it is written when full, when
//!   its oldest row is `flush_interval` old, or at shutdown.
//! * On a connection error the batch stays at the front and is retried with
//!   backoff; input keeps being read until `max_buffered` items are held,
//!   then reading stops (the bus subscription fills and, with
//!   `Overflow::Block`, the publisher waits; JetStream stops delivering at
//!   `max_ack_pending`).
//! * A write whose outcome is unknown (the connection died while the
//!   statement or its `COMMIT` was being answered) is verified on retry:
//!   rows whose `msg_id` is already in the table are skipped, so a
//!   PostgreSQL crash does not duplicate them.
//! * A row the database refuses (data exception, too-long `varchar`…) is
//!   isolated by writing that batch one item at a time, then dropped and
//!   counted (`errors_total{type="rejected_row"}`), so one bad row cannot
//!   block the stream.
//! * Durable mode inserts with `ON CONFLICT DO NOTHING` (a unique index on
//!   `(msg_id, time)` exists), counts the skipped duplicates, and acks each
//!   JetStream message only after its batch committed.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fednode_kit::backoff::Backoff;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};
use tokio_util::sync::CancellationToken;

use crate::config::{Profile, RetryConfig};
use crate::metrics::Metrics;
use crate::rows::{Converter, Incoming, Item, Op, Reject};
use crate::schema::{self, Layout, Resolved, SchemaError, TABLE_COUNT};
use crate::source::Input;
use crate::table::{pg_time, Cell, ColumnArray, Ident};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle writer checks that the database is still there.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Health as the writer last saw it.
#[derive(Debug, Clone)]
pub struct Status {
    pub healthy: bool,
    pub status: &'static str,
    pub last_error: Option<String>,
    pub timescaledb: Option<bool>,
}

/// State shared between the writer and `Component::health`.
pub struct Shared {
    pub status: Mutex<Status>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            status: Mutex::new(Status {
                healthy: true,
                status: "starting",
                last_error: None,
                timescaledb: None,
            }),
        })
    }

    pub fn get(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set(&self, healthy: bool, status: &'static str, error: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.healthy = healthy;
        s.status = status;
        if error.is_some() || healthy {
            s.last_error = error;
        }
    }

    fn set_timescaledb(&self, on: bool) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .timescaledb = Some(on);
    }
}

/// What the writer needs from the config.
#[derive(Clone)]
pub struct Settings {
    pub connect: PgConnectOptions,
    pub url_display: String,
    pub profile: Profile,
    pub table: Ident,
    pub manage_schema: bool,
    pub durable: bool,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_buffered: usize,
    pub retry: RetryConfig,
}

/// Why a write (or connect) failed, by what to do about it.
#[derive(Debug)]
pub enum Failure {
    /// The database is unreachable. `ambiguous`: the commit may have
    /// happened.
    Connection { message: String, ambiguous: bool },
    /// A unique index refused a row.
    Unique(String),
    /// A row's data was refused.
    Data(String),
    /// Anything else (permissions, missing table, …).
    Other(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Connection { message, .. } => message,
            Failure::Unique(m) | Failure::Data(m) | Failure::Other(m) => m,
        }
    }
}

/// Sort an sqlx error; `committing`: the end of the write had been sent.
pub fn classify(e: &sqlx::Error, committing: bool) -> Failure {
    let message = e.to_string();
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if code == "23505" {
                Failure::Unique(message)
            } else if code.starts_with("22") || code.starts_with("23") {
                Failure::Data(message)
            } else if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                Failure::Connection {
                    message,
                    ambiguous: committing,
                }
            } else {
                Failure::Other(message)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Failure::Connection {
            message,
            ambiguous: committing,
        },
        _ => Failure::Other(message),
    }
}

/// Open a connection, bounded in time.
pub async fn connect(opts: &PgConnectOptions) -> Result<PgConnection, Failure> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(classify(&e, false)),
        Err(_) => Err(Failure::Connection {
            message: format!("connecting timed out after {CONNECT_TIMEOUT:?}"),
            ambiguous: false,
        }),
    }
}

/// Run the schema step on `conn`.
pub async fn prepare(conn: &mut PgConnection, s: &Settings) -> Result<Layout, Failure> {
    let layout = schema::prepare(conn, s.profile, &s.table, s.manage_schema, s.durable)
        .await
        .map_err(|e| match e {
            SchemaError::Db(e) => classify(&e, false),
            SchemaError::Mismatch(m) => Failure::Other(m),
        })?;
    if s.durable {
        for t in layout.tables.iter().flatten().filter(|t| !t.has_unique) {
            tracing::warn!(
                table = %t.ident.display(),
                "durable mode but no unique index on (msg_id, time): redelivered rows will be stored twice"
            );
        }
    }
    Ok(layout)
}

struct Outcome {
    inserted: u64,
    duplicates: u64,
}

/// The connection and what we know of the tables; moved into a write while
/// it runs.
struct Db {
    conn: Option<PgConnection>,
    layout: Option<Arc<Layout>>,
}

/// A write in flight. It owns its items, so the writer keeps converting new
/// messages (the next batch) while the database works on this one.
struct Job {
    db: Db,
    items: Vec<Item>,
    dedup: bool,
    verify: bool,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
}

/// A finished write: the connection and the items come back.
struct Done {
    db: Db,
    items: Vec<Item>,
    result: Result<Outcome, Failure>,
    took: Duration,
}

type InFlight = Pin<Box<dyn Future<Output = Done> + Send>>;

async fn run_job(mut job: Job) -> Done {
    let started = Instant::now();
    let result = match ensure_connected(&mut job.db, &job.settings, &job.shared).await {
        Ok(()) => {
            let conn = job.db.conn.as_mut().expect("connected");
            let layout = job.db.layout.as_deref().expect("prepared");
            write_items(conn, layout, &job.items, job.dedup, job.verify).await
        }
        Err(f) => Err(f),
    };
    Done {
        db: job.db,
        items: job.items,
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
        db.conn = Some(connect(&s.connect).await?);
        tracing::info!(url = %s.url_display, "connected to PostgreSQL");
    }
    if db.layout.is_none() {
        let conn = db.conn.as_mut().expect("connected above");
        let layout = prepare(conn, s).await?;
        shared.set_timescaledb(layout.timescaledb);
        db.layout = Some(Arc::new(layout));
    }
    Ok(())
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
    inflight_len: usize,
    backoff: Backoff,
    /// When the next attempt may start after a failure.
    retry_at: Option<Instant>,
    /// The last write failed (the next one is a retry).
    failing: bool,
    /// The front batch may already be committed: check before writing.
    verify_next: bool,
    /// Items still to write one at a time (isolating a refused row).
    single_left: usize,
    /// Insert with `ON CONFLICT DO NOTHING` (duplicates skipped, counted).
    dedup: bool,
    /// Flushed at the end so the last acks leave the process.
    nats: Option<async_nats::Client>,
}

impl Writer {
    pub fn new(
        s: Settings,
        metrics: Metrics,
        shared: Arc<Shared>,
        conn: Option<PgConnection>,
        layout: Option<Layout>,
        converter: Converter,
        nats: Option<async_nats::Client>,
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
            inflight_len: 0,
            backoff,
            retry_at: None,
            failing: false,
            verify_next: false,
            single_left: 0,
            dedup,
            nats,
        }
    }

    /// Read `input` until it is finished (after `cancel`: see
    /// [`Input::recv_many`]), writing as batches fill; then flush everything
    /// held.
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
        loop {
            let held = self.pending.len() + self.inflight_len;
            self.metrics.buffered.set(held as i64);
            if closed && held == 0 {
                break;
            }
            if !draining && cancel.is_cancelled() {
                draining = true;
            }
            let now = Instant::now();
            let idle = self.inflight.is_none();
            let flush_at = self
                .pending
                .front()
                .map(|i| i.arrived + self.s.flush_interval);
            let due = !self.pending.is_empty()
                && (self.pending.len() >= self.s.batch_size
                    || draining
                    || closed
                    || flush_at.is_some_and(|t| t <= now));
            if due && idle && self.retry_at.is_none_or(|t| t <= now) {
                self.launch();
                continue;
            }
            let room = if draining {
                self.s.batch_size
            } else {
                self.s
                    .max_buffered
                    .saturating_sub(held)
                    .min(self.s.batch_size)
            };
            let read = !closed && room > 0;
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
                    tracing::debug!(buffered = held, "stopping: flushing what is held");
                }
                n = input.recv_many(&mut incoming, room, draining), if read => {
                    if n == 0 {
                        closed = true;
                    }
                    let arrived = Instant::now();
                    for m in incoming.drain(..) {
                        self.accept(m, arrived).await;
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

    /// Start writing the oldest batch.
    fn launch(&mut self) {
        let n = if self.single_left > 0 {
            1
        } else {
            self.pending.len().min(self.s.batch_size)
        };
        if self.failing {
            self.metrics.retries.inc();
        }
        let items: Vec<Item> = self.pending.drain(..n).collect();
        self.inflight_len = n;
        let job = Job {
            db: self.db.take().expect("no write is running"),
            items,
            dedup: self.dedup,
            verify: self.verify_next,
            settings: self.s.clone(),
            shared: self.shared.clone(),
        };
        self.inflight = Some(Box::pin(run_job(job)));
    }

    async fn finish(&mut self, done: Done) {
        self.db = Some(done.db);
        self.inflight_len = 0;
        let n = done.items.len();
        let f = match done.result {
            Ok(out) => {
                self.metrics.batches.inc();
                self.metrics.batch_duration.observe(done.took.as_secs_f64());
                self.metrics.rows_written.inc_by(out.inserted);
                if out.duplicates > 0 {
                    self.metrics.duplicates.inc_by(out.duplicates);
                    tracing::info!(duplicates = out.duplicates, "skipped rows already stored");
                }
                self.single_left = self.single_left.saturating_sub(1);
                self.verify_next = false;
                self.backoff.reset();
                self.retry_at = None;
                if self.failing {
                    self.failing = false;
                    tracing::info!(buffered = self.pending.len(), "PostgreSQL writes resumed");
                }
                self.shared.set(true, "running", None);
                for item in done.items {
                    if let Some(a) = item.ack {
                        if a.ack().await.is_err() {
                            self.metrics.errors.with(&["ack"]).inc();
                        }
                    }
                }
                return;
            }
            Err(f) => f,
        };
        // Not written: the items go back to the front, in order.
        for item in done.items.into_iter().rev() {
            self.pending.push_front(item);
        }
        match f {
            Failure::Unique(m) if !self.dedup => {
                // A unique index exists (rows from an earlier durable run,
                // or an upstream resending ids): skip duplicates from now on.
                tracing::info!(error = %m, "unique index hit; writing with ON CONFLICT DO NOTHING from now on");
                self.dedup = true;
            }
            Failure::Data(m) | Failure::Unique(m) => {
                if n > 1 {
                    tracing::warn!(error = %m, rows = n, "batch refused; writing it row by row to find the bad rows");
                    self.single_left = n;
                } else {
                    self.single_left = self.single_left.saturating_sub(1);
                    self.metrics.errors.with(&["rejected_row"]).inc();
                    tracing::warn!(error = %m, "row refused by PostgreSQL; dropped");
                    if let Some(item) = self.pending.pop_front() {
                        if let Some(a) = item.ack {
                            let _ = a.ack_with(async_nats::jetstream::AckKind::Term).await;
                        }
                    }
                }
            }
            f => self.failed(f),
        }
    }
}

/// Write `items` (one batch): a single statement when they all go to one
/// table, else one transaction (sessions first).
async fn write_items(
    conn: &mut PgConnection,
    layout: &Layout,
    items: &[Item],
    dedup: bool,
    verify: bool,
) -> Result<Outcome, Failure> {
    let mut sessions: Vec<&Op> = Vec::new();
    let mut groups: Vec<Vec<&Vec<Cell>>> = vec![Vec::new(); TABLE_COUNT];
    for item in items {
        if let Some(pre) = &item.pre {
            sessions.push(pre);
        }
        match &item.op {
            Op::Row { table, cells } => groups[*table].push(cells),
            other => sessions.push(other),
        }
    }
    let mut duplicates = 0u64;
    if verify {
        for (t, group) in groups.iter_mut().enumerate() {
            if let (false, Some(table)) = (group.is_empty(), layout.tables[t].as_ref()) {
                duplicates += skip_stored(conn, table, group).await?;
            }
        }
    }
    let busy: Vec<usize> = (0..TABLE_COUNT)
        .filter(|t| !groups[*t].is_empty())
        .collect();
    if sessions.is_empty() && busy.is_empty() {
        return Ok(Outcome {
            inserted: 0,
            duplicates,
        });
    }
    // One table: a single autocommitted statement. Its outcome is in doubt
    // if the connection dies while we wait for the answer.
    if sessions.is_empty() && busy.len() == 1 {
        let t = busy[0];
        let table = layout.tables[t]
            .as_ref()
            .expect("rows only for resolved tables");
        let inserted = insert(conn, table, &groups[t], dedup, true).await?;
        return Ok(Outcome {
            inserted,
            duplicates: duplicates + (groups[t].len() as u64).saturating_sub(inserted),
        });
    }
    let mut tx = conn.begin().await.map_err(|e| classify(&e, false))?;
    if let Some(s) = &layout.sessions {
        for op in &sessions {
            session_op(&mut tx, s, op).await?;
        }
    }
    let mut inserted = 0u64;
    for t in busy {
        let table = layout.tables[t]
            .as_ref()
            .expect("rows only for resolved tables");
        let done = insert(&mut tx, table, &groups[t], dedup, false).await?;
        inserted += done;
        duplicates += (groups[t].len() as u64).saturating_sub(done);
    }
    tx.commit().await.map_err(|e| classify(&e, true))?;
    Ok(Outcome {
        inserted,
        duplicates,
    })
}

/// One `INSERT … SELECT FROM UNNEST(…)` for `rows` of `table` (with
/// `ON CONFLICT DO NOTHING` when `dedup`); returns the rows inserted.
///
/// Why not `COPY`: sqlx sends `COPY`'s data and its end as two writes
/// without `TCP_NODELAY`, so whenever a batch fits in few TCP segments the
/// end waits for the server's delayed ACK (~40 ms a batch: 10k rows/s for
/// small rows in 500-row batches here). An extended-protocol `INSERT` goes
/// out in one write. See the README for the measurements.
async fn insert(
    conn: &mut PgConnection,
    table: &Resolved,
    rows: &[&Vec<Cell>],
    dedup: bool,
    autocommit: bool,
) -> Result<u64, Failure> {
    let arrays: Vec<ColumnArray<'_>> = table
        .columns
        .iter()
        .map(|(i, kind, ty)| ColumnArray::build(*kind, *ty, *i, rows))
        .collect();
    let sql = if dedup {
        format!("{} ON CONFLICT DO NOTHING", table.insert_sql)
    } else {
        table.insert_sql.clone()
    };
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for a in &arrays {
        q = match a {
            ColumnArray::Times(v) => q.bind(v),
            ColumnArray::Texts(v) => q.bind(v),
            ColumnArray::OwnedTexts(v) => q.bind(v),
            ColumnArray::Uuids(v) => q.bind(v),
            ColumnArray::Floats(v) => q.bind(v),
        };
    }
    q.execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| classify(&e, autocommit))
}

/// Drop rows of `group` whose `msg_id` is already stored (after a write
/// whose commit is in doubt); returns how many.
async fn skip_stored(
    conn: &mut PgConnection,
    table: &Resolved,
    group: &mut Vec<&Vec<Cell>>,
) -> Result<u64, Failure> {
    let Some(id_cell) = table.msg_id_cell else {
        return Ok(0);
    };
    let ids: Vec<String> = group
        .iter()
        .filter_map(|c| c[id_cell].text().map(str::to_string))
        .collect();
    let times = group.iter().filter_map(|c| match c[table.time_cell] {
        Cell::Time(t) => Some(t),
        _ => None,
    });
    let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if ids.is_empty() || lo > hi {
        return Ok(0);
    }
    let sql = format!(
        "SELECT msg_id FROM {} WHERE msg_id = ANY($1) AND \"{}\" BETWEEN $2 AND $3",
        table.ident.qualified(),
        table.time_column
    );
    let found: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(ids)
        .bind(pg_time(lo))
        .bind(pg_time(hi))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e, false))?;
    if found.is_empty() {
        return Ok(0);
    }
    let found: HashSet<String> = found.into_iter().collect();
    let before = group.len();
    group.retain(|c| !c[id_cell].text().is_some_and(|id| found.contains(id)));
    let skipped = (before - group.len()) as u64;
    tracing::info!(
        rows = skipped,
        "rows of an interrupted write were already committed; not writing them again"
    );
    Ok(skipped)
}

async fn session_op(conn: &mut PgConnection, sessions: &Ident, op: &Op) -> Result<(), Failure> {
    let s = sessions.qualified();
    let r = match op {
        Op::SessionStart {
            id,
            user,
            time_us,
            device_info,
        } => {
            let sql = format!(
                "INSERT INTO {s} (session_id, user_id, start_time, device_info) VALUES ($1, $2, $3, $4::text::jsonb) \
                 ON CONFLICT (session_id) DO UPDATE SET device_info = COALESCE(EXCLUDED.device_info, {s}.device_info)"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(*id)
                .bind(user.as_str())
                .bind(pg_time(*time_us))
                .bind(
                    device_info
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                )
                .execute(&mut *conn)
                .await
        }
        Op::SessionEnd { id, user, time_us } => {
            let sql = format!(
                "INSERT INTO {s} (session_id, user_id, start_time, end_time) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (session_id) DO UPDATE SET end_time = EXCLUDED.end_time"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(*id)
                .bind(user.as_str())
                .bind(pg_time(*time_us))
                .execute(&mut *conn)
                .await
        }
        Op::Row { .. } => return Ok(()),
    };
    r.map(|_| ()).map_err(|e| classify(&e, false))
}

/// Health details for `/health`.
pub fn details(status: &Status, metrics: &Metrics, table: &Ident, durable: bool) -> Value {
    json!({
        "table": table.display(),
        "durable": durable,
        "timescaledb": status.timescaledb,
        "buffered_rows": metrics.buffered.get(),
        "rows_written": metrics.rows_written.get(),
        "last_error": status.last_error,
    })
}
