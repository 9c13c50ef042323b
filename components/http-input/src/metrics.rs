//! The `http_input_*` metric families, each child carrying the `component`
//! label.

use fednode_kit::metrics::LabelledCounter;
use fednode_kit::Context;
use prometheus::IntCounter;

/// The component's metric children.
pub(crate) struct Metrics {
    /// Requests answered, by `status` code.
    pub(crate) requests: LabelledCounter,
    pub(crate) published: IntCounter,
    /// Requests refused, by `type`.
    pub(crate) errors: LabelledCounter,
}

impl Metrics {
    pub(crate) fn new(ctx: &Context) -> Self {
        Metrics {
            requests: ctx.metrics.counter_vec(
                "http_input_requests_total",
                "HTTP requests answered, by status code",
                &["status"],
            ),
            published: ctx.metrics.counter(
                "http_input_messages_published_total",
                "Bodies published on the bus",
            ),
            errors: ctx.metrics.counter_vec(
                "http_input_errors_total",
                "Requests refused, by reason",
                &["type"],
            ),
        }
    }
}
