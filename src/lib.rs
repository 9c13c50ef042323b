//! fednode: the node runtime behind the `fednode` binary.
//!
//! - [`config`]: load a config file, interpolate `${VAR}`, validate strictly.
//! - [`bus`]: connect the memory or NATS bus.
//! - [`runtime`]: the registry of factories, the wiring graph, start/stop.
//! - [`admin`]: the admin HTTP server (health, metrics, components).
//! - [`admin_client`]: `fednode request` against a component of a
//!   running node's admin server.
//!
//! `main.rs` holds only the command line.

pub mod admin;
pub mod admin_client;
pub mod bus;
pub mod config;
pub mod runtime;

/// This binary's version (the crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from (`unknown` without git).
pub const GIT_SHA: &str = env!("FEDNODE_GIT_SHA");

/// What `fednode --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FEDNODE_GIT_SHA"),
    ")"
);
