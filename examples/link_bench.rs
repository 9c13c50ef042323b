//! Federation link benchmark: what acknowledged delivery and the store
//! cost on one edge → hub link, and how fast a backlog drains.
//!
//! The link, all in this process on two memory buses: the edge's
//! `websocket_input` (`/in`) → its `websocket` output in client mode →
//! the hub's `websocket_input` → the hub's `websocket` output (`/out`).
//! Producers and consumers are the repo's load generator in a separate
//! process (this executable re-run), with 200-byte envelopes, as in
//! `relay_bench`. Everything is lossless (`on_full: block`).
//!
//! Links compared, each measured in the same round:
//! - `at_most_once`: the edge output's default;
//! - `at_least_once`: the edge announces it, the hub (at its defaults)
//!   acks every message after publishing it;
//! - `at_least_once+store`: the same, every message through the edge's
//!   disk log first (fsync every 100 ms).
//!
//! Scenarios: 1 producer → 1 consumer as fast as possible (throughput);
//! paced at 10,000 msgs/s (p50/p99 latency, send time in the envelope);
//! and a backlog: with the hub away, 1,000,000 messages into the edge's
//! store, then the hub starts and the time until the consumer has them
//! all gives the drain rate.
//!
//! Run with: cargo run --release --example link_bench
//! (`-- quick` runs smaller counts; `rounds=N` repeats the link scenarios
//! and prints medians; `scenario=N` picks one; `link=NAME` runs one link
//! of the first scenario, for profiling.)

use fednode_kit::component::BuildContext;
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{testing, Component, Context, NodeIdentity};
use fednode_testkit::loadgen::{self, Generator};
use fednode_websocket_output::{Config, WebSocketOutput};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;

/// One running side (edge or hub): its components' contexts.
struct Side {
    contexts: Vec<Context>,
    metrics: Arc<Metrics>,
}

impl Side {
    async fn stop(self) {
        for c in &self.contexts {
            testing::stop(c).await;
        }
    }
}

fn node(id: &str) -> NodeIdentity {
    NodeIdentity {
        id: id.into(),
        region: None,
        data_dir: None,
    }
}

/// A `websocket_input` server on `port` (0: any) publishing on `subject`.
async fn input(
    bus: &MemoryBus,
    metrics: &Arc<Metrics>,
    name: &str,
    node_id: &str,
    port: u16,
    subject: &str,
) -> (Context, std::net::SocketAddr) {
    let ctx = testing::context_on(name, Arc::new(bus.clone()), metrics);
    let n = node(node_id);
    let cx = BuildContext {
        instance: name,
        path: name,
        node: &n,
    };
    let input = fednode_websocket_input::build(
        &cx,
        &json!({"mode": "server",
                "server": {"http_port": port, "bind": "127.0.0.1", "path": "/in",
                           "read_buffer_size": 131072},
                "backpressure": {"on_full": "block"},
                "ports": {"outputs": [{"name": "ws_data", "subject": subject}]}}),
    )
    .unwrap();
    input.clone().start(ctx.clone()).await.unwrap();
    (ctx, input.local_addr().unwrap())
}

/// A `websocket` output with `config` (ports added) serving `subject`.
async fn output(
    bus: &MemoryBus,
    metrics: &Arc<Metrics>,
    name: &str,
    mut config: Value,
    subject: &str,
) -> (Context, Arc<WebSocketOutput>) {
    let ctx = testing::context_on(name, Arc::new(bus.clone()), metrics);
    config["ports"] = json!({"inputs": [{"name": "in", "subject": subject}]});
    config["backpressure"] = json!({"on_full": "block"});
    let mut settings = Config::parse(&config, name).unwrap();
    settings.resolve_store(name, name, None).unwrap();
    let out = Arc::new(WebSocketOutput::new(settings));
    out.clone().start(ctx.clone()).await.unwrap();
    (ctx, out)
}

