//! fednode-testkit: real, throwaway servers for tests.
//!
//! Every crate's tests use this to talk to the real thing instead of a mock:
//!
//! - [`NatsServer`] (`nats.rs`): a `nats-server` child process, optionally
//!   with JetStream and a store directory that survives [`NatsServer::restart`].
//! - [`PgCluster`] (`postgres.rs`): a fresh `initdb` cluster served by a
//!   `postgres` child process that the test owns by PID.
//! - [`free_port`]: a TCP port on 127.0.0.1 that was free a moment ago.
//! - [`loadgen`]: a WebSocket load generator that a benchmark runs as a
//!   separate process (the benchmark re-runs its own executable).
//! - `process.rs`: the plumbing both share (finding binaries, signals,
//!   waiting for ports, log tails).
//!
//! Both servers bind 127.0.0.1 on a free port, keep their files in a temp
//! dir, and are stopped and cleaned up on `Drop`, so a panicking test does
//! not leak servers. `kill()` / `stop()` / `restart()` exist for fault
//! tests: a restart reuses the same port and the same on-disk state.
//!
//! Nothing here is ever skipped: a missing binary is a loud panic naming the
//! package to install (`scripts/test` installs them when run as root).
//!
//! The workspace forbids `unsafe`, so signals and user lookups go through
//! ordinary commands (`sh -c kill`, `id`) and safe std APIs
//! (`CommandExt::uid`, `std::os::unix::fs::chown`).

pub mod loadgen;
mod nats;
mod postgres;
mod process;

use std::net::TcpListener;

pub use nats::NatsServer;
pub use postgres::PgCluster;

/// A TCP port on 127.0.0.1 that the OS reported free. Another process may
/// take it before the caller binds it; tests accept that small race.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
