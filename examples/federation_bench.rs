//! Federation benchmark: producer → edge → hub → consumer with real
//! `fednode` processes, against a chain of two bare WebSocket relays
//! measured in the same run.
//!
//! The two chains, each two processes:
//!
//! - `fednode`: an edge node (`websocket_input` server for the producer →
//!   memory bus → `websocket` output in client mode, pushing to the hub)
//!   and a hub node (`websocket_input` server → memory bus → `websocket`
//!   output server for the consumer). Both run the release `fednode`
//!   binary (`fednode run CONFIG`), memory bus, every component
//!   `on_full: block` (lossless), the link `at_most_once` (the default;
//!   `delivery=at_least_once` has the edge ask for acks).
//! - `bare`: relay 1 (a tokio-tungstenite server for the producer that
//!   forwards each frame, unparsed, over one client connection to relay 2)
//!   and relay 2 (a server that forwards each frame, unparsed, to the
//!   consumers connected to it). Each is this executable re-run as a
//!   process of its own, on a multi-threaded tokio runtime like `fednode`'s,
//!   with the same allocator (jemalloc). Bounded queues of 1,024 frames
//!   between reader and writer, waited on when full: lossless too.
//!
//! Producer and consumer are the repo's load generator
//! (`fednode_testkit::loadgen`) in a process of its own: 200-byte data
//! envelopes, one producer and one consumer, at offered rates of 1,000,
//! 10,000 and 100,000 msgs/s (sent in 1 ms ticks; each frame carries its
//! send time, read by the consumer: end-to-end latency) and as fast as
//! possible (throughput). Each round starts both chains afresh and runs
//! every scenario on both, one after the other (which one goes first
//! alternates by round); the summary gives medians over rounds and the
//! median of the per-round fednode / bare ratios.
//!
//! Run with:
//!   cargo build --release --bin fednode --examples
//!   target/release/examples/federation_bench rounds=5
//! (`quick` runs a tenth of the messages; `scenario=N` (1–4) picks one;
//! `system=bare|fednode` runs one chain; `delivery=at_least_once` sets
//! the edge's link; `FEDNODE_BIN=path` uses another `fednode` binary.)

#[path = "support/process.rs"]
mod process;
use fednode_testkit::loadgen::{self, Generator};
use futures::{SinkExt, StreamExt};
use process::Node;
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

/// The allocator of the `fednode` binary (src/main.rs), for the bare
/// relays and the generator alike.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// First argument of a bare relay process.
const RELAY: &str = "--bare-relay";
/// Frames a bare relay holds between a reader and a writer.
const RELAY_QUEUE: usize = 1024;

fn main() {
    loadgen::run_if_child();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(RELAY) {
        bare_relay_process(args.get(2).cloned());
        return;
    }
    bench();
}

// ---- the bare relays (child processes) ------------------------------------

/// A bare relay: frames from producers on `/in` go, unparsed, to the
/// downstream: a client connection to `push` when given, else every
/// consumer connected to `/out`. Prints `ready in=URL out=URL` and runs
/// until its stdin closes.
fn bare_relay_process(push: Option<String>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("relay runtime");
    rt.block_on(async move {
        let sinks = Sinks::default();
        let inl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let in_url = format!("ws://{}/in", inl.local_addr().unwrap());
        let out_url = match push {
            Some(url) => {
                let (ws, _) =
                    tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
                        .await
                        .unwrap_or_else(|e| panic!("bare relay: connect {url}: {e}"));
                let (tx, rx) = mpsc::channel(RELAY_QUEUE);
                sinks.add(tx);
                tokio::spawn(write_frames(ws, rx));
                url
            }
            None => {
                let outl = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let url = format!("ws://{}/out", outl.local_addr().unwrap());
                let sinks = sinks.clone();
                tokio::spawn(loadgen::accept_raw(outl, move |ws| {
                    let (tx, rx) = mpsc::channel(RELAY_QUEUE);
                    sinks.add(tx);
                    write_frames(ws, rx)
                }));
                url
            }
        };
        tokio::spawn(loadgen::accept_raw(inl, move |mut ws| {
            let sinks = sinks.clone();
            async move {
                let mut local = sinks.snapshot();
                while let Some(Ok(m)) = ws.next().await {
                    if !(m.is_text() || m.is_binary()) {
                        continue;
                    }
                    if sinks.version() != local.0 {
                        local = sinks.snapshot();
                    }
                    let mut gone = false;
                    for tx in &local.1 {
                        gone |= tx.send(m.clone()).await.is_err();
                    }
                    if gone {
                        sinks.prune();
                        local = sinks.snapshot();
                    }
                }
            }
        }));
        println!("ready in={in_url} out={out_url}");
        let _ = std::io::stdout().flush();
        loadgen::stdin_closed().await;
    });
}

