//! A model behind a hub: reads the features the edges push to a hub from
//! the hub's consumer feed (a `websocket` output), prints one line per
//! features message, and for every Nth features message of a user sends a
//! workload prediction for that user back on the same socket, as a data
//! envelope:
//!
//! `{"type":"data","id":…,"timestamp":…,"payload":{"type":"prediction","user_id":"user-1","prediction_type":"workload","timestamp":…,"data":{"workload":0.61,"level":"high","confidence":0.9,"window":12}}}`
//!
//! The hub's output publishes what its peers send on its `ws_upstream`
//! port; `configs/hub.json` routes it back down to the edge that sent that
//! user's data, and the edge to the device connection of that user (try it
//! with `--example relay_simulator` in front of `configs/edge-push.json`).
//! The frames are described in docs/protocol.md.
//!
//! Run with: fednode run configs/hub.json          (the hub: consumers on :8082/feed)
//! and:      cargo run --release --example predictions_consumer
//!
//! Arguments: `[--url URL] [--every N] [--seconds S]`: URL defaults to
//! ws://127.0.0.1:8082/feed, N to 3; without `--seconds` it runs until
//! Ctrl-C. A dropped connection is retried (backoff 0.5 s to 5 s). Exit 1
//! when no connection succeeded.
//!
//! Output, on stdout:
//! `features user-1 window 4: workload 0.412, confidence 0.87, from edge-01 (eu-west)`
//! `prediction sent for user-1: workload high (0.612)`

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/client.rs"]
mod client;
use client::{now_ms, Args, FIRST_BACKOFF};

const USAGE: &str = "usage: predictions_consumer [--url URL] [--every N] [--seconds S]";
const DEFAULT_URL: &str = "ws://127.0.0.1:8082/feed";

/// What the consumer counted, across reconnects.
#[derive(Default)]
struct Counts {
    /// Features messages per user.
    features: HashMap<String, u64>,
    predictions: u64,
    /// Whether any connection succeeded.
    connected: bool,
}

/// The workload prediction for one features message.
fn predict(features: &Value, user: &str) -> (Value, String) {
    let workload = features["workload"].as_f64().unwrap_or(0.0);
    let level = match workload {
        w if w >= 0.6 => "high",
        w if w >= 0.3 => "medium",
        _ => "low",
    };
    let prediction = json!({
        "type": "prediction",
        "user_id": user,
        "prediction_type": "workload",
        "timestamp": now_ms(),
        "data": {
            "workload": workload,
            "level": level,
            "confidence": features["confidence"],
            "window": features["window"]["index"],
        },
    });
    (prediction, format!("workload {level} ({workload:.3})"))
}

/// One line for a features message.
fn describe(user: &str, env: &Value) -> String {
    let f = &env["payload"];
    let num = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.3}"));
    let mut line = format!(
        "features {user} window {}: workload {}, confidence {}",
        f["window"]["index"],
        num(&f["workload"]),
        num(&f["confidence"]),
    );
    if let Some(node) = env["origin"]["node"].as_str() {
        line += &format!(", from {node}");
        if let Some(region) = env["origin"]["region"].as_str() {
            line += &format!(" ({region})");
        }
    }
    line
}

/// One connection: read features, answer every Nth one per user, until
/// the connection ends (`Err`) or `until` passes (`Ok`).
async fn session(opts: &Args, counts: &mut Counts, until: Option<Instant>) -> Result<(), String> {
    let (ws, _response) = connect_async(opts.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", opts.url))?;
    eprintln!("predictions_consumer: connected to {}", opts.url);
    counts.connected = true;
    let (mut sink, mut stream) = ws.split();
    let deadline = async {
        match until {
            Some(u) => tokio::time::sleep_until(u).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = &mut deadline => {
                let _ = sink.close().await;
                return Ok(());
            }
        };
        let text = match msg {
            None => return Err("the hub closed the connection".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) => return Err("the hub closed the connection".into()),
            Some(Ok(_)) => continue, // pings are answered by tungstenite; no msgpack here
        };
        let Ok(env) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        // Data envelopes only (not acks or replies), holding features.
        if env["type"] != "data" || env["payload"]["type"] != "features" {
            continue;
        }
        let Some(user) = env["payload"]["user_id"].as_str() else {
            continue;
        };
        println!("{}", describe(user, &env));
        let n = counts.features.entry(user.to_string()).or_default();
        *n += 1;
        if !n.is_multiple_of(opts.count) {
            continue;
        }
        let (prediction, summary) = predict(&env["payload"], user);
        let envelope = json!({"type": "data", "id": uuid::Uuid::new_v4().to_string(),
            "timestamp": now_ms(), "payload": prediction});
        sink.send(Message::text(envelope.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        counts.predictions += 1;
        println!("prediction sent for {user}: {summary}");
    }
}

#[tokio::main]
async fn main() {
    let opts = client::args("predictions_consumer", USAGE, DEFAULT_URL, "--every", 3);
    let until = opts
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut counts = Counts::default();
    let mut backoff = FIRST_BACKOFF;
    let run = async {
        loop {
            match session(&opts, &mut counts, until).await {
                Ok(()) => return,
                Err(e) => {
                    if until.is_some_and(|u| Instant::now() + backoff >= u) {
                        eprintln!("predictions_consumer: {e}");
                        return;
                    }
                    eprintln!("predictions_consumer: {e}; connecting again in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = client::next_backoff(backoff);
                }
            }
        }
    };
    tokio::select! {
        _ = run => {}
        _ = tokio::signal::ctrl_c() => eprintln!("predictions_consumer: interrupted"),
    }
    let features: u64 = counts.features.values().sum();
    eprintln!(
        "predictions_consumer: done, {features} features messages from {} user(s), {} predictions sent",
        counts.features.len(),
        counts.predictions
    );
    if !counts.connected {
        std::process::exit(1);
    }
}