/// The hub: input on `port` → `/out`. Returns its side and the `/out` URL.
async fn hub(port: u16) -> (Side, String, u16) {
    let bus = MemoryBus::new();
    let metrics = Metrics::new();
    let (ctx_in, addr) = input(&bus, &metrics, "hub_in", "hub", port, "hub.data").await;
    let (ctx_out, out) = output(
        &bus,
        &metrics,
        "hub_out",
        json!({"server": {"http_port": 0, "bind": "127.0.0.1", "path": "/out", "max_connections": 200}}),
        "hub.data",
    )
    .await;
    let url = format!("ws://{}/out", out.local_addr().unwrap());
    (
        Side {
            contexts: vec![ctx_in, ctx_out],
            metrics,
        },
        url,
        addr.port(),
    )
}

/// The edge: `/in` → client output to the hub's input at `hub_port`.
async fn edge(hub_port: u16, link: &str, store: Option<&std::path::Path>) -> (Side, String) {
    let bus = MemoryBus::new();
    let metrics = Metrics::new();
    let (ctx_in, addr) = input(&bus, &metrics, "edge_in", "edge", 0, "edge.data").await;
    let mut config = json!({
        "client": {"url": format!("ws://127.0.0.1:{hub_port}/in"),
                   "reconnect": {"initial_interval": "10ms", "max_interval": "50ms"}},
        "delivery": if link == "at_most_once" { "at_most_once" } else { "at_least_once" },
    });
    if let Some(path) = store {
        config["store"] = json!({"path": path});
    }
    let (ctx_out, _) = output(&bus, &metrics, "up", config, "edge.data").await;
    (
        Side {
            contexts: vec![ctx_in, ctx_out],
            metrics,
        },
        format!("ws://{addr}/in"),
    )
}

const LINKS: [&str; 3] = ["at_most_once", "at_least_once", "at_least_once+store"];

struct Outcome {
    rate: f64,
    lost: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
}

/// One run of the load generator over a fresh link.
async fn run_link(link: &str, per_producer: u64, rate: Option<u64>) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (hub_side, out_url, hub_port) = hub(0).await;
    let store = link.ends_with("+store").then(|| dir.path());
    let (edge_side, in_url) = edge(hub_port, link, store).await;
    wait_connected(&edge_side).await;
    let mut job = vec![
        "relay".to_string(),
        format!("input={in_url}"),
        format!("output={out_url}"),
        "producers=1".into(),
        "consumers=1".into(),
        format!("per_producer={per_producer}"),
        // Unique ids for every frame: the edge assigns them (the
        // generator's frames repeat, and acknowledged delivery drops
        // repeated ids as duplicates).
        "ids=none".into(),
    ];
    if let Some(r) = rate {
        job.push(format!("rate={r}"));
        job.push("latency=1".into());
    }
    let (generator, r) = Generator::spawn(&job).expect_async("done").await;
    generator.finish();
    if std::env::var("BENCH_DEBUG").is_ok() {
        for side in [&edge_side, &hub_side] {
            for line in side.metrics.render().lines() {
                if line.starts_with("websocket_") && !line.ends_with(" 0") {
                    eprintln!("{line}");
                }
            }
        }
    }
    edge_side.stop().await;
    hub_side.stop().await;
    Outcome {
        rate: r.num("received") / r.num("seconds"),
        lost: r.num("expected") - r.num("received"),
        p50_us: rate.map(|_| r.num("p50_us")),
        p99_us: rate.map(|_| r.num("p99_us")),
    }
}

