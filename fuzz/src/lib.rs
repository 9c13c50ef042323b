//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! - [`reference`]: the serde-only envelope decoder that
//!   `components/kit/tests/envelope_props.rs` uses as its oracle (the same
//!   file; the oracle shares no code with the scanner path it checks).

#[path = "../../components/kit/tests/reference/mod.rs"]
pub mod reference;
