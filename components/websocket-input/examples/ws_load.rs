//! Throughput and idle memory of a `websocket_input` server, next to a raw
//! tokio-tungstenite server measured in the same run with the same load.
//!
//! Three processes, so that nothing measured shares a scheduler or a heap:
//!
//! - this one, which only orchestrates;
//! - the **server** (this executable re-run as `serve SYSTEM …`): either
//!   `fednode` — the real `websocket_input` component publishing into the
//!   memory bus, where a subscriber counts what arrives — or `raw` — a
//!   tokio-tungstenite server whose connection tasks pass each frame's
//!   bytes through a bounded tokio channel to a counting task, the same
//!   shape without parsing anything;
//! - the **load generator** (`fednode_testkit::loadgen`): N clients that
//!   pipeline pre-built, masked 200-byte JSON data envelopes.
//!
//! Throughput is what reached the bus (or the raw counter), per second,
//! read by the server once a second; the figure is the median of those
//! seconds (the first is dropped as warm-up). Memory per idle connection is
//! the server's resident memory with 1,000 idle connections open, less the
//! same before they opened, divided by 1,000.
//!
//! Run with:
//! `cargo run --release -p fednode-websocket-input --example ws_load -- [CLIENTS] [SECONDS] [ON_FULL]`
//! (defaults: 4 clients, 5 s, `block`, which loses nothing and so measures
//! what the input sustains). `-- mem [N]` measures only idle memory.

use fednode_kit::bus::{Overflow, SubscribeOptions};
use fednode_kit::{BuildContext, Bus, Component, NodeIdentity};
use fednode_testkit::loadgen::{self, Generator};
use futures::StreamExt;
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The allocator of the `fednode` binary (src/main.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    loadgen::run_if_child();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("mem") {
        let n = args.get(1).map_or(1000, |a| a.parse().expect("N"));
        for system in ["fednode", "raw"] {
            idle_memory(system, n);
        }
        return;
    }
    let clients: usize = args.first().map_or(4, |a| a.parse().expect("CLIENTS"));
    let seconds: u64 = args.get(1).map_or(5, |a| a.parse().expect("SECONDS"));
    let on_full = args.get(2).cloned().unwrap_or_else(|| "block".into());
    println!("{clients} clients, 200-byte JSON envelopes, {seconds} s, on_full={on_full}");
    for system in ["raw", "fednode"] {
        throughput(system, clients, seconds, &on_full);
    }
    for system in ["fednode", "raw"] {
        idle_memory(system, 1000);
    }
}

// ---- orchestrator --------------------------------------------------------------

fn start_server(system: &str, on_full: &str, max_connections: usize) -> (Generator, String) {
    let mut server = Generator::spawn_self(&[
        "serve".into(),
        system.into(),
        on_full.into(),
        max_connections.to_string(),
    ]);
    let ready = server.expect("ready");
    let url = ready.0.get("url").expect("server url").clone();
    (server, url)
}

fn throughput(system: &str, clients: usize, seconds: u64, on_full: &str) {
    let (mut server, url) = start_server(system, on_full, clients + 1);
    let mut generator = Generator::spawn(&[
        "produce".into(),
        format!("url={url}"),
        format!("clients={clients}"),
        format!("seconds={seconds}"),
    ]);
    generator.expect("started");
    // The server prints its counter once a second.
    let mut ticks = Vec::new();
    for _ in 0..seconds {
        ticks.push(server.expect("tick").num("n"));
    }
    let sent = generator.expect("done");
    generator.finish();
    // Let a `block` queue drain before the final count.
    std::thread::sleep(Duration::from_millis(500));
    server.close_stdin();
    let last = server.expect("done");
    server.finish();
    let mut per_second: Vec<f64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    per_second.sort_by(f64::total_cmp);
    let median = per_second.get(per_second.len() / 2).copied().unwrap_or(0.0);
    println!(
        "{system:<8} published {median:>10.0} msgs/s (median of {} s; per second: {})   sent {:.0} msgs/s, published {} of {}, dropped {}",
        per_second.len(),
        ticks
            .windows(2)
            .map(|w| format!("{:.0}k", (w[1] - w[0]) / 1e3))
            .collect::<Vec<_>>()
            .join(" "),
        sent.num("sent") / sent.num("seconds"),
        last.num("n"),
        sent.num("sent"),
        last.0.get("dropped").map_or("0", String::as_str),
    );
}