/// The downstream queues of a relay, with a version so that readers copy
/// the list only when it changed.
#[derive(Clone, Default)]
struct Sinks {
    list: Arc<Mutex<Vec<mpsc::Sender<Ws>>>>,
    version: Arc<AtomicU64>,
}

impl Sinks {
    fn add(&self, tx: mpsc::Sender<Ws>) {
        self.list.lock().unwrap().push(tx);
        self.version.fetch_add(1, Ordering::Release);
    }
    fn prune(&self) {
        self.list.lock().unwrap().retain(|tx| !tx.is_closed());
        self.version.fetch_add(1, Ordering::Release);
    }
    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
    fn snapshot(&self) -> (u64, Vec<mpsc::Sender<Ws>>) {
        let list = self.list.lock().unwrap();
        (self.version(), list.clone())
    }
}

/// Write queued frames to `ws`: feed a batch (up to 256), flush once;
/// read and ignore whatever the peer sends.
async fn write_frames<S>(ws: tokio_tungstenite::WebSocketStream<S>, mut rx: mpsc::Receiver<Ws>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut read) = ws.split();
    tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
    while let Some(first) = rx.recv().await {
        if sink.feed(first).await.is_err() {
            return;
        }
        for _ in 0..255 {
            let Ok(m) = rx.try_recv() else { break };
            if sink.feed(m).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

// ---- the two chains ---------------------------------------------------------

enum Chain {
    Bare { relays: Vec<Generator> },
    Fednode { nodes: Vec<Node> },
}

struct Running {
    chain: Chain,
    /// Where the producer sends and the consumer reads.
    input: String,
    output: String,
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        match &self.chain {
            Chain::Bare { relays } => relays.iter().map(Generator::pid).collect(),
            Chain::Fednode { nodes } => nodes.iter().map(Node::pid).collect(),
        }
    }

    /// CPU seconds of each of the chain's processes so far (the edge or
    /// relay 1 first).
    fn cpu(&self) -> Vec<f64> {
        self.pids()
            .into_iter()
            .map(|pid| loadgen::process_cpu_time(pid).as_secs_f64())
            .collect()
    }

    fn stop(self) {
        match self.chain {
            Chain::Bare { relays } => relays.into_iter().for_each(Generator::finish),
            Chain::Fednode { nodes } => drop(nodes),
        }
    }
}

/// Relay 2 (serving the consumer), then relay 1 pushing to it.
fn start_bare() -> Running {
    let mut second = Generator::spawn_self(&[RELAY.to_string()]);
    let r2 = second.expect("ready");
    let mut first = Generator::spawn_self(&[RELAY.to_string(), r2.0["in"].clone()]);
    let r1 = first.expect("ready");
    Running {
        input: r1.0["in"].clone(),
        output: r2.0["out"].clone(),
        chain: Chain::Bare {
            relays: vec![first, second],
        },
    }
}

/// The hub, then the edge pushing to it; returns once the link is up.
fn start_fednode(delivery: &str) -> Running {
    let mut hub = Node::start(&json!({
        "node": {"id": "hub", "region": "bench"},
        "bus": {"kind": "memory"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
            "ws_in": {"type": "input", "name": "websocket_input", "config": {
                "mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"},
                "backpressure": {"on_full": "block"},
                "ports": {"outputs": [{"name": "ws_data", "subject": "hub.data"}]}}},
            "ws_out": {"type": "output", "name": "websocket", "config": {
                "mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/feed"},
                "backpressure": {"on_full": "block"},
                "ports": {"inputs": [{"name": "in", "subject": "hub.data"}]}}}
        }
    }));
    let hub_in = hub.logged(" listening", Some("ws_in"));
    let hub_out = hub.logged(" listening", Some("ws_out"));
    let mut edge = Node::start(&json!({
        "node": {"id": "edge", "region": "bench"},
        "bus": {"kind": "memory"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
            "device": {"type": "input", "name": "websocket_input", "config": {
                "mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/device"},
                "backpressure": {"on_full": "block"},
                "ports": {"outputs": [{"name": "ws_data", "subject": "edge.data"}]}}},
            "up": {"type": "output", "name": "websocket", "config": {
                "mode": "client",
                "client": {"url": format!("ws://{hub_in}/ingest")},
                "delivery": delivery,
                "backpressure": {"on_full": "block"},
                "ports": {"inputs": [{"name": "in", "subject": "edge.data"}]}}}
        }
    }));
    let edge_in = edge.logged(" listening", Some("device"));
    let t0 = Instant::now();
    while edge.metric(
        "websocket_output_connection_state",
        &[("component", "up"), ("state", "connected")],
    ) != 1.0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the edge never connected to the hub"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Running {
        input: format!("ws://{edge_in}/device"),
        output: format!("ws://{hub_out}/feed"),
        chain: Chain::Fednode {
            nodes: vec![edge, hub],
        },
    }
}

