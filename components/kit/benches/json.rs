//! The kit's JSON scanner against sonic-rs (SIMD, `get_many` over a pointer
//! tree) on what the ingest path does with every frame: validate a 200-byte
//! data envelope and find its five members.
//!
//! Run with: cargo bench -p fednode-kit --bench json
//!
//! - `json/kit_decode_envelope` and `json/sonic_decode_envelope`: the whole
//!   decode into an [`Envelope`] (type, id, timestamp, replay, payload
//!   copied), once on the kit scanner (what the node runs) and once on
//!   sonic-rs's checked `get_many`.
//! - `json/kit_scan_members` and `json/sonic_get_many`: finding the five
//!   members alone.
//! - `json/serde_validate`: serde_json's validation alone (`IgnoredAny`), the
//!   floor a serde-based decoder cannot go under.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fednode_kit::envelope::{Envelope, Kind};
use fednode_kit::json::{self, Members};
use sonic_rs::{JsonValueTrait, PointerTree};
use std::hint::black_box;
use std::sync::Arc;

const FRAME: &str = r#"{"type":"data","id":"5f0c1b8e-3a6d-4c1e-9b7a-2d4e6f8a0b1c","timestamp":1704844800000,"payload":{"sensor_id":"temp-01","value":23.5,"unit":"celsius","user_id":"jamie","site":"lab-3","seq":1234567}}"#;

const KEYS: [&str; 5] = ["type", "id", "timestamp", "replay", "payload"];

fn pointer_tree() -> PointerTree {
    let mut tree = PointerTree::new();
    for k in KEYS {
        tree.add_path([k]);
    }
    tree
}

/// The envelope decode on sonic-rs: its checked `get_many` validates the
/// frame and finds the members; the fields are then read as the kit reads
/// them (strings unescaped only when they hold escapes).
fn sonic_decode(text: &str, tree: &PointerTree) -> Option<Envelope> {
    let found = sonic_rs::get_many(text, tree).ok()?;
    let kind = match found[0].as_ref().and_then(|v| v.as_str()) {
        Some("data") => Kind::Data,
        Some("request") => Kind::Request,
        Some("reply") => Kind::Reply,
        _ => return None,
    };
    let id: Arc<str> = found[1]
        .as_ref()
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .into();
    let timestamp = found[2].as_ref().and_then(|v| v.as_i64());
    let replay = found[3].as_ref().and_then(|v| v.as_bool()).unwrap_or(false);
    let payload = Bytes::copy_from_slice(found[4].as_ref()?.as_raw_str().as_bytes());
    Some(Envelope {
        kind,
        id,
        timestamp,
        replay,
        origin: None,
        payload,
    })
}

fn scanners(c: &mut Criterion) {
    let tree = pointer_tree();
    let ours = Envelope::decode_json(FRAME.as_bytes()).unwrap();
    let theirs = sonic_decode(FRAME, &tree).unwrap();
    assert_eq!(
        (&ours.kind, &ours.id, ours.timestamp, ours.replay),
        (&theirs.kind, &theirs.id, theirs.timestamp, theirs.replay)
    );
    assert_eq!(ours.payload, theirs.payload);

    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    g.bench_function("kit_decode_envelope", |b| {
        b.iter(|| Envelope::decode_json(black_box(FRAME.as_bytes())).unwrap())
    });
    g.bench_function("sonic_decode_envelope", |b| {
        b.iter(|| sonic_decode(black_box(FRAME), &tree).unwrap())
    });
    g.bench_function("kit_scan_members", |b| {
        b.iter(|| {
            let mut members = Members::<5>::new();
            json::scan(black_box(FRAME), &KEYS, &mut members).unwrap();
            members
        })
    });
    g.bench_function("sonic_get_many", |b| {
        b.iter(|| sonic_rs::get_many(black_box(FRAME), &tree).unwrap())
    });
    g.bench_function("serde_validate", |b| {
        b.iter(|| serde_json::from_str::<serde::de::IgnoredAny>(black_box(FRAME)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, scanners);
criterion_main!(benches);