fn idle_memory(system: &str, n: usize) {
    let (mut server, url) = start_server(system, "block", n + 1);
    std::thread::sleep(Duration::from_millis(500));
    let before = loadgen::rss_bytes(server.pid());
    let mut idle = Generator::spawn(&[
        "idle".into(),
        format!("url={url}"),
        format!("connections={n}"),
    ]);
    idle.expect("ready");
    std::thread::sleep(Duration::from_secs(1));
    let after = loadgen::rss_bytes(server.pid());
    idle.finish();
    server.close_stdin();
    server.expect("done");
    server.finish();
    println!(
        "{system:<8} {n} idle connections: RSS {:.1} MiB → {:.1} MiB, {:.1} KiB per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1024.0 / n as f64
    );
}

// ---- the server process ------------------------------------------------------

/// `serve SYSTEM ON_FULL MAX_CONNECTIONS`: print `ready url=…`, then
/// `tick n=…` every second, and `done n=… dropped=…` once stdin closes.
#[tokio::main]
async fn serve(args: &[String]) {
    let system = args[0].as_str();
    let on_full = args[1].as_str();
    let max_connections: usize = args[2].parse().expect("MAX_CONNECTIONS");
    let count = Arc::new(AtomicU64::new(0));
    let (url, dropped): (String, Box<dyn Fn() -> f64>) = match system {
        "fednode" => {
            let (ctx, bus, metrics) = fednode_kit::testing::context("ws_in");
            let node = NodeIdentity {
                id: "load".into(),
                region: None,
                data_dir: None,
            };
            let mut config = json!({
                "mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
                           "max_connections": max_connections},
                "backpressure": {"queue_size": 10000, "on_full": on_full},
                "ports": {"outputs": [{"name": "ws_data", "subject": "load.data"}]}
            });
            // `WS_READ_BUFFER_SIZE=N` tries another read buffer size.
            if let Some(n) = std::env::var("WS_READ_BUFFER_SIZE")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                config["server"]["read_buffer_size"] = json!(n);
            }
            let cx = BuildContext {
                instance: "ws_in",
                path: "config",
                node: &node,
            };
            let input = fednode_websocket_input::build(&cx, &config).expect("config");
            let mut sub = bus
                .subscribe(
                    "load.data",
                    // Blocking, so the count is exact: a lagging counter
                    // holds the publisher back instead of losing messages.
                    SubscribeOptions {
                        capacity: 1 << 16,
                        overflow: Overflow::Block,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let c = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                loop {
                    buf.clear();
                    let n = sub.next_many(&mut buf, 1024).await;
                    if n == 0 {
                        break;
                    }
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            input.clone().start(ctx.clone()).await.expect("start");
            let url = format!("ws://{}/ingest", input.local_addr().unwrap());
            (
                url,
                Box::new(move || {
                    metrics
                        .value(
                            "websocket_input_messages_dropped_total",
                            &[("component", "ws_in"), ("reason", "queue_full")],
                        )
                        .unwrap_or(0.0)
                }),
            )
        }
        "raw" => (raw_server(count.clone()).await, Box::new(|| 0.0)),
        other => panic!("unknown system {other}"),
    };
    println!("ready url={url}");
    let _ = std::io::stdout().flush();
    let stdin_closed = loadgen::stdin_closed();
    tokio::pin!(stdin_closed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                println!("tick n={}", count.load(Ordering::Relaxed));
                let _ = std::io::stdout().flush();
            }
            _ = &mut stdin_closed => break,
        }
    }
    println!(
        "done n={} dropped={}",
        count.load(Ordering::Relaxed),
        dropped()
    );
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// The raw server: each connection's task reads frames with
/// tokio-tungstenite (default config) and passes the data frames' bytes,
/// unparsed, through a bounded channel to one counting task.
async fn raw_server(count: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ingest", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1 << 16);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(1024);
        while rx.recv_many(&mut buf, 1024).await > 0 {
            count.fetch_add(buf.len() as u64, Ordering::Relaxed);
            buf.clear();
        }
    });
    tokio::spawn(loadgen::accept_raw(listener, move |mut ws| {
        let tx = tx.clone();
        async move {
            while let Some(Ok(m)) = ws.next().await {
                if (m.is_text() || m.is_binary()) && tx.send(m.into_data()).await.is_err() {
                    return;
                }
            }
        }
    }));
    url
}
