//! The `timescale_*` metric families, each child carrying the `component`
//! label.

use fednode_kit::metrics::{ComponentMetrics, LabelledCounter};
use prometheus::{Histogram, IntCounter, IntGauge};

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
}

impl Metrics {
    pub fn new(m: &ComponentMetrics) -> Self {
        Metrics {
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
                "Errors by type: connection, database, rejected_row, parse_error, jetstream, ack",
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
        }
    }
}
