//! The `json_filter` processor: messages from its input subjects
//! that match a filter (`criteria` + `match`, evaluated by the kit's filter
//! engine) are republished unchanged on its `out` subject; the others are
//! dropped and counted.
//!
//! - `config.rs`: the config block and its validation (the filter is
//!   compiled at build time, so a bad operator is a config error).
//! - `processor.rs`: the per-input filter loop, metrics and health.
//! - `projection.rs`: parsing only the members of a payload the filter and
//!   the output subject read.

mod config;
mod metrics;
mod processor;
mod projection;

pub use config::Config;
pub use processor::JsonFilter;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry.
pub fn registration() -> Registration {
    Registration {
        name: "json_filter",
        aliases: &[],
        kinds: &[ComponentKind::Processor],
        build: |cx, value| Ok(Arc::new(JsonFilter::build(value, cx.path)?)),
        schema: || schemars::schema_for!(Config),
    }
}