// ---- load ---------------------------------------------------------------------

struct Outcome {
    /// Frames delivered per second (first send to last receipt).
    rate: f64,
    lost: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    /// CPU time of the chain's two processes per delivered frame.
    cpu_ns: f64,
    /// The same, of the first process (edge, relay 1) alone.
    cpu_first_ns: f64,
}

fn run(sys: &Running, n: u64, rate: Option<u64>, ids: bool) -> Outcome {
    let mut job = vec![
        "relay".to_string(),
        format!("input={}", sys.input),
        format!("output={}", sys.output),
        "producers=1".into(),
        "consumers=1".into(),
        format!("per_producer={n}"),
    ];
    if !ids {
        // Acknowledged delivery drops repeated ids: let the edge assign them.
        job.push("ids=none".into());
    }
    if let Some(r) = rate {
        job.push(format!("rate={r}"));
        job.push("latency=1".into());
    }
    let cpu0 = sys.cpu();
    let mut generator = Generator::spawn(&job);
    let r = generator.expect("done");
    let cpu: Vec<f64> = sys.cpu().iter().zip(&cpu0).map(|(a, b)| a - b).collect();
    generator.finish();
    let received = r.num("received");
    Outcome {
        rate: received / r.num("seconds"),
        lost: r.num("expected") - received,
        p50_us: rate.map(|_| r.num("p50_us")),
        p99_us: rate.map(|_| r.num("p99_us")),
        cpu_ns: 1e9 * cpu.iter().sum::<f64>() / received.max(1.0),
        cpu_first_ns: 1e9 * cpu[0] / received.max(1.0),
    }
}

