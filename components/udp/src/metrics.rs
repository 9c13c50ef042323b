//! The `udp_*` metric families, each child carrying the `component` label.

use fednode_kit::metrics::LabelledCounter;
use fednode_kit::Context;
use prometheus::IntCounter;

/// The component's metric children.
pub(crate) struct Metrics {
    pub(crate) received: IntCounter,
    pub(crate) published: IntCounter,
    /// Datagrams dropped, by `type` (`parse_error`, `socket_error`, …).
    pub(crate) errors: LabelledCounter,
}

impl Metrics {
    pub(crate) fn new(ctx: &Context) -> Self {
        Metrics {
            received: ctx
                .metrics
                .counter("udp_datagrams_received_total", "Datagrams received"),
            published: ctx.metrics.counter(
                "udp_messages_published_total",
                "Datagrams published on the bus",
            ),
            errors: ctx.metrics.counter_vec(
                "udp_errors_total",
                "Datagrams dropped, by reason",
                &["type"],
            ),
        }
    }
}
