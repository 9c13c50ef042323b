//! Hub load: many edges streaming raw 8-channel EEG into one hub that
//! computes features and stores them.
//!
//! The hub is the release `fednode` binary (`fednode run CONFIG`) on the
//! NATS bus of a throwaway `nats-server` (JetStream on), with
//! `websocket_input` (server, `/ingest`, `on_full: block`) →
//! `eeg.{user_id}.raw` → `eeg_features` (256 Hz, 8 channels, 2 s windows,
//! 50 % overlap) → `user.{user_id}.features` → `timescale` (`durable:
//! true`, through a JetStream consumer) on a throwaway PostgreSQL cluster
//! (plain tables with a BRIN index when the TimescaleDB extension is not
//! installed). Raw samples are not stored, features are.
//!
//! The edges are simulated by this program: each is one WebSocket client
//! that announces itself as a fednode node would (`Fednode-Node`,
//! `Fednode-Region`, `Fednode-Delivery: at_least_once`) and sends data
//! envelopes with an `origin`, one sample per message
//! (`{"type":"raw","user_id","timestamp","channels":[8 values]}`, about
//! 220 bytes, as the `eeg_simulator` makes them), paced in 5 ms ticks. As
//! a fednode edge does, it keeps at most 1,000 messages unacknowledged and
//! waits for acks beyond that, so a hub that falls behind slows its edges.
//! `delivery=plain` sends without asking for acks.
//!
//! Phases:
//! 1. 100 edges × 1 user × 256 Hz (25,600 samples/s): the hub's CPU (from
//!    `/proc/PID/stat`), RSS, and those of nats-server and PostgreSQL,
//!    over four 5 s windows (medians).
//! 2. A ramp of the per-edge rate (256 Hz × 1, 1.5, 2, 2.5, 3, 3.5, 4, 5,
//!    6, 8, 10, 12, 16, 24, 32, 48, 64) until the hub falls behind: the
//!    edges send less than 97 % of what is offered (held back by acks),
//!    the input publishes or features take in less than 97 % of what was
//!    sent, the bus or the input drops, or the rows timescale holds grow
//!    by more than 1,000 in a window. A step that falls behind is run a
//!    second time before the ramp stops (a busy machine stalls now and
//!    then). Each step also shows whether the input's queue (1,000,
//!    `block`) was more than half full for most of the window (sampled
//!    each second): the hub still delivers everything then, but has no
//!    room left. The summary gives the highest step delivered in full and
//!    the highest with the queue under half full.
//! 3. The check of the simulation: 5 real edge nodes (`fednode` processes,
//!    `eeg_simulator` of 20 users at 256 Hz → `websocket` output in client
//!    mode, `at_least_once`, memory bus) against 5 simulated edges of 20
//!    users each, same 25,600 samples/s, alternating, `rounds` times.
//!
//! Run with:
//!   cargo build --release --bin fednode --examples
//!   target/release/examples/hub_load
//! (`edges=N` edges in phases 1–2 (100); `rounds=N` for phase 3 (2);
//! `max_step=M` ends the ramp at 256 Hz × M; `phase=N` runs one phase;
//! `delivery=plain`; `FEDNODE_BIN=path` uses another `fednode` binary.)

#[path = "support/process.rs"]
mod process;
use fednode_testkit::{loadgen, NatsServer, PgCluster};
use futures::{SinkExt, StreamExt};
use process::{metric_sum, Node};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Ws;

/// The allocator of the `fednode` binary (src/main.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CHANNELS: [&str; 8] = ["Fz", "F3", "F4", "Cz", "C3", "C4", "Pz", "P3"];
const RATE_HZ: f64 = 256.0;
/// A fednode edge's default `max_in_flight`.
const MAX_IN_FLIGHT: u64 = 1000;
/// A step keeps up when the edges sent and features took in at least this
/// share of what was offered.
const KEEP_UP: f64 = 0.97;
/// The hub input's `backpressure.queue_size` (its default).
const INPUT_QUEUE: f64 = 1000.0;
const RAMP: [f64; 17] = [
    1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0,
];

// ---- /proc ----------------------------------------------------------------------

/// CPU seconds so far of `pid`.
fn proc_cpu(pid: u32) -> f64 {
    loadgen::process_cpu_time(pid).as_secs_f64()
}

