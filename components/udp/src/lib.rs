//! The `udp` input: each datagram holding JSON is published on
//! the `out` port's subject; anything else is dropped and counted.
//!
//! - `config.rs`: the config block.
//! - `input.rs`: the socket loop.

mod config;
mod input;
mod metrics;

pub use config::Config;
pub use input::UdpInput;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry.
pub fn registration() -> Registration {
    Registration {
        name: "udp",
        aliases: &[],
        kinds: &[ComponentKind::Input],
        build: |cx, value| {
            let cfg = Config::parse(value, cx.path)?;
            Ok(Arc::new(UdpInput::new(cfg)))
        },
        schema: || schemars::schema_for!(Config),
    }
}
