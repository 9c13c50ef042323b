//! `eeg_features`: turns raw EEG samples into band-power feature
//! messages. The numeric convention is in the crate README, which
//! documents the config, the message shapes and the metrics.
//!
//! The component:
//! * [`config`]: the config block, validated with JSON paths.
//! * [`key`]: `key_path`, which value of a message names its stream.
//! * [`message`]: one-pass parsing of raw messages into reused buffers.
//! * `processor`: the running component (input tasks, idle sweeper).
//! * `table`: the live streams by key, in least-recently-used order,
//!   bounded in count and bytes (evicting the least recently used).
//!
//! The numeric core, pure (no bus, no I/O, no allocation per sample or per
//! window after warm-up):
//! * [`dsp`]: Welch PSD and trapezoid band power, validation helpers.
//! * [`stream`]: per-stream sample indexing and windowing.
//! * [`features`]: per-window features (bands, averages, metrics,
//!   workload, confidence) as a serializable struct.

pub mod config;
pub mod dsp;
pub mod features;
pub mod key;
pub mod message;
mod metrics;
mod processor;
mod read_fast;
mod read_serde;
mod sample;
pub mod stream;
mod table;

pub use config::Config;
pub use processor::EegFeatures;
pub use table::StreamTableUsage;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry.
pub fn registration() -> Registration {
    Registration {
        name: "eeg_features",
        aliases: &[],
        kinds: &[ComponentKind::Processor],
        build: |cx, value| {
            let cfg = Config::parse(value, cx.path)?;
            Ok(Arc::new(EegFeatures::new(cfg)))
        },
        schema: || schemars::schema_for!(Config),
    }
}
