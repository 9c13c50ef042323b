//! Helpers shared by the end-to-end tests: run the built `fednode` binary,
//! talk HTTP to its admin server, stop it with a signal.

#![allow(dead_code)]

use std::cell::OnceCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
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

/// How long a node may take to log an address it bound.
const LOGGED_WITHIN: Duration = Duration::from_secs(20);

/// A `fednode run` process, killed on drop if still running.
///
/// Nothing is started on a guessed port: the config binds port 0 (admin
/// `127.0.0.1:0`, components `http_port`/`port` 0) and the node's log says
/// which port each server got ([`Node::admin`], [`Node::addr_of`]).
pub struct Node {
    pub child: Child,
    pub log: PathBuf,
    /// The admin server's address, once read from the log.
    admin: OnceCell<String>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Start `fednode run CONFIG` with `env`. The config's admin server
    /// should listen on `127.0.0.1:0` (for the shipped configs:
    /// `FEDNODE_ADMIN=127.0.0.1:0` in `env`).
    pub fn start(config: &str, env: &[(&str, &str)]) -> Node {
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
            log,
            admin: OnceCell::new(),
            _dir: dir,
        }
    }

    /// Write a config to a temp file and start it.
    pub fn start_with(config_json: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        std::fs::write(&path, config_json).unwrap();
        let mut n = Node::start(path.to_str().unwrap(), env);
        // Keep the config's directory alive as long as the node.
        let keep = std::mem::replace(&mut n._dir, dir);
        std::mem::forget(keep.keep());
        n
    }

    /// Everything the node logged so far (without colour codes).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// `what` for a wait's timeout message, followed by this node's log as
    /// it is when the wait times out.
    pub fn and_log<'a>(&'a self, what: &'a str) -> impl std::fmt::Display + 'a {
        AndLog(what, &self.log)
    }

    /// The address on the first log line containing `message` (and
    /// `component=NAME` when given), waiting for that line to appear.
    fn logged_addr(&self, message: &str, component: Option<&str>) -> SocketAddr {
        let mut found = None;
        let what = format!(
            "fednode to log {message:?}{} with an address",
            component.map_or(String::new(), |c| format!(" for component {c}"))
        );
        fednode_testkit::wait_until_blocking(LOGGED_WITHIN, AndLog(&what, &self.log), || {
            found = logged(&self.log, message, component);
            found.is_some()
        });
        found.expect("found")
    }

    /// `127.0.0.1:PORT` of the admin server (read from the node's
    /// `admin server listening` line; waits for it).
    pub fn admin(&self) -> &str {
        self.admin
            .get_or_init(|| self.logged_addr("admin server listening", None).to_string())
    }

    /// The address component `name` listens on (its `… listening` line:
    /// websocket input and output servers, udp and http inputs), to
    /// connect to. Waits for the line.
    pub fn addr_of(&self, name: &str) -> SocketAddr {
        self.logged_addr(" listening", Some(name))
    }

    /// Component `name`'s `status` word in `/health` (`connected`,
    /// `reconnecting`, `idle`…); `None` when the node does not answer.
    pub fn status_of(&self, name: &str) -> Option<String> {
        let (_, body) = self.get("/health")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["components"][name]["status"].as_str().map(str::to_string)
    }

    /// A metric's value on the admin server's `/metrics` (`name{labels}`
    /// as Prometheus prints it); 0 when absent or unreachable.
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        self.get("/metrics")
            .and_then(|(_, text)| metric(&text, name_and_labels))
            .unwrap_or(0.0)
    }

    /// What `GET /components` says of component `name`.
    pub fn described(&self, name: &str) -> serde_json::Value {
        let (_, body) = self.get("/components").expect("GET /components");
        let all: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        all[name].clone()
    }

    /// GET a path on the admin server.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http("GET", self.admin(), path, None)
    }

    /// Wait until `/health/ready` answers 200 (panics with the log after
    /// `within`, or at once if the node exits).
    pub fn wait_ready(&mut self, within: Duration) {
        let Node {
            child, log, admin, ..
        } = self;
        fednode_testkit::wait_until_blocking(within, AndLog("fednode to be ready", log), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("fednode exited early with {status}:\n{}", read_log(log));
            }
            // Not ready before the admin server has logged its address.
            let addr = match admin.get() {
                Some(a) => a,
                None => match logged(log, "admin server listening", None) {
                    Some(a) => admin.get_or_init(|| a.to_string()),
                    None => return false,
                },
            };
            matches!(http("GET", addr, "/health/ready", None), Some((200, _)))
        });
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

/// A node's log file, without colour codes.
fn read_log(path: &Path) -> String {
    fednode_testkit::strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// The address a node logged with `message` (see [`fednode_testkit::logged_addr`]).
fn logged(path: &Path, message: &str, component: Option<&str>) -> Option<SocketAddr> {
    fednode_testkit::logged_addr(&read_log(path), message, component)
}

/// What a wait was for, followed, when it times out, by the node's log as
/// it is at that moment.
struct AndLog<'a>(&'a str, &'a Path);

impl std::fmt::Display for AndLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; the node logged:\n{}", self.0, read_log(self.1))
    }
}

/// A minimal HTTP/1.1 client (one request per connection).
pub fn http(method: &str, addr: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    http_with(method, addr, path, &[], body)
}

/// [`http`] with extra request headers (`("Authorization", "Bearer …")`).
pub fn http_with(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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

/// The value of a metric line `name{labels} value` in Prometheus text.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Each line a child prints on stdout (`fednode tail`), parsed as JSON and
/// sent to the returned channel as it comes.
pub fn json_lines(child: &mut Child) -> std::sync::mpsc::Receiver<serde_json::Value> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// `configs/hub.json` as shipped, on the given NATS and PostgreSQL, with
/// every port 0; returns once it is ready.
pub fn shipped_hub(nats_url: &str, pg_url: &str, within: Duration) -> Node {
    let mut hub = Node::start(
        "configs/hub.json",
        &[
            ("NATS_URL", nats_url),
            ("DATABASE_URL", pg_url),
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_INGEST_PORT", "0"),
            ("FEDNODE_FEED_PORT", "0"),
        ],
    );
    hub.wait_ready(within);
    hub
}

/// The config of a hub on the NATS bus at `nats_url`: node `id` in region
/// `core`, the admin server on a free port, and `ws_in`, a server-mode
/// `websocket_input` on a free port at `/ingest` whose config gets the
/// members of `ws_in` (its ports, say) on top; `more` adds components.
pub fn nats_hub_config(
    id: &str,
    nats_url: &str,
    ws_in: serde_json::Value,
    more: serde_json::Value,
) -> String {
    use serde_json::json;
    let mut ws_in_config = json!({
        "mode": "server",
        "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"},
    });
    fednode_testkit::merge(&mut ws_in_config, ws_in);
    let mut components = json!({"ws_in": {
        "type": "input", "name": "websocket_input", "config": ws_in_config,
    }});
    fednode_testkit::merge(&mut components, more);
    json!({
        "node": {"id": id, "region": "core"},
        "bus": {"kind": "nats", "url": nats_url},
        "http": {"listen": "127.0.0.1:0"},
        "components": components,
    })
    .to_string()
}
