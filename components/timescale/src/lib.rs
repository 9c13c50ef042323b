//! `timescale`: the storage component. Writes messages from its
//! input subjects into PostgreSQL — hypertables when TimescaleDB is
//! installed, plain tables with BRIN indexes otherwise.
//!
//! - [`config`]: the `config` block and its pure validation.
//! - `schema`: tables per profile, DDL at start, introspection.
//! - `rows`: messages → rows (generic table and the `eeg` profile).
//! - `record`: a message as the spill keeps it.
//! - `table`: identifiers, column types, `UNNEST` arrays.
//! - `failure`: write errors sorted by what to do (retry, or isolate a row).
//! - `db`: connecting, the schema step, writing one batch.
//! - `writer`: the batching, retrying writer task: row isolation, the
//!   shutdown spill.
//! - `spill`: the spill, on the kit's disk log.
//! - `status`: health shared with `Component::health`.
//! - `source`: bus subscriptions and JetStream durable consumers.
//!
//! The guarantees of each mode are in the crate's README.

pub mod config;
mod db;
mod failure;
mod metrics;
mod path;
mod record;
mod rows;
mod schema;
mod source;
mod spill;
mod status;
mod table;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fednode_kit::{
    BuildContext, BuildResult, Component, ComponentKind, Context, Health, Overflow, PortsConfig,
    Registration, StartError, SubscribeOptions,
};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::mpsc;

pub use config::{Config, Profile};

/// The registry entry: factory `timescale`, type `storage`.
pub fn registration() -> Registration {
    Registration {
        name: "timescale",
        aliases: &[],
        kinds: &[ComponentKind::Storage],
        build,
        schema: || schemars::schema_for!(Config),
    }
}

