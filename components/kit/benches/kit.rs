//! Micro-benchmarks of the kit's hot paths.
//!
//! Run with: cargo bench -p fednode-kit --bench kit
//!
//! - `memory_bus/publish_deliver_1sub`: one publisher task, one subscriber
//!   task on a 2-worker runtime; time per message from publish to receipt.
//!   The publisher goes through `BusHandle::publish_message`, the path every
//!   component takes (non-blocking fast path, then the async fallback), and
//!   the subscriber through `BusHandle::subscribe` + `next_many`, so the
//!   `bus_*` counters are included.
//! - `memory_bus/publish_deliver_4subs`: the same message to 4 subscribers
//!   (payload shared, not copied).
//! - `envelope/decode_json_200b`, `envelope/encode_json_200b`,
//!   `envelope/decode_msgpack_200b`: one 200-byte data envelope.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fednode_kit::envelope::{Encoding, Envelope};
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{BusHandle, Message, SubscribeOptions};
use std::hint::black_box;
use std::time::{Duration, Instant};

const FRAME: &str = r#"{"type":"data","id":"5f0c1b8e-3a6d-4c1e-9b7a-2d4e6f8a0b1c","timestamp":1704844800000,"payload":{"sensor_id":"temp-01","value":23.5,"unit":"celsius","user_id":"jamie","site":"lab-3","seq":1234567}}"#;

/// The runtime of both rounds: two workers, one per core.
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A 200-byte message on `subject`, payload shared (a static `Bytes`).
fn message(subject: &std::sync::Arc<str>) -> Message {
    Message {
        subject: subject.clone(),
        payload: payload(),
        meta: Default::default(),
        reply: None,
    }
}

fn payload() -> Bytes {
    let p = br#"{"sensor_id":"temp-01","value":23.5,"unit":"celsius","user_id":"jamie","seq":12345,"site":"lab-3","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    Bytes::from_static(p)
}

fn bus_round(subs: usize, n: u64) -> Duration {
    two_workers().block_on(async move {
        let bus = MemoryBus::new();
        let metrics = Metrics::new();
        let bus = BusHandle::new(
            std::sync::Arc::new(bus),
            "bench-node",
            None,
            &metrics.component("bench"),
        );
        let mut handles = Vec::new();
        for _ in 0..subs {
            let mut sub = bus
                .subscribe(
                    "bench.data",
                    SubscribeOptions {
                        capacity: 1 << 16,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            handles.push(tokio::spawn(async move {
                let mut got = 0u64;
                let mut buf = Vec::with_capacity(1024);
                while got < n {
                    buf.clear();
                    got += sub.next_many(&mut buf, 1024).await as u64;
                    black_box(&buf);
                }
            }));
        }
        // The publisher is a task like any component's, not the
        // `block_on` thread: two busy tasks on the two workers.
        let t0 = Instant::now();
        tokio::spawn(async move {
            let subject: std::sync::Arc<str> = "bench.data".into();
            for _ in 0..n {
                let m = message(&subject);
                bus.publish_message(m).await.unwrap();
            }
            assert_eq!(bus.bus().dropped_total(), 0, "benchmark must not drop");
        })
        .await
        .unwrap();
        for h in handles {
            h.await.unwrap();
        }
        t0.elapsed()
    })
}

/// The baseline measured in the same run: a bare tokio mpsc channel of
/// the same `Message`s, same capacity and tasks, no routing and no metrics.
fn mpsc_round(n: u64) -> Duration {
    two_workers().block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(1 << 16);
        let h = tokio::spawn(async move {
            let mut got = 0u64;
            let mut buf = Vec::with_capacity(1024);
            while got < n {
                buf.clear();
                got += rx.recv_many(&mut buf, 1024).await as u64;
                black_box(&buf);
            }
        });
        let t0 = Instant::now();
        tokio::spawn(async move {
            let subject: std::sync::Arc<str> = "bench.data".into();
            for _ in 0..n {
                let m = message(&subject);
                if let Err(e) = tx.try_send(m) {
                    tx.send(e.into_inner()).await.unwrap();
                }
            }
        })
        .await
        .unwrap();
        h.await.unwrap();
        t0.elapsed()
    })
}

/// Run `round` in batches of at most 50k messages (queues hold 65,536).
fn batched(iters: u64, round: impl Fn(u64) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(50_000);
        total += round(n);
        left -= n;
    }
    total
}

fn memory_bus(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory_bus");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    for subs in [1usize, 4] {
        g.bench_function(
            format!(
                "publish_deliver_{subs}sub{}",
                if subs > 1 { "s" } else { "" }
            ),
            |b| b.iter_custom(|iters| batched(iters, |n| bus_round(subs, n))),
        );
    }
    g.bench_function("baseline_tokio_mpsc_1sub", |b| {
        b.iter_custom(|iters| batched(iters, mpsc_round))
    });
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    assert!(
        (190..=230).contains(&FRAME.len()),
        "frame is {} bytes",
        FRAME.len()
    );
    g.bench_function("decode_json_200b", |b| {
        b.iter(|| Envelope::decode_json(black_box(FRAME.as_bytes())).unwrap())
    });
    let env = Envelope::decode_json(FRAME.as_bytes()).unwrap();
    g.bench_function("encode_json_200b", |b| {
        b.iter(|| black_box(&env).encode_json())
    });
    let packed = env.encode(Encoding::Msgpack);
    g.bench_function("decode_msgpack_200b", |b| {
        b.iter(|| Envelope::decode_msgpack(black_box(&packed)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, memory_bus, envelope);
criterion_main!(benches);
