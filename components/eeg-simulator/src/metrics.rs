//! The `eeg_simulator_*` metric families, each child carrying the
//! `component` label.

use fednode_kit::Context;
use prometheus::IntCounter;

/// The component's metric children.
pub(crate) struct Metrics {
    pub(crate) samples_total: IntCounter,
    pub(crate) published: IntCounter,
}

impl Metrics {
    pub(crate) fn new(ctx: &Context) -> Self {
        Metrics {
            samples_total: ctx.metrics.counter(
                "eeg_simulator_samples_total",
                "Samples generated over all users",
            ),
            published: ctx.metrics.counter(
                "eeg_simulator_messages_published_total",
                "Raw messages published on the bus",
            ),
        }
    }
}
