//! `eeg_features`: turns raw EEG samples into band-power feature messages
//! (SPEC §4.4). The numeric convention is `EEG.md`.
//!
//! * [`dsp`]: Welch PSD and trapezoid band power, validation helpers.
//! * [`stream`]: per-stream sample indexing and windowing.
//! * [`features`]: per-window features (bands, averages, metrics,
//!   workload, confidence) as a serializable struct.
//!
//! These modules are pure (no bus, no I/O, no allocation per sample or per
//! window after warm-up).

pub mod dsp;
pub mod features;
pub mod stream;
