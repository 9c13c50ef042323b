//! A throwaway `nats-server` child process.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{self, POLL};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const MISSING: &str = "nats-server not found: install it with `apt-get install -y nats-server` \
                       (scripts/test does this when run as root)";

/// A `nats-server` on 127.0.0.1, killed on drop.
///
/// ```no_run
/// let nats = fednode_testkit::NatsServer::start_jetstream();
/// let url = nats.url(); // "nats://127.0.0.1:PORT"
/// ```
pub struct NatsServer {
    /// `None` after `kill()`/`stop()` until `restart()`.
    child: Option<Child>,
    pid: u32,
    port: u16,
    jetstream: bool,
    /// More command-line options (TLS, say), on every (re)start.
    extra: Vec<String>,
    binary: PathBuf,
    log: PathBuf,
    /// Holds the log and the JetStream store; removed on drop.
    dir: TempDir,
}

impl NatsServer {
    /// A core NATS server (no JetStream).
    pub fn start() -> Self {
        Self::launch(false, &[])
    }

    /// A core NATS server with more options, e.g. TLS:
    /// `["--tls", "--tlscert", cert, "--tlskey", key]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::launch(false, args)
    }

    /// A server with JetStream enabled, storing in its temp dir, so streams
    /// survive [`restart`](Self::restart).
    pub fn start_jetstream() -> Self {
        Self::launch(true, &[])
    }

    fn launch(jetstream: bool, extra: &[&str]) -> Self {
        let binary = find_nats_server();
        let dir = tempfile::Builder::new()
            .prefix("fednode-nats-")
            .tempdir()
            .expect("create nats-server temp dir");
        let log = dir.path().join("nats-server.log");
        let mut server = NatsServer {
            child: None,
            pid: 0,
            // Unknown until the server has logged the port it picked.
            port: 0,
            jetstream,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            binary,
            log,
            dir,
        };
        // `-p -1`: the server binds a random free port and logs it, so no
        // port is guessed (and none can be taken from under it).
        if let Err(e) = server.spawn_and_wait() {
            panic!("nats-server on a random port could not bind: {e}");
        }
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID (the last one, if it is currently down).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file the server's stdout and stderr go to (appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The JetStream store directory, if JetStream is on.
    pub fn store_dir(&self) -> Option<PathBuf> {
        self.jetstream.then(|| self.dir.path().join("jetstream"))
    }

    /// Send the running server a signal: `STOP` freezes it (its sockets
    /// stay open, nothing is answered), `CONT` thaws it.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            process::signal(child.id(), signal);
        }
    }

    /// Crash: SIGKILL, then wait until the process is gone and the port closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_and_reap(&mut child);
        }
        self.wait_port_closed();
    }

    /// Graceful shutdown: SIGTERM, wait (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::signal(child.id(), "TERM");
            if !process::wait_exit(&mut child, STOP_TIMEOUT) {
                process::kill_and_reap(&mut child);
            }
        }
        self.wait_port_closed();
    }

    /// Starts again on the same port with the same store dir and waits until
    /// it accepts clients. A server that is still running is stopped first.
    /// Should another process have taken the port meanwhile, the start is
    /// retried (on the same port: clients dial it) for up to
    /// [`crate::REBIND_TIMEOUT`].
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + crate::REBIND_TIMEOUT;
        while let Err(e) = self.spawn_and_wait() {
            if Instant::now() >= deadline {
                panic!(
                    "nats-server could not bind its port {} again within {:?}: {e}",
                    self.port,
                    crate::REBIND_TIMEOUT
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Starts the server (on `self.port`, or a random port while it is 0)
    /// and waits until it is ready. `Err` (with the log) only if the port
    /// was in use; any other failure panics.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let from = process::log_len(&self.log);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open nats-server log");
        let port = match self.port {
            0 => "-1".to_string(),
            p => p.to_string(),
        };
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &port]);
        if self.jetstream {
            cmd.arg("-js")
                .arg("-sd")
                .arg(self.dir.path().join("jetstream"));
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready(from)
    }

    /// Ready means the server has logged its port (when it picked one) and
    /// that port accepts and greets with `INFO`. `from`: where this start's
    /// lines begin in the log.
    fn wait_ready(&mut self, from: u64) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("server was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = process::log_since(&self.log, from);
                if crate::is_addr_in_use(&log) {
                    return Err(log);
                }
                panic!(
                    "nats-server on port {} exited during startup ({status}); log tail:\n{}",
                    self.port,
                    process::log_tail(&self.log, 30)
                );
            }
            if self.port == 0 {
                if let Some(port) = listening_port(&process::log_since(&self.log, from)) {
                    self.port = port;
                }
            }
            if self.port != 0 && greets_with_info(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "nats-server on port {} not ready after {START_TIMEOUT:?}; log tail:\n{}",
                    self.port,
                    process::log_tail(&self.log, 30)
                );
            }
            thread::sleep(POLL);
        }
    }

    fn wait_port_closed(&self) {
        if !process::wait_port_closed(self.port, STOP_TIMEOUT) {
            // Only reachable if something else grabbed the port; don't panic
            // here (Drop calls this), the next start will report it.
            eprintln!(
                "fednode-testkit: port {} still open after nats-server exit",
                self.port
            );
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_and_reap(&mut child);
        }
    }
}

/// The port of `Listening for client connections on 127.0.0.1:PORT`.
fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .find_map(|line| line.split("Listening for client connections on ").nth(1))
        .and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok())
}

fn greets_with_info(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

fn find_nats_server() -> PathBuf {
    process::find_on_path("nats-server")
        .or_else(|| {
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| process::is_executable(p))
        })
        .unwrap_or_else(|| panic!("{MISSING}"))
}