/// CPU seconds of `pid` and its live children (PostgreSQL's backends).
fn tree_cpu(pid: u32) -> f64 {
    loadgen::process_tree_cpu_time(pid).as_secs_f64()
}

/// Resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    loadgen::rss_bytes(pid) as f64 / (1024.0 * 1024.0)
}

// ---- the simulated edges ---------------------------------------------------------

/// What every simulated edge of a fleet shares.
#[derive(Default)]
struct Fleet {
    /// Samples per second per user, in mHz.
    rate_mhz: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    /// Samples due but not sent within a second (the edge was held back).
    shed: AtomicU64,
    /// Ticks on which an edge waited for acks (1,000 unacknowledged).
    held: AtomicU64,
    connected: AtomicU64,
    stop: AtomicBool,
}

impl Fleet {
    fn set_rate(&self, hz: f64) {
        self.rate_mhz
            .store((hz * 1000.0).round() as u64, Ordering::Relaxed);
    }
}

/// 512 samples (2 s at 256 Hz, so the cycle is seamless) of 8 channels:
/// 10, 6 and 20 Hz sines with a little noise, each sample the text of its
/// `channels` list, numbers written as `serde_json` writes `f64`s.
fn sample_pool() -> Vec<String> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut noise = move || {
        // xorshift64*, four uniforms summed: near-Gaussian, mean 0.
        let mut s = 0.0;
        for _ in 0..4 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            s += u - 0.5;
        }
        s * 3.0
    };
    (0..512)
        .map(|i| {
            let t = i as f64 / RATE_HZ;
            let values: Vec<String> = (0..CHANNELS.len())
                .map(|c| {
                    let ph = c as f64 * 0.3;
                    let tau = std::f64::consts::TAU;
                    let v = 20.0 * (tau * 10.0 * t + ph).sin()
                        + 10.0 * (tau * 6.0 * t + 0.5 * ph).sin()
                        + 5.0 * (tau * 20.0 * t + 2.0 * ph).sin()
                        + noise();
                    serde_json::to_string(&v).unwrap()
                })
                .collect();
            values.join(",")
        })
        .collect()
}

