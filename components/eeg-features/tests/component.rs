//! The `eeg_features` component on the memory bus: cadence, output shape,
//! independent streams, every rejection reason, input shapes, idle
//! streams, keys, shutdown, config errors. Limits (long keys, eviction,
//! the byte bound) are in `limits.rs`.

mod common;

use bytes::Bytes;
use common::*;
use fednode_eeg_features::{registration, Config};
use fednode_kit::{testing, BuildContext, Bus, Component, NodeIdentity, SubscribeOptions};
use fednode_testkit::wait_until;
use serde_json::{json, Value};
use std::f64::consts::TAU;
use std::time::{Duration, Instant};

const CHANNELS8: [&str; 8] = ["Fz", "F3", "F4", "Cz", "C3", "C4", "Pz", "P3"];
const BANDS: [&str; 5] = ["delta", "theta", "alpha", "beta", "gamma"];

#[tokio::test]
async fn sine_stream_cadence_shape_band_and_subject() {
    let mut h = Harness::start(json!({
        "sampling_rate": 256, "channel_names": CHANNELS8,
        "ports": ports("user.{user_id}.features"),
    }))
    .await;
    let amp = |c: usize| 10.0 + c as f64;
    let ts = |i: usize| 1_704_844_800_000i64 + (i as f64 * 1000.0 / 256.0).round() as i64;
    let raw = |i: usize| {
        let t = i as f64 / 256.0;
        let ch: Vec<f64> = (0..8)
            .map(|c| amp(c) * (TAU * 10.0 * t + c as f64).sin())
            .collect();
        json!({"type": "raw", "timestamp": ts(i), "user_id": "jamie", "channels": ch})
    };
    // 511 samples: no window yet.
    for i in 0..511 {
        h.send(raw(i)).await;
    }
    wait_until(SOON, "511 samples", || h.comp.samples() == 511).await;
    assert_eq!(h.comp.windows(), 0);
    // Then one window at 512 and one per 256 samples (hop) after it.
    for i in 511..1280 {
        h.send(raw(i)).await;
    }
    for k in 0..4usize {
        let (subject, v, meta) = h.recv().await;
        assert_eq!(subject, "user.jamie.features");
        assert_eq!(
            keys(&v),
            [
                "type",
                "user_id",
                "timestamp",
                "window",
                "band_powers",
                "average",
                "channels",
                "metrics",
                "workload",
                "confidence"
            ]
        );
        assert_eq!(v["type"], "features");
        assert_eq!(v["user_id"], "jamie");
        let (start, end) = (k * 256, k * 256 + 512);
        assert_eq!(
            v["window"],
            json!({"index": k, "start_sample": start, "end_sample": end,
                   "start_timestamp": ts(start), "end_timestamp": ts(end - 1)})
        );
        assert_eq!(
            keys(&v["window"]),
            [
                "index",
                "start_sample",
                "end_sample",
                "start_timestamp",
                "end_timestamp"
            ]
        );
        assert_eq!(v["timestamp"], json!(ts(end - 1)));
        assert_eq!(meta.timestamp, Some(ts(end - 1)));
        assert!(meta.id.as_deref().is_some_and(|id| !id.is_empty()));
        assert_eq!(meta.node.as_deref(), Some("test-node"));

        assert_eq!(keys(&v["band_powers"]), BANDS);
        assert_eq!(keys(&v["average"]), ["absolute", "relative"]);
        assert_eq!(keys(&v["average"]["absolute"]), BANDS);
        assert_eq!(keys(&v["average"]["relative"]), BANDS);
        assert_eq!(v["band_powers"], v["average"]["relative"]);
        assert_eq!(keys(&v["channels"]), CHANNELS8);
        for (c, name) in CHANNELS8.iter().enumerate() {
            let ch = &v["channels"][name];
            assert_eq!(keys(ch), ["absolute", "relative", "total_power"]);
            assert_eq!(keys(&ch["absolute"]), BANDS);
            assert_eq!(keys(&ch["relative"]), BANDS);
            // A 10 Hz sine of amplitude A puts A²/2 into alpha.
            let alpha = ch["absolute"]["alpha"].as_f64().unwrap();
            let want = amp(c) * amp(c) / 2.0;
            assert!(
                (alpha - want).abs() / want < 0.005,
                "{name}: alpha {alpha}, want {want}"
            );
            assert!(ch["relative"]["alpha"].as_f64().unwrap() > 0.99);
            for b in ["delta", "theta", "beta", "gamma"] {
                assert!(ch["relative"][b].as_f64().unwrap() < 0.01, "{name} {b}");
            }
        }
        assert!(v["band_powers"]["alpha"].as_f64().unwrap() > 0.99);
        assert_eq!(
            keys(&v["metrics"]),
            [
                "frontal_theta",
                "theta_beta_ratio",
                "theta_alpha_ratio",
                "engagement_index",
                "frontal_alpha_asymmetry"
            ]
        );
        for m in keys(&v["metrics"]) {
            assert!(v["metrics"][m].is_number(), "{m}: {}", v["metrics"][m]);
        }
        let w = v["workload"].as_f64().unwrap();
        assert!(
            (0.0..0.05).contains(&w),
            "alpha-dominated: low workload, got {w}"
        );
        assert_eq!(v["confidence"], json!(1.0));
    }
    wait_until(SOON, "1280 samples", || h.comp.samples() == 1280).await;
    h.expect_no_more().await;
    assert_eq!(h.metric("eeg_features_windows_total", &[]), 4.0);
    assert_eq!(h.metric("eeg_features_samples_total", &[]), 1280.0);
    assert_eq!(h.metric("eeg_features_streams_active", &[]), 1.0);
    let health = h.comp.health();
    assert!(health.healthy);
    assert_eq!(health.status, "running");
    assert_eq!(
        health.details,
        json!({"streams_active": 1, "samples": 1280, "windows": 4})
    );
    assert!(h
        .metrics
        .render()
        .contains("eeg_features_window_compute_seconds_count{component=\"feat\"} 4"));
    h.stop().await;
}

