//! The examples a user runs against the shipped push pair, as they would
//! run them: a hub (`configs/hub.json`: NATS bus, durable timescale) and
//! an edge pushing to it (`configs/edge-push.json`), with only environment
//! variables changed (ports 0, the test's own NATS and PostgreSQL, a
//! temporary data directory). Then the compiled example programs:
//!
//! - `relay_simulator` streams two users' raw EEG into the edge's device
//!   input, one WebSocket connection per device;
//! - `predictions_consumer` reads the features the edge pushes, from the
//!   hub's consumer feed, and sends a prediction back for each, which the
//!   hub routes to the edge that sent that user's data and the edge to
//!   that user's device connection;
//! - `walk_edges` lists the hub's edges and asks each one `status` through
//!   the hub.
//!
//! `cargo test` builds the examples beside the test executables
//! (`target/<profile>/examples/`).

mod common;
use common::Node;
use fednode_testkit::wait_until_blocking;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);
const EDGE: &str = "edge-07";
const REGION: &str = "eu-north";

/// An example program, built by Cargo next to this test's executable.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test's executable");
    // target/<profile>/deps/examples_run-… → target/<profile>/examples/<name>
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = profile.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the examples first (`cargo test` does; or `cargo build -p fednode --examples`)",
        path.display()
    );
    Command::new(path)
}

