//! Sends EEG-like data to a node's `websocket_input` with plain
//! `tokio-tungstenite`: per user, 8 channels (Fz F3 F4 Cz C3 C4 Pz P3) at
//! 256 Hz, each sample one data envelope `{"type":"data","id":…,"timestamp":…,
//! "payload":{"type":"raw","user_id":…,"timestamp":ms,"channels":[…8 floats…]}}`.
//! Every channel is an alpha-band sine (9–12 Hz, by user) plus noise. Each
//! 1/256 s tick sends one sample per user in one go (fed, then flushed once),
//! paced in real time; a line per second says how many were sent so far.
//!
//! configs/demo.json has no websocket_input, so use configs/ingest.json: a
//! `websocket_input` server on ws://127.0.0.1:8081/ingest publishing to
//! `eeg.{user_id}.raw`, `eeg_features` (same 8 channels, 256 Hz) publishing
//! `user.{user_id}.features`, and a `websocket` output serving `user.>` on
//! ws://127.0.0.1:8080/features (admin on ${FEDNODE_ADMIN:-127.0.0.1:9090}).
//!
//! Run with: cargo run --release -- run configs/ingest.json   (in one terminal)
//! and:      cargo run --release --example producer           (in another)
//! and:      cargo run --release --example consumer           (in a third)
//! The consumer then prints jamie's features, one a second after the first 2 s.
//!
//! Arguments: `[URL] [--users N] [--seconds S]`: URL defaults to
//! ws://127.0.0.1:8081/ingest, N to 2 (users jamie, alex, sam, kim, then
//! user5, user6, …), S to 10.

use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::f64::consts::TAU;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const USAGE: &str = "usage: producer [URL] [--users N] [--seconds S]";
const RATE: u32 = 256;
const CHANNELS: usize = 8;
const NAMES: [&str; 4] = ["jamie", "alex", "sam", "kim"];

struct Options {
    url: String,
    users: u64,
    seconds: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        url: "ws://127.0.0.1:8081/ingest".to_string(),
        users: 2,
        seconds: 10,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--users" => opts.users = positive(&arg, args.next())?,
            "--seconds" => opts.seconds = positive(&arg, args.next())?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => opts.url = arg,
        }
    }
    Ok(opts)
}

/// The whole number above 0 given after `flag`.
fn positive(flag: &str, value: Option<String>) -> Result<u64, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a number"))?;
    let n = v.parse::<u64>().ok().filter(|&n| n > 0);
    n.ok_or_else(|| format!("{flag}: expected a whole number above 0, got {v:?}"))
}

/// Uniform noise from a tiny xorshift generator (no `rand` dependency).
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

/// One sample of user number `user` at `t` seconds, in µV: per channel an
/// alpha sine (its own amplitude and phase) plus ±4 µV of noise.
fn sample(user: usize, t: f64, noise: &mut Noise) -> Vec<f64> {
    let freq = 9.0 + (user % 4) as f64; // 9, 10, 11 or 12 Hz
    (0..CHANNELS)
        .map(|c| {
            let (amplitude, phase) = (20.0 - 1.5 * c as f64, 0.4 * c as f64);
            let v = amplitude * (TAU * freq * t + phase).sin() + 4.0 * noise.uniform();
            (v * 100.0).round() / 100.0
        })
        .collect()
}

async fn produce(opts: &Options) -> Result<(), String> {
    let (mut ws, _response) = connect_async(opts.url.as_str()).await.map_err(|e| {
        let hint = "is a node running? cargo run --release -- run configs/ingest.json";
        format!("cannot connect to {}: {e} ({hint})", opts.url)
    })?;
    let users: Vec<String> = (0..opts.users as usize)
        .map(|i| {
            NAMES
                .get(i)
                .map_or_else(|| format!("user{}", i + 1), |n| n.to_string())
        })
        .collect();
    eprintln!(
        "producer: {} user(s) × {CHANNELS} channels at {RATE} Hz for {} s to {}",
        users.len(),
        opts.seconds,
        opts.url
    );
    let broken = |e: WsError| format!("the connection to {} failed: {e}", opts.url);
    let rate = u64::from(RATE);
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    let mut sent = 0u64;
    for i in 0..opts.seconds * rate {
        tick.tick().await;
        let (t, timestamp) = (i as f64 / rate as f64, start_ms + i * 1000 / rate);
        for (u, user) in users.iter().enumerate() {
            let channels = sample(u, t, &mut noise);
            let envelope = json!({"type": "data", "id": uuid::Uuid::new_v4().to_string(),
                "timestamp": timestamp, "payload": {"type": "raw", "user_id": user,
                "timestamp": timestamp, "channels": channels}});
            ws.feed(Message::text(envelope.to_string()))
                .await
                .map_err(broken)?;
        }
        ws.flush().await.map_err(broken)?;
        sent += users.len() as u64;
        if (i + 1) % rate == 0 {
            println!("{:>4} s: {sent} sent", (i + 1) / rate);
        }
    }
    ws.close(None).await.map_err(broken)?;
    // Read until the node answers our close frame (at most 2 s).
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    eprintln!("producer: done, {sent} messages sent");
    Ok(())
}

#[tokio::main]
async fn main() {
    let opts = parse_args().unwrap_or_else(|e| {
        eprintln!("producer: {e}\n{USAGE}");
        std::process::exit(1);
    });
    if let Err(e) = produce(&opts).await {
        eprintln!("producer: {e}");
        std::process::exit(1);
    }
}
