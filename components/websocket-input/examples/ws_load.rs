//! Throughput of a `websocket_input` server: N WebSocket clients pipeline
//! 200-byte JSON data envelopes (feed() many, flush() once per batch) into
//! one input on 127.0.0.1; a memory-bus subscriber counts what reaches the
//! bus. Prints messages per second sent, published and dropped.
//!
//! Run with:
//! `cargo run --release -p fednode-websocket-input --example ws_load -- [CLIENTS] [SECONDS] [ON_FULL]`
//! (defaults: 4 clients, 5 s, `block`, which loses nothing and so measures
//! what the input sustains; `drop_oldest` shows the shedding path).

use fednode_kit::bus::SubscribeOptions;
use fednode_kit::{BuildContext, Bus, Component, NodeIdentity};
use fednode_websocket_input::frame::WsMessage;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 256;

/// A data envelope of exactly 200 bytes.
fn frame(client: usize) -> WsMessage {
    let head = format!(
        r#"{{"type":"data","id":"c{client}","timestamp":1704844800000,"payload":{{"sensor_id":"temp-01","value":23.5,"unit":"celsius","pad":""#
    );
    let tail = r#""}}"#;
    let pad = 200 - head.len() - tail.len();
    let text = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(text.len(), 200);
    WsMessage::Text(text.into())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(4, |a| a.parse().expect("CLIENTS"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("SECONDS"));
    let on_full = args.next().unwrap_or_else(|| "block".into());

    let (ctx, bus, metrics) = fednode_kit::testing::context("ws_in");
    let node = NodeIdentity {
        id: "load".into(),
        region: None,
    };
    let config = json!({
        "mode": "server",
        "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest", "max_connections": clients + 1},
        "backpressure": {"queue_size": 10000, "on_full": on_full},
        "ports": {"outputs": [{"name": "ws_data", "subject": "load.data"}]}
    });
    let cx = BuildContext {
        instance: "ws_in",
        path: "config",
        node: &node,
    };
    let input = fednode_websocket_input::input::build(&cx, &config).expect("config");
    input.clone().start(ctx.clone()).await.expect("start");
    let url = format!("ws://{}/ingest", input.local_addr().unwrap());

    // The bus side: count everything published.
    let mut sub = bus
        .subscribe(
            "load.data",
            SubscribeOptions {
                capacity: 1 << 16,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let on_bus = Arc::new(AtomicU64::new(0));
    {
        let on_bus = on_bus.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            loop {
                buf.clear();
                let n = sub.next_many(&mut buf, 1024).await;
                if n == 0 {
                    break;
                }
                on_bus.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("connect");
            let (mut tx, mut rx) = ws.split();
            tokio::spawn(async move { while rx.next().await.is_some() {} });
            let msg = frame(c);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..BATCH {
                    tx.feed(msg.clone()).await.expect("feed");
                }
                tx.flush().await.expect("flush");
                sent.fetch_add(BATCH as u64, Ordering::Relaxed);
            }
            let _ = tx.close().await;
        }));
    }

    let started = Instant::now();
    let mut last = (0u64, 0u64);
    for s in 1..=seconds {
        tokio::time::sleep_until((started + Duration::from_secs(s)).into()).await;
        let now = (sent.load(Ordering::Relaxed), on_bus.load(Ordering::Relaxed));
        println!(
            "t={s:>2}s  sent {:>9} msg/s   on bus {:>9} msg/s",
            now.0 - last.0,
            now.1 - last.1
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let total_sent = sent.load(Ordering::Relaxed);
    // Let the queue drain (block) before the final count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total_bus = on_bus.load(Ordering::Relaxed);
    let dropped = metrics
        .value(
            "websocket_input_messages_dropped_total",
            &[("component", "ws_in"), ("reason", "queue_full")],
        )
        .unwrap_or(0.0);
    println!(
        "{clients} clients, 200-byte envelopes, on_full={}: sent {:.0} msg/s ({:.1} MB/s), published {:.0} msg/s, dropped {dropped}",
        config["backpressure"]["on_full"].as_str().unwrap(),
        total_sent as f64 / elapsed,
        total_sent as f64 * 200.0 / elapsed / 1e6,
        total_bus as f64 / elapsed,
    );
    fednode_kit::testing::stop(&ctx).await;
}
