//! Filter engine throughput on an already-parsed ~200-byte message.
//!
//! Target (issue): a single-criterion filter such as `$.value > 50` must run
//! at ≥ 2,000,000 evaluations/s, i.e. ≤ 500 ns each.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion as Bench, Throughput};
use fednode_kit::filter::{Criterion, Filter, FilterSpec};
use serde_json::{json, Value};

/// A message shaped like the sensor/log data the node carries (~200 bytes).
fn message() -> Value {
    json!({
        "type": "reading",
        "device_id": "sensor-0042",
        "user_id": "jamie",
        "timestamp": 1704844800000u64,
        "value": 72.5,
        "level": "Warning",
        "message": "temperature above threshold in zone B",
        "a": [{"b": 3}, {"b": 17}, {"b": 64}]
    })
}

fn filter(path: &str, op: &str, value: Value) -> Filter {
    Filter::compile(&FilterSpec::single(Criterion::new(path, op, Some(value))))
        .expect("valid filter")
}

fn bench_filters(c: &mut Bench) {
    let msg = message();
    assert!(serde_json::to_vec(&msg).unwrap().len() <= 220);

    let cases = [
        (
            "simple_path_numeric_gt",
            filter("$.value", ">", json!(50)),
            true,
        ),
        (
            "severity_ge",
            filter("$.level", ">=", json!("warning")),
            true,
        ),
        (
            "matches_regex",
            filter(
                "$.message",
                "matches",
                json!("above threshold.*zone [A-C]$"),
            ),
            true,
        ),
        ("wildcard_path", filter("$.a[*].b", ">", json!(50)), true),
        // Descendants: walked with the visit budget, not the engine.
        ("descendant_path", filter("$..b", ">", json!(50)), true),
        // Not a fast-path shape: goes through the jsonpath-rust engine.
        (
            "engine_path_filter_expr",
            filter("$.a[?@.b > 50].b", "==", json!(64)),
            true,
        ),
    ];

    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));
    for (name, f, expected) in &cases {
        assert_eq!(f.matches(&msg), *expected, "{name}");
        group.bench_function(*name, |b| b.iter(|| f.matches(black_box(&msg))));
    }
    // For comparison: parsing the bytes dominates when the caller has no Value.
    let bytes = serde_json::to_vec(&msg).unwrap();
    let (_, gt, _) = &cases[0];
    group.bench_function("simple_path_numeric_gt_from_bytes", |b| {
        b.iter(|| gt.matches_bytes(black_box(&bytes)))
    });
    group.finish();
}

criterion_group!(benches, bench_filters);
criterion_main!(benches);
