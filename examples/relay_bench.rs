//! End-to-end relay benchmark: WebSocket frames in on one port, out to
//! consumers on another, comparing
//!
//! - (a) `bare`: a minimal tokio-tungstenite relay (no parsing: each frame
//!   read from a producer is handed as-is to every consumer), and
//! - (b) `fednode`: `websocket_input` → memory bus → `websocket` output.
//!
//! Both are lossless (`on_full: block` on both fednode components; a
//! broadcast channel too large to lag in the bare relay), so "msgs/s"
//! compares the same work. Both run in this process; the producers and
//! consumers run in a separate process, the repo's load generator
//! (`fednode_testkit::loadgen`, this executable re-run), which pipelines
//! pre-built 200-byte envelopes and counts frames without a WebSocket
//! library, so that it leaves the two cores to the systems under test.
//!
//! Scenarios (200-byte envelopes): 1 producer / 1 consumer and 4 / 4 as
//! fast as possible; p50/p99 latency at a paced 10,000 msgs/s (send time
//! inside the envelope, read by the consumer in the same generator
//! process); fan-out of one producer to 100 consumers, unpaced and paced at
//! 10,000 msgs/s (no loss allowed).
//!
//! Run with: cargo run --release --example relay_bench
//! (`-- quick` runs smaller counts; `scenario=N` and `system=bare|fednode`
//! pick one run; `rounds=N` repeats each scenario N times, bare and fednode
//! alternating, and prints the median of the per-round ratios: on a shared
//! machine that compares the two under the same conditions;
//! `read_buffer=N` sets the fednode input's socket read buffer, 128 KiB by
//! default, the same as the bare relay's.)

use fednode_kit::component::BuildContext;
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{testing, Component, Context, NodeIdentity};
use fednode_testkit::loadgen::{self, Generator};
use fednode_websocket_output::{Config, WebSocketOutput};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as Ws;

// ---- the two systems under test -------------------------------------------

