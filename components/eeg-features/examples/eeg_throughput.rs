//! Run with: cargo run --release -p fednode-eeg-features --example eeg_throughput
//!
//! Pushes real JSON raw messages through the real `eeg_features` component
//! on the memory bus and reports its throughput: 1,000 streams (users) of
//! 8 channels at 256 Hz, one sample per message, shaped as the
//! `eeg_simulator` emits them
//! (`{"type":"raw","user_id":"u17","timestamp":…,"channels":[8 floats]}`,
//! full-precision floats, on `eeg.<user>.raw`), interleaved sample by
//! sample across users. The payloads are generated before the clock
//! starts (one second per user, replayed; the component windows by sample
//! index, not by timestamp). A publisher task feeds the bus, keeping at
//! most 32,768 messages in flight so nothing is dropped (it sleeps, rather
//! than spins, while the component catches up); a subscriber counts the
//! feature messages on `features.<user>`.
//!
//! Prints samples/s (multichannel samples and channel values), windows/s,
//! the mean feature computation per window (from
//! `eeg_features_window_compute_seconds`), peak RSS (`VmHWM`), and, when
//! `python3` with numpy and scipy is available, the time scipy takes for
//! the same window (`scipy.signal.welch` + trapezoids, 8 × 512 values, the
//! functions of `scripts/eeg_reference.py`) and the ratio.
//!
//! Arguments: `[streams=1000] [seconds=10]`. The target is real time for
//! 1,000 streams: 256,000 samples/s (2.05 M channel values/s).

use bytes::Bytes;
use fednode_eeg_features::{Config, EegFeatures};
use fednode_kit::{testing, Bus, Component, Message, Overflow, SubscribeOptions, TryPublish};
use serde::Serialize;
use serde_json::json;
use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FS: usize = 256;
const CHANNELS: [&str; 8] = ["Fz", "F3", "F4", "Cz", "C3", "C4", "Pz", "P3"];
const IN_FLIGHT: u64 = 32_768;

/// The simulator's message shape and member order.
#[derive(Serialize)]
struct Raw<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: &'a str,
    timestamp: i64,
    channels: &'a [f64],
}

/// Gaussian-ish noise from a seeded generator (sum of uniforms).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..4 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            s += (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        }
        (s - 2.0) * 1.7
    }
}

