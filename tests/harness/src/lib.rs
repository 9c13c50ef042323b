//! fednode-testkit: real, throwaway servers for tests, and the few helpers
//! every test crate shares.
//!
//! Every crate's tests use this to talk to the real thing instead of a mock:
//!
//! - [`NatsServer`] (`nats.rs`): a `nats-server` child process, optionally
//!   with JetStream and a store directory that survives [`NatsServer::restart`].
//! - [`PgCluster`] (`postgres.rs`): a fresh `initdb` cluster served by a
//!   `postgres` child process that the test owns by PID; with
//!   [`PgCluster::start_tls`], one that takes TCP clients over TLS only.
//! - [`TestCa`] (`tls.rs`): a CA and the certificates it signs, made at
//!   test time with the `openssl` command line.
//! - [`loadgen`]: a WebSocket load generator that a benchmark runs as a
//!   separate process (the benchmark re-runs its own executable).
//! - `process.rs`: the plumbing both servers share (finding binaries,
//!   signals, waiting for ports, log tails).
//!
//! And for the tests themselves:
//!
//! - [`wait_until`], [`wait_until_async`], [`wait_until_blocking`]
//!   (`wait.rs`): wait for something observable, with a deadline and a
//!   message, instead of sleeping and hoping.
//! - [`merge`] (`json.rs`): overlay a few members on a base config.
//! - Ports (`ports.rs`, `logs.rs`): no test guesses a free port. Servers
//!   bind port 0 and the test reads the port back — `local_addr()` in
//!   process, [`logged_addr`] from a child's log — or, where a port must be
//!   chosen up front, the start is retried when it was taken ([`rebind`],
//!   and inside [`PgCluster`]). [`ClosedPort`] holds a port that refuses
//!   connections.
//!
//! Both servers bind 127.0.0.1, keep their files in a temp dir, and are
//! stopped and cleaned up on `Drop`, so a panicking test does not leak
//! servers. `kill()` / `stop()` / `restart()` exist for fault tests: a
//! restart reuses the same port and the same on-disk state.
//!
//! Nothing here is ever skipped: a missing binary is a loud panic naming the
//! package to install (`scripts/test` installs them when run as root).
//!
//! The workspace forbids `unsafe`, so signals and user lookups go through
//! ordinary commands (`sh -c kill`, `id`) and safe std APIs
//! (`CommandExt::uid`, `std::os::unix::fs::chown`).

mod json;
pub mod loadgen;
mod logs;
mod nats;
mod ports;
mod postgres;
mod process;
mod tls;
mod wait;

pub use json::merge;
pub use logs::{logged_addr, strip_ansi};
pub use nats::NatsServer;
pub use ports::{is_addr_in_use, rebind, ClosedPort, REBIND_TIMEOUT};
pub use postgres::{PgCluster, PgTlsAuth, PgTlsFiles};
pub use tls::TestCa;
pub use wait::{wait_until, wait_until_async, wait_until_blocking};
