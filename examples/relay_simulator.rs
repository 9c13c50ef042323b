//! A relay of EEG headsets in front of an edge node: each simulated device
//! holds its own WebSocket connection to the edge's device input and
//! streams 8 channels (Fz F3 F4 Cz C3 C4 Pz P3) at 256 Hz for its own user,
//! in batches of 32 samples (8 messages a second per device), as plain
//! JSON:
//!
//! `{"type":"raw","user_id":"user-1","timestamp":<ms of the first sample>,"samples":[[…8…], …32…]}`
//!
//! Each channel is a mix of theta (6 Hz), alpha (10 Hz) and beta (20 Hz)
//! sines whose weights drift slowly, differently per device, plus noise, so
//! the features (and the workload) computed downstream move over time.
//! Whatever the edge sends back on a device's socket (predictions for its
//! user, routed by the edge's `ws_downstream` port) is printed as it comes,
//! one line each: `prediction for user-1: {…}`. Once a second a line says
//! how many messages were sent and predictions received so far.
//!
//! Run with: fednode run configs/edge-push.json   (the edge: devices on :8765/device)
//! and:      cargo run --release --example relay_simulator
//!
//! Arguments: `[--url URL] [--devices N] [--seconds S]`: URL defaults to
//! ws://127.0.0.1:8765/device, N to 4 (users user-1 … user-N); without
//! `--seconds` it runs until Ctrl-C. A device whose connection drops
//! connects again (backoff 0.5 s to 5 s). Exit 1 when nothing could be
//! sent at all.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/client.rs"]
mod client;
use client::{now_ms, FIRST_BACKOFF};

const USAGE: &str = "usage: relay_simulator [--url URL] [--devices N] [--seconds S]";
const DEFAULT_URL: &str = "ws://127.0.0.1:8765/device";
const RATE: u64 = 256;
const CHANNELS: usize = 8;
const BATCH: u64 = 32;

/// Uniform noise from a tiny xorshift generator.
struct Noise(u64);

