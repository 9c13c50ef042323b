//! The tables of each profile, the DDL run at start (idempotent, under an
//! advisory lock so two nodes starting together do not race), and the
//! introspection that maps our logical columns to the columns the tables
//! really have.
//!
//! With TimescaleDB the data tables become hypertables on their time column;
//! without it (plain PostgreSQL) they get a BRIN index on time. Both get a
//! b-tree on `(key, time)` (`(user_id, timestamp)` for the typed tables).

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::config::Profile;
use crate::table::{accepted_types, unnest_types, CellKind, ColType, ColumnSpec, Ident};

/// Logical table indexes (the order of [`Layout::tables`]).
pub const MESSAGES: usize = 0;
pub const RAW: usize = 1;
pub const FEATURES: usize = 2;
pub const PREDICTIONS: usize = 3;
pub const TABLE_COUNT: usize = 4;

const fn col(name: &'static str, kind: CellKind, required: bool, ddl: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        kind,
        required,
        ddl,
    }
}

/// `fednode_messages` (or the configured `table`).
pub const MESSAGES_COLUMNS: &[ColumnSpec] = &[
    col("time", CellKind::Time, true, "timestamptz NOT NULL"),
    col("subject", CellKind::Text, true, "text NOT NULL"),
    col("node_id", CellKind::Text, true, "text NOT NULL"),
    col("key", CellKind::Text, false, "text"),
    col("payload", CellKind::Json, true, "jsonb NOT NULL"),
    col("msg_id", CellKind::Text, false, "text"),
    col("region", CellKind::Text, false, "text"),
];

/// The EEG profile's `raw_samples` (+ `msg_id`).
pub const RAW_COLUMNS: &[ColumnSpec] = &[
    col("timestamp", CellKind::Time, true, "timestamptz NOT NULL"),
    col("session_id", CellKind::Uuid, true, "uuid NOT NULL"),
    col("user_id", CellKind::Text, true, "varchar(100) NOT NULL"),
    col("data", CellKind::Json, true, "jsonb NOT NULL"),
    col("msg_id", CellKind::Text, false, "text"),
];

/// `features`, shaped like `raw_samples` with the two numbers consumers
/// query most as columns.
pub const FEATURES_COLUMNS: &[ColumnSpec] = &[
    col("timestamp", CellKind::Time, true, "timestamptz NOT NULL"),
    col("session_id", CellKind::Uuid, true, "uuid NOT NULL"),
    col("user_id", CellKind::Text, true, "varchar(100) NOT NULL"),
    col("workload", CellKind::Float, false, "double precision"),
    col("confidence", CellKind::Float, false, "double precision"),
    col("data", CellKind::Json, true, "jsonb NOT NULL"),
    col("msg_id", CellKind::Text, false, "text"),
];

/// The EEG profile's `predictions` (+ `msg_id`).
pub const PREDICTIONS_COLUMNS: &[ColumnSpec] = &[
    col("timestamp", CellKind::Time, true, "timestamptz NOT NULL"),
    col("session_id", CellKind::Uuid, true, "uuid NOT NULL"),
    col("user_id", CellKind::Text, true, "varchar(100) NOT NULL"),
    col(
        "prediction_type",
        CellKind::Text,
        true,
        "varchar(50) NOT NULL",
    ),
    col(
        "classifier_name",
        CellKind::Text,
        true,
        "varchar(100) NOT NULL",
    ),
    col("data", CellKind::Json, true, "jsonb NOT NULL"),
    col("confidence", CellKind::Float, false, "double precision"),
    col("classifier_version", CellKind::Text, false, "varchar(50)"),
    col("msg_id", CellKind::Text, false, "text"),
];

/// The EEG profile's `sessions`, written with upserts.
const SESSIONS_DDL: &str = "session_id uuid PRIMARY KEY, user_id varchar(100) NOT NULL, \
     start_time timestamptz NOT NULL, end_time timestamptz, device_info jsonb";

/// A table the profile writes, before introspection.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub ident: Ident,
    pub columns: &'static [ColumnSpec],
    pub time_column: &'static str,
    pub key_column: &'static str,
}

