//! End-to-end relay benchmark: WebSocket frames in on one port, out to
//! consumers on another, comparing
//!
//! - (a) `bare`: a minimal tokio-tungstenite relay (no parsing: each frame
//!   read from a producer is handed as-is to every consumer), and
//! - (b) `fednode`: `websocket_input` → memory bus → `websocket` output.
//!
//! Both are lossless (`on_full: block` on both fednode components; bounded
//! a broadcast channel too large to lag in the bare relay), so "msgs/s" compares the same
//! work; producers and consumers run in the same process (2 cores here).
//!
//! Scenarios (200-byte envelopes): 1 producer / 1 consumer and 4 / 4 as
//! fast as possible; p50/p99 latency at a paced 10,000 msgs/s; fan-out of
//! one producer to 100 consumers.
//!
//! Run with: cargo run --release -p fednode-websocket-output --example relay_bench
//! (`-- quick` runs smaller counts.)

use fednode_kit::component::BuildContext;
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{testing, Component, Context, NodeIdentity};
use fednode_websocket_output::{OutputConfig, WebSocketOutput};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as Ws;

static BASE: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A data envelope of exactly 200 bytes carrying its send time.
fn envelope(producer: usize, seq: u64) -> Ws {
    let head = format!(
        r#"{{"type":"data","id":"p{producer}-{seq:09}","timestamp":1704844800000,"payload":{{"seq":{seq},"t":{},"pad":""#,
        now_ns()
    );
    let tail = r#""}}"#;
    let pad = 200usize.saturating_sub(head.len() + tail.len());
    Ws::Text(format!("{head}{}{tail}", "x".repeat(pad)).into())
}

/// The send time written by `envelope`.
fn sent_at(frame: &str) -> Option<u64> {
    let rest = &frame[frame.find(r#""t":"#)? + 4..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

// ---- the two systems under test -------------------------------------------

struct System {
    input_url: String,
    output_url: String,
    stop: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

/// The minimal relay: each frame read from a producer is broadcast,
/// unparsed, to every consumer (a tokio broadcast channel large enough that
/// no consumer lags in these runs, so it is lossless like the fednode
/// configuration below); each consumer task writes with feed() + one
/// flush() per batch.
async fn bare_relay() -> System {
    let inl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (input_url, output_url) = (
        format!("ws://{}/in", inl.local_addr().unwrap()),
        format!("ws://{}/out", outl.local_addr().unwrap()),
    );
    let (tx, _) = broadcast::channel::<Ws>(1 << 20);
    let producers = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = inl.accept().await {
                let _ = tcp.set_nodelay(true);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() || m.is_binary() {
                            let _ = tx.send(m);
                        }
                    }
                });
            }
        })
    };
    let acceptor = tokio::spawn(async move {
        while let Ok((tcp, _)) = outl.accept().await {
            let _ = tcp.set_nodelay(true);
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, _read) = ws.split();
                loop {
                    let first = match rx.recv().await {
                        Ok(m) => m,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            eprintln!("bare relay: a consumer lagged by {n}");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
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
            });
        }
    });
    System {
        input_url,
        output_url,
        stop: Box::new(move || {
            Box::pin(async move {
                producers.abort();
                acceptor.abort();
            })
        }),
    }
}

async fn fednode() -> System {
    let bus = MemoryBus::new();
    let metrics = Metrics::new();
    let ctx_in = testing::context_on("ws_in", Arc::new(bus.clone()), &metrics);
    let ctx_out = testing::context_on("ws_out", Arc::new(bus), &metrics);
    let node = NodeIdentity {
        id: "bench".into(),
        region: None,
    };
    let cx = BuildContext {
        instance: "ws_in",
        path: "ws_in",
        node: &node,
    };
    let input = fednode_websocket_input::input::build(
        &cx,
        &json!({"mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/in", "max_connections": 200},
                "backpressure": {"queue_size": 65536, "on_full": "block"},
                "ports": {"outputs": [{"name": "ws_data", "subject": "bench.data"}]}}),
    )
    .unwrap();
    input.clone().start(ctx_in.clone()).await.unwrap();
    let settings = OutputConfig::parse(
        &json!({"server": {"http_port": 0, "bind": "127.0.0.1", "path": "/out", "max_connections": 200},
                "backpressure": {"queue_size": 65536, "on_full": "block"},
                "ports": {"inputs": [{"name": "in", "subject": "bench.data"}]}}),
        "ws_out",
    )
    .unwrap();
    let output = Arc::new(WebSocketOutput::new(settings));
    output.clone().start(ctx_out.clone()).await.unwrap();
    let stop = move |a: Context, b: Context| -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            if std::env::var("BENCH_DEBUG").is_ok() {
                eprintln!("{}", a.metrics.registry().render());
            }
            testing::stop(&a).await;
            testing::stop(&b).await;
        })
    };
    System {
        input_url: format!("ws://{}/in", input.local_addr().unwrap()),
        output_url: format!("ws://{}/out", output.local_addr().unwrap()),
        stop: Box::new(move || stop(ctx_in, ctx_out)),
    }
}

// ---- load -------------------------------------------------------------------

