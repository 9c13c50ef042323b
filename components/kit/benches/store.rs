//! The disk log (`fednode_kit::store`) against its target: at least
//! 200,000 records of 200 bytes a second with an fsync per batch.
//!
//! Run with: cargo bench -p fednode-kit --bench store
//!
//! - `store/append_200b_sync_every_1000`: append, and `sync` (one fsync)
//!   after every 1,000 records; a fresh log in a temporary directory per
//!   sample, default options (1 GiB in 64 MiB segments).
//! - `store/append_200b_sync_every_100ms`: the same with a `sync` when
//!   100 ms have passed since the last one (the output's `sync_interval`).
//! - `store/read_batch_1000x200b`: `read_batch` of 1,000 records from a
//!   100,000-record log, walking through it.
//! - `store/reopen_100k_records`: `Log::open` of a 100,000-record log
//!   (20.8 MB, every record checked), page cache warm.
//!
//! Comparisons with redb, fjall and plain file writes live in
//! `benches/store-compare` (its own crate).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fednode_kit::store::{Log, LogOptions};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BODY: [u8; 200] = [b'x'; 200];

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("append_200b_sync_every_1000", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
            let start = Instant::now();
            for i in 1..=iters {
                black_box(log.append(&BODY).unwrap());
                if i % 1000 == 0 {
                    log.sync().unwrap();
                }
            }
            log.sync().unwrap();
            start.elapsed()
        })
    });
    g.bench_function("append_200b_sync_every_100ms", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
            let start = Instant::now();
            let mut last_sync = start;
            for i in 1..=iters {
                black_box(log.append(&BODY).unwrap());
                if i % 64 == 0 && last_sync.elapsed() >= Duration::from_millis(100) {
                    log.sync().unwrap();
                    last_sync = Instant::now();
                }
            }
            log.sync().unwrap();
            start.elapsed()
        })
    });
    g.finish();
}

fn filled(records: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
    for i in 1..=records {
        log.append(&BODY).unwrap();
        if i % 10_000 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    dir
}

fn read_and_reopen(c: &mut Criterion) {
    let dir = filled(100_000);
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1000));
    let (mut log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut from = 1;
    g.bench_function("read_batch_1000x200b", |b| {
        b.iter(|| {
            let batch = log.read_batch(from, 1000, u64::MAX).unwrap();
            from = if from + 1000 >= log.next_seq() {
                1
            } else {
                from + 1000
            };
            black_box(batch)
        })
    });
    drop(log);
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(20);
    g.bench_function("reopen_100k_records", |b| {
        b.iter(|| {
            let (log, rec) = Log::open(dir.path(), LogOptions::default()).unwrap();
            assert_eq!(rec.records, 100_000);
            black_box(log)
        })
    });
    g.finish();
}

criterion_group!(benches, append, read_and_reopen);
criterion_main!(benches);
