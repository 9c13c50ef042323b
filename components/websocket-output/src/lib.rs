//! The `websocket` output: serves data from its input subjects to
//! WebSocket peers — as a server edge nodes expose, or as a client pushing
//! to a hub's `websocket_input` — and answers the request methods
//! (`backpressure`, `subscribe`, `unsubscribe`, `replay`, `status`,
//! `announce`) for each connection. The transport is `fednode-ws`.
//!
//! - `config.rs`: the config block and its validation (`Config::parse`).
//! - `component.rs`: the component (`start`, health, `/components` detail,
//!   admin requests, the buffer).
//! - `fanout.rs`: the one task reading the bus: replay buffer, routing,
//!   per-connection queues, and the replay cut.
//! - `session.rs`: one socket session (`fednode_ws::frame::drive`) and the
//!   pump that moves a connection's data through its rate limit.
//! - `methods.rs`: the methods above.
//! - `server.rs` / `client.rs`: the two modes, on the transport's server
//!   gate and reconnect loop.
//! - `conn.rs`: one connection's queue, rate limit, filters, capabilities.
//! - `shared.rs`: what the tasks of a started output share.
//! - `item.rs` / `buffer.rs` / `metrics.rs`: a shared data message, the
//!   replay ring, the `websocket_output_*` families.

mod buffer;
mod client;
mod component;
pub mod config;
mod conn;
mod fanout;
mod inflight;
mod item;
mod methods;
mod metrics;
mod routing;
mod server;
mod session;
mod shared;
mod spool;

pub use component::WebSocketOutput;
pub use config::{Config, Settings};
pub use methods::METHODS;

use fednode_kit::{ComponentKind, Registration};
use std::sync::Arc;

/// The registry entry: factory `websocket`, alias `websocket_output`.
pub fn registration() -> Registration {
    Registration {
        name: "websocket",
        aliases: &["websocket_output"],
        kinds: &[ComponentKind::Output],
        build: |cx, value| {
            let mut settings = Config::parse(value, cx.path)?;
            settings.resolve_store(cx.path, cx.instance, cx.node.data_dir.as_deref())?;
            Ok(Arc::new(WebSocketOutput::new(settings)))
        },
        schema: || schemars::schema_for!(Config),
    }
}
