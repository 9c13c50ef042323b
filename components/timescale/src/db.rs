//! The database side of a write: connecting, the schema step, and one
//! batch written with one `INSERT … SELECT FROM UNNEST(…)` per table (a
//! transaction when it spans tables or sessions), checking first, when a
//! write's commit is in doubt, which rows are already stored.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

use crate::config::{Profile, RetryConfig};
use crate::failure::{classify, tls_hint, Failure};
use crate::rows::{Item, Op};
use crate::schema::{self, Layout, Resolved, SchemaError, TABLE_COUNT};
use crate::table::{pg_time, Cell, ColumnArray, Ident};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The spill's directory (`spill_path`, or `<data_dir>/<instance>/spill`).
    pub spill: Option<PathBuf>,
}

/// Open a connection, bounded in time. TLS follows the URL's `sslmode`,
/// `sslrootcert`, `sslcert` and `sslkey` (kept in `opts`); a failure that
/// a TLS setting explains says which.
pub async fn connect(opts: &PgConnectOptions) -> Result<PgConnection, Failure> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(classify(&e, false).with_hint(tls_hint(&e))),
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

/// What a committed write did.
pub struct Outcome {
    pub inserted: u64,
    pub duplicates: u64,
}

/// Write `items` (one batch): a single statement when they all go to one
/// table, else one transaction (sessions first).
pub async fn write_items(
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