/// Until the edge's output is connected to the hub.
async fn wait_connected(edge: &Side) {
    let t0 = Instant::now();
    while edge.metrics.value(
        "websocket_output_connection_state",
        &[("component", "up"), ("state", "connected")],
    ) != Some(1.0)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the edge never connected"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The backlog: `n` messages into the edge's store with the hub away, then
/// the hub starts; returns (seconds to fill, seconds to drain).
async fn backlog(n: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    // A port for the hub, free now, taken when the hub starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (edge_side, in_url) = edge(port, "at_least_once+store", Some(dir.path())).await;
    let (mut producer, _) = tokio_tungstenite::connect_async(&in_url).await.unwrap();
    let t0 = Instant::now();
    for seq in 0..n {
        let frame = loadgen::envelope_with("b", seq, None, false);
        producer.feed(Ws::Text(frame.into())).await.unwrap();
    }
    producer.flush().await.unwrap();
    let stored = || {
        edge_side
            .metrics
            .value("websocket_output_store_messages", &[("component", "up")])
            .unwrap_or(0.0)
    };
    while stored() < n as f64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fill = t0.elapsed().as_secs_f64();

    let (hub_side, out_url, _) = hub(port).await;
    let (mut consumer, _) = tokio_tungstenite::connect_async(&out_url).await.unwrap();
    let t1 = Instant::now();
    let mut got = 0u64;
    while got < n {
        match consumer.next().await {
            Some(Ok(Ws::Text(_))) => got += 1,
            Some(Ok(_)) => {}
            other => panic!("feed ended after {got}: {other:?}"),
        }
    }
    let drain = t1.elapsed().as_secs_f64();
    drop(consumer);
    drop(producer);
    edge_side.stop().await;
    hub_side.stop().await;
    (fill, drain)
}

fn arg(key: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The allocator of the `fednode` binary (src/main.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    loadgen::run_if_child();
    bench();
}

#[tokio::main]
async fn bench() {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 10 } else { 1 };
    let rounds: usize = arg("rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let only: Option<usize> = arg("scenario").and_then(|v| v.parse().ok());
    println!("200-byte envelopes, edge → hub → consumer, {rounds} round(s), medians");
    if only.is_none_or(|s| s == 1) {
        println!("\n1 → 1 as fast as possible (msgs/s; ratio to at_most_once of the same round)");
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); LINKS.len()];
        let only_link = arg("link");
        for _ in 0..rounds {
            for (i, link) in LINKS.iter().enumerate() {
                if only_link.as_deref().is_some_and(|l| l != *link) {
                    rates[i].push(f64::NAN);
                    continue;
                }
                let o = run_link(link, 300_000 / scale, None).await;
                assert_eq!(o.lost, 0.0, "{link} lost messages");
                rates[i].push(o.rate);
            }
        }
        let base: Vec<f64> = rates[0].clone();
        for (i, link) in LINKS.iter().enumerate() {
            let ratios: Vec<f64> = rates[i].iter().zip(&base).map(|(r, b)| r / b).collect();
            println!(
                "  {link:<22} {:>10.0} msgs/s   {:.2}×   (rounds: {})",
                median(rates[i].clone()),
                median(ratios),
                rates[i]
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    if only.is_none_or(|s| s == 2) {
        println!("\npaced 10,000 msgs/s, 1 → 1 (latency, µs)");
        for link in LINKS {
            let (mut p50, mut p99) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let o = run_link(link, 30_000 / scale, Some(10_000)).await;
                assert_eq!(o.lost, 0.0, "{link} lost messages");
                p50.push(o.p50_us.unwrap());
                p99.push(o.p99_us.unwrap());
            }
            println!(
                "  {link:<22} p50 {:>7.0}   p99 {:>7.0}",
                median(p50),
                median(p99)
            );
        }
    }
    if only.is_none_or(|s| s == 3) {
        let n = 1_000_000 / scale as u64;
        println!("\nbacklog of {n} messages in the edge's store, hub away, then back");
        let (mut fills, mut drains) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (fill, drain) = backlog(n).await;
            fills.push(n as f64 / fill);
            drains.push(n as f64 / drain);
        }
        println!(
            "  into the store {:>10.0} msgs/s   drained to the consumer {:>10.0} msgs/s",
            median(fills),
            median(drains)
        );
    }
}
