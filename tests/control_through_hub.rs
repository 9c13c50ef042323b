//! Control through the hub: an operator at a hub steers the
//! edges that push to it. All real processes: a `nats-server`, a hub whose
//! `websocket_input` (server mode, NATS bus) publishes what each edge
//! pushes on `edges.{$origin.node}.data`, and three edges (`edge-a`,
//! `edge-b`, `edge-c`), each a `udp` input feeding a `websocket` output in
//! client mode that pushes to the hub, acknowledged (`at_least_once`) and
//! through a `store` on disk.
//!
//! The test drives each edge's UDP port with numbered messages
//! `{"edge", "n", "kind"}` (`kind` alternates `drop`/`keep`) and watches
//! the hub's NATS subjects directly, so it sees exactly what crossed each
//! link, when, and with which headers (`Fednode-Id`, `Fednode-Replay`).
//! Requests go through the hub's admin server (`POST
//! /components/ws_in/request`, to one edge by node id or to all) and once
//! through `fednode request <admin>/components/ws_in`:
//!
//! - `status`: one edge answers about itself; without `connection`, all
//!   three answer;
//! - `backpressure`: the limited edge's rate at the hub follows the limit
//!   while the others keep the source's rate; lifting it restores the
//!   rate; the same for all edges at once;
//! - `subscribe`: only matching data of that edge crosses its link
//!   afterwards, the others are untouched (and `unsubscribe` undoes it);
//!   the same for every edge at once;
//! - `replay`: the edge sends buffered data to the hub again, marked as
//!   replayed, and the hub publishes it; to every edge at once, each
//!   replays its own.
//!
//! Each test builds its own topology; they run one at a time (a 2-core
//! machine runs five processes per topology).

mod common;
use common::{bin, http, Node};
use fednode_testkit::{wait_until_blocking, NatsServer};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EDGES: [&str; 3] = ["edge-a", "edge-b", "edge-c"];
const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);
/// What each edge's source sends, in msg/s.
const SOURCE_RATE: u64 = 200;
/// The limit the operator sets, in msg/s.
const LIMIT: f64 = 20.0;
/// An edge measured at or above this is not limited (the source sends
/// `SOURCE_RATE`; a loaded machine may fall a little behind).
const UNLIMITED_AT_LEAST: f64 = 120.0;
/// A limited edge measured within this band follows the limit.
const LIMITED_BAND: (f64, f64) = (8.0, 35.0);

/// One topology at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---- what arrives at the hub ----------------------------------------------

/// One message the hub published, as a NATS subscriber sees it.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    /// The subject's middle token: the origin node.
    edge: String,
    n: u64,
    kind: String,
    id: String,
    replay: bool,
}

/// A NATS subscriber on `edges.*.data`, on its own runtime.
struct Observer {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    _rt: tokio::runtime::Runtime,
}

impl Observer {
    fn start(nats_url: &str) -> Observer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sink = arrivals.clone();
        rt.block_on(async {
            let client = async_nats::connect(nats_url)
                .await
                .expect("connect to NATS");
            let mut sub = client.subscribe("edges.*.data").await.expect("subscribe");
            // The subscription is in place before any edge sends.
            client.flush().await.expect("flush");
            tokio::spawn(async move {
                let _client = client;
                while let Some(m) = sub.next().await {
                    let header = |name: &str| {
                        m.headers
                            .as_ref()
                            .and_then(|h| h.get(name))
                            .map(|v| v.as_str().to_string())
                    };
                    let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                    let arrival = Arrival {
                        at: Instant::now(),
                        edge: m.subject.split('.').nth(1).unwrap_or("").to_string(),
                        n: payload["n"].as_u64().unwrap_or(0),
                        kind: payload["kind"].as_str().unwrap_or("").to_string(),
                        id: header("Fednode-Id").unwrap_or_default(),
                        replay: header("Fednode-Replay").as_deref() == Some("true"),
                    };
                    sink.lock().push(arrival);
                }
            });
        });
        Observer { arrivals, _rt: rt }
    }

    /// Everything from `edge` so far, in arrival order.
    fn from(&self, edge: &str) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .iter()
            .filter(|a| a.edge == edge)
            .cloned()
            .collect()
    }

    /// Live (not replayed) messages from `edge` that arrived in `[from, to)`.
    fn live_between(&self, edge: &str, from: Instant, to: Instant) -> usize {
        self.arrivals
            .lock()
            .iter()
            .filter(|a| a.edge == edge && !a.replay && a.at >= from && a.at < to)
            .count()
    }

    /// Each edge's live rate at the hub (msg/s) over the next `window`,
    /// after letting `settle` pass (what was already on its way when a
    /// limit changed).
    fn rates(&self, settle: Duration, window: Duration) -> Vec<f64> {
        std::thread::sleep(settle);
        let from = Instant::now();
        std::thread::sleep(window);
        let to = Instant::now();
        let secs = (to - from).as_secs_f64();
        let rates: Vec<f64> = EDGES
            .iter()
            .map(|e| self.live_between(e, from, to) as f64 / secs)
            .collect();
        eprintln!("measured at the hub: {}", show(&rates));
        rates
    }
}