impl Noise {
    /// A value in [-1, 1).
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// One device: its user, its signal and what it counted.
struct Device {
    user: String,
    /// Sets the drift of its rhythms apart from the other devices'.
    phase: f64,
    sent: AtomicU64,
    predictions: AtomicU64,
}

impl Device {
    /// Sample number `n` (at `RATE` Hz), in µV: per channel theta, alpha
    /// and beta sines, weighted by slow drifts (periods of 20 and 30 s),
    /// plus ±5 µV of noise.
    fn sample(&self, n: u64, noise: &mut Noise) -> Vec<f64> {
        let t = n as f64 / RATE as f64;
        let theta = 12.0 + 8.0 * (TAU * t / 20.0 + self.phase).sin();
        let alpha = 15.0 + 10.0 * (TAU * t / 30.0 + 2.0 * self.phase).cos();
        let beta = 6.0 + 3.0 * (TAU * t / 25.0 + self.phase).sin();
        (0..CHANNELS)
            .map(|c| {
                let shift = 0.3 * c as f64;
                let v = theta * (TAU * 6.0 * t + shift).sin()
                    + alpha * (TAU * 10.0 * t + shift).sin()
                    + beta * (TAU * 20.0 * t + shift).sin()
                    + 5.0 * noise.uniform();
                (v * 100.0).round() / 100.0
            })
            .collect()
    }
}

/// A prediction (or whatever else the edge sends down) in a frame: the
/// payload of a data envelope, or the frame itself when it is plain JSON.
/// Replies, requests and acks are not data.
fn data_of(frame: &str) -> Option<Value> {
    let mut v: Value = serde_json::from_str(frame).ok()?;
    match v["type"].as_str() {
        Some("data") if v.get("payload").is_some() => Some(v["payload"].take()),
        Some("reply" | "request") if v.get("payload").is_some() => None,
        Some("ack" | "nack") => None,
        _ => Some(v),
    }
}

/// Stream one device's samples until `until`, connecting again when the
/// connection drops. The sample clock keeps running while disconnected (a
/// headset does not wait), so the batches resume at the current time.
async fn run_device(dev: Arc<Device>, url: String, seed: u64, until: Option<Instant>) {
    let mut noise = Noise(seed);
    let start = Instant::now();
    let start_ms = now_ms();
    let mut backoff = FIRST_BACKOFF;
    let expired = || until.is_some_and(|u| Instant::now() >= u);
    while !expired() {
        let ws = match connect_async(url.as_str()).await {
            Ok((ws, _response)) => ws,
            Err(e) => {
                eprintln!(
                    "relay_simulator: {}: cannot connect to {url}: {e}; again in {backoff:?}",
                    dev.user
                );
                tokio::time::sleep(backoff).await;
                backoff = client::next_backoff(backoff);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        let (mut sink, mut stream) = ws.split();
        // What comes back: printed as it arrives.
        let reader = {
            let dev = dev.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    if let Some(data) = data_of(&text) {
                        dev.predictions.fetch_add(1, Ordering::Relaxed);
                        println!("prediction for {}: {data}", dev.user);
                    }
                }
            })
        };
        // Batches on the sample clock: batch k holds samples [32k, 32k + 32).
        let period = Duration::from_secs(1) * BATCH as u32 / RATE as u32;
        let elapsed = start.elapsed().as_nanos() / period.as_nanos();
        let mut k = elapsed as u64;
        let mut tick = tokio::time::interval_at(start + period * (k as u32 + 1), period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let lost = loop {
            tick.tick().await;
            if expired() {
                break None;
            }
            if reader.is_finished() {
                break Some("the edge closed the connection".into());
            }
            let first = k * BATCH;
            let samples: Vec<Vec<f64>> = (first..first + BATCH)
                .map(|n| dev.sample(n, &mut noise))
                .collect();
            let msg = json!({"type": "raw", "user_id": dev.user,
                "timestamp": start_ms + first * 1000 / RATE, "samples": samples});
            if let Err(e) = sink.send(Message::text(msg.to_string())).await {
                break Some(e.to_string());
            }
            dev.sent.fetch_add(1, Ordering::Relaxed);
            k += 1;
        };
        match lost {
            None => {
                let _ = sink.close().await;
                // Predictions still on their way are read until the edge
                // answers the close (at most 2 s).
                let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
                return;
            }
            Some(e) => {
                reader.abort();
                eprintln!(
                    "relay_simulator: {}: {e}; connecting again in {backoff:?}",
                    dev.user
                );
                tokio::time::sleep(backoff).await;
                backoff = client::next_backoff(backoff);
            }
        }
    }
}

fn totals(devices: &[Arc<Device>]) -> (u64, u64) {
    devices.iter().fold((0, 0), |(s, p), d| {
        (
            s + d.sent.load(Ordering::Relaxed),
            p + d.predictions.load(Ordering::Relaxed),
        )
    })
}

#[tokio::main]
async fn main() {
    let opts = client::args("relay_simulator", USAGE, DEFAULT_URL, "--devices", 4);
    let devices: Vec<Arc<Device>> = (0..opts.count as usize)
        .map(|i| {
            Arc::new(Device {
                user: format!("user-{}", i + 1),
                phase: i as f64 * 1.7,
                sent: AtomicU64::new(0),
                predictions: AtomicU64::new(0),
            })
        })
        .collect();
    let until = opts
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    eprintln!(
        "relay_simulator: {} device(s) × {CHANNELS} channels at {RATE} Hz, {BATCH} samples a message, to {}",
        devices.len(),
        opts.url
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (i, dev) in devices.iter().enumerate() {
        let seed = 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        tasks.spawn(run_device(dev.clone(), opts.url.clone(), seed, until));
    }
    let mut second = tokio::time::interval_at(
        Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut elapsed = 0u64;
    loop {
        tokio::select! {
            _ = second.tick() => {
                elapsed += 1;
                let (sent, predictions) = totals(&devices);
                println!("{elapsed:>4} s: {sent} messages sent, {predictions} predictions received");
            }
            done = tasks.join_next() => {
                if done.is_none() {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("relay_simulator: interrupted");
                break;
            }
        }
    }
    let (sent, predictions) = totals(&devices);
    eprintln!("relay_simulator: done, {sent} messages sent, {predictions} predictions received");
    if sent == 0 {
        std::process::exit(1);
    }
}
