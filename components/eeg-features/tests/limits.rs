//! What a hostile or broken producer cannot make `eeg_features` hold
//! (SPEC §9): keys over 128 bytes are rejected (`key_too_long`), the
//! least recently used stream is evicted at `max_streams`, so a flood of
//! one-sample users cannot lock a real user out, and the stream table
//! stays within its byte bound.

mod common;

use common::*;
use fednode_testkit::wait_until;
use serde_json::{json, Value};
use std::time::Duration;

/// Long enough for 100,000 messages through a debug build.
const FLOOD_WAIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn keys_longer_than_128_bytes_are_rejected_as_key_too_long() {
    let mut h = Harness::start(small(json!({}))).await;
    let long = "k".repeat(200);
    h.send(json!({"user_id": long, "channels": sample(0)}))
        .await;
    // A batch under a long key: the bad sample keeps its own reason, the
    // good ones are refused for the key.
    h.send(json!({"user_id": long, "samples": [sample(1), ["bad", 1], sample(2)]}))
        .await;
    // A number is measured by its JSON text.
    let number = "9".repeat(129);
    h.send_text(&format!(r#"{{"user_id":{number},"channels":[1,2]}}"#))
        .await;
    // 128 bytes is allowed; the limit counts the key, not its JSON
    // spelling (64 × `é` is 128 bytes, 384 bytes of `\u00e9` escapes).
    let at_limit = "é".repeat(64);
    let escaped = at_limit
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect::<String>();
    for i in 0..16 {
        let channels = sample(i);
        h.send_text(&format!(
            r#"{{"user_id":"{escaped}","channels":{channels}}}"#
        ))
        .await;
    }
    wait_until(SOON, "every sample handled", || h.handled() == 21.0).await;
    assert_eq!(h.rejected("key_too_long"), 4.0);
    assert_eq!(h.comp.samples(), 16);
    assert_eq!(h.rejected("not_numeric"), 1.0);
    let (subject, v, _) = h.recv().await;
    assert_eq!(v["user_id"], json!(at_limit));
    assert_eq!(v["window"]["index"], 0);
    assert!(subject.starts_with("feat."), "{subject}");
    // No stream was opened for a long key.
    assert_eq!(h.comp.streams_active(), 1);
    assert_eq!(h.comp.stream_table().evicted, 0);
    for ty in ["parse_error", "invalid_message"] {
        assert_eq!(h.metric("eeg_features_errors_total", &[("type", ty)]), 0.0);
    }
    h.stop().await;
}

#[tokio::test]
async fn max_streams_evicts_the_least_recently_used_stream() {
    let mut h = Harness::start(small(json!({"max_streams": 2}))).await;
    let send = |user: &'static str, ts: i64, i: usize| json!({"user_id": user, "timestamp": ts, "channels": sample(i)});
    for i in 0..8 {
        h.send(send("a", i as i64, i)).await;
        h.send(send("b", i as i64, i)).await;
    }
    // A third user: `a`, used longest ago, makes room.
    h.send(send("c", 0, 0)).await;
    for i in 8..16 {
        h.send(send("b", i as i64, i)).await;
    }
    let (subject, v, _) = h.recv().await;
    assert_eq!(subject, "feat.b");
    assert_eq!(v["window"]["start_timestamp"], 0, "b kept its samples");
    // `a` starts afresh (evicting `c`, now the least recently used): its
    // first window begins with the first sample sent after the eviction.
    for i in 0..16 {
        h.send(send("a", 100 + i as i64, i)).await;
    }
    let (subject, v, _) = h.recv().await;
    assert_eq!(subject, "feat.a");
    assert_eq!(
        v["window"],
        json!({"index": 0, "start_sample": 0, "end_sample": 16,
               "start_timestamp": 100, "end_timestamp": 115})
    );
    wait_until(SOON, "every sample handled", || h.handled() == 41.0).await;
    assert_eq!(h.comp.samples(), 41, "none refused for want of room");
    assert_eq!(h.metric("eeg_features_streams_evicted_total", &[]), 2.0);
    assert_eq!(h.comp.streams_active(), 2);
    let table = h.comp.stream_table();
    assert_eq!(
        (table.streams, table.streams_peak, table.evicted),
        (2, 2, 2)
    );
    // Nothing is refused for want of room.
    assert_eq!(h.rejected("key_too_long"), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn a_flood_of_one_sample_users_cannot_lock_a_real_user_out() {
    const FLOOD: usize = 100_000;
    const MAX_STREAMS: usize = 100;
    let cfg = small(json!({"max_streams": MAX_STREAMS, "queue_size": 200_000}));
    let mut h = Harness::start_reading(cfg, "feat.real", 4096).await;
    // The flood fills the table before the real user arrives, then goes on
    // with 20 new users for every one of the real user's samples.
    let mut real = 0usize;
    for n in 0..FLOOD {
        let channels = sample(n % 16);
        h.send_text(&format!(
            r#"{{"user_id":"flood{n}","channels":{channels}}}"#
        ))
        .await;
        if n >= 5_000 && n % 20 == 0 {
            let channels = sample(real);
            h.send_text(&format!(
                r#"{{"user_id":"real","timestamp":{real},"channels":{channels}}}"#
            ))
            .await;
            real += 1;
        }
    }
    assert_eq!(real, 4_750);
    let total = (FLOOD + real) as u64;
    wait_until(FLOOD_WAIT, "every sample handled", || {
        h.handled() == total as f64
    })
    .await;
    assert_eq!(h.comp.samples(), total, "none refused for want of room");

    // Every window of the real user, as if it had streamed alone.
    let windows = (real - 16) / 8 + 1;
    let mut got = Vec::with_capacity(windows);
    for _ in 0..windows {
        let (subject, v, _) = h.recv().await;
        assert_eq!(subject, "feat.real");
        got.push(v);
    }
    let table = h.comp.stream_table();
    let evicted = h.metric("eeg_features_streams_evicted_total", &[]);
    let active = h.comp.streams_active() as usize;
    h.stop().await;
    assert_eq!(active, MAX_STREAMS);
    // Every stream opened beyond the bound evicted one.
    assert_eq!(evicted as usize, FLOOD + 1 - MAX_STREAMS);
    assert_eq!(table.evicted as usize, FLOOD + 1 - MAX_STREAMS);
    // Memory stayed bounded all along, in count and in bytes.
    assert_eq!(table.streams_peak, MAX_STREAMS);
    assert!(
        table.bytes_peak <= table.bytes_limit,
        "peak {} > bound {}",
        table.bytes_peak,
        table.bytes_limit
    );
    assert_eq!(
        got,
        reference_windows_of("real", real, |i| i as i64).await,
        "the real user's windows"
    );
}

#[tokio::test]
async fn the_stream_table_is_bounded_in_bytes() {
    const FLOOD: usize = 1_000;
    const MAX_STREAMS: usize = 100;
    let cfg = small(json!({"max_streams": MAX_STREAMS}));
    let mut h = Harness::start_reading(cfg, "feat.real", 1024).await;
    // Keys at the length limit that cost far more than their 128 bytes:
    // each control character is six bytes of JSON in every window.
    let key = |n: usize| format!("{}{n:04}", "\u{1}".repeat(124));
    assert_eq!(key(FLOOD - 1).len(), 128);
    let mut real = 0usize;
    for n in 0..FLOOD {
        h.send(json!({"user_id": key(n), "channels": sample(n % 16)}))
            .await;
        if n % 10 == 0 {
            h.send(json!({"user_id": "real", "timestamp": real, "channels": sample(real)}))
                .await;
            real += 1;
        }
    }
    let total = (FLOOD + real) as u64;
    wait_until(SOON, "every sample handled", || h.handled() == total as f64).await;
    assert_eq!(h.comp.samples(), total, "none refused for want of room");
    let mut got: Vec<Value> = Vec::new();
    for _ in 0..(real - 16) / 8 + 1 {
        got.push(h.recv().await.1);
    }
    let table = h.comp.stream_table();
    let active = h.comp.streams_active() as usize;
    h.stop().await;
    // The byte bound, not the count, held the table back.
    assert!(table.streams_peak < MAX_STREAMS, "{table:?}");
    assert!(table.bytes_peak <= table.bytes_limit, "{table:?}");
    assert!(table.bytes <= table.bytes_limit, "{table:?}");
    assert_eq!(table.evicted as usize, FLOOD + 1 - active, "{table:?}");
    // And the real user streamed on throughout.
    let indices: Vec<u64> = got
        .iter()
        .map(|v| v["window"]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, (0..got.len() as u64).collect::<Vec<_>>());
    assert_eq!(got.len(), 11);
}