/// One second of messages for user `u` (alpha, theta and beta sines plus
/// noise, in µV, as the simulator's defaults).
fn one_second(u: usize, user: &str, t0: i64) -> Vec<Bytes> {
    let mut noise = Noise(0x5EED ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut ch = [0.0f64; 8];
    (0..FS)
        .map(|i| {
            let t = i as f64 / FS as f64;
            for (c, v) in ch.iter_mut().enumerate() {
                let p = c as f64 * 0.3;
                *v = 20.0 * (TAU * 10.0 * t + p).sin()
                    + 10.0 * (TAU * 6.0 * t + p).sin()
                    + 5.0 * (TAU * 20.0 * t + p).sin()
                    + 3.0 * noise.next();
            }
            let msg = Raw {
                kind: "raw",
                user_id: user,
                timestamp: t0 + (i as f64 * 1000.0 / FS as f64) as i64,
                channels: &ch,
            };
            Bytes::from(serde_json::to_vec(&msg).unwrap())
        })
        .collect()
}

/// A line of /proc/self/status in kB.
fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A metric value from the Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const SCIPY: &str = r#"
import sys, timeit
sys.path.insert(0, sys.argv[1])
import numpy as np, scipy
from eeg_reference import welch, band_power, DEFAULT_BANDS
fs, n = 256.0, 256
x = np.random.default_rng(1).normal(0, 10, (8, 512))
def window():
    f, p = welch(x, fs, n)
    for b in DEFAULT_BANDS:
        band_power(f, p, b[1], b[2], 1.0)
    band_power(f, p, 1.0, 45.0, 1.0)
reps = 200
best = min(timeit.repeat(window, number=reps, repeat=20)) / reps
print(best * 1e6, scipy.__version__)
"#;

/// µs per window for scipy, and its version.
fn scipy_window_us() -> Option<(f64, String)> {
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts");
    let out = std::process::Command::new("python3")
        .args(["-c", SCIPY, scripts])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "scipy timing unavailable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.to_string()))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let streams: usize = args
        .next()
        .map_or(1000, |a| a.parse().expect("a stream count"));
    let seconds: usize = args
        .next()
        .map_or(10, |a| a.parse().expect("seconds per stream"));
    assert!(seconds >= 2, "a window needs 2 s of samples");

    let t0_ms = 1_704_844_800_000i64;
    let users: Vec<String> = (0..streams).map(|u| format!("u{u}")).collect();
    let subjects: Vec<Arc<str>> = users
        .iter()
        .map(|u| format!("eeg.{u}.raw").into())
        .collect();
    let per_user: Vec<Vec<Bytes>> = users
        .iter()
        .enumerate()
        .map(|(u, name)| one_second(u, name, t0_ms))
        .collect();
    // In publishing order: sample i of every user, then sample i + 1.
    let pool: Vec<Vec<(Arc<str>, Bytes)>> = (0..FS)
        .map(|i| {
            subjects
                .iter()
                .zip(&per_user)
                .map(|(s, msgs)| (s.clone(), msgs[i].clone()))
                .collect()
        })
        .collect();
    drop(per_user);
    let bytes: usize = pool.iter().flatten().map(|(_, b)| b.len()).sum();
    let baseline_kb = status_kb("VmRSS:").unwrap_or(0);

    let cfg = json!({
        "sampling_rate": FS, "channel_names": CHANNELS,
        "max_streams": streams.max(1),
        "ports": {"inputs": [{"name": "in", "subject": "eeg.*.raw"}],
                  "outputs": [{"name": "out", "subject": "features.{user_id}"}]},
    });
    let comp = Arc::new(EegFeatures::new(
        Config::parse(&cfg, "components.feat.config").expect("valid config"),
    ));
    let (ctx, bus, metrics) = testing::context("feat");
    let mut out = bus
        .subscribe(
            "features.>",
            SubscribeOptions {
                capacity: 1 << 16,
                overflow: Overflow::Block,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    comp.clone().start(ctx.clone()).await.unwrap();

    let total = (streams * seconds * FS) as u64;
    let expected_windows = (streams * (seconds - 1)) as u64;
    let counter = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(1024);
        let mut n = 0u64;
        while n < expected_windows {
            buf.clear();
            if out.next_many(&mut buf, 1024).await == 0 {
                break;
            }
            n += buf.len() as u64;
        }
        (n, Instant::now())
    });

    let started = Instant::now();
    let publisher = {
        let (bus, comp) = (bus.clone(), comp.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            for _ in 0..seconds {
                for row in &pool {
                    for (subject, payload) in row {
                        let msg = Message::new(subject.clone(), payload.clone());
                        if let TryPublish::WouldWait(msg) = bus.try_publish(msg) {
                            bus.publish(msg).await.unwrap();
                        }
                        sent += 1;
                        if sent.is_multiple_of(1024) {
                            // Far enough ahead: sleep rather than spin, so
                            // the publisher takes no CPU from the component.
                            while sent - comp.samples() > IN_FLIGHT {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    }
                }
            }
        })
    };
    publisher.await.unwrap();
    let (windows, done) = counter.await.unwrap();
    let elapsed = done.duration_since(started).as_secs_f64();
    let peak_kb = status_kb("VmHWM:").unwrap_or(0);
    let live = comp.streams_active();
    testing::stop(&ctx).await;

    let text = metrics.render();
    let dropped = metric(&text, "bus_messages_dropped_total");
    let compute_sum = metric(&text, "eeg_features_window_compute_seconds_sum");
    let compute_n = metric(&text, "eeg_features_window_compute_seconds_count");
    let compute_us = compute_sum / compute_n.max(1.0) * 1e6;
    assert_eq!(comp.samples(), total, "every sample processed");
    assert_eq!(windows, expected_windows, "every window received");

    let sps = total as f64 / elapsed;
    println!(
        "eeg_features: {streams} streams × {seconds} s × {FS} Hz × 8 channels, one sample per message \
         ({:.0} B/message), memory bus",
        bytes as f64 / (streams * FS) as f64
    );
    println!(
        "  {total} samples in {elapsed:.3} s: {:.0} samples/s ({:.2} M channel values/s), {:.2}× real time for {streams} streams",
        sps,
        sps * 8.0 / 1e6,
        sps / (streams * FS) as f64
    );
    println!(
        "  {windows} windows: {:.0} windows/s; feature computation {compute_us:.1} µs per window (mean, in the component)",
        windows as f64 / elapsed
    );
    println!(
        "  peak RSS (VmHWM) {:.1} MiB with {live} live streams; {:.1} MiB before the component started \
         (of which {:.1} MiB pre-generated payloads); bus drops: {dropped}",
        peak_kb as f64 / 1024.0,
        baseline_kb as f64 / 1024.0,
        bytes as f64 / (1 << 20) as f64
    );
    match scipy_window_us() {
        Some((us, version)) => println!(
            "  scipy {version} welch + 6 trapezoids, same 8×512 window: {us:.1} µs per window = {:.1}× the component's \
             feature computation; scipy alone for these {windows} windows: {:.2} s",
            us / compute_us,
            us * windows as f64 / 1e6
        ),
        None => println!("  (scipy timing skipped: python3 with numpy and scipy not found)"),
    }
}
