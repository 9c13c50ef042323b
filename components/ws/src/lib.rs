//! fednode-ws: the WebSocket transport both WebSocket components and the
//! CLI use. A library, not a component: it knows frames, connections and
//! peers, never the bus.
//!
//! # What lives where
//!
//! - [`config`]: the shared config blocks (`server`, `client`,
//!   `bidirectional`, `backpressure`, `delivery`) and
//!   [`config::Endpoint::resolve`], which turns `mode`, the blocks and the
//!   flat `http_port`/`path` shorthand into one checked endpoint.
//! - [`endpoint_config`]: the [`endpoint_config!`] macro, which declares a
//!   component's `config` struct with the fields both WebSocket components
//!   share (and checks them through [`config::Endpoint::resolve`]).
//! - [`server`]: bind, serve, the [`server::Gate`] (auth → 401, connection
//!   limit → 503, both before the upgrade) and [`server::upgrade`], which
//!   yields a tokio-tungstenite stream.
//! - [`client`]: one attempt ([`client::connect`]) and the reconnect state
//!   machine ([`client::run_reconnecting`]: INIT → CONNECTING → CONNECTED →
//!   RECONNECTING → FAILED, kit backoff with jitter).
//! - [`frame`]: frames in and out — [`frame::classify`] / [`frame::encode`]
//!   (text = JSON, binary = MessagePack), the bounded [`frame::Outbound`]
//!   queue and [`frame::write_loop`] (feed many, flush once), and
//!   [`frame::drive`], one whole connection handed to a
//!   [`frame::FrameHandler`]; `written` is how a sender learns that what it
//!   queued is on the socket ([`frame::Outbound::written`]).
//! - [`identity`]: the `Fednode-Node`/`-Region`/`-Delivery` handshake
//!   headers, both ways: who the peer is and whether it wants acks.
//! - [`adaptive`]: the server's socket reader, whose reads grow under load
//!   and whose buffer is freed when the connection waits.
//! - [`pending`]: request correlation per connection (timeout,
//!   `max_concurrent_requests`, fail all on disconnect).
//! - [`dedup`]: the window of recent data ids (`at_least_once`).
//! - [`throughput`]: the rate meter behind `status`.
//! - [`tls`]: the `tls` blocks of servers and clients (rustls), and the
//!   subject of a client certificate.
//! - [`state`] and [`metrics`]: the client connection state and the
//!   families both components register under their own prefix.
//! - [`peer`]: the peer client behind `fednode request|tail|send`.

pub mod adaptive;
pub mod client;
pub mod config;
pub mod dedup;
pub mod endpoint_config;
pub mod frame;
pub mod identity;
pub mod metrics;
pub mod peer;
pub mod pending;
pub mod server;
pub mod state;
pub mod throughput;
pub mod tls;
mod written;

pub use state::ConnectionState;
