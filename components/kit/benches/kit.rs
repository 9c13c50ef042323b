//! Micro-benchmarks of the kit's hot paths.
//!
//! Run with: cargo bench -p fednode-kit --bench kit
//!
//! - `memory_bus/publish_deliver_1sub`: one publisher task, one subscriber
//!   task on a 2-worker runtime; time per message from publish to receipt.
//! - `memory_bus/publish_deliver_4subs`: the same message to 4 subscribers
//!   (payload shared, not copied).
//! - `envelope/decode_json_200b`, `envelope/encode_json_200b`,
//!   `envelope/decode_msgpack_200b`: one 200-byte data envelope.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fednode_kit::envelope::{Encoding, Envelope};
use fednode_kit::memory::MemoryBus;
use fednode_kit::{Bus, Message, SubscribeOptions};
use std::hint::black_box;
use std::time::{Duration, Instant};

const FRAME: &str = r#"{"type":"data","id":"5f0c1b8e-3a6d-4c1e-9b7a-2d4e6f8a0b1c","timestamp":1704844800000,"payload":{"sensor_id":"temp-01","value":23.5,"unit":"celsius","user_id":"jamie","site":"lab-3","seq":1234567}}"#;

fn payload() -> Bytes {
    let p = br#"{"sensor_id":"temp-01","value":23.5,"unit":"celsius","user_id":"jamie","seq":12345,"site":"lab-3","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    Bytes::from_static(p)
}

fn bus_round(subs: usize, n: u64) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bus = MemoryBus::new();
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
        let subject: std::sync::Arc<str> = "bench.data".into();
        let p = payload();
        let t0 = Instant::now();
        for _ in 0..n {
            let m = Message {
                subject: subject.clone(),
                payload: p.clone(),
                meta: Default::default(),
                reply: None,
            };
            bus.publish(m).await.unwrap();
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(bus.dropped_total(), 0, "benchmark must not drop");
        t0.elapsed()
    })
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
            |b| {
                b.iter_custom(|iters| {
                    // Batches of at most 50k keep queues bounded (capacity 65,536).
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(50_000);
                        total += bus_round(subs, n);
                        left -= n;
                    }
                    total
                })
            },
        );
    }
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