// ---- what the edges are fed -----------------------------------------------

/// Numbered datagrams `{"edge", "n", "kind"}` to one edge's UDP input at
/// `rate` msg/s, from a thread, until dropped. `n` starts at 1; odd `n`
/// are `drop`, even `n` are `keep`.
struct Driver {
    /// The highest `n` sent so far.
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn kind_of(n: u64) -> &'static str {
    if n.is_multiple_of(2) {
        "keep"
    } else {
        "drop"
    }
}

fn datagram(edge: &str, n: u64) -> String {
    json!({"edge": edge, "n": n, "kind": kind_of(n)}).to_string()
}

impl Driver {
    fn start(to: SocketAddr, edge: &str, rate: u64) -> Driver {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, edge) = (sent.clone(), stop.clone(), edge.to_string());
        let thread = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            let mut t0 = Instant::now();
            let mut since = 0u64;
            let mut n = 0u64;
            while !st.load(Ordering::Acquire) {
                n += 1;
                since += 1;
                socket.send_to(datagram(&edge, n).as_bytes(), to).unwrap();
                s.store(n, Ordering::Release);
                let due = t0 + period * since as u32;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > Duration::from_millis(500) {
                    // Far behind (a stalled machine): no catch-up burst.
                    t0 = now;
                    since = 0;
                }
            }
        });
        Driver {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Stop sending; the highest `n` sent.
    fn finish(mut self) -> u64 {
        self.halt();
        self.sent()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.halt();
    }
}

// ---- the topology ----------------------------------------------------------

struct Topology {
    observer: Observer,
    hub: Node,
    /// `edge-a`, `edge-b`, `edge-c`, in that order.
    edges: Vec<Node>,
    /// Each edge's UDP input.
    sensors: Vec<SocketAddr>,
    _data: Vec<tempfile::TempDir>,
    _nats: NatsServer,
}

fn hub(nats_url: &str) -> Node {
    let config = common::nats_hub_config(
        "hub",
        nats_url,
        json!({
            "peer_status_interval": "200ms",
            "ports": {"outputs": [{"name": "ws_data", "subject": "edges.{$origin.node}.data"}]},
        }),
        json!({}),
    );
    Node::start_with(&config, &[])
}

fn edge(id: &str, hub_url: &str, data_dir: &std::path::Path) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "{id}", "region": "field"}},
        "data_dir": "{dir}",
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "sensor": {{"type": "input", "name": "udp", "config": {{
            "port": 0, "bind": "127.0.0.1",
            "ports": {{"outputs": [{{"name": "out", "subject": "edge.data"}}]}}
          }}}},
          "up": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"url": "{hub_url}",
                        "reconnect": {{"initial_interval": "50ms", "max_interval": "500ms"}}}},
            "delivery": "at_least_once",
            "store": {{"sync_interval": "50ms"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#,
            dir = data_dir.display(),
        ),
        &[],
    )
}

