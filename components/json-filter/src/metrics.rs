//! The `json_filter_*` metric families, each child carrying the `component`
//! label.

use fednode_kit::Context;
use prometheus::IntCounter;

/// The component's metric children (`json_filter_*`).
#[derive(Clone)]
pub(crate) struct Counters {
    pub(crate) input: IntCounter,
    pub(crate) passed: IntCounter,
    pub(crate) rejected: IntCounter,
    pub(crate) over_budget: IntCounter,
    pub(crate) parse_errors: IntCounter,
    pub(crate) publish_errors: IntCounter,
}

impl Counters {
    pub(crate) fn new(ctx: &Context) -> Self {
        let errors = ctx.metrics.counter_vec(
            "json_filter_errors_total",
            "Messages dropped by the filter, by type (parse_error, publish_error)",
            &["type"],
        );
        Counters {
            input: ctx.metrics.counter(
                "json_filter_messages_in_total",
                "Messages read from the input subjects",
            ),
            passed: ctx.metrics.counter(
                "json_filter_messages_passed_total",
                "Messages that matched the filter and were published",
            ),
            rejected: ctx.metrics.counter(
                "json_filter_messages_rejected_total",
                "Messages that did not match the filter",
            ),
            over_budget: ctx.metrics.counter(
                "json_filter_over_budget_total",
                "Messages on which the filter would have visited more than 10,000 JSON nodes (rejected, and counted in messages_rejected too)",
            ),
            parse_errors: errors.with(&["parse_error"]),
            publish_errors: errors.with(&["publish_error"]),
        }
    }
}
