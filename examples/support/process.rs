//! What the benchmark examples share: the `fednode` binary they start, a
//! `fednode run` process on a config of theirs (killed on drop), its admin
//! server's `/metrics` and `/health/ready`. Included with
//! `#[path = "support/process.rs"] mod process;`.

// Each example uses what it needs.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `fednode` binary: `FEDNODE_BIN`, else `target/release/fednode`
/// beside this example's directory.
pub fn fednode_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FEDNODE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("fednode"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build --release --bin fednode --examples`",
        bin.display()
    );
    bin
}

/// A `fednode run` process on a config in a temp dir, killed on drop.
pub struct Node {
    child: Child,
    log: PathBuf,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn start(config: &Value) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let log = dir.path().join("fednode.log");
        let child = Command::new(fednode_bin())
            .arg("run")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn fednode");
        let mut node = Node {
            child,
            log,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            _dir: dir,
        };
        node.admin = node.logged("admin server listening", None);
        node
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        fednode_testkit::strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The address on the node's first log line with `message` (and
    /// `component=NAME`), waiting up to 30 s for it.
    pub fn logged(&mut self, message: &str, component: Option<&str>) -> SocketAddr {
        let t0 = Instant::now();
        loop {
            let text = self.log_text();
            if let Some(a) = fednode_testkit::logged_addr(&text, message, component) {
                return a;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fednode exited with {status}:\n{text}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "fednode did not log {message:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Until `/health/ready` answers 200.
    pub fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while !matches!(http_get(self.admin, "/health/ready"), Some((200, _))) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fednode exited with {status}:\n{}", self.log_text());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "fednode not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of a metric family's values on `/metrics` whose labels
    /// contain every `labels` pair.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// `/metrics` as text ("" when the node does not answer).
    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").map_or(String::new(), |(_, b)| b)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of `GET path` (HTTP/1.1, one request per connection).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some((status, body.to_string()));
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((len, more)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || more.len() < n {
            break;
        }
        out.push_str(&more[..n]);
        rest = more[n..].trim_start_matches("\r\n");
    }
    Some((status, out))
}

/// The sum of the samples of family `name` in Prometheus text whose labels
/// include each of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labelset, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| labelset.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