/// Samples of user `u` (seeded noise plus sines), 128 Hz, 2 channels.
fn noisy(u: u64, i: usize) -> Value {
    let mut x = (u + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 32;
    let noise = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    let t = i as f64 / 128.0;
    let f = 5.0 + 7.0 * u as f64;
    json!({"user_id": format!("user{u}"), "timestamp": 1000 + i,
           "channels": [20.0 * (TAU * f * t).sin() + 5.0 * noise, 3.0 * (TAU * 20.0 * t).cos() - noise]})
}

async fn run_users(users: &[u64], per_user: usize) -> Vec<(String, Bytes)> {
    let cfg =
        json!({"sampling_rate": 128, "channel_names": ["Fz", "Pz"], "ports": ports("f.{user_id}")});
    let h = Harness::start(cfg).await;
    let mut out = h
        .bus
        .subscribe("f.>", SubscribeOptions::default())
        .await
        .unwrap();
    for i in 0..per_user {
        for &u in users {
            h.send(noisy(u, i)).await;
        }
    }
    let want = users.len() * ((per_user - 256) / 128 + 1);
    let mut got = Vec::new();
    while got.len() < want {
        let m = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .unwrap()
            .unwrap();
        got.push((m.subject.to_string(), m.payload));
    }
    h.stop().await;
    got
}

#[tokio::test]
async fn interleaved_users_equal_each_user_alone() {
    let both = run_users(&[0, 1], 640).await;
    let alone0 = run_users(&[0], 640).await;
    let alone1 = run_users(&[1], 640).await;
    let of = |user: &str| -> Vec<Bytes> {
        both.iter()
            .filter(|(s, _)| s == &format!("f.{user}"))
            .map(|(_, p)| p.clone())
            .collect()
    };
    assert_eq!(of("user0").len(), 4);
    // Byte-identical messages: same windows, same band powers, same key.
    assert_eq!(
        of("user0"),
        alone0.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        of("user1"),
        alone1.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>()
    );
    let v: Value = serde_json::from_slice(&of("user1")[0]).unwrap();
    assert_eq!(v["user_id"], "user1");
    // user1's 12 Hz sine is alpha, user0's 5 Hz sine theta.
    assert!(v["channels"]["Fz"]["relative"]["alpha"].as_f64().unwrap() > 0.8);
    let v: Value = serde_json::from_slice(&of("user0")[0]).unwrap();
    assert!(v["channels"]["Fz"]["relative"]["theta"].as_f64().unwrap() > 0.8);
}

#[tokio::test]
async fn every_rejection_reason_and_the_stream_goes_on() {
    let mut h = Harness::start(small(json!({}))).await;
    let good = |i: usize| {
        json!({"type": "raw", "user_id": "u", "timestamp": 1000 + i, "channels": sample(i)})
            .to_string()
    };
    let bad = [
        (
            2,
            r#"{"user_id":"u","timestamp":1,"channels":[1.0]}"#,
            "channel_count",
        ),
        (
            4,
            r#"{"user_id":"u","timestamp":2,"channels":{"F3":1.0}}"#,
            "missing_channel",
        ),
        (
            6,
            r#"{"user_id":"u","timestamp":3,"channels":[1.0,"NaN"]}"#,
            "not_numeric",
        ),
        (
            7,
            r#"{"user_id":"u","timestamp":4,"channels":[null,2]}"#,
            "not_numeric",
        ),
        (
            8,
            r#"{"user_id":"u","timestamp":5,"channels":[1.0,1e400]}"#,
            "non_finite",
        ),
        (
            9,
            r#"{"user_id":"u","timestamp":6,"channels":{"F3":-1e999,"F4":0}}"#,
            "non_finite",
        ),
    ];
    for i in 0..24 {
        for (after, text, _) in &bad {
            if *after == i {
                h.send_text(text).await;
            }
        }
        h.send_text(&good(i)).await;
    }
    let w0 = h.recv().await.1;
    let w1 = h.recv().await.1;
    // Rejected samples took no index and no timestamp.
    assert_eq!(
        w0["window"],
        json!({"index": 0, "start_sample": 0, "end_sample": 16, "start_timestamp": 1000, "end_timestamp": 1015})
    );
    assert_eq!(
        w1["window"],
        json!({"index": 1, "start_sample": 8, "end_sample": 24, "start_timestamp": 1008, "end_timestamp": 1023})
    );
    wait_until(SOON, "all samples", || h.comp.samples() == 24).await;
    h.expect_no_more().await;
    assert_eq!(h.rejected("channel_count"), 1.0);
    assert_eq!(h.rejected("missing_channel"), 1.0);
    assert_eq!(h.rejected("not_numeric"), 2.0);
    assert_eq!(h.rejected("non_finite"), 2.0);
    assert_eq!(h.rejected("key_too_long"), 0.0);
    assert_eq!(h.metric("eeg_features_samples_total", &[]), 24.0);
    h.stop().await;
    // And the features are those of the clean stream.
    let clean = reference_windows(24, |i| 1000 + i as i64).await;
    assert_eq!(vec![w0, w1], clean);
}

#[tokio::test]
async fn named_maps_and_batches_equal_one_sample_messages() {
    let mut h = Harness::start(small(json!({}))).await;
    let t = |i: usize| 5000 + 100 * i as i64;
    // Samples 0..10: one batch with per-sample timestamps.
    let batch: Vec<Value> = (0..10).map(sample).collect();
    let stamps: Vec<i64> = (0..10).map(t).collect();
    h.send(json!({"type": "raw", "user_id": "u", "timestamp": 1, "timestamps": stamps, "samples": batch})).await;
    // Samples 10..16: named maps, in either order, with extra members ignored.
    for i in 10..16 {
        let channels = if i % 2 == 0 {
            json!({"F3": value(i, 0), "F4": value(i, 1)})
        } else {
            json!({"AUX": "x", "F4": value(i, 1), "F3": value(i, 0)})
        };
        h.send(json!({"user_id": "u", "timestamp": t(i), "channels": channels}))
            .await;
    }
    // Samples 16..24: a batch without timestamps (the message's is the
    // first sample's, then one sample period apart: 62.5 ms at 16 Hz), with
    // one bad sample inside, which alone is rejected.
    let mut batch: Vec<Value> = (16..19).map(sample).collect();
    batch.push(json!(["bad", 1]));
    batch.extend((19..24).map(sample));
    h.send(json!({"type": "raw", "user_id": "u", "timestamp": 9000, "samples": batch}))
        .await;
    let w0 = h.recv().await.1;
    let w1 = h.recv().await.1;
    assert_eq!(h.rejected("not_numeric"), 1.0);
    // Batch position j (the bad sample was position 3): 9000 + round(j · 62.5).
    let ts = |i: usize| -> i64 {
        match i {
            0..=15 => t(i),
            16..=18 => 9000 + ((i - 16) as f64 * 62.5).round() as i64,
            _ => 9000 + ((i - 15) as f64 * 62.5).round() as i64,
        }
    };
    assert_eq!(w1["window"]["end_timestamp"], json!(9000 + 500));
    assert_eq!(w1["window"]["start_timestamp"], json!(t(8)));
    h.stop().await;
    assert_eq!(vec![w0, w1], reference_windows(24, ts).await);
}

#[tokio::test]
async fn other_types_pass_by_and_bad_messages_are_counted() {
    let mut h = Harness::start(small(json!({}))).await;
    h.send(json!({"type": "features", "user_id": "u", "workload": 0.5}))
        .await;
    h.send(json!({"type": "prediction", "channels": [1, 2]}))
        .await;
    h.send_text("not json").await;
    h.send_text("[1, 2]").await;
    h.send(json!({"type": "raw", "user_id": "u"})).await;
    h.send(json!({"type": "raw", "samples": 3})).await;
    h.send(json!({"channels": [1, 2], "samples": [[1, 2]]}))
        .await;
    for i in 0..16 {
        h.send(json!({"user_id": "u", "channels": sample(i)})).await;
    }
    let (_, v, meta) = h.recv().await;
    // Without timestamps the window's are null and the bus timestamp is now.
    assert_eq!(v["window"]["start_sample"], 0);
    assert_eq!(v["timestamp"], Value::Null);
    assert!(meta.timestamp.unwrap() > 1_700_000_000_000);
    wait_until(SOON, "all", || h.comp.samples() == 16).await;
    h.expect_no_more().await;
    assert_eq!(h.metric("eeg_features_passed_through_total", &[]), 2.0);
    assert_eq!(
        h.metric("eeg_features_errors_total", &[("type", "parse_error")]),
        2.0
    );
    assert_eq!(
        h.metric("eeg_features_errors_total", &[("type", "invalid_message")]),
        3.0
    );
    assert_eq!(h.metric("eeg_features_windows_total", &[]), 1.0);
    h.stop().await;
}

#[tokio::test]
async fn idle_streams_are_freed() {
    let mut h = Harness::start(small(json!({"stream_idle_timeout": "200ms"}))).await;
    for i in 0..10 {
        h.send(json!({"user_id": "a", "channels": sample(i)})).await;
    }
    h.send(json!({"user_id": "b", "channels": sample(0)})).await;
    wait_until(SOON, "every sample", || h.comp.samples() == 11).await;
    assert_eq!(h.comp.streams_active(), 2);
    let t0 = Instant::now();
    wait_until(SOON, "a and b freed", || h.comp.streams_active() == 0).await;
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(h.metric("eeg_features_streams_active", &[]), 0.0);
    // Freeing an idle stream is not an eviction.
    assert_eq!(h.metric("eeg_features_streams_evicted_total", &[]), 0.0);
    let table = h.comp.stream_table();
    assert_eq!((table.streams, table.bytes, table.evicted), (0, 0, 0));
    // "a" starts afresh at sample 0.
    for i in 0..16 {
        h.send(json!({"user_id": "a", "channels": sample(i)})).await;
    }
    let (subject, v, _) = h.recv().await;
    assert_eq!(subject, "feat.a");
    assert_eq!(v["window"]["index"], 0);
    assert_eq!(v["window"]["start_sample"], 0);
    h.stop().await;
}

#[tokio::test]
async fn default_stream_numeric_and_nested_keys() {
    let mut h = Harness::start(small(json!({}))).await;
    for i in 0..16 {
        h.send(json!({"channels": sample(i)})).await;
        h.send(json!({"user_id": 17, "channels": sample(i)})).await;
        h.send(json!({"user_id": null, "channels": sample(i)}))
            .await;
    }
    // Missing and null keys share the default stream (32 samples: windows
    // at 16, 24 and 32), published under `_`; 17 is its own stream.
    let mut got = Vec::new();
    for _ in 0..4 {
        let (s, v, _) = h.recv().await;
        got.push((s, v["user_id"].clone(), v["window"]["index"].clone()));
    }
    assert_eq!(
        got,
        [
            ("feat._".to_string(), Value::Null, json!(0)),
            ("feat._".to_string(), Value::Null, json!(1)),
            ("feat.17".to_string(), json!(17), json!(0)),
            ("feat._".to_string(), Value::Null, json!(2)),
        ]
    );
    h.stop().await;

    let mut h = Harness::start(small(
        json!({"key_path": "$.meta.user", "ports": ports("x.{user}.{window.index}")}),
    ))
    .await;
    for i in 0..16 {
        h.send(json!({"meta": {"user": "ann"}, "channels": sample(i)}))
            .await;
    }
    let (s, v, _) = h.recv().await;
    assert_eq!(s, "x.ann.0");
    assert_eq!(keys(&v)[..3], ["type", "user", "timestamp"]);
    assert_eq!(v["user"], "ann");
    h.stop().await;
}

#[tokio::test]
async fn stop_drains_what_is_queued() {
    let mut h = Harness::start(small(json!({}))).await;
    for i in 0..24 {
        h.send(json!({"user_id": "u", "channels": sample(i)})).await;
    }
    // Stop at once: the queued samples are still processed and published.
    testing::stop(&h.ctx).await;
    assert_eq!(h.comp.samples(), 24);
    assert_eq!(h.recv().await.1["window"]["index"], 0);
    assert_eq!(h.recv().await.1["window"]["index"], 1);
}

fn errors_of(cfg: Value) -> Vec<String> {
    Config::parse(&cfg, "components.feat.config")
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn config_errors_name_their_paths() {
    let base = json!({"sampling_rate": 256, "channel_names": ["F3", "F4"], "ports": ports("out")});
    let errs = errors_of(with(
        &base,
        json!({"bands": [
            {"name": "delta", "lo": 1, "hi": 4}, {"name": "theta", "lo": 4, "hi": 8},
            {"name": "alpha", "lo": 8, "hi": 13}, {"name": "beta", "lo": 13, "hi": 30},
            {"name": "gamma", "lo": 30, "hi": 200}]}),
    ));
    assert_eq!(
        errs,
        ["components.feat.config.bands[4].hi: band gamma: upper edge 200 Hz is above the Nyquist frequency 128 Hz (sampling_rate 256 Hz)"]
    );
    let errs = errors_of(with(&base, json!({"overlap": 1.0, "window_seconds": 0.5})));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "components.feat.config.window_seconds: window_seconds 0.5 gives 128 samples"
        ),
        "{errs:?}"
    );
    assert_eq!(
        errs[1],
        "components.feat.config.overlap: overlap must be in [0, 1), got 1"
    );
    let errs = errors_of(with(&base, json!({"overlap": -0.1})));
    assert_eq!(
        errs,
        ["components.feat.config.overlap: overlap must be in [0, 1), got -0.1"]
    );

    // Several problems at once, each at its path.
    let errs = errors_of(json!({
        "sampling_rate": 0, "channel_names": ["F3", "F3"], "key_path": "$.users[*]",
        "stream_idle_timeout": "0s", "max_streams": 0, "queue_size": 0,
        "bands": [{"name": "x", "lo": 5, "hi": 2}, {"name": "y", "lo": 1, "hi": 2}],
        "artifact_threshold": -1,
        "ports": {"inputs": [], "outputs": [{"name": "output", "subject": "a.*"}]},
    }));
    let paths: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "components.feat.config.ports.outputs[0].name",
            "components.feat.config.ports.outputs[0].subject",
            "components.feat.config.ports.outputs",
            "components.feat.config.ports.inputs",
            "components.feat.config.sampling_rate",
            "components.feat.config.bands[0].lo",
            "components.feat.config.channel_names[1]",
            "components.feat.config.artifact_threshold",
            "components.feat.config.key_path",
            "components.feat.config.stream_idle_timeout",
            "components.feat.config.max_streams",
            "components.feat.config.queue_size",
        ],
        "{errs:#?}"
    );
    // Unknown fields, also inside a band.
    let errs = errors_of(with(
        &base,
        json!({"bands": [{"name": "y", "lo": 1, "hi": 2, "width": 1}], "windows": 2}),
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("components.feat.config.windows: unknown field")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("components.feat.config.bands[0].width: unknown field")),
        "{errs:?}"
    );

    let errs = errors_of(json!({"channel_names": ["F3"], "ports": ports("out")}));
    assert_eq!(
        errs,
        ["components.feat.config.sampling_rate: required field is missing"]
    );
    let errs = errors_of(with(&base, json!({"key_path": "$.meta.window"})));
    assert!(
        errs[0].starts_with(
            "components.feat.config.key_path: the key is written to the output under \"window\""
        ),
        "{errs:?}"
    );
    let errs = errors_of(with(&base, json!({"stream_idle_timeout": "soon"})));
    assert!(
        errs[0].starts_with("components.feat.config.stream_idle_timeout: "),
        "{errs:?}"
    );
}

#[test]
fn registration_builds_or_reports_paths() {
    let reg = registration();
    assert_eq!(reg.name, "eeg_features");
    assert_eq!(reg.kinds, [fednode_kit::ComponentKind::Processor]);
    let node = NodeIdentity::default();
    let cx = BuildContext {
        instance: "feat",
        path: "components.feat.config",
        node: &node,
    };
    let ok = (reg.build)(&cx, &small(json!({})));
    assert!(ok.is_ok());
    let Err(errs) = (reg.build)(&cx, &small(json!({"overlap": 2}))) else {
        panic!("overlap 2 must fail")
    };
    assert_eq!(
        errs[0].to_string(),
        "components.feat.config.overlap: overlap must be in [0, 1), got 2"
    );
    let comp = ok.ok().unwrap();
    assert_eq!(
        comp.ports().output("out").unwrap().as_str(),
        "feat.{user_id}"
    );
    assert_eq!(comp.describe()["window_samples"], 16);
}