/// One simulated edge: a connection to `url` carrying `users` streams,
/// message `m` for user `m % users` with that user's sample `m / users`.
async fn sim_edge(
    name: String,
    users: Vec<String>,
    url: String,
    acked: bool,
    fleet: Arc<Fleet>,
    pool: Arc<Vec<String>>,
) {
    let mut req = url.as_str().into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert("Fednode-Node", HeaderValue::from_str(&name).unwrap());
    h.insert("Fednode-Region", HeaderValue::from_static("bench"));
    if acked {
        h.insert(
            "Fednode-Delivery",
            HeaderValue::from_static("at_least_once"),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .unwrap_or_else(|e| panic!("{name}: connect {url}: {e}"));
    fleet.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let my_acks = Arc::new(AtomicU64::new(0));
    let reader = {
        let (fleet, my_acks) = (fleet.clone(), my_acks.clone());
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Ws::Text(t) = m {
                    if t.starts_with(r#"{"type":"ack""#) {
                        my_acks.fetch_add(1, Ordering::Relaxed);
                        fleet.acked.fetch_add(1, Ordering::Relaxed);
                    } else if t.starts_with(r#"{"type":"nack""#) {
                        my_acks.fetch_add(1, Ordering::Relaxed);
                        fleet.nacked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let n_users = users.len() as u64;
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut owed = 0.0f64; // messages
    let mut m: u64 = 0;
    while !fleet.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        let per_user = fleet.rate_mhz.load(Ordering::Relaxed) as f64 / 1000.0;
        let per_s = per_user * n_users as f64;
        owed += per_s * (now - last).as_secs_f64();
        last = now;
        if owed > per_s.max(1.0) {
            fleet
                .shed
                .fetch_add((owed - per_s) as u64, Ordering::Relaxed);
            owed = per_s;
        }
        let mut allowed = owed as u64;
        if acked {
            let in_flight = m - my_acks.load(Ordering::Relaxed);
            let room = MAX_IN_FLIGHT.saturating_sub(in_flight);
            if room < allowed {
                fleet.held.fetch_add(1, Ordering::Relaxed);
                allowed = room;
            }
        }
        if allowed == 0 {
            continue;
        }
        for _ in 0..allowed {
            let user = &users[(m % n_users) as usize];
            let sample = m / n_users;
            let ts = start_ms + sample * 1000 / (per_user.max(1.0) as u64);
            let frame = format!(
                r#"{{"type":"data","id":"{name}-{m}","timestamp":{ts},"origin":{{"node":"{name}","region":"bench"}},"payload":{{"type":"raw","user_id":"{user}","timestamp":{ts},"channels":[{}]}}}}"#,
                pool[(sample % pool.len() as u64) as usize]
            );
            if sink.feed(Ws::text(frame)).await.is_err() {
                reader.abort();
                return;
            }
            m += 1;
        }
        if sink.flush().await.is_err() {
            break;
        }
        owed -= allowed as f64;
        fleet.sent.fetch_add(allowed, Ordering::Relaxed);
    }
    let _ = sink.send(Ws::Close(None)).await;
    reader.abort();
    fleet.connected.fetch_sub(1, Ordering::Relaxed);
}

/// A fleet of `edges` simulated edges of `users` users each, at `hz` per
/// user, running on `rt` until `stop`.
struct SimFleet {
    fleet: Arc<Fleet>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimFleet {
    fn start(
        rt: &tokio::runtime::Runtime,
        url: &str,
        prefix: &str,
        edges: usize,
        users: usize,
        hz: f64,
        acked: bool,
    ) -> SimFleet {
        let fleet = Arc::new(Fleet::default());
        fleet.set_rate(hz);
        let pool = Arc::new(sample_pool());
        let tasks = (0..edges)
            .map(|e| {
                let name = format!("{prefix}{e:03}");
                let user_ids = if users == 1 {
                    vec![name.clone()]
                } else {
                    (0..users).map(|u| format!("{name}-u{u:02}")).collect()
                };
                rt.spawn(sim_edge(
                    name,
                    user_ids,
                    url.to_string(),
                    acked,
                    fleet.clone(),
                    pool.clone(),
                ))
            })
            .collect();
        let t0 = Instant::now();
        while fleet.connected.load(Ordering::Relaxed) < edges as u64 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "only {} of {edges} edges connected",
                fleet.connected.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        SimFleet { fleet, tasks }
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        self.fleet.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
    }
}

// ---- measuring -------------------------------------------------------------------

/// The processes around the hub, for CPU and memory.
struct Pids {
    hub: u32,
    nats: u32,
    pg: u32,
    /// Real edge processes, when there are some.
    edges: Vec<u32>,
}

#[derive(Clone)]
struct Snapshot {
    at: Instant,
    /// Simulated edges: sent, shed, held.
    sent: f64,
    shed: f64,
    held: f64,
    /// Hub metrics.
    received: f64,
    published: f64,
    in_dropped: f64,
    queue_depth: f64,
    samples: f64,
    rejected: f64,
    windows: f64,
    bus_dropped: f64,
    rows: f64,
    buffered: f64,
    /// CPU seconds.
    hub_cpu: f64,
    nats_cpu: f64,
    pg_cpu: f64,
    edges_cpu: f64,
    hub_rss: f64,
}

fn snapshot(hub: &Node, fleet: Option<&Fleet>, pids: &Pids) -> Snapshot {
    let text = hub.metrics();
    let m = |n: &str| metric_sum(&text, n, &[]);
    let f = |a: Option<&AtomicU64>| a.map_or(0.0, |a| a.load(Ordering::Relaxed) as f64);
    Snapshot {
        at: Instant::now(),
        sent: f(fleet.map(|f| &f.sent)),
        shed: f(fleet.map(|f| &f.shed)),
        held: f(fleet.map(|f| &f.held)),
        received: m("websocket_input_messages_received_total"),
        published: m("websocket_input_messages_published_total"),
        in_dropped: m("websocket_input_messages_dropped_total"),
        queue_depth: m("websocket_input_queue_depth"),
        samples: m("eeg_features_samples_total"),
        rejected: m("eeg_features_rejected_total"),
        windows: m("eeg_features_windows_total"),
        bus_dropped: m("bus_messages_dropped_total"),
        rows: m("timescale_rows_written_total"),
        buffered: m("timescale_buffered_rows"),
        hub_cpu: proc_cpu(pids.hub),
        nats_cpu: proc_cpu(pids.nats),
        pg_cpu: tree_cpu(pids.pg),
        edges_cpu: if pids.edges.is_empty() {
            loadgen::cpu_time().as_secs_f64()
        } else {
            pids.edges.iter().map(|&p| proc_cpu(p)).sum()
        },
        hub_rss: rss_mib(pids.hub),
    }
}

/// What one measured window shows.
#[derive(Clone)]
struct Window {
    offered: f64,
    /// Per second.
    sent: f64,
    published: f64,
    samples: f64,
    windows: f64,
    rows: f64,
    /// Over the window.
    drops: f64,
    held: f64,
    shed: f64,
    /// The input's queue depth, median of the samples taken each second.
    queue_median: f64,
    buffered_end: f64,
    buffered_growth: f64,
    /// Share of one core.
    hub_cpu: f64,
    nats_cpu: f64,
    pg_cpu: f64,
    edges_cpu: f64,
    hub_rss: f64,
}

impl Window {
    fn between(a: &Snapshot, b: &Snapshot, offered: f64, simulated: bool) -> Window {
        let dt = (b.at - a.at).as_secs_f64();
        let per = |x: f64, y: f64| (y - x) / dt;
        Window {
            offered,
            sent: if simulated {
                per(a.sent, b.sent)
            } else {
                per(a.received, b.received)
            },
            published: per(a.published, b.published),
            samples: per(a.samples, b.samples),
            windows: per(a.windows, b.windows),
            rows: per(a.rows, b.rows),
            drops: (b.in_dropped - a.in_dropped)
                + (b.bus_dropped - a.bus_dropped)
                + (b.rejected - a.rejected),
            held: b.held - a.held,
            shed: b.shed - a.shed,
            queue_median: b.queue_depth,
            buffered_end: b.buffered,
            buffered_growth: b.buffered - a.buffered,
            hub_cpu: per(a.hub_cpu, b.hub_cpu),
            nats_cpu: per(a.nats_cpu, b.nats_cpu),
            pg_cpu: per(a.pg_cpu, b.pg_cpu),
            edges_cpu: per(a.edges_cpu, b.edges_cpu),
            hub_rss: b.hub_rss,
        }
    }

    /// Why the hub did not keep up in this window (empty: it did).
    fn behind(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.sent < KEEP_UP * self.offered {
            why.push(format!(
                "edges sent {:.0}% of offered{}",
                100.0 * self.sent / self.offered,
                if self.held > 0.0 {
                    " (held back by acks)"
                } else {
                    ""
                }
            ));
        }
        if self.shed > 0.0 && self.held == 0.0 {
            why.push(format!(
                "the simulating process fell {:.0} samples short",
                self.shed
            ));
        }
        if self.published < KEEP_UP * self.sent {
            why.push(format!(
                "the input published {:.0}% of sent",
                100.0 * self.published / self.sent.max(1.0)
            ));
        }
        if self.samples < KEEP_UP * self.sent {
            why.push(format!(
                "features took in {:.0}% of sent",
                100.0 * self.samples / self.sent.max(1.0)
            ));
        }
        if self.drops > 0.0 {
            why.push(format!("{:.0} dropped", self.drops));
        }
        if self.buffered_growth > 1000.0 {
            why.push(format!("timescale holds {:.0} rows", self.buffered_end));
        }
        why
    }

    /// The hub keeps up but its input queue was more than half full for
    /// most of the window: no room left (with `block`, the next step
    /// holds the edges back).
    fn no_slack(&self) -> bool {
        self.queue_median > INPUT_QUEUE / 2.0
    }

    fn us_per_sample(&self, cpu: f64) -> f64 {
        1e6 * cpu / self.samples.max(1.0)
    }
}

fn measure(
    hub: &Node,
    fleet: Option<&Fleet>,
    pids: &Pids,
    offered: f64,
    window: Duration,
) -> Window {
    let a = snapshot(hub, fleet, pids);
    let t0 = Instant::now();
    let mut depths = Vec::new();
    while t0.elapsed() + Duration::from_millis(1500) < window {
        std::thread::sleep(Duration::from_secs(1));
        depths.push(metric_sum(
            &hub.metrics(),
            "websocket_input_queue_depth",
            &[],
        ));
    }
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    let b = snapshot(hub, fleet, pids);
    depths.push(b.queue_depth);
    let mut w = Window::between(&a, &b, offered, fleet.is_some());
    w.queue_median = median(&depths);
    w
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn row_header() {
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8}  verdict",
        "step",
        "offered",
        "sent/s",
        "features",
        "win/s",
        "rows/s",
        "hub CPU",
        "µs/smpl",
        "nats",
        "pg",
        "edges",
        "hub RSS",
    );
}

fn row(label: &str, w: &Window) {
    let why = w.behind();
    println!(
        "{label:<24} {:>9.0} {:>9.0} {:>9.0} {:>7.0} {:>7.0} {:>7.0}% {:>8.1} {:>6.0}% {:>6.0}% {:>6.0}% {:>5.0} MiB  {}",
        w.offered,
        w.sent,
        w.samples,
        w.windows,
        w.rows,
        100.0 * w.hub_cpu,
        w.us_per_sample(w.hub_cpu),
        100.0 * w.nats_cpu,
        100.0 * w.pg_cpu,
        100.0 * w.edges_cpu,
        w.hub_rss,
        if why.is_empty() && w.no_slack() {
            format!(
                "keeps up, no slack: input queue {:.0} of {INPUT_QUEUE:.0} (median)",
                w.queue_median
            )
        } else if why.is_empty() {
            "keeps up".to_string()
        } else {
            format!("BEHIND: {}", why.join("; "))
        }
    );
}

// ---- the set-up --------------------------------------------------------------------

fn hub_config(nats_url: &str, pg_url: &str) -> Value {
    json!({
        "node": {"id": "hub", "region": "bench"},
        "bus": {"kind": "nats", "url": nats_url},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
            "ws_in": {"type": "input", "name": "websocket_input", "config": {
                "mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
                           "max_connections": 2000},
                "backpressure": {"on_full": "block"},
                "ports": {"outputs": [{"name": "ws_data", "subject": "eeg.{user_id}.raw"}]}}},
            "features": {"type": "processor", "name": "eeg_features", "config": {
                "sampling_rate": 256,
                "channel_names": CHANNELS,
                "window_seconds": 2,
                "overlap": 0.5,
                "ports": {
                    "inputs": [{"name": "in", "subject": "eeg.*.raw"}],
                    "outputs": [{"name": "out", "subject": "user.{user_id}.features"}]}}},
            "store": {"type": "storage", "name": "timescale", "config": {
                "url": pg_url,
                "durable": true,
                "ports": {"inputs": [{"name": "in", "subject": "user.*.features"}]}}}
        }
    })
}

/// A real edge: `eeg_simulator` of `users` at 256 Hz → `websocket` output
/// in client mode, at-least-once, to `hub`.
fn real_edge(name: &str, users: usize, hub: &str) -> Node {
    let user_ids: Vec<String> = (0..users).map(|u| format!("{name}-u{u:02}")).collect();
    Node::start(&json!({
        "node": {"id": name, "region": "bench"},
        "bus": {"kind": "memory"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
            "sim": {"type": "input", "name": "eeg_simulator", "config": {
                "sampling_rate": 256,
                "channel_names": CHANNELS,
                "user_ids": user_ids,
                "ports": {"outputs": [{"name": "out", "subject": "eeg.raw"}]}}},
            "up": {"type": "output", "name": "websocket", "config": {
                "mode": "client",
                "client": {"url": hub},
                "delivery": "at_least_once",
                "ports": {"inputs": [{"name": "in", "subject": "eeg.raw"}]}}}
        }
    }))
}

/// Until the hub's input has `n` connections.
fn wait_connections(hub: &Node, n: f64) {
    let t0 = Instant::now();
    while metric_sum(&hub.metrics(), "websocket_input_connections_active", &[]) != n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the hub never had {n} connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Until the hub has taken in everything it was sent (its input queue
/// empty and the published count steady).
fn wait_drained(hub: &Node) {
    let t0 = Instant::now();
    let mut last = -1.0;
    loop {
        let text = hub.metrics();
        let (q, p, s) = (
            metric_sum(&text, "websocket_input_queue_depth", &[]),
            metric_sum(&text, "websocket_input_messages_published_total", &[]),
            metric_sum(&text, "eeg_features_samples_total", &[]),
        );
        if q == 0.0 && p == last && s >= p - metric_sum(&text, "bus_messages_dropped_total", &[]) {
            return;
        }
        last = p;
        if t0.elapsed() > Duration::from_secs(60) {
            eprintln!("the hub did not drain within 60 s (queue {q}, published {p}, samples {s})");
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn arg(key: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn main() {
    let edges: usize = arg("edges").and_then(|v| v.parse().ok()).unwrap_or(100);
    let rounds: usize = arg("rounds").and_then(|v| v.parse().ok()).unwrap_or(2);
    let max_step: f64 = arg("max_step").and_then(|v| v.parse().ok()).unwrap_or(64.0);
    let phase: Option<u32> = arg("phase").and_then(|v| v.parse().ok());
    let acked = arg("delivery").is_none_or(|d| d != "plain");
    let t_start = Instant::now();

    // The simulated edges run here, on a runtime of their own; this thread
    // measures.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let nats = NatsServer::start_jetstream();
    let pg = PgCluster::start();
    pg.create_database("fednode");
    let mut hub = Node::start(&hub_config(&nats.url(), &pg.url_for("fednode")));
    hub.wait_ready();
    let ingest = format!("ws://{}/ingest", hub.logged(" listening", Some("ws_in")));
    let timescale = pg
        .psql(
            "fednode",
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'",
        )
        .trim()
        .to_string();
    let mut pids = Pids {
        hub: hub.pid(),
        nats: nats.pid(),
        pg: pg.pid(),
        edges: Vec::new(),
    };
    println!(
        "hub: fednode on the NATS bus (nats-server with JetStream), websocket_input → eeg_features → \
         timescale (durable; PostgreSQL {}); edges {}, one sample of 8 channels per message",
        if timescale.ends_with('1') {
            "with TimescaleDB"
        } else {
            "without TimescaleDB: plain tables"
        },
        if acked {
            "at_least_once (at most 1,000 unacknowledged each)"
        } else {
            "plain (no acks)"
        }
    );
    println!(
        "(CPU as a share of one core; µs/smpl = hub CPU per sample taken in by eeg_features; \
         edges = the simulating process, or the real edge processes)"
    );

    let mut sustained: Option<(f64, Window)> = None;
    if phase.is_none_or(|p| p == 1 || p == 2) {
        let fleet = SimFleet::start(&rt, &ingest, "edge-", edges, 1, RATE_HZ, acked);
        std::thread::sleep(Duration::from_secs(3));
        if phase.is_none_or(|p| p == 1) {
            println!("\n1. {edges} simulated edges × 256 Hz, four 5 s windows");
            row_header();
            let offered = edges as f64 * RATE_HZ;
            let windows: Vec<Window> = (0..4)
                .map(|i| {
                    let w = measure(
                        &hub,
                        Some(&fleet.fleet),
                        &pids,
                        offered,
                        Duration::from_secs(5),
                    );
                    row(&format!("window {}", i + 1), &w);
                    w
                })
                .collect();
            let med = |f: fn(&Window) -> f64| median(&windows.iter().map(f).collect::<Vec<_>>());
            println!(
                "median: hub CPU {:.1}% of a core ({:.1} µs per sample), RSS {:.0} MiB; nats-server {:.1}%, \
                 PostgreSQL {:.1}%, the simulating process {:.1}%; features {:.0} samples/s, {:.0} windows/s, \
                 {:.0} rows/s stored",
                100.0 * med(|w| w.hub_cpu),
                med(|w| w.us_per_sample(w.hub_cpu)),
                med(|w| w.hub_rss),
                100.0 * med(|w| w.nats_cpu),
                100.0 * med(|w| w.pg_cpu),
                100.0 * med(|w| w.edges_cpu),
                med(|w| w.samples),
                med(|w| w.windows),
                med(|w| w.rows),
            );
        }
        if phase.is_none_or(|p| p == 2) {
            println!("\n2. ramp: {edges} simulated edges, per-edge rate 256 Hz × M; 2 s to settle, 6 s measured");
            row_header();
            let mut failed = false;
            let mut with_slack: Option<(f64, Window)> = None;
            for m in RAMP.into_iter().filter(|&m| m <= max_step) {
                let offered = edges as f64 * RATE_HZ * m;
                fleet.fleet.set_rate(RATE_HZ * m);
                std::thread::sleep(Duration::from_secs(2));
                let mut w = measure(
                    &hub,
                    Some(&fleet.fleet),
                    &pids,
                    offered,
                    Duration::from_secs(6),
                );
                row(&format!("×{m} ({:.0} Hz/edge)", RATE_HZ * m), &w);
                if !w.behind().is_empty() {
                    // Once more, to tell a stall of the machine from the limit.
                    w = measure(
                        &hub,
                        Some(&fleet.fleet),
                        &pids,
                        offered,
                        Duration::from_secs(6),
                    );
                    row(&format!("×{m} again"), &w);
                }
                if !w.behind().is_empty() {
                    failed = true;
                    break;
                }
                if !w.no_slack() && with_slack.as_ref().is_none_or(|(k, _)| *k < m) {
                    with_slack = Some((m, w.clone()));
                }
                sustained = Some((m, w));
            }
            let show = |what: &str, step: &Option<(f64, Window)>| {
                match step {
                Some((m, w)) => println!(
                    "{what}: {edges} edges × {:.0} Hz = {:.0} samples/s (hub CPU {:.0}%, {:.1} µs per sample, RSS {:.0} MiB)",
                    RATE_HZ * *m,
                    w.samples,
                    100.0 * w.hub_cpu,
                    w.us_per_sample(w.hub_cpu),
                    w.hub_rss,
                ),
                None => println!("{what}: not even the first step"),
            }
            };
            show("delivered in full up to", &sustained);
            show("with the input queue under half full up to", &with_slack);
            if !failed {
                println!("(the end of the ramp, not the limit)");
            }
        }
        fleet.stop(&rt);
        wait_drained(&hub);
    }

    if phase.is_none_or(|p| p == 3) {
        println!(
            "\n3. 5 real edge processes × 20 users against 5 simulated edges × 20 users, 256 Hz \
             ({:.0} samples/s offered); 3 s to settle, 10 s measured; {rounds} round(s)",
            5.0 * 20.0 * RATE_HZ
        );
        row_header();
        let offered = 5.0 * 20.0 * RATE_HZ;
        let (mut real, mut sim) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for kind in ["real", "simulated"] {
                let w = if kind == "real" {
                    let nodes: Vec<Node> = (0..5)
                        .map(|e| real_edge(&format!("r{round}e{e}"), 20, &ingest))
                        .collect();
                    wait_connections(&hub, 5.0);
                    pids.edges = nodes.iter().map(Node::pid).collect();
                    std::thread::sleep(Duration::from_secs(3));
                    let w = measure(&hub, None, &pids, offered, Duration::from_secs(10));
                    pids.edges.clear();
                    drop(nodes);
                    w
                } else {
                    let fleet =
                        SimFleet::start(&rt, &ingest, &format!("s{round}e"), 5, 20, RATE_HZ, acked);
                    std::thread::sleep(Duration::from_secs(3));
                    let w = measure(
                        &hub,
                        Some(&fleet.fleet),
                        &pids,
                        offered,
                        Duration::from_secs(10),
                    );
                    fleet.stop(&rt);
                    w
                };
                row(&format!("{kind} edges, round {}", round + 1), &w);
                if kind == "real" {
                    real.push(w)
                } else {
                    sim.push(w)
                }
                wait_connections(&hub, 0.0);
                wait_drained(&hub);
            }
        }
        let med =
            |v: &[Window], f: fn(&Window) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        println!(
            "median hub CPU per sample: real edges {:.1} µs, simulated {:.1} µs; hub CPU {:.1}% vs {:.1}%; \
             features {:.0} vs {:.0} samples/s",
            med(&real, |w| w.us_per_sample(w.hub_cpu)),
            med(&sim, |w| w.us_per_sample(w.hub_cpu)),
            100.0 * med(&real, |w| w.hub_cpu),
            100.0 * med(&sim, |w| w.hub_cpu),
            med(&real, |w| w.samples),
            med(&sim, |w| w.samples),
        );
    }
    let rows = pg.psql("fednode", "SELECT count(*) FROM fednode_messages");
    println!(
        "\nfeature rows in PostgreSQL at the end: {}; {:.0} s in all",
        rows.trim(),
        t_start.elapsed().as_secs_f64()
    );
    drop(hub);
}
