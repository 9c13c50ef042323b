//! Ports without races.
//!
//! Tests never pick a port number and hope it is still free when a server
//! binds it. A server either binds port 0 and the test reads the port back
//! (`local_addr()` in process; the log of a child process, see
//! [`crate::logged_addr`]; `nats-server -p -1`), or, where a port must be
//! chosen up front, the start is retried when the port turns out to be
//! taken ([`crate::PgCluster`], [`rebind`]). A port that must refuse
//! connections is held by a [`ClosedPort`].

use std::fmt::Display;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// How long a server restarted on its old port keeps trying to bind it.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP port on 127.0.0.1 where nothing listens, reserved for as long as
/// this value lives: its socket is bound but never listens, so a connection
/// to it is refused at once (ECONNREFUSED) and no other socket can bind the
/// port meanwhile. For "nothing is listening there" tests.
pub struct ClosedPort {
    // Held, never used: it keeps the port bound.
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("create a TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("local_addr");
        ClosedPort {
            _socket: socket,
            addr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an error (an `io::Error`, a component's start error quoting
/// one, a child's log line) says that the address is taken.
pub fn is_addr_in_use(error: &str) -> bool {
    error.contains("Address already in use") || error.contains("address already in use")
}

/// Starts a server on a port that was in use a moment ago (a server
/// restarted on its old port, which its clients keep dialling): calls
/// `start` until it succeeds, retrying while it fails because the address
/// is still in use (the old socket not yet gone, or another process that
/// took the port meanwhile), for up to [`REBIND_TIMEOUT`]. Any other error,
/// or the timeout, panics naming `what`.
pub async fn rebind<T, E, F, Fut>(what: impl Display, mut start: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
    loop {
        match start().await {
            Ok(server) => return server,
            Err(e) => {
                let e = e.to_string();
                if !is_addr_in_use(&e) {
                    panic!("{what} failed to start: {e}");
                }
                if tokio::time::Instant::now() >= deadline {
                    panic!("{what}: the port is still in use after {REBIND_TIMEOUT:?}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A port number for a server that cannot bind port 0 and report the port
/// it got (PostgreSQL). Only a guess: another process may take the port
/// before the server binds it, so every caller verifies it by starting the
/// server and retries with a new guess when the port turned out to be
/// taken.
pub(crate) fn guess_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