fn arg(key: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per system and scenario, the figures of every round.
#[derive(Default, Clone)]
struct Figures {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_ns: Vec<f64>,
    cpu_first_ns: Vec<f64>,
    lost: f64,
}

const SYSTEMS: [&str; 2] = ["bare", "fednode"];

fn bench() {
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 10 } else { 1 };
    let rounds: usize = arg("rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let only_scenario: Option<usize> = arg("scenario").and_then(|v| v.parse().ok());
    let only_system = arg("system");
    let delivery = arg("delivery").unwrap_or_else(|| "at_most_once".into());
    let ids = delivery == "at_most_once";
    // (label, offered rate, messages)
    let scenarios: [(&str, Option<u64>, u64); 4] = [
        ("1,000 msgs/s", Some(1_000), 3_000 / scale),
        ("10,000 msgs/s", Some(10_000), 30_000 / scale),
        ("100,000 msgs/s", Some(100_000), 300_000 / scale),
        ("max", None, 1_000_000 / scale),
    ];
    println!(
        "producer → edge → hub → consumer, 200-byte envelopes, 1 producer, 1 consumer; \
         fednode link {delivery}, memory bus on both nodes; {rounds} round(s)"
    );
    println!(
        "{:<6} {:<8} {:<15} {:>12} {:>6} {:>9} {:>9} {:>9}",
        "round", "system", "offered", "delivered/s", "lost", "p50 µs", "p99 µs", "CPU ns"
    );
    let mut figures = vec![vec![Figures::default(); scenarios.len()]; SYSTEMS.len()];
    let t_start = Instant::now();
    for round in 0..rounds {
        // Both chains up for the round; which one runs first alternates.
        let mut order: Vec<usize> = (0..SYSTEMS.len())
            .filter(|&s| only_system.as_deref().is_none_or(|o| o == SYSTEMS[s]))
            .collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut running: Vec<Option<Running>> = (0..SYSTEMS.len()).map(|_| None).collect();
        for &s in &order {
            running[s] = Some(match SYSTEMS[s] {
                "bare" => start_bare(),
                _ => start_fednode(&delivery),
            });
        }
        for (i, (label, rate, n)) in scenarios.iter().enumerate() {
            if only_scenario.is_some_and(|o| o != i + 1) {
                continue;
            }
            for &s in &order {
                let sys = running[s].as_ref().unwrap();
                let o = run(sys, *n, *rate, ids);
                let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
                println!(
                    "{:<6} {:<8} {label:<15} {:>12.0} {:>6} {:>9} {:>9} {:>9.0}",
                    round + 1,
                    SYSTEMS[s],
                    o.rate,
                    o.lost,
                    show(o.p50_us),
                    show(o.p99_us),
                    o.cpu_ns
                );
                let f = &mut figures[s][i];
                f.rate.push(o.rate);
                f.p50.push(o.p50_us.unwrap_or(f64::NAN));
                f.p99.push(o.p99_us.unwrap_or(f64::NAN));
                f.cpu_ns.push(o.cpu_ns);
                f.cpu_first_ns.push(o.cpu_first_ns);
                f.lost += o.lost;
            }
        }
        for r in running.into_iter().flatten() {
            r.stop();
        }
    }
    println!(
        "\nmedians over {rounds} round(s) ({:.0} s in all); ratio = median of the per-round fednode / bare",
        t_start.elapsed().as_secs_f64()
    );
    println!(
        "{:<15} {:>13} {:>13} {:>7} {:>15} {:>15} {:>7} {:>13}",
        "offered",
        "fednode/s",
        "bare/s",
        "ratio",
        "fednode p50/p99",
        "bare p50/p99",
        "lost",
        "CPU ns f/b"
    );
    for (i, (label, rate, _)) in scenarios.iter().enumerate() {
        if only_scenario.is_some_and(|o| o != i + 1) {
            continue;
        }
        let (b, f) = (&figures[0][i], &figures[1][i]);
        let ratios: Vec<f64> = f.rate.iter().zip(&b.rate).map(|(f, b)| f / b).collect();
        let lat = |x: &Figures| {
            if rate.is_some() && !x.p50.is_empty() {
                format!("{:.0}/{:.0} µs", median(&x.p50), median(&x.p99))
            } else {
                "-".to_string()
            }
        };
        println!(
            "{label:<15} {:>13.0} {:>13.0} {:>7.2} {:>15} {:>15} {:>7} {:>6.0}/{:<6.0}",
            median(&f.rate),
            median(&b.rate),
            median(&ratios),
            lat(f),
            lat(b),
            f.lost + b.lost,
            median(&f.cpu_ns),
            median(&b.cpu_ns),
        );
        if !ratios.is_empty() && rate.is_none() {
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            println!("  per-round throughput ratios: {}", each.join(" "));
            let split = |x: &Figures| {
                let first = median(&x.cpu_first_ns);
                (first, median(&x.cpu_ns) - first)
            };
            let ((fe, fh), (b1, b2)) = (split(f), split(b));
            println!(
                "  CPU ns per frame: edge {fe:.0} + hub {fh:.0}; relay 1 {b1:.0} + relay 2 {b2:.0}"
            );
        }
        if *rate == Some(10_000) {
            for (name, x) in [("fednode", f), ("bare", b)] {
                if x.p99.is_empty() {
                    continue;
                }
                let each: Vec<String> = x.p99.iter().map(|p| format!("{p:.0}")).collect();
                let over = x.p99.iter().filter(|&&p| p > 5_000.0).count();
                println!(
                    "  {name} p99 per round (µs): {} ({over} of {} over 5 ms)",
                    each.join(" "),
                    x.p99.len()
                );
            }
        }
    }
    println!("\ngoals: fednode ≥ 0.5× bare throughput (max); fednode p99 ≤ 5 ms at 10,000 msgs/s");
}