struct System {
    input_url: String,
    output_url: String,
    stop: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

/// The minimal relay: each frame read from a producer is broadcast,
/// unparsed, to every consumer (a tokio broadcast channel with a slot for
/// every frame of the run, `frames`, so no consumer can lag and it is
/// lossless like the fednode configuration below); each consumer task
/// writes with feed() + one flush() per batch.
async fn bare_relay(frames: u64) -> System {
    let inl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (input_url, output_url) = (
        format!("ws://{}/in", inl.local_addr().unwrap()),
        format!("ws://{}/out", outl.local_addr().unwrap()),
    );
    let (tx, _) = broadcast::channel::<Ws>((frames as usize).next_power_of_two().max(1 << 16));
    let producers = {
        let tx = tx.clone();
        tokio::spawn(loadgen::accept_raw(inl, move |mut ws| {
            let tx = tx.clone();
            async move {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() || m.is_binary() {
                        let _ = tx.send(m);
                    }
                }
            }
        }))
    };
    let acceptor = tokio::spawn(loadgen::accept_raw(outl, move |ws| {
        let mut rx = tx.subscribe();
        async move {
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
        }
    }));
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

/// fednode with the components' default queue sizes (1,000): `block` makes
/// it lossless, and deeper queues only spill the caches (65,536-slot queues
/// measured 25–40 % slower).
///
/// The input reads with a `read_buffer` of 128 KiB unless told otherwise:
/// the bare relay reads with tungstenite's default, which is that, while
/// the input's own default is 16 KiB, to keep idle connections small. With
/// 16 KiB a producer streaming at full rate costs seven times as many
/// socket reads (see BENCHMARKS.md).
async fn fednode(read_buffer: usize) -> System {
    let bus = MemoryBus::new();
    let metrics = Metrics::new();
    let ctx_in = testing::context_on("ws_in", Arc::new(bus.clone()), &metrics);
    let ctx_out = testing::context_on("ws_out", Arc::new(bus), &metrics);
    let node = NodeIdentity {
        id: "bench".into(),
        region: None,
        data_dir: None,
    };
    let cx = BuildContext {
        instance: "ws_in",
        path: "ws_in",
        node: &node,
    };
    let input = fednode_websocket_input::build(
        &cx,
        &json!({"mode": "server",
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/in", "max_connections": 200,
                           "read_buffer_size": read_buffer},
                "backpressure": {"on_full": "block"},
                "ports": {"outputs": [{"name": "ws_data", "subject": "bench.data"}]}}),
    )
    .unwrap();
    input.clone().start(ctx_in.clone()).await.unwrap();
    let settings = Config::parse(
        &json!({"server": {"http_port": 0, "bind": "127.0.0.1", "path": "/out", "max_connections": 200},
                "backpressure": {"on_full": "block"},
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
    received: f64,
    expected: f64,
    seconds: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    /// CPU time of this process (the system under test; the generator is
    /// another process) during the run.
    cpu_seconds: f64,
}

/// Run the load generator against `sys`: `producers` send `per_producer`
/// each (at `rate` msgs/s in total, or as fast as they can); `consumers`
/// count what they get.
async fn run(
    sys: &System,
    producers: usize,
    consumers: usize,
    per_producer: u64,
    rate: Option<u64>,
    latency: bool,
) -> Outcome {
    let mut job = vec![
        "relay".to_string(),
        format!("input={}", sys.input_url),
        format!("output={}", sys.output_url),
        format!("producers={producers}"),
        format!("consumers={consumers}"),
        format!("per_producer={per_producer}"),
    ];
    if let Some(r) = rate {
        job.push(format!("rate={r}"));
    }
    if latency {
        job.push("latency=1".into());
    }
    let cpu_before = loadgen::cpu_time();
    let (generator, r) = Generator::spawn(&job).expect_async("done").await;
    let cpu_seconds = (loadgen::cpu_time() - cpu_before).as_secs_f64();
    generator.finish();
    Outcome {
        received: r.num("received"),
        expected: r.num("expected"),
        seconds: r.num("seconds"),
        p50_us: latency.then(|| r.num("p50_us")),
        p99_us: latency.then(|| r.num("p99_us")),
        cpu_seconds,
    }
}

type Scenario = (&'static str, usize, usize, u64, Option<u64>, bool);

/// The value of the argument `key=value`.
fn arg(key: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// The fednode input's `server.read_buffer_size` (`read_buffer=N`).
fn read_buffer() -> usize {
    arg("read_buffer")
        .map(|v| v.parse().expect("read_buffer=<bytes>"))
        .unwrap_or(128 * 1024)
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
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 10 } else { 1 };
    println!("200-byte envelopes; throughput = frames delivered per second, all consumers summed");
    println!(
        "fednode input read buffer: {} bytes (the bare relay's: 131072)",
        read_buffer()
    );
    println!(
        "{:<8} {:<34} {:>12} {:>10} {:>7} {:>9} {:>9} {:>9}",
        "system", "scenario", "msgs/s", "delivered", "lost", "p50 µs", "p99 µs", "CPU ns"
    );
    println!("(CPU ns = CPU time of the system under test per delivered frame)");
    type Make = fn(u64) -> futures::future::BoxFuture<'static, System>;
    let systems: [(&str, Make); 2] = [
        ("bare", |frames| Box::pin(bare_relay(frames))),
        ("fednode", |_| Box::pin(fednode(read_buffer()))),
    ];
    // (label, producers, consumers, messages per producer, paced rate, latency?)
    let scenarios: [Scenario; 5] = [
        (
            "1 producer → 1 consumer",
            1,
            1,
            2_000_000 / scale,
            None,
            false,
        ),
        (
            "4 producers → 4 consumers",
            4,
            4,
            500_000 / scale,
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
            "fan-out paced 10,000 msg/s, 1 → 100",
            1,
            100,
            30_000 / scale,
            Some(10_000),
            true,
        ),
    ];
    // `scenario=N` (1-based) and `system=bare|fednode` pick one run.
    let only_scenario: Option<usize> = arg("scenario").and_then(|v| v.parse().ok());
    let only_system = arg("system");
    let rounds: usize = arg("rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    for (i, (label, p, c, n, rate, lat)) in scenarios.into_iter().enumerate() {
        if only_scenario.is_some_and(|o| o != i + 1) {
            continue;
        }
        // Per round, fednode's figure over bare's: throughput, or p50.
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let mut figures = Vec::new();
            for (name, make) in &systems {
                if only_system.as_deref().is_some_and(|o| o != *name) {
                    continue;
                }
                let sys = make(p as u64 * n).await;
                let o = run(&sys, p, c, n, rate, lat).await;
                (sys.stop)().await;
                let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
                println!(
                    "{name:<8} {label:<34} {:>12.0} {:>9.1}% {:>7} {:>9} {:>9} {:>9.0}",
                    o.received / o.seconds,
                    100.0 * o.received / o.expected,
                    o.expected - o.received,
                    show(o.p50_us),
                    show(o.p99_us),
                    1e9 * o.cpu_seconds / o.received.max(1.0),
                );
                figures.push(if rate.is_some() {
                    o.p50_us.unwrap_or(f64::NAN)
                } else {
                    o.received / o.seconds
                });
            }
            if let [bare, fednode] = figures[..] {
                ratios.push(fednode / bare);
            }
        }
        if ratios.len() > 1 {
            let what = if rate.is_some() { "p50" } else { "throughput" };
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            ratios.sort_by(f64::total_cmp);
            println!(
                "  {label}: fednode/bare {what}, median of {} rounds {:.2} (each: {})",
                ratios.len(),
                median(&ratios),
                each.join(" ")
            );
        }
    }
}

/// The median of sorted figures.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}
