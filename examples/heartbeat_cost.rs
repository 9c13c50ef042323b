//! What heartbeats cost on idle connections: a `websocket_input` server
//! with 1,000 idle peers, heartbeats off, at the default interval (10 s)
//! and at 1 s. The peers are tokio-tungstenite clients in a second
//! process (this executable re-run), which answer each Ping with a Pong
//! as any WebSocket library does.
//!
//! Reported per setting, over the same window: the server's CPU time, the
//! peers' CPU time, and the bytes that crossed the loopback interface
//! (TCP/IP headers and ACKs included), each per connection and second.
//!
//! Run with: cargo run --release --example heartbeat_cost
//! (`-- quick` measures 5 s windows instead of 30 s; `connections=N`.)

use fednode_kit::component::BuildContext;
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{testing, Component, NodeIdentity};
use fednode_testkit::loadgen;
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "--heartbeat-peers";

fn arg(key: &str) -> Option<String> {
    std::env::args().find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Bytes received on the loopback interface so far (every byte sent over
/// it is also received once).
fn loopback_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|b| b.parse().ok())
        .expect("a loopback line in /proc/net/dev")
}

/// The child: hold `n` connections to `url`, reading (so Pings are
/// answered); print `ready`; at each line on stdin print the CPU time
/// used so far; exit when stdin closes.
fn peers(url: String, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let (ws, _) = tokio_tungstenite::connect_async(&url)
                .await
                .expect("connect");
            held.push(tokio::spawn(async move {
                let mut ws = ws;
                while let Some(Ok(_)) = ws.next().await {}
            }));
        }
        println!("ready");
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let stdin = std::io::stdin();
            for _ in stdin.lock().lines() {
                println!("cpu {}", loadgen::cpu_time().as_secs_f64());
                std::io::stdout().flush().unwrap();
            }
        })
        .await
        .unwrap();
    });
}

struct Figures {
    server_cpu: f64,
    peers_cpu: f64,
    bytes: f64,
    seconds: f64,
}

async fn measure(heartbeat: Value, connections: usize, window: Duration) -> Figures {
    let bus = MemoryBus::new();
    let metrics = Metrics::new();
    let ctx = testing::context_on("ws_in", Arc::new(bus), &metrics);
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
                "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/in",
                           "max_connections": connections + 10},
                "heartbeat": heartbeat,
                "ports": {"outputs": [{"name": "ws_data", "subject": "idle.data"}]}}),
    )
    .unwrap();
    input.clone().start(ctx.clone()).await.unwrap();
    let url = format!("ws://{}/in", input.local_addr().unwrap());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD, &url, &connections.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the peers");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask_cpu = move || -> f64 {
        writeln!(stdin, "cpu").unwrap();
        stdin.flush().unwrap();
        loop {
            let line = lines.next().expect("the peers answer").unwrap();
            if let Some(v) = line.strip_prefix("cpu ") {
                return v.parse().unwrap();
            }
        }
    };
    // Wait for `ready` (the first line), by asking once.
    let _ = ask_cpu();
    // Settle: the connection burst is not part of the idle cost.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (server0, peers0, bytes0, t0) = (
        loadgen::cpu_time(),
        ask_cpu(),
        loopback_bytes(),
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let seconds = t0.elapsed().as_secs_f64();
    let figures = Figures {
        server_cpu: (loadgen::cpu_time() - server0).as_secs_f64(),
        peers_cpu: ask_cpu() - peers0,
        bytes: (loopback_bytes() - bytes0) as f64,
        seconds,
    };
    let active = metrics
        .value(
            "websocket_input_connections_active",
            &[("component", "ws_in")],
        )
        .unwrap_or(0.0);
    assert_eq!(active as usize, connections, "every peer stayed connected");
    drop(ask_cpu);
    let _ = child.kill();
    let _ = child.wait();
    testing::stop(&ctx).await;
    figures
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD) {
        peers(args[2].clone(), args[3].parse().unwrap());
        return;
    }
    bench();
}

#[tokio::main]
async fn bench() {
    let quick = std::env::args().any(|a| a == "quick");
    let window = Duration::from_secs(if quick { 5 } else { 30 });
    let connections: usize = arg("connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!(
        "{connections} idle connections to a websocket_input, {} s window",
        window.as_secs()
    );
    println!(
        "{:<18} {:>16} {:>16} {:>18}",
        "heartbeat", "server µs/conn/s", "peers µs/conn/s", "loopback B/conn/s"
    );
    let settings = [
        ("off", Value::Null),
        (
            "10s (default)",
            json!({"interval": "10s", "timeout": "30s"}),
        ),
        ("1s", json!({"interval": "1s", "timeout": "3s"})),
    ];
    for (label, heartbeat) in settings {
        let f = measure(heartbeat, connections, window).await;
        let per = |v: f64| v / f.seconds / connections as f64;
        println!(
            "{label:<18} {:>16.2} {:>16.2} {:>18.2}",
            per(f.server_cpu) * 1e6,
            per(f.peers_cpu) * 1e6,
            per(f.bytes),
        );
    }
}
