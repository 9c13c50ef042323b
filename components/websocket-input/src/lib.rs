//! fednode-websocket-input: the `websocket_input` component (SPEC §3, §4.1,
//! §5; seed 004), and the WebSocket plumbing the `websocket` output reuses.
//!
//! # What lives where
//!
//! - [`config`]: the `config` block (`deny_unknown_fields`, named defaults,
//!   humantime durations) and its validation into [`config::Settings`];
//!   [`config::ServerConfig`] and [`config::ClientConfig`] are the shared
//!   `server` / `client` blocks.
//! - [`input`]: the component. Sessions of either mode decode frames and push
//!   data into one kit [`BoundedQueue`](fednode_kit::queue::BoundedQueue)
//!   (`on_full` policy; `block` stops reading the socket); one publisher task
//!   drains it onto the `ws_data` subject (a template rendered only when it
//!   has placeholders), retrying publish errors with backoff. Requests from
//!   peers are answered locally (`status`) or forwarded to
//!   `<ws_control>.request`; requests this node sends (admin API,
//!   `<ws_control>.send`) go through the per-connection pending map.
//! - [`peer`]: a small client for the CLI (`fednode request|tail|send`).
//!
//! # Reusable pieces (used by `fednode-websocket-output`)
//!
//! - [`client::run_reconnecting`]: the client state machine
//!   (INIT → CONNECTING → CONNECTED → RECONNECTING → FAILED) with kit
//!   backoff + jitter and `max_retries`, generic over what to do with each
//!   established [`client::ClientStream`] (a closure returning
//!   [`client::SessionEnd`]), reporting [`client::StateChange`]s through a
//!   callback and presenting the [`Credential`](fednode_kit::config::Credential)
//!   as an `Authorization` header. [`client::connect`] is one attempt.
//! - [`server::Gate`]: auth (401) and the connection limit (503), checked
//!   before the upgrade; [`server::upgrade`] completes the handshake on an
//!   axum request and yields a tokio-tungstenite [`server::ServerStream`];
//!   [`server::bind`] / [`server::serve`].
//! - [`state::ConnectionState`], and [`metrics::StateGauge`] /
//!   [`metrics::RequestMetrics`] (family prefix as a parameter).
//! - [`pending::PendingRequests`]: request correlation per connection, with
//!   timeout, `max_concurrent_requests` and `fail_all` on disconnect.
//! - [`frame`]: [`frame::classify`] / [`frame::encode`] (text = JSON,
//!   binary = MessagePack), [`frame::Outbound`] + [`frame::write_loop`]
//!   (feed/flush batching, close after what is queued), and
//!   [`frame::drive`]: a whole connection with a [`frame::FrameHandler`]
//!   (1009 on oversize, 1001 on cancellation, throttled parse-error logs).
//! - [`throughput::RateMeter`] (`status` throughput) and
//!   [`dedup::RecentIds`] (duplicate ids for `at_least_once`).

pub mod client;
pub mod config;
pub mod dedup;
pub mod frame;
pub mod input;
pub mod metrics;
pub mod peer;
pub mod pending;
pub mod server;
pub mod state;
pub mod throughput;

pub use input::WebSocketInput;
pub use state::ConnectionState;

use fednode_kit::{BuildContext, BuildResult, ComponentKind, Registration};

/// The factory name.
pub const NAME: &str = "websocket_input";

/// The registry entry for `websocket_input`.
pub fn registration() -> Registration {
    Registration {
        name: NAME,
        aliases: &[],
        kinds: &[ComponentKind::Input],
        build: build_component,
    }
}

fn build_component(cx: &BuildContext<'_>, value: &serde_json::Value) -> BuildResult {
    let c = input::build(cx, value)?;
    Ok(c)
}