fn build(ctx: &BuildContext<'_>, value: &Value) -> BuildResult {
    let v = config::Config::parse(value, ctx.path)?;
    // The spill: where it is configured, else under the node's data_dir.
    let spill = v.config.spill_path.clone().or_else(|| {
        ctx.node
            .data_dir
            .as_ref()
            .map(|d| d.join(ctx.instance).join("spill"))
    });
    Ok(Arc::new(Timescale {
        path: ctx.path.to_string(),
        v,
        spill,
        shared: status::Shared::new(),
        metrics: Mutex::new(None),
    }))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` (also a
/// `password=` query parameter), for logs and errors.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let auth_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..auth_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                out.replace_range(from..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find("password=") {
        let from = q + "password=".len();
        let to = out[from..].find('&').map_or(out.len(), |i| from + i);
        out.replace_range(from..to, "***");
    }
    out
}

/// A `timescale` component.
pub struct Timescale {
    /// JSON path of the `config` block, for start errors.
    path: String,
    v: config::Settings,
    /// The spill's directory, when there is one.
    spill: Option<PathBuf>,
    shared: Arc<status::Shared>,
    metrics: Mutex<Option<metrics::Metrics>>,
}

impl Timescale {
    fn settings(&self) -> Result<db::Settings, StartError> {
        let c = &self.v.config;
        let connect: PgConnectOptions = c
            .url
            .parse::<PgConnectOptions>()
            .map_err(|e| {
                StartError::new(format!("{}.url: {}", self.path, redact_url(&e.to_string())))
            })?
            .application_name("fednode-timescale")
            // Quiet "already exists" notices; timestamptz → timestamp
            // columns get UTC wall time.
            .options([("client_min_messages", "warning"), ("TimeZone", "UTC")]);
        Ok(db::Settings {
            connect,
            url_display: redact_url(&c.url),
            profile: c.profile,
            table: self.v.table.clone(),
            manage_schema: c.manage_schema,
            durable: c.durable,
            batch_size: c.batch_size,
            flush_interval: c.flush_interval,
            max_buffered: c.max_buffered,
            retry: c.retry.clone(),
            spill: self.spill.clone(),
        })
    }
}

#[async_trait]
impl Component for Timescale {
    fn ports(&self) -> &PortsConfig {
        &self.v.config.ports
    }

    async fn start(self: Arc<Self>, ctx: Context) -> Result<(), StartError> {
        let c = &self.v.config;
        let who = format!("component {}", ctx.name);
        let nats = ctx.bus.bus().nats_connection();
        if c.durable && nats.is_none() {
            return Err(StartError::new(format!(
                "{who}: {}.durable: true needs the NATS bus (bus.kind \"nats\" with JetStream); the {} bus has no durable consumers",
                self.path,
                ctx.bus.bus().kind()
            )));
        }
        let settings = self.settings()?;
        // The URL's certificate files, read now: sqlx reads them at each
        // connect and, when one is missing, says only "error communicating
        // with database: No such file or directory".
        for (param, file) in config::tls_files(&c.url) {
            if let Err(e) = tokio::fs::read(&file).await {
                return Err(StartError::new(format!(
                    "{who}: {}.url: {param} {file:?} cannot be read: {e}",
                    self.path
                )));
            }
        }
        let metrics = metrics::Metrics::new(&ctx.metrics);
        *self.metrics.lock().unwrap_or_else(|e| e.into_inner()) = Some(metrics.clone());

        // The database: reachable now, or (retry_on_start) later.
        let mut start_error = None;
        let (conn, layout) = match db::connect(&settings.connect).await {
            Ok(mut conn) => match db::prepare(&mut conn, &settings).await {
                Ok(layout) => (Some(conn), Some(layout)),
                Err(f) if c.retry_on_start && matches!(f, failure::Failure::Connection { .. }) => {
                    start_error = Some(fail_text(&f));
                    (None, None)
                }
                Err(f) => {
                    return Err(StartError::new(format!(
                        "{who}: preparing tables in PostgreSQL at {} failed: {}",
                        settings.url_display,
                        fail_text(&f)
                    )))
                }
            },
            Err(f) if c.retry_on_start => {
                tracing::warn!(component = %ctx.name, url = %settings.url_display, error = %fail_text(&f),
                    "PostgreSQL unreachable at start; buffering and retrying");
                start_error = Some(fail_text(&f));
                (None, None)
            }
            Err(f) => {
                return Err(StartError::new(format!(
                    "{who}: cannot connect to PostgreSQL at {}: {} (set retry_on_start: true to start anyway)",
                    settings.url_display,
                    fail_text(&f)
                )))
            }
        };
        match &start_error {
            None => self.shared.set(true, "running", None),
            Some(e) => self
                .shared
                .set(false, "database_unreachable", Some(e.clone())),
        }
        if let Some(l) = &layout {
            tracing::info!(component = %ctx.name, timescaledb = l.timescaledb, table = %self.v.table.display(),
                "PostgreSQL storage ready");
        }

        // The spill (opened before the input: what it holds goes first).
        let spill = match &settings.spill {
            Some(path) => {
                let spill = spill::Spill::open(path.clone()).await.map_err(|e| {
                    StartError::new(format!("{who}: {}.spill_path: {e}", self.path))
                })?;
                metrics.spill_rows.set(spill.rows() as i64);
                if spill.waiting() > 0 {
                    tracing::info!(component = %ctx.name, rows = spill.waiting(), path = %path.display(),
                        "rows spilled at the last stop are written first");
                }
                Some(spill)
            }
            None => None,
        };

        // The input: a durable JetStream consumer, or bus subscriptions.
        let subjects = c.ports.input_subjects();
        let (tx, rx) = mpsc::channel(c.batch_size.max(64));
        let mut nats_client = None;
        let input = if c.durable {
            let nc = nats.expect("checked above");
            let client = source::connect_nats(&nc, &ctx.name)
                .await
                .map_err(|e| StartError::new(format!("{who}: {e}")))?;
            let consumers = source::durable_consumers(
                &client,
                &c.jetstream,
                &ctx.name,
                &subjects,
                c.max_buffered,
            )
            .await
            .map_err(|e| StartError::new(format!("{who}: {e}")))?;
            for consumer in consumers {
                ctx.tracker.spawn(source::forward_jetstream(
                    consumer,
                    tx.clone(),
                    ctx.cancel.clone(),
                    c.batch_size.min(1000),
                    metrics.clone(),
                ));
            }
            nats_client = Some(client);
            source::Input::Channel(rx)
        } else {
            let opts = SubscribeOptions {
                // Storage must lose nothing: a full queue makes the
                // (memory-bus) publisher wait.
                overflow: Overflow::Block,
                capacity: (c.batch_size * 4).clamp(1024, c.max_buffered.max(1024)),
                ..Default::default()
            };
            let mut subs = ctx
                .bus
                .subscribe_all(&subjects, &opts)
                .await
                .map_err(|e| StartError::new(format!("{who}: {}", e.0)))?;
            if subs.len() == 1 {
                let sub = subs.pop().expect("one subscription");
                source::Input::Bus(sub, Vec::with_capacity(c.batch_size))
            } else {
                for sub in subs {
                    ctx.tracker
                        .spawn(source::forward_bus(sub, tx.clone(), ctx.cancel.clone()));
                }
                source::Input::Channel(rx)
            }
        };
        drop(tx);

        let converter = rows::Converter::new(
            c.profile,
            self.v.key_path.clone(),
            ctx.node.id.as_str().into(),
            ctx.node.region.as_deref().map(Arc::from),
        );
        let w = writer::Writer::new(
            settings,
            metrics,
            self.shared.clone(),
            conn,
            layout,
            converter,
            nats_client,
            spill,
        );
        ctx.tracker.spawn(w.run(input, ctx.cancel.clone()));
        Ok(())
    }

    fn health(&self) -> Health {
        let s = self.shared.get();
        let details = match &*self.metrics.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(m) => status::details(
                &s,
                m,
                &self.v.table,
                self.v.config.durable,
                self.spill.as_deref(),
            ),
            None => Value::Null,
        };
        if s.healthy {
            Health::ok(s.status, details)
        } else {
            Health::failing(s.status, details)
        }
    }

    fn describe(&self) -> Value {
        serde_json::json!({
            "table": self.v.table.display(),
            "profile": self.v.config.profile,
            "durable": self.v.config.durable,
            "spill_path": self.spill.as_ref().map(|p| p.display().to_string()),
        })
    }
}

fn fail_text(f: &failure::Failure) -> String {
    redact_url(f.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:s3cr@t@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgresql://h/db?user=u&password=x&sslmode=off"),
            "postgresql://h/db?user=u&password=***&sslmode=off"
        );
        assert_eq!(redact_url("postgres://u:pw@h"), "postgres://u:***@h");
    }

    #[test]
    fn registration_builds_and_reports_paths() {
        let r = registration();
        assert_eq!(r.name, "timescale");
        assert_eq!(r.kinds, &[ComponentKind::Storage]);
        let node = fednode_kit::NodeIdentity::default();
        let ctx = BuildContext {
            instance: "ts",
            path: "components.ts.config",
            node: &node,
        };
        let ok = serde_json::json!({"url": "postgres://localhost/db", "ports": {"inputs": [{"name": "in", "subject": "a.>"}]}});
        assert!((r.build)(&ctx, &ok).is_ok());
        let Err(errs) = (r.build)(&ctx, &serde_json::json!({"url": "http://x"})) else {
            panic!("accepted")
        };
        assert!(errs.iter().any(|e| e.path == "components.ts.config.url"));
    }
}
