//! The `eeg_features_*` metric families, each child carrying the `component`
//! label.

use fednode_kit::Context;
use prometheus::{Histogram, IntCounter, IntGauge};

use crate::message::Reason;

/// The component's metric children (`eeg_features_*`).
#[derive(Clone)]
pub(crate) struct Counters {
    pub(crate) samples: IntCounter,
    pub(crate) windows: IntCounter,
    pub(crate) streams_active: IntGauge,
    pub(crate) evicted: IntCounter,
    pub(crate) rejected: [IntCounter; 5],
    pub(crate) compute: Histogram,
    pub(crate) passed: IntCounter,
    pub(crate) parse_errors: IntCounter,
    pub(crate) invalid: IntCounter,
    pub(crate) publish_errors: IntCounter,
}

impl Counters {
    pub(crate) fn new(ctx: &Context) -> Self {
        let m = &ctx.metrics;
        let rejected = m.counter_vec(
            "eeg_features_rejected_total",
            "Samples refused, by reason (channel_count, missing_channel, not_numeric, non_finite, key_too_long)",
            &["reason"],
        );
        let errors = m.counter_vec(
            "eeg_features_errors_total",
            "Messages dropped whole, by type (parse_error, invalid_message, publish_error)",
            &["type"],
        );
        Counters {
            samples: m.counter(
                "eeg_features_samples_total",
                "Samples accepted into a stream",
            ),
            windows: m.counter(
                "eeg_features_windows_total",
                "Feature messages produced (one per complete window)",
            ),
            streams_active: m.int_gauge("eeg_features_streams_active", "Streams alive now"),
            evicted: m.counter(
                "eeg_features_streams_evicted_total",
                "Least recently used streams freed to make room (max_streams or the byte bound reached)",
            ),
            rejected: Reason::ALL.map(|r| rejected.with(&[r.as_str()])),
            compute: m.histogram(
                "eeg_features_window_compute_seconds",
                "Time to compute one window's features (window copy, Welch PSDs, bands, metrics)",
            ),
            passed: m.counter(
                "eeg_features_passed_through_total",
                "Messages of another type than raw: counted, not processed, not republished",
            ),
            parse_errors: errors.with(&["parse_error"]),
            invalid: errors.with(&["invalid_message"]),
            publish_errors: errors.with(&["publish_error"]),
        }
    }
}
