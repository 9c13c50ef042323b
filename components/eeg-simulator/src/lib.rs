//! The `eeg_simulator` input: synthetic multi-channel EEG per
//! user — sines plus seeded Gaussian noise — in the raw-message shape the
//! `eeg_features` processor reads, for demos and benchmarks.
//!
//! - `config.rs`: the config block.
//! - `signal.rs`: the deterministic signal generator.
//! - `input.rs`: pacing and publishing.

mod config;
mod input;
mod metrics;
pub mod signal;

pub use config::{Config, Pacing, SineComponent};
pub use input::Simulator;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry.
pub fn registration() -> Registration {
    Registration {
        name: "eeg_simulator",
        aliases: &[],
        kinds: &[ComponentKind::Input],
        build: |cx, value| {
            let cfg = Config::parse(value, cx.path)?;
            Ok(Arc::new(Simulator::new(cfg)))
        },
        schema: || schemars::schema_for!(Config),
    }
}