/// A running example whose stdout lines are collected as they come.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the example");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Take in what the example printed so far.
    fn collect(&mut self) {
        self.seen.extend(self.lines.try_iter());
    }

    /// Wait until a line printed so far satisfies `pred`, and return it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            self.collect();
            if let Some(l) = self.seen.iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                t0.elapsed() < WAIT,
                "timed out after {WAIT:?} waiting for {what}; the example printed:\n{}",
                self.seen.join("\n")
            );
            if let Ok(Some(status)) = self.child.try_wait() {
                // Everything it printed: the reader ends with the pipe.
                self.seen.extend(self.lines.iter());
                if !self.seen.iter().any(|l| pred(l)) {
                    panic!(
                        "the example exited ({status}) before {what}; it printed:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the example to end by itself (its `--seconds`), expecting
    /// success; everything it printed.
    fn finish(mut self, within: Duration) -> Vec<String> {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > within {
                let _ = self.child.kill();
                panic!("the example did not stop within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends with the pipe.
        for line in self.lines.iter() {
            self.seen.push(line);
        }
        assert!(
            status.success(),
            "the example exited with {status}; it printed:\n{}",
            self.seen.join("\n")
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `walk_edges` against the hub's admin server: its exit status and its
/// lines.
fn walk_edges(admin: &str) -> (bool, Vec<String>) {
    let out = example("walk_edges")
        .args(["--admin", &format!("http://{admin}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!(
        "walk_edges printed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        text.lines().map(str::to_string).collect(),
    )
}

#[test]
fn simulator_edge_hub_consumer_and_the_operators_walk() {
    let nats = fednode_testkit::NatsServer::start_jetstream();
    let pg = fednode_testkit::PgCluster::start();
    let mut hub = common::shipped_hub(&nats.url(), &pg.url(), READY);
    let admin = hub.admin().to_string();

    // No edge yet: the walk says so.
    let (ok, lines) = walk_edges(&admin);
    assert!(ok);
    assert_eq!(
        lines,
        [format!("no edge is connected to http://{admin}")],
        "{lines:?}"
    );

    let data = tempfile::tempdir().unwrap();
    let hub_in = format!("ws://{}/ingest", hub.addr_of("ws_in"));
    let mut edge = Node::start(
        "configs/edge-push.json",
        &[
            ("FEDNODE_NODE_ID", EDGE),
            ("FEDNODE_REGION", REGION),
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_DEVICE_PORT", "0"),
            ("FEDNODE_DATA_DIR", data.path().to_str().unwrap()),
            ("FEDNODE_HUB_A", hub_in.as_str()),
            // The second hub of the list is down: the first serves.
            ("FEDNODE_HUB_B", "ws://127.0.0.1:9/ingest"),
        ],
    );
    edge.wait_ready(READY);
    wait_until_blocking(WAIT, edge.and_log("the edge to reach the hub"), || {
        edge.status_of("up").as_deref() == Some("connected")
    });

    // The model first, so that it sees the first features.
    let feed = format!("ws://{}/feed", hub.addr_of("ws_out"));
    let mut consumer = Running::spawn({
        let mut c = example("predictions_consumer");
        c.args(["--url", &feed, "--every", "1", "--seconds", "14"]);
        c
    });
    wait_until_blocking(WAIT, hub.and_log("the consumer to connect"), || {
        hub.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });
    let device = format!("ws://{}/device", edge.addr_of("device"));
    let mut simulator = Running::spawn({
        let mut c = example("relay_simulator");
        c.args(["--url", &device, "--devices", "2", "--seconds", "12"]);
        c
    });

    // Each user's features reach the consumer through the hub, from this
    // edge, and the consumer answers each with a prediction.
    for user in ["user-1", "user-2"] {
        let line = consumer.wait_for(&format!("{user}'s features"), |l| {
            l.starts_with(&format!("features {user} window "))
        });
        assert!(line.ends_with(&format!("from {EDGE} ({REGION})")), "{line}");
        consumer.wait_for(&format!("a prediction sent for {user}"), |l| {
            l.starts_with(&format!("prediction sent for {user}: workload "))
        });
    }
    // The predictions come back down: hub → edge → the socket of the
    // device that streams that user, and no other.
    for user in ["user-1", "user-2"] {
        let line = simulator.wait_for(&format!("a prediction on {user}'s socket"), |l| {
            l.starts_with(&format!("prediction for {user}: "))
        });
        let (_, json) = line.split_once(": ").unwrap();
        let p: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(p["type"], "prediction", "{line}");
        assert_eq!(p["user_id"], user, "{line}");
        assert_eq!(p["prediction_type"], "workload", "{line}");
        assert!(p["data"]["workload"].is_number(), "{line}");
    }
    assert!(hub.metric("websocket_output_upstream_messages_total{component=\"ws_out\"}") >= 2.0);
    // One connection per device at the edge.
    assert_eq!(
        edge.metric("websocket_input_connections_active{component=\"device\"}"),
        2.0
    );

    // The operator's walk: one line for this edge, with its status, asked
    // through the hub (which also asks every peer_status_interval).
    let asked = |t: &str| {
        edge.metric(&format!(
            "websocket_output_requests_received_total{{component=\"up\",method=\"{t}\"}}"
        ))
    };
    let before = asked("status");
    let (ok, lines) = walk_edges(&admin);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with(&format!("{EDGE} ({REGION}) on ws_in conn-")),
        "{line}"
    );
    // Predictions went down this link.
    assert!(line.contains(" sent down; status ok: up "), "{line}");
    assert!(line.contains("store "), "{line}");
    assert!(
        asked("status") > before,
        "the edge answered the walk's status"
    );

    // Both examples stop by themselves (`--seconds`), having done their part.
    let printed = simulator.finish(WAIT);
    let last = printed
        .iter()
        .rev()
        .find(|l| l.contains(" s: "))
        .expect("a per-second line");
    let sent: u64 = last
        .split_once(" s: ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    // 2 devices × 8 messages a second for most of 12 s.
    assert!(sent >= 2 * 8 * 8, "{last}");
    assert!(!last.ends_with(" 0 predictions received"), "{last}");
    for line in printed.iter().filter(|l| l.starts_with("prediction for ")) {
        let (device, json) = line["prediction for ".len()..].split_once(": ").unwrap();
        let p: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            p["user_id"], device,
            "a prediction on another user's socket: {line}"
        );
    }
    assert!(
        edge.metric("websocket_input_messages_received_total{component=\"device\"}") >= sent as f64,
        "every message the simulator sent reached the edge"
    );
    let printed = consumer.finish(WAIT);
    assert!(printed.iter().any(|l| l.starts_with("features user-2 ")));

    for node in [&mut edge, &mut hub] {
        node.signal("TERM");
        assert!(node.wait_exit(WAIT).is_some_and(|s| s.success()));
    }
}
