//! The `timescale_*` metric families, each child carrying the `component`
//! label.

use fednode_kit::metrics::{ComponentMetrics, LabelledCounter};
use prometheus::{Histogram, IntCounter, IntGauge};

use crate::failure::RowClass;

/// The component's metrics (the names operators rely on).
#[derive(Clone)]
pub struct Metrics {
    pub rows_written: IntCounter,
    pub batches: IntCounter,
    pub batch_duration: Histogram,
    pub buffered: IntGauge,
    pub errors: LabelledCounter,
    pub retries: IntCounter,
    pub duplicates: IntCounter,
    /// Rows refused by PostgreSQL, by SQLSTATE class.
    pub rejected: LabelledCounter,
    /// Rows lost: held at shutdown with nowhere to go, or unreadable in
    /// the spill.
    pub dropped: LabelledCounter,
    /// Rows written to the spill at shutdown.
    pub spilled: IntCounter,
    /// Rows in the spill, not yet committed to PostgreSQL.
    pub spill_rows: IntGauge,
}

/// `timescale_rows_dropped_total{reason}`: held at shutdown, neither
/// written nor spilled.
pub const DROPPED_SHUTDOWN: &str = "shutdown";
/// `timescale_rows_dropped_total{reason}`: a spill record that could not be
/// read back.
pub const DROPPED_SPILL_UNREADABLE: &str = "spill_unreadable";

impl Metrics {
    pub fn new(m: &ComponentMetrics) -> Self {
        let metrics = Metrics {
            rows_written: m.counter(
                "timescale_rows_written_total",
                "Rows committed to PostgreSQL",
            ),
            batches: m.counter("timescale_batches_total", "Batches committed to PostgreSQL"),
            batch_duration: m.histogram(
                "timescale_batch_duration_seconds",
                "Time to write one batch (successful writes)",
            ),
            buffered: m.int_gauge(
                "timescale_buffered_rows",
                "Rows held in memory, not yet committed",
            ),
            errors: m.counter_vec(
                "timescale_errors_total",
                "Errors by type: connection, database, rejected_row, parse_error, spill, jetstream, ack",
                &["type"],
            ),
            retries: m.counter(
                "timescale_retries_total",
                "Batch writes retried after a failure",
            ),
            duplicates: m.counter(
                "timescale_duplicates_total",
                "Rows skipped because a row with the same msg_id and time was already stored",
            ),
            rejected: m.counter_vec(
                "timescale_rows_rejected_total",
                "Rows PostgreSQL refused and that were dropped, by reason: data_exception (SQLSTATE class 22), integrity_violation (23), program_limit (54)",
                &["reason"],
            ),
            dropped: m.counter_vec(
                "timescale_rows_dropped_total",
                "Rows lost, by reason: shutdown (held when the component stopped, neither written nor spilled), spill_unreadable",
                &["reason"],
            ),
            spilled: m.counter(
                "timescale_spilled_rows_total",
                "Rows written to the spill at shutdown, to be written first at the next start",
            ),
            spill_rows: m.int_gauge(
                "timescale_spill_rows",
                "Rows in the spill, not yet committed to PostgreSQL",
            ),
        };
        for class in RowClass::ALL {
            metrics.rejected.with(&[class.reason()]);
        }
        for reason in [DROPPED_SHUTDOWN, DROPPED_SPILL_UNREADABLE] {
            metrics.dropped.with(&[reason]);
        }
        metrics
    }
}