/// The tables of a profile. The generic table always exists (the eeg
/// profile sends messages of other types there); the typed tables live in
/// the generic table's schema.
pub fn tables(profile: Profile, table: &Ident) -> Vec<Option<TableDef>> {
    let mut out = vec![
        Some(TableDef {
            ident: table.clone(),
            columns: MESSAGES_COLUMNS,
            time_column: "time",
            key_column: "key",
        }),
        None,
        None,
        None,
    ];
    if profile == Profile::Eeg {
        for (i, name, columns) in [
            (RAW, "raw_samples", RAW_COLUMNS),
            (FEATURES, "features", FEATURES_COLUMNS),
            (PREDICTIONS, "predictions", PREDICTIONS_COLUMNS),
        ] {
            out[i] = Some(TableDef {
                ident: table.sibling(name),
                columns,
                time_column: "timestamp",
                key_column: "user_id",
            });
        }
    }
    out
}

/// A table as it is in the database: which of our columns it has, with
/// which types, and the statement that inserts a batch.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub ident: Ident,
    /// `(index into the def's columns, its kind, type in the database)` for
    /// each column written, in parameter order.
    pub columns: Vec<(usize, CellKind, ColType)>,
    /// `INSERT INTO t (…) SELECT … FROM UNNEST($1::timestamptz[], …)`.
    pub insert_sql: String,
    pub time_column: &'static str,
    /// Index of the time cell in a row.
    pub time_cell: usize,
    /// Index of the `msg_id` cell, when the table has that column.
    pub msg_id_cell: Option<usize>,
    /// Whether a unique index exists (so `ON CONFLICT DO NOTHING` can skip
    /// duplicates).
    pub has_unique: bool,
}

/// Everything the writer needs to know about the database.
#[derive(Debug, Clone)]
pub struct Layout {
    pub tables: Vec<Option<Resolved>>,
    pub sessions: Option<Ident>,
    pub timescaledb: bool,
}

/// Why the schema step failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The tables do not fit (missing table or column, unsupported type).
    #[error("{0}")]
    Mismatch(String),
}

const LOCK_KEY: i64 = 0x6665_646e_6f64_6531; // "fednode1"

/// Create what is missing (when `manage`), then read the tables back.
pub async fn prepare(
    conn: &mut PgConnection,
    profile: Profile,
    table: &Ident,
    manage: bool,
    durable: bool,
) -> Result<Layout, SchemaError> {
    let defs = tables(profile, table);
    let sessions = (profile == Profile::Eeg).then(|| table.sibling("sessions"));
    if manage {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        let r = create(conn, &defs, sessions.as_ref(), table, durable).await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await;
        r?;
        unlock?;
    }
    let timescaledb: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut resolved = Vec::with_capacity(TABLE_COUNT);
    for def in &defs {
        resolved.push(match def {
            Some(d) => Some(resolve(conn, d, manage).await?),
            None => None,
        });
    }
    if let Some(s) = &sessions {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(s.qualified())
            .fetch_one(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(SchemaError::Mismatch(format!(
                "table {} does not exist (manage_schema is false)",
                s.display()
            )));
        }
    }
    Ok(Layout {
        tables: resolved,
        sessions,
        timescaledb,
    })
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
}

