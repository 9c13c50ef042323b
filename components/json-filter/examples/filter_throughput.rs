//! Run with: cargo run --release -p fednode-json-filter --example filter_throughput
//!
//! Pushes 1,000,000 messages of 200 bytes through the real `json_filter`
//! component on the memory bus (the edge filter `$.value > 50`, about half
//! pass) and prints messages per second, from the first publish to the
//! last filtered message received downstream. An optional argument sets
//! the message count.

use bytes::Bytes;
use fednode_json_filter::JsonFilter;
use fednode_kit::{testing, Bus, Component, Message, Meta, Overflow, SubscribeOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const SIZE: usize = 200;
/// Distinct payloads, cycled (the publisher must cost far less than the filter).
const DISTINCT: usize = 1000;

/// A sensor reading padded to exactly `SIZE` bytes.
fn payload(i: usize) -> Bytes {
    let mut v = json!({
        "type": "reading",
        "device_id": format!("sensor-{:04}", i % 64),
        "user_id": "jamie",
        "timestamp": 1_704_844_800_000u64 + i as u64,
        "value": i % 100,
        "level": "warning",
        "message": "",
    });
    let len = serde_json::to_vec(&v).unwrap().len();
    v["message"] = json!("x".repeat(SIZE - len));
    let bytes = serde_json::to_vec(&v).unwrap();
    assert_eq!(bytes.len(), SIZE);
    Bytes::from(bytes)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a message count"))
        .unwrap_or(1_000_000);
    let cfg = json!({
        "criteria": {"path": "$.value", "operator": ">", "value": 50},
        "ports": {
            "inputs": [{"name": "in", "subject": "raw.data"}],
            "outputs": [{"name": "out", "subject": "filtered.data"}]
        },
        // Room for the whole run: the publisher is faster than the filter,
        // and a drop would make the figure meaningless.
        "queue_size": n,
    });
    let filter = Arc::new(JsonFilter::build(&cfg, "components.filter.config").unwrap());
    let (ctx, bus, _metrics) = testing::context("filter");
    let mut out = bus
        .subscribe(
            "filtered.data",
            SubscribeOptions {
                overflow: Overflow::Block,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    filter.clone().start(ctx.clone()).await.unwrap();

    let messages: Vec<Message> = (0..DISTINCT)
        .map(|i| {
            Message::new("raw.data", payload(i)).with_meta(Meta {
                id: Some(format!("msg-{i}").into()),
                timestamp: Some(1_704_844_800_000 + i as i64),
                node: Some("edge-01".into()),
                replay: false,
                origin: None,
            })
        })
        .collect();
    let expected = (0..n).filter(|i| i % DISTINCT % 100 > 50).count();

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..n {
                bus.publish(messages[i % DISTINCT].clone()).await.unwrap();
                if i % 4096 == 4095 {
                    tokio::task::yield_now().await;
                }
            }
            started.elapsed()
        })
    };
    let mut received = 0;
    let mut buf = Vec::with_capacity(1024);
    while received < expected {
        buf.clear();
        if out.next_many(&mut buf, 1024).await == 0 {
            break;
        }
        received += buf.len();
    }
    let elapsed = started.elapsed();
    let published_in = publisher.await.unwrap();
    testing::stop(&ctx).await;

    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let health = filter.health().details;
    assert_eq!(received, expected, "every passing message arrives");
    assert_eq!(bus.dropped_total(), 0, "nothing dropped");
    assert_eq!(health["in"], n as u64);
    println!(
        "json_filter: {n} messages of {SIZE} B, {} passed, {} rejected",
        health["passed"], health["rejected"]
    );
    println!(
        "published in {:.3}s; filtered in {:.3}s: {:.0} msgs/s ({:.1} MB/s in)",
        published_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        (n * SIZE) as f64 / elapsed.as_secs_f64() / 1e6,
    );
    if let Some(cpu) = cpu {
        // On a shared machine wall time varies with the load; CPU time per
        // message (publisher, filter and consumer together) does not.
        println!(
            "process CPU {cpu:.3}s: {:.2} us/msg for publish + filter + receive",
            cpu * 1e6 / n as f64
        );
    }
}

/// User + system CPU time of this process (Linux), if available.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, which is 100 on Linux.
    Some(ticks / 100.0)
}
