//! fednode-websocket-input: the `websocket_input` component. Peers (devices,
//! relays, other nodes) send data and requests over WebSocket; data goes
//! onto the bus, requests are answered or forwarded to the bus. The
//! transport itself (frames, server gate, client reconnect, request
//! correlation) is `fednode-ws`.
//!
//! # What lives where
//!
//! - [`config`]: the `config` block, checked into [`config::Settings`]
//!   (`Config::parse`).
//! - `component`: the component (start, health, `/components` detail).
//! - `session`: connections of either mode — the server's HTTP handler and
//!   the client's reconnect loop — each driving its frames into the paths
//!   below.
//! - `publish`: the data path. While nothing is queued, data that is not
//!   acked goes onto the bus from the session when the bus takes it at
//!   once; everything else goes into one kit
//!   [`BoundedQueue`](fednode_kit::queue::BoundedQueue) (`on_full` policy;
//!   `block` stops reading the sockets), which one publisher task drains
//!   onto the `ws_data` subject (a template rendered only when it has
//!   placeholders). Under `at_least_once` each published envelope is acked.
//! - `control`: requests from peers (`status` answered here, the rest
//!   forwarded to `<ws_control>.request`) and requests this node sends (the
//!   admin API, `<ws_control>.send`).
//! - `downstream`: the way back — data on the `ws_downstream` subject goes
//!   to the peer that streams its key (a user).
//! - `relay`: relays that authenticate with their first message
//!   (`auth_message`) and their sessions (`ws_sessions`).
//! - `peer_status`: server mode, what each connected fednode peer says of
//!   itself (queue depth, in flight, store backlog), asked every
//!   `peer_status_interval`.
//! - `resume`: client mode, where a replay resumes after a restart (the
//!   last published id, kept under `data_dir`).
//! - `shared`: the state those files share.
//! - [`metrics`]: the `websocket_input_*` families.

mod component;
pub mod config;
mod control;
mod downstream;
pub mod metrics;
mod peer_status;
mod publish;
mod relay;
mod resume;
mod session;
mod shared;

pub use component::{build, WebSocketInput};
pub use config::{Config, Settings};
pub use fednode_ws::ConnectionState;

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
        schema: || schemars::schema_for!(Config),
    }
}

fn build_component(cx: &BuildContext<'_>, value: &serde_json::Value) -> BuildResult {
    let c = build(cx, value)?;
    Ok(c)
}
