//! The `websocket` output (SPEC §3, §4.2): serves data from its input
//! subjects to WebSocket peers — as a server edge nodes expose, or as a
//! client pushing to a hub's `websocket_input` — and answers the request
//! methods of seed 004 for each connection.
//!
//! - `config.rs`: the config block and its validation.
//! - `output.rs`: the component (`start`, health, `/components` detail,
//!   admin requests, the buffer) and the state its tasks share.
//! - `fanout.rs`: the one task reading the bus: replay buffer, routing,
//!   per-connection queues, and the replay cut.
//! - `conn.rs`: one connection's queue, rate limit, filters, capabilities.
//! - `session.rs`: one socket session (the input crate's `drive`) and the
//!   pump that moves a connection's data through its rate limit.
//! - `methods.rs`: `backpressure`, `subscribe`, `unsubscribe`, `replay`,
//!   `status`, `announce`.
//! - `server.rs` / `client.rs`: the two modes, on the input crate's server
//!   gate and reconnect loop.
//! - `item.rs` / `buffer.rs` / `metrics.rs`: a shared data message, the
//!   replay ring, the `websocket_output_*` families.

mod buffer;
mod client;
pub mod config;
mod conn;
mod fanout;
mod item;
mod methods;
mod metrics;
mod output;
mod server;
mod session;

pub use config::{OutputConfig, Settings};
pub use methods::METHODS;
pub use output::WebSocketOutput;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry: factory `websocket`, alias `websocket_output`.
pub fn registration() -> Registration {
    Registration {
        name: "websocket",
        aliases: &["websocket_output"],
        kinds: &[ComponentKind::Output],
        build: |cx, value| {
            let settings = OutputConfig::parse(value, cx.path)?;
            Ok(Arc::new(WebSocketOutput::new(settings)))
        },
    }
}
