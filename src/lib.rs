//! fednode: the node runtime behind the `fednode` binary.
//!
//! - [`config`]: load a config file, interpolate `${VAR}`, validate strictly.
//! - [`bus`]: connect the memory or NATS bus.
//! - [`runtime`]: the registry of factories, the wiring graph, start/stop.
//! - [`admin`]: the admin HTTP server (health, metrics, components).
//!
//! `main.rs` holds only the command line.

pub mod admin;
pub mod bus;
pub mod config;
pub mod runtime;
