//! The simulator on the memory bus.

use fednode_kit::{testing, Bus, Component, SubscribeOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn simulator(cfg: Value) -> Arc<fednode_eeg_simulator::Simulator> {
    Arc::new(fednode_eeg_simulator::Simulator::new(
        fednode_eeg_simulator::Config::parse(&cfg, "c").unwrap(),
    ))
}

#[tokio::test]
async fn realtime_pacing_per_user_subjects_and_shape() {
    let sim = simulator(json!({
        "sampling_rate": 100, "channel_names": ["F3", "F4"], "user_ids": ["jamie", "alex"],
        "ports": {"outputs": [{"name": "out", "subject": "eeg.{user_id}.raw"}]}
    }));
    let (ctx, bus, _) = testing::context("sim");
    let mut jamie = bus
        .subscribe("eeg.jamie.raw", SubscribeOptions::default())
        .await
        .unwrap();
    let mut alex = bus
        .subscribe("eeg.alex.raw", SubscribeOptions::default())
        .await
        .unwrap();
    let t0 = Instant::now();
    sim.clone().start(ctx.clone()).await.unwrap();
    let mut n = 0;
    while n < 50 {
        let m = tokio::time::timeout(Duration::from_secs(5), jamie.next())
            .await
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], "raw");
        assert_eq!(v["user_id"], "jamie");
        assert_eq!(v["channels"].as_array().unwrap().len(), 2);
        n += 1;
    }
    // 50 samples at 100 Hz take about half a second, not much less.
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    let m = alex.next().await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&m.payload).unwrap()["user_id"],
        "alex"
    );
    testing::stop(&ctx).await;
}

#[tokio::test]
async fn batches_and_stops_at_max_samples() {
    let sim = simulator(json!({
        "sampling_rate": 256, "user_ids": ["u"], "samples_per_message": 32,
        "pacing": "as_fast_as_possible", "max_samples": 256,
        "ports": {"outputs": [{"name": "out", "subject": "raw"}]}
    }));
    let (ctx, bus, _) = testing::context("sim");
    let mut sub = bus
        .subscribe("raw", SubscribeOptions::default())
        .await
        .unwrap();
    sim.clone().start(ctx.clone()).await.unwrap();
    let mut samples = 0;
    while samples < 256 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let batch = v["samples"].as_array().unwrap();
        assert_eq!(batch.len(), 32);
        assert_eq!(batch[0].as_array().unwrap().len(), 8);
        samples += batch.len();
    }
    testing::stop(&ctx).await;
    assert_eq!(sim.samples(), 256);
    assert!(sub.try_next().is_none());
}

#[test]
fn config_errors_name_paths() {
    let errs = fednode_eeg_simulator::Config::parse(
        &json!({"sampling_rate": 100, "components": [{"frequency": 60, "amplitude": 1}],
                "ports": {"outputs": [{"name": "out", "subject": "x"}]}}),
        "components.sim.config",
    )
    .unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "components.sim.config.components[0].frequency: expected a frequency in [0, 50) Hz (below Nyquist), got 60"
    );
}