impl Topology {
    fn start() -> Topology {
        let nats = NatsServer::start();
        let observer = Observer::start(&nats.url());
        let mut hub = hub(&nats.url());
        hub.wait_ready(READY);
        let hub_url = format!("ws://{}/ingest", hub.addr_of("ws_in"));
        let data: Vec<tempfile::TempDir> =
            EDGES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let mut edges: Vec<Node> = EDGES
            .iter()
            .zip(&data)
            .map(|(id, dir)| edge(id, &hub_url, dir.path()))
            .collect();
        for e in &mut edges {
            e.wait_ready(READY);
        }
        for (e, id) in edges.iter().zip(EDGES) {
            wait_until_blocking(WAIT, e.and_log(&format!("{id} to reach the hub")), || {
                e.status_of("up").as_deref() == Some("connected")
            });
        }
        wait_until_blocking(WAIT, hub.and_log("the hub to count three edges"), || {
            hub.metric(r#"websocket_input_connections_active{component="ws_in"}"#) == 3.0
        });
        let sensors = edges.iter().map(|e| e.addr_of("sensor")).collect();
        Topology {
            observer,
            hub,
            edges,
            sensors,
            _data: data,
            _nats: nats,
        }
    }

    fn edge(&self, id: &str) -> &Node {
        &self.edges[EDGES.iter().position(|e| *e == id).expect("an edge")]
    }

    fn drive(&self, id: &str, rate: u64) -> Driver {
        let i = EDGES.iter().position(|e| *e == id).expect("an edge");
        Driver::start(self.sensors[i], id, rate)
    }

    /// `POST /components/ws_in/request` on the hub: the reply payload for
    /// one `connection`, `{"replies": {…}}` for all.
    fn ask(&self, method: &str, params: Value, connection: Option<&str>) -> Value {
        let mut body = json!({"method": method, "params": params});
        if let Some(c) = connection {
            body["connection"] = json!(c);
        }
        let (status, text) = http(
            "POST",
            self.hub.admin(),
            "/components/ws_in/request",
            Some(&body.to_string()),
        )
        .expect("the hub's admin server answers");
        assert_eq!(status, 200, "{method} to {connection:?}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// [`ask`](Self::ask) every edge; each answers `ok`. Returns the
    /// replies by the edge's node id.
    fn ask_all(&self, method: &str, params: Value) -> Vec<(String, Value)> {
        let answer = self.ask(method, params, None);
        let replies = answer["replies"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} to all: {answer}"));
        assert_eq!(replies.len(), 3, "one reply per edge: {answer}");
        let hub_conns = self.hub.described("ws_in")["connections"].clone();
        let mut by_node: Vec<(String, Value)> = replies
            .iter()
            .map(|(conn, reply)| {
                assert_eq!(reply["status"], "ok", "{method} to {conn}: {reply}");
                // The connection id names an edge: its node as the hub saw it.
                let node = hub_conns
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["id"] == conn.as_str()))
                    .map(|c| c["peer_node"].as_str().unwrap_or("").to_string())
                    .unwrap_or_else(|| panic!("no connection {conn} in {hub_conns}"));
                (node, reply.clone())
            })
            .collect();
        by_node.sort_by(|a, b| a.0.cmp(&b.0));
        let nodes: Vec<&str> = by_node.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(nodes, EDGES, "{answer}");
        by_node
    }

    /// Wait until data of each of `edges` (being driven) arrives at the
    /// hub.
    fn wait_flowing(&self, edges: &[&str]) {
        let start = Instant::now();
        wait_until_blocking(
            WAIT,
            self.hub.and_log("data of the driven edges at the hub"),
            || {
                edges
                    .iter()
                    .all(|e| self.observer.live_between(e, start, Instant::now()) >= 20)
            },
        );
    }
}

/// The lines of a node's `/metrics` that start with `prefix`.
fn metric_lines(node: &Node, prefix: &str) -> String {
    node.get("/metrics")
        .map(|(_, text)| {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// What a replay wait was for and, when it times out, what the edge sent
/// and what the hub did with it (its counters and log).
struct Evidence<'a>(&'a Topology, &'a str);

impl std::fmt::Display for Evidence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Evidence(t, what) = self;
        let arrived = t.observer.from("edge-a");
        write!(
            f,
            "{what}\n\
             at the hub from edge-a: {} live, {} replayed\n\
             edge-a's counters:\n{}\n{}\n\
             the hub's counters:\n{}\n{}\n\
             edge-a logged:\n{}\n{}",
            arrived.iter().filter(|x| !x.replay).count(),
            arrived.iter().filter(|x| x.replay).count(),
            metric_lines(t.edge("edge-a"), "websocket_output_replay_messages_total"),
            metric_lines(t.edge("edge-a"), "websocket_output_messages_sent_total"),
            metric_lines(&t.hub, "websocket_input_messages_received_total"),
            metric_lines(&t.hub, "websocket_input_messages_dropped_total"),
            t.edge("edge-a").log(),
            t.hub.and_log("the hub"),
        )
    }
}

fn ok_result(reply: &Value, what: &str) -> Value {
    assert_eq!(reply["status"], "ok", "{what}: {reply}");
    reply["result"].clone()
}

fn show(rates: &[f64]) -> String {
    EDGES
        .iter()
        .zip(rates)
        .map(|(e, r)| format!("{e}: {r:.1} msg/s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_limited(rate: f64, edge: &str, all: &[f64]) {
    assert!(
        rate >= LIMITED_BAND.0 && rate <= LIMITED_BAND.1,
        "{edge} limited to {LIMIT} msg/s was measured at the hub at {rate:.1} msg/s \
         (source {SOURCE_RATE} msg/s); all: {}",
        show(all)
    );
}

fn assert_unlimited(rate: f64, edge: &str, all: &[f64]) {
    assert!(
        rate >= UNLIMITED_AT_LEAST,
        "{edge} (not limited) was measured at the hub at {rate:.1} msg/s \
         (source {SOURCE_RATE} msg/s); all: {}",
        show(all)
    );
}

// ---- the tests -------------------------------------------------------------

#[test]
fn status_reaches_one_edge_by_node_id_or_all_of_them() {
    let _serial = SERIAL.lock();
    let t = Topology::start();

    // One edge, by the node id it announced: that edge answers.
    let reply = t.ask("status", json!({}), Some("edge-a"));
    let result = ok_result(&reply, "status to edge-a");
    assert_eq!(result["node"]["id"], "edge-a", "{reply}");
    assert_eq!(result["node"]["region"], "field", "{reply}");
    assert_eq!(result["throughput"]["unit"], "msg/sec", "{reply}");
    assert!(result["throughput"]["current"].is_number(), "{reply}");
    assert!(result["throughput"]["average_1m"].is_number(), "{reply}");
    assert!(result["queue_depth"].is_u64(), "{reply}");
    assert!(result["uptime_seconds"].is_u64(), "{reply}");
    assert_eq!(result["connections"]["active"], 1, "{reply}");
    // The edge's store shows in its status.
    assert!(result["store"]["messages"].is_u64(), "{reply}");

    // Another edge, by name: that one answers, not edge-a.
    let reply = t.ask("status", json!({}), Some("edge-c"));
    assert_eq!(
        ok_result(&reply, "status to edge-c")["node"]["id"],
        "edge-c"
    );

    // Without `connection`: every edge answers, each about itself.
    for (node, reply) in t.ask_all("status", json!({})) {
        assert_eq!(reply["result"]["node"]["id"], node.as_str(), "{reply}");
    }

    // The same through the command line.
    let out = bin()
        .args([
            "request",
            &format!("http://{}/components/ws_in", t.hub.admin()),
            "status",
            "--connection",
            "edge-a",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fednode request: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["result"]["node"]["id"], "edge-a", "{reply}");

    // A node id nobody announced is an error naming it, not a guess.
    let (status, text) = http(
        "POST",
        t.hub.admin(),
        "/components/ws_in/request",
        Some(r#"{"method": "status", "params": {}, "connection": "edge-z"}"#),
    )
    .unwrap();
    assert_ne!(status, 200, "{text}");
    assert!(text.contains("edge-z"), "{text}");
}

#[test]
fn backpressure_caps_what_one_edge_or_every_edge_pushes_and_lifting_it_restores_the_rate() {
    let _serial = SERIAL.lock();
    let t = Topology::start();
    let drivers: Vec<Driver> = EDGES.iter().map(|e| t.drive(e, SOURCE_RATE)).collect();
    t.wait_flowing(&EDGES);
    let settle = Duration::from_secs(1);
    let window = Duration::from_secs(3);

    let before = t.observer.rates(Duration::ZERO, Duration::from_secs(2));
    for (e, r) in EDGES.iter().zip(&before) {
        assert_unlimited(*r, e, &before);
    }

    // edge-a alone, limited.
    let reply = t.ask(
        "backpressure",
        json!({"rate_limit": LIMIT, "unit": "msg/sec"}),
        Some("edge-a"),
    );
    let result = ok_result(&reply, "backpressure to edge-a");
    assert_eq!(result["adjusted_to"], LIMIT, "{reply}");
    assert!(result["current_rate"].is_number(), "{reply}");
    let conn = &t.edge("edge-a").described("up")["connections"][0];
    assert_eq!(conn["rate_limit"], LIMIT, "edge-a's /components: {conn}");
    let limited = t.observer.rates(settle, window);
    assert_limited(limited[0], "edge-a", &limited);
    assert_unlimited(limited[1], "edge-b", &limited);
    assert_unlimited(limited[2], "edge-c", &limited);
    // What the link did not take waits in the edge's store; nothing is
    // lost (the other edges' stores stay near empty).
    let held = t.edge("edge-a").described("up")["store"]["messages"].clone();
    assert!(
        held.as_u64().is_some_and(|m| m > 100),
        "edge-a holds the excess in its store: {held}"
    );
    // The hub shows each edge's backlog, asked every peer_status_interval.
    let backlog = |edge: &str| {
        let ws_in = t.hub.described("ws_in");
        ws_in["connections"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["peer_node"] == edge))
            .map(|c| c["peer_status"].clone())
            .unwrap_or_else(|| panic!("no connection from {edge}: {ws_in}"))
    };
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        t.hub.and_log("the hub to see edge-a's backlog"),
        || {
            backlog("edge-a")["store_messages"]
                .as_u64()
                .is_some_and(|m| m > 100)
        },
    );
    let a = backlog("edge-a");
    assert!(a["updated_at"].is_i64() && a["error"].is_null(), "{a}");
    assert!(a["in_flight"].is_u64() && a["queue_depth"].is_u64(), "{a}");
    let b = backlog("edge-b");
    assert!(
        b["store_messages"].as_u64().is_some_and(|m| m < 100),
        "edge-b keeps up: {b}"
    );

    // Lifted (null): edge-a is back at (or above, draining) the source rate.
    let reply = t.ask("backpressure", json!({"rate_limit": null}), Some("edge-a"));
    let result = ok_result(&reply, "lifting edge-a's limit");
    assert!(result["adjusted_to"].is_null(), "{reply}");
    let lifted = t.observer.rates(settle, Duration::from_secs(2));
    for (e, r) in EDGES.iter().zip(&lifted) {
        assert_unlimited(*r, e, &lifted);
    }

    // Every edge at once.
    for (node, reply) in t.ask_all("backpressure", json!({"rate_limit": LIMIT})) {
        assert_eq!(reply["result"]["adjusted_to"], LIMIT, "{node}: {reply}");
    }
    let all_limited = t.observer.rates(settle, window);
    for (e, r) in EDGES.iter().zip(&all_limited) {
        assert_limited(*r, e, &all_limited);
    }

    // And lifted for all (0 lifts it too).
    for (node, reply) in t.ask_all("backpressure", json!({"rate_limit": 0})) {
        assert!(reply["result"]["adjusted_to"].is_null(), "{node}: {reply}");
    }
    let all_lifted = t.observer.rates(settle, Duration::from_secs(2));
    for (e, r) in EDGES.iter().zip(&all_lifted) {
        assert_unlimited(*r, e, &all_lifted);
    }

    // What waited under the limits was late, not lost: every message of
    // every edge reaches the hub.
    let sent: Vec<u64> = drivers.into_iter().map(Driver::finish).collect();
    for (e, last) in EDGES.iter().zip(sent) {
        let missing = |t: &Topology| -> Vec<u64> {
            let got: BTreeSet<u64> = t.observer.from(e).iter().map(|x| x.n).collect();
            (1..=last).filter(|n| !got.contains(n)).collect()
        };
        wait_until_blocking(
            WAIT,
            t.hub
                .and_log(&format!("all {last} messages of {e} at the hub")),
            || missing(&t).is_empty(),
        );
    }
}

#[test]
fn subscribe_limits_one_edge_to_matching_data_and_leaves_the_others_alone() {
    const RATE: u64 = 100;
    const AFTER: u64 = 200;
    let _serial = SERIAL.lock();
    let t = Topology::start();
    let a = t.drive("edge-a", RATE);
    let b = t.drive("edge-b", RATE);
    t.wait_flowing(&["edge-a", "edge-b"]);
    // Before: both kinds from edge-a.
    let kinds: BTreeSet<String> = t
        .observer
        .from("edge-a")
        .into_iter()
        .map(|x| x.kind)
        .collect();
    assert_eq!(kinds.len(), 2, "both kinds from edge-a before: {kinds:?}");

    let reply = t.ask(
        "subscribe",
        json!({"filter": {"path": "$.kind", "operator": "==", "value": "keep"}}),
        Some("edge-a"),
    );
    let result = ok_result(&reply, "subscribe to edge-a");
    assert_eq!(result["filter_applied"], true, "{reply}");
    let subscription = result["subscription_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a subscription id: {reply}"))
        .to_string();
    // Everything sent from here on reached the edge after the filter.
    let (a0, b0) = (a.sent(), b.sent());
    let filters = t.edge("edge-a").described("up")["connections"][0]["filters"].clone();
    assert_eq!(
        filters.as_array().map(Vec::len),
        Some(1),
        "edge-a's /components: {filters}"
    );

    wait_until_blocking(
        WAIT,
        t.hub
            .and_log("more of edge-a's and edge-b's data at the hub"),
        || {
            let top = |e: &str| t.observer.from(e).iter().map(|x| x.n).max().unwrap_or(0);
            top("edge-a") >= a0 + AFTER && top("edge-b") >= b0 + AFTER
        },
    );
    let after_a: Vec<Arrival> = t
        .observer
        .from("edge-a")
        .into_iter()
        .filter(|x| x.n > a0)
        .collect();
    let leaked: Vec<u64> = after_a
        .iter()
        .filter(|x| x.kind != "keep")
        .map(|x| x.n)
        .collect();
    assert!(
        leaked.is_empty(),
        "edge-a sent data that does not match its subscription: n = {leaked:?}"
    );
    let got: BTreeSet<u64> = after_a.iter().map(|x| x.n).collect();
    let missing: Vec<u64> = (a0 + 1..=a0 + AFTER)
        .filter(|n| kind_of(*n) == "keep" && !got.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "matching data of edge-a lost: {missing:?}"
    );
    // edge-b: untouched, both kinds, all of them.
    let got_b: BTreeSet<u64> = t
        .observer
        .from("edge-b")
        .into_iter()
        .map(|x| x.n)
        .filter(|n| *n > b0)
        .collect();
    let missing_b: Vec<u64> = (b0 + 1..=b0 + AFTER)
        .filter(|n| !got_b.contains(n))
        .collect();
    assert!(missing_b.is_empty(), "edge-b lost data: {missing_b:?}");

    // Unsubscribed, edge-a sends everything again.
    let reply = t.ask(
        "unsubscribe",
        json!({"subscription_id": subscription}),
        Some("edge-a"),
    );
    assert_eq!(
        ok_result(&reply, "unsubscribe on edge-a")["removed"],
        true,
        "{reply}"
    );
    let a1 = a.sent();
    wait_until_blocking(
        WAIT,
        t.hub
            .and_log("edge-a's non-matching data again after unsubscribe"),
        || {
            t.observer
                .from("edge-a")
                .iter()
                .any(|x| x.n > a1 && x.kind == "drop")
        },
    );

    // The same filter for every edge at once.
    let filter = json!({"filter": {"path": "$.kind", "operator": "==", "value": "keep"}});
    for (node, reply) in t.ask_all("subscribe", filter) {
        assert_eq!(reply["result"]["filter_applied"], true, "{node}: {reply}");
    }
    let (a2, b2) = (a.sent(), b.sent());
    wait_until_blocking(
        WAIT,
        t.hub
            .and_log("more data of both edges after the subscribe to all"),
        || {
            let top = |e: &str| t.observer.from(e).iter().map(|x| x.n).max().unwrap_or(0);
            top("edge-a") >= a2 + AFTER && top("edge-b") >= b2 + AFTER
        },
    );
    for (e, from) in [("edge-a", a2), ("edge-b", b2)] {
        let leaked: Vec<u64> = t
            .observer
            .from(e)
            .iter()
            .filter(|x| x.n > from && x.kind != "keep")
            .map(|x| x.n)
            .collect();
        assert!(leaked.is_empty(), "{e} sent non-matching data: {leaked:?}");
    }
}

#[test]
fn replay_resends_an_edges_buffered_data_to_the_hub() {
    const SENT: u64 = 50;
    const COUNT: u64 = 10;
    let _serial = SERIAL.lock();
    let t = Topology::start();
    // edge-b keeps pushing live data meanwhile.
    let _b = t.drive("edge-b", 50);
    // edge-a: a burst of SENT messages, all delivered (and acked).
    {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for n in 1..=SENT {
            socket
                .send_to(datagram("edge-a", n).as_bytes(), t.sensors[0])
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    wait_until_blocking(WAIT, t.hub.and_log("edge-a's burst at the hub"), || {
        t.observer.from("edge-a").len() as u64 >= SENT
    });
    let live = t.observer.from("edge-a");
    let ns: Vec<u64> = live.iter().map(|x| x.n).collect();
    assert_eq!(
        ns,
        (1..=SENT).collect::<Vec<_>>(),
        "edge-a's burst, in order"
    );
    assert!(live.iter().all(|x| !x.replay && !x.id.is_empty()));
    let ids: Vec<String> = live.iter().map(|x| x.id.clone()).collect();
    // Acked: nothing is waiting for a resend; what comes now is a replay.
    wait_until_blocking(
        WAIT,
        t.edge("edge-a").and_log("edge-a's store to empty"),
        || t.edge("edge-a").described("up")["store"]["messages"] == 0,
    );

    // The newest COUNT, again.
    let reply = t.ask("replay", json!({"count": COUNT}), Some("edge-a"));
    let result = ok_result(&reply, "replay to edge-a");
    assert_eq!(result["messages_available"], COUNT, "{reply}");
    assert_eq!(result["replay_started"], true, "{reply}");
    let replayed = |t: &Topology| -> Vec<Arrival> {
        t.observer
            .from("edge-a")
            .into_iter()
            .filter(|x| x.replay)
            .collect()
    };
    wait_until_blocking(
        WAIT,
        Evidence(
            &t,
            &format!(
                "{COUNT} replayed messages of edge-a published by the hub (Fednode-Replay: true)"
            ),
        ),
        || replayed(&t).len() as u64 >= COUNT,
    );
    let again = replayed(&t);
    assert_eq!(
        again.iter().map(|x| x.n).collect::<Vec<_>>(),
        (SENT - COUNT + 1..=SENT).collect::<Vec<_>>(),
        "the newest {COUNT}, in order"
    );
    assert_eq!(
        again.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        ids[(SENT - COUNT) as usize..].to_vec(),
        "replayed with their original ids"
    );

    // Everything after a given id.
    let reply = t.ask(
        "replay",
        json!({"after_id": ids[44].clone()}),
        Some("edge-a"),
    );
    let result = ok_result(&reply, "replay after_id to edge-a");
    assert_eq!(result["messages_available"], 5, "{reply}");
    wait_until_blocking(
        WAIT,
        Evidence(&t, "the replay after an id at the hub"),
        || replayed(&t).len() as u64 >= COUNT + 5,
    );
    let second: Vec<u64> = replayed(&t)[COUNT as usize..].iter().map(|x| x.n).collect();
    assert_eq!(second, vec![46, 47, 48, 49, 50], "after n = 45, in order");

    // Only edge-a replayed.
    for e in ["edge-b", "edge-c"] {
        assert!(
            t.observer.from(e).iter().all(|x| !x.replay),
            "{e} replayed without being asked"
        );
    }

    // Every edge at once: each replays its own newest 3 (edge-c has sent
    // nothing).
    let available: Vec<(String, Value)> = t
        .ask_all("replay", json!({"count": 3}))
        .into_iter()
        .map(|(node, reply)| (node, reply["result"]["messages_available"].clone()))
        .collect();
    assert_eq!(
        available,
        vec![
            ("edge-a".to_string(), json!(3)),
            ("edge-b".to_string(), json!(3)),
            ("edge-c".to_string(), json!(0)),
        ]
    );
    wait_until_blocking(
        WAIT,
        Evidence(&t, "the replay to every edge at the hub"),
        || {
            replayed(&t).len() as u64 >= COUNT + 5 + 3
                && t.observer
                    .from("edge-b")
                    .iter()
                    .filter(|x| x.replay)
                    .count()
                    >= 3
        },
    );
    let third: Vec<u64> = replayed(&t)[(COUNT + 5) as usize..]
        .iter()
        .map(|x| x.n)
        .collect();
    assert_eq!(third, vec![48, 49, 50], "edge-a's newest 3");
    assert!(t.observer.from("edge-c").iter().all(|x| !x.replay));
}
