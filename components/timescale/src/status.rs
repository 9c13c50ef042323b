//! Health as the writer last saw it, shared with `Component::health`, and
//! the details `/health` shows.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::table::Ident;

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

    pub fn set_timescaledb(&self, on: bool) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .timescaledb = Some(on);
    }
}

/// Health details for `/health`.
pub fn details(
    status: &Status,
    metrics: &Metrics,
    table: &Ident,
    durable: bool,
    spill: Option<&Path>,
) -> Value {
    json!({
        "table": table.display(),
        "durable": durable,
        "timescaledb": status.timescaledb,
        "buffered_rows": metrics.buffered.get(),
        "rows_written": metrics.rows_written.get(),
        "spill": spill.map(|p| json!({
            "path": p.display().to_string(),
            "rows": metrics.spill_rows.get(),
        })),
        "last_error": status.last_error,
    })
}
