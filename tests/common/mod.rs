//! Helpers shared by the end-to-end tests: run the built `fednode` binary,
//! talk HTTP to its admin server, stop it with a signal.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `fednode` binary Cargo built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fednode"))
}

/// Run `fednode <args>` to completion with extra environment.
pub fn fednode(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run fednode")
}

/// A `fednode run` process, killed on drop if still running.
pub struct Node {
    pub child: Child,
    pub admin: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Start `fednode run CONFIG` with `env`; `admin` is the admin address
    /// the config will listen on.
    pub fn start(config: &str, admin: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fednode.log");
        let mut c = bin();
        c.args(["run", config])
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        Node {
            child: c.spawn().expect("spawn fednode"),
            admin: admin.to_string(),
            log,
            _dir: dir,
        }
    }

    /// Write a config to a temp file and start it.
    pub fn start_with(config_json: &str, admin: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        std::fs::write(&path, config_json).unwrap();
        let mut n = Node::start(path.to_str().unwrap(), admin, env);
        // Keep the config's directory alive as long as the node.
        let keep = std::mem::replace(&mut n._dir, dir);
        std::mem::forget(keep.keep());
        n
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path on the admin server.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http("GET", &self.admin, path, None)
    }

    /// Wait until `/health/ready` answers 200 (panics with the log after `within`).
    pub fn wait_ready(&mut self, within: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fednode exited early with {status}:\n{}", self.log());
            }
            if let Some((200, _)) = self.get("/health/ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("not ready within {within:?}:\n{}", self.log());
    }

    /// Send a signal by name (`TERM`, `KILL`, `INT`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client (one request per connection).
pub fn http(method: &str, addr: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    fednode_testkit::free_port()
}

/// The value of a metric line `name{labels} value` in Prometheus text.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
