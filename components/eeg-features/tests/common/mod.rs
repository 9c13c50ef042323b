//! The harness the component tests share: the component on a memory bus,
//! a subscription to its output, its metrics, and the small config and
//! samples the tests write windows from.

#![allow(dead_code)]

use bytes::Bytes;
use fednode_eeg_features::{Config, EegFeatures};
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{
    testing, Bus, Component, Context, Message, Meta, SubscribeOptions, Subscription,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const INPUT: &str = "eeg.raw";
/// Generous bound for anything that should happen "at once".
pub const SOON: Duration = Duration::from_secs(5);

/// `base` with `extra` merged in ([`fednode_testkit::merge`]).
pub fn with(base: &Value, extra: Value) -> Value {
    let mut cfg = base.clone();
    fednode_testkit::merge(&mut cfg, extra);
    cfg
}

pub fn ports(out: &str) -> Value {
    json!({"inputs": [{"name": "in", "subject": "eeg.>"}],
           "outputs": [{"name": "out", "subject": out}]})
}

/// 16 Hz, two channels, 1 s windows (16 samples, hop 8), two bands: small
/// enough to write windows by hand.
pub fn small(extra: Value) -> Value {
    with(
        &json!({
            "sampling_rate": 16, "channel_names": ["F3", "F4"],
            "window_seconds": 1, "overlap": 0.5,
            "bands": [{"name": "low", "lo": 1, "hi": 4}, {"name": "high", "lo": 4, "hi": 8}],
            "ports": ports("feat.{user_id}"),
        }),
        extra,
    )
}

/// A deterministic, non-trivial value for sample `i`, channel `c`.
pub fn value(i: usize, c: usize) -> f64 {
    10.0 * (i as f64 * 0.7 + c as f64).sin() + (i % 3) as f64 + 0.25 * c as f64
}

pub fn sample(i: usize) -> Value {
    json!([value(i, 0), value(i, 1)])
}

pub struct Harness {
    pub comp: Arc<EegFeatures>,
    pub ctx: Context,
    pub bus: MemoryBus,
    pub metrics: Arc<Metrics>,
    pub out: Subscription,
}

impl Harness {
    /// The component with config `cfg`, and a subscription to everything
    /// (its input included).
    pub async fn start(cfg: Value) -> Self {
        Self::start_reading(cfg, ">", SubscribeOptions::default().capacity).await
    }

    /// The component with config `cfg`, and a subscription to `pattern`
    /// holding up to `capacity` messages.
    pub async fn start_reading(cfg: Value, pattern: &str, capacity: usize) -> Self {
        let cfg = Config::parse(&cfg, "components.feat.config").unwrap();
        let comp = Arc::new(EegFeatures::new(cfg));
        let (ctx, bus, metrics) = testing::context("feat");
        let opts = SubscribeOptions {
            capacity,
            ..SubscribeOptions::default()
        };
        let out = bus.subscribe(pattern, opts).await.unwrap();
        comp.clone().start(ctx.clone()).await.unwrap();
        Harness {
            comp,
            ctx,
            bus,
            metrics,
            out,
        }
    }

    pub async fn send_text(&self, text: &str) {
        let msg = Message::new(INPUT, Bytes::copy_from_slice(text.as_bytes()));
        self.bus.publish(msg).await.unwrap();
    }

    pub async fn send(&self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// The next feature message (skipping our own input, which `>` sees).
    pub async fn recv(&mut self) -> (String, Value, Meta) {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.out.next())
                .await
                .expect("a feature message within 5 s")
                .expect("subscription open");
            if &*m.subject == INPUT {
                continue;
            }
            let v = serde_json::from_slice(&m.payload).unwrap();
            return (m.subject.to_string(), v, m.meta);
        }
    }

    /// Wait for everything sent so far to be processed and published, then
    /// check nothing else was: `windows` feature messages in total.
    ///
    /// Callers first wait until the component has counted every sample
    /// sent; it counts a batch before it publishes the batch's windows, so
    /// the pause covers those publishes and proves the negative (no extra
    /// output). A sentinel input cannot do it here: it would show in the
    /// very counters the tests then check.
    pub async fn expect_no_more(&mut self) {
        tokio::time::sleep(Duration::from_millis(30)).await;
        while let Some(m) = self.out.try_next() {
            assert_eq!(&*m.subject, INPUT, "unexpected output {:?}", m.payload);
        }
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("component", "feat")];
        all.extend_from_slice(labels);
        self.metrics.value(name, &all).unwrap_or(0.0)
    }

    pub fn rejected(&self, reason: &str) -> f64 {
        self.metric("eeg_features_rejected_total", &[("reason", reason)])
    }

    /// Samples the component has dealt with: accepted, or refused for any
    /// reason (summed over every `reason` label it has).
    pub fn handled(&self) -> f64 {
        let refused: f64 = self
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("eeg_features_rejected_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        self.metric("eeg_features_samples_total", &[]) + refused
    }

    pub async fn stop(self) {
        testing::stop(&self.ctx).await;
    }
}

pub fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// The windows of a clean run: samples `0..n` of `sample`, one per message,
/// with timestamps `ts(i)`.
pub async fn reference_windows(n: usize, ts: impl Fn(usize) -> i64) -> Vec<Value> {
    reference_windows_of("u", n, ts).await
}

/// [`reference_windows`] for the stream of `user`.
pub async fn reference_windows_of(user: &str, n: usize, ts: impl Fn(usize) -> i64) -> Vec<Value> {
    let mut h = Harness::start(small(json!({}))).await;
    for i in 0..n {
        h.send(json!({"user_id": user, "timestamp": ts(i), "channels": sample(i)}))
            .await;
    }
    let mut out = Vec::new();
    for _ in 0..(n - 16) / 8 + 1 {
        out.push(h.recv().await.1);
    }
    h.stop().await;
    out
}