async fn create(
    conn: &mut PgConnection,
    defs: &[Option<TableDef>],
    sessions: Option<&Ident>,
    table: &Ident,
    durable: bool,
) -> Result<(), SchemaError> {
    // Absent on plain PostgreSQL (or not allowed for this role): tolerated.
    if let Err(e) = exec(conn, "CREATE EXTENSION IF NOT EXISTS timescaledb".into()).await {
        if !matches!(e, sqlx::Error::Database(_)) {
            return Err(e.into());
        }
        tracing::info!(error = %e, "TimescaleDB is not available; using plain tables with BRIN indexes");
    }
    let timescaledb: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if let Some(schema) = table.schema() {
        exec(conn, format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await?;
    }
    if let Some(s) = sessions {
        exec(
            conn,
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({SESSIONS_DDL})",
                s.qualified()
            ),
        )
        .await?;
        exec(
            conn,
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} (user_id, start_time)",
                s.index_name("user_start_idx"),
                s.qualified()
            ),
        )
        .await?;
    }
    for def in defs.iter().flatten() {
        let t = def.ident.qualified();
        let cols: Vec<String> = def
            .columns
            .iter()
            .map(|c| format!("\"{}\" {}", c.name, c.ddl))
            .collect();
        exec(
            conn,
            format!("CREATE TABLE IF NOT EXISTS {t} ({})", cols.join(", ")),
        )
        .await?;
        // Tables from before these optional columns existed get them now.
        for c in def
            .columns
            .iter()
            .filter(|c| matches!(c.name, "msg_id" | "region"))
        {
            exec(
                conn,
                format!(
                    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS \"{}\" {}",
                    c.name, c.ddl
                ),
            )
            .await?;
        }
        let time = def.time_column;
        let mut hyper = false;
        if timescaledb {
            let r = sqlx::query(
                "SELECT create_hypertable($1::regclass, $2::name, if_not_exists => TRUE)",
            )
            .bind(&t)
            .bind(time)
            .execute(&mut *conn)
            .await;
            match r {
                Ok(_) => hyper = true,
                Err(sqlx::Error::Database(e)) => tracing::warn!(
                    table = %def.ident.display(), error = %e,
                    "create_hypertable failed; keeping a plain table with a BRIN index"
                ),
                Err(e) => return Err(e.into()),
            }
        }
        if !hyper {
            exec(
                conn,
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} USING brin (\"{time}\")",
                    def.ident.index_name(&format!("{time}_brin"))
                ),
            )
            .await?;
        }
        exec(
            conn,
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {t} (\"{}\", \"{time}\")",
                def.ident
                    .index_name(&format!("{}_{time}_idx", def.key_column)),
                def.key_column
            ),
        )
        .await?;
        if durable {
            // The dedup key: a redelivered message hits this index and is
            // skipped by `ON CONFLICT DO NOTHING` (and counted). It includes
            // the time column because TimescaleDB requires that of unique
            // indexes on hypertables.
            exec(
                conn,
                format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {t} (msg_id, \"{time}\")",
                    def.ident.index_name(&format!("msg_id_{time}_key"))
                ),
            )
            .await?;
        }
    }
    Ok(())
}

async fn resolve(
    conn: &mut PgConnection,
    def: &TableDef,
    manage: bool,
) -> Result<Resolved, SchemaError> {
    let name = def.ident.qualified();
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(&name)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(SchemaError::Mismatch(format!(
            "table {} does not exist{}",
            def.ident.display(),
            if manage {
                ""
            } else {
                " (manage_schema is false)"
            }
        )));
    }
    let found: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
    let mut columns = Vec::new();
    let mut problems = Vec::new();
    for (i, c) in def.columns.iter().enumerate() {
        match found.iter().find(|(n, _)| n == c.name) {
            None if c.required => problems.push(format!("column {} is missing", c.name)),
            None => {}
            Some((_, ty)) => match ColType::from_pg(ty).filter(|t| t.accepts(c.kind)) {
                Some(t) => columns.push((i, c.kind, t)),
                None => problems.push(format!(
                    "column {} has type {ty}; expected {}",
                    c.name,
                    accepted_types(c.kind)
                )),
            },
        }
    }
    if !problems.is_empty() {
        return Err(SchemaError::Mismatch(format!(
            "table {}: {}",
            def.ident.display(),
            problems.join("; ")
        )));
    }
    let has_unique: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) AND indisunique)",
    )
    .bind(&name)
    .fetch_one(&mut *conn)
    .await?;
    let names: Vec<String> = columns
        .iter()
        .map(|(i, ..)| format!("\"{}\"", def.columns[*i].name))
        .collect();
    let mut arrays = Vec::new();
    let mut selects = Vec::new();
    for (k, (_, kind, ty)) in columns.iter().enumerate() {
        let (array, cast) = unnest_types(*kind, *ty);
        arrays.push(format!("${}::{array}", k + 1));
        selects.push(format!("c{k}{cast}"));
    }
    let aliases: Vec<String> = (0..columns.len()).map(|k| format!("c{k}")).collect();
    let insert_sql = format!(
        "INSERT INTO {name} ({}) SELECT {} FROM UNNEST({}) AS u({})",
        names.join(", "),
        selects.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    );
    let time_cell = def
        .columns
        .iter()
        .position(|c| c.name == def.time_column)
        .expect("every table has its time column");
    let msg_id_cell = columns
        .iter()
        .map(|(i, ..)| *i)
        .find(|i| def.columns[*i].name == "msg_id");
    Ok(Resolved {
        ident: def.ident.clone(),
        columns,
        insert_sql,
        time_column: def.time_column,
        time_cell,
        msg_id_cell,
        has_unique,
    })
}