struct Outcome {
    /// Frames each consumer received, summed.
    received: u64,
    expected: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

/// `producers` send `per_producer` each (at `rate` msgs/s in total, or as
/// fast as they can); `consumers` count what they get.
async fn run(
    sys: &System,
    producers: usize,
    consumers: usize,
    per_producer: u64,
    rate: Option<u64>,
    latency: bool,
) -> Outcome {
    let expected_each = producers as u64 * per_producer;
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..consumers {
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(sys.output_url.as_str(), None, true)
                .await
                .unwrap();
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let (_w, mut r) = ws.split();
            let mut got = 0u64;
            let mut lat = Vec::new();
            let mut last = Instant::now();
            while got < expected_each {
                match tokio::time::timeout(Duration::from_secs(2), r.next()).await {
                    Ok(Some(Ok(Ws::Text(t)))) => {
                        got += 1;
                        last = Instant::now();
                        if latency {
                            if let Some(t0) = sent_at(t.as_str()) {
                                lat.push((now_ns() - t0) / 1000);
                            }
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            received.fetch_add(got, Ordering::Relaxed);
            (last, lat)
        }));
    }
    // Let the output register every consumer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let mut writers = Vec::new();
    for p in 0..producers {
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(sys.input_url.as_str(), None, true)
                .await
                .unwrap();
        writers.push(tokio::spawn(async move {
            let mut ws = ws;
            let mut seq = 0u64;
            match rate {
                None => {
                    while seq < per_producer {
                        for _ in 0..64.min(per_producer - seq) {
                            ws.feed(envelope(p, seq)).await.unwrap();
                            seq += 1;
                        }
                        ws.flush().await.unwrap();
                    }
                }
                Some(total_rate) => {
                    // Paced in 1 ms ticks.
                    let per_tick = (total_rate / 1000 / producers as u64).max(1);
                    let mut tick = tokio::time::interval(Duration::from_millis(1));
                    while seq < per_producer {
                        tick.tick().await;
                        for _ in 0..per_tick.min(per_producer - seq) {
                            ws.feed(envelope(p, seq)).await.unwrap();
                            seq += 1;
                        }
                        ws.flush().await.unwrap();
                    }
                }
            }
            // Keep the socket open until the consumers are done.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = ws.close(None).await;
        }));
    }
    let mut last = start;
    let mut latencies = Vec::new();
    for r in readers {
        let (l, lat) = r.await.unwrap();
        last = last.max(l);
        latencies.extend(lat);
    }
    for w in writers {
        w.abort();
    }
    latencies.sort_unstable();
    Outcome {
        received: received.load(Ordering::Relaxed),
        expected: expected_each * consumers as u64,
        seconds: last.duration_since(start).as_secs_f64(),
        latencies_us: latencies,
    }
}

type Scenario = (&'static str, usize, usize, u64, Option<u64>, bool);

fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 10 } else { 1 };
    BASE.get_or_init(Instant::now);
    println!("200-byte envelopes; throughput = frames delivered per second, all consumers summed");
    println!(
        "{:<8} {:<34} {:>12} {:>10} {:>9} {:>9}",
        "system", "scenario", "msgs/s", "delivered", "p50 µs", "p99 µs"
    );
    type Make = fn() -> futures::future::BoxFuture<'static, System>;
    let systems: [(&str, Make); 2] = [
        ("bare", || Box::pin(bare_relay())),
        ("fednode", || Box::pin(fednode())),
    ];
    // (label, producers, consumers, messages per producer, paced rate, latency?)
    let scenarios: [Scenario; 5] = [
        (
            "1 producer → 1 consumer",
            1,
            1,
            400_000 / scale,
            None,
            false,
        ),
        (
            "4 producers → 4 consumers",
            4,
            4,
            100_000 / scale,
            None,
            false,
        ),
        (
            "paced 10,000 msg/s, 1 → 1",
            1,
            1,
            30_000 / scale,
            Some(10_000),
            true,
        ),
        (
            "fan-out 1 → 100 consumers",
            1,
            100,
            20_000 / scale,
            None,
            false,
        ),
        (
            "fan-out paced 1,000 msg/s, 1 → 100",
            1,
            100,
            3_000 / scale,
            Some(1_000),
            true,
        ),
    ];
    // `scenario=N` (1-based) and `system=bare|fednode` pick one run.
    let arg = |k: &str| {
        std::env::args().find_map(|a| a.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    let only_scenario: Option<usize> = arg("scenario").and_then(|v| v.parse().ok());
    let only_system = arg("system");
    for (i, (label, p, c, n, rate, lat)) in scenarios.into_iter().enumerate() {
        if only_scenario.is_some_and(|o| o != i + 1) {
            continue;
        }
        for (name, make) in &systems {
            if only_system.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let sys = make().await;
            let o = run(&sys, p, c, n, rate, lat).await;
            (sys.stop)().await;
            let (p50, p99) = if lat {
                (
                    pct(&o.latencies_us, 0.50).to_string(),
                    pct(&o.latencies_us, 0.99).to_string(),
                )
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "{name:<8} {label:<34} {:>12.0} {:>9.1}% {p50:>9} {p99:>9}",
                o.received as f64 / o.seconds,
                100.0 * o.received as f64 / o.expected as f64,
            );
        }
    }
}
