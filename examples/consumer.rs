//! Reads a fednode `websocket` output with plain `tokio-tungstenite`: connect,
//! send a `subscribe` request so the node sends only the data matching a
//! filter, print the reply (on stderr), then print each data payload as one
//! JSON line on stdout. A dropped connection is retried after a short
//! backoff, subscribing again (a subscription lives as long as its
//! connection). The frames are described in docs/protocol.md.
//!
//! Run with: cargo run --release -- run configs/demo.json   (in one terminal)
//! and:      cargo run --release --example consumer         (in another)
//! It works the same against configs/ingest.json fed by `--example producer`.
//!
//! Arguments: `[URL] [PATH OP VALUE] [--count N]`. URL defaults to
//! ws://127.0.0.1:8080/features, the filter to `$.user_id == jamie` (VALUE is
//! JSON when it parses as JSON, else a string); `--count N` stops after N
//! data messages, else it runs until Ctrl-C. For example:
//! cargo run --release --example consumer -- '$.workload' '>' 0.2 --count 5

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const USAGE: &str = "usage: consumer [URL] [PATH OP VALUE] [--count N]";
const DEFAULT_URL: &str = "ws://127.0.0.1:8080/features";
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Options {
    url: String,
    filter: Value,
    count: Option<u64>,
}

/// How one connection ended: `--count` reached, dropped (retry), or refused.
enum End {
    Done,
    Lost(String),
    Fatal(String),
}

fn parse_args() -> Result<Options, String> {
    let (mut words, mut count) = (Vec::new(), None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => {
                let n = args.next().ok_or("--count needs a number")?;
                let parsed = n.parse::<u64>();
                count = Some(parsed.map_err(|_| format!("--count: not a number: {n:?}"))?);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => words.push(arg),
        }
    }
    let (url, filter) = match words.as_slice() {
        [] => (DEFAULT_URL, None),
        [url] => (url.as_str(), None),
        [p, op, v] => (DEFAULT_URL, Some((p, op, v))),
        [url, p, op, v] => (url.as_str(), Some((p, op, v))),
        _ => return Err("expected a URL and/or the three words PATH OP VALUE".into()),
    };
    let filter = match filter {
        Some((p, op, v)) => {
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v.as_str()));
            json!({"path": p, "operator": op, "value": value})
        }
        None => json!({"path": "$.user_id", "operator": "==", "value": "jamie"}),
    };
    Ok(Options {
        url: url.to_string(),
        filter,
        count,
    })
}

/// The next JSON text frame; `Ok(None)` once the connection is closed.
async fn next_json(ws: &mut Ws) -> Result<Option<Value>, String> {
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| e.to_string())? {
            Message::Text(text) => {
                if let Ok(v) = serde_json::from_str(&text) {
                    return Ok(Some(v));
                }
            }
            Message::Close(_) => return Ok(None),
            _ => {} // pings are answered by tungstenite; no binary (msgpack) here
        }
    }
    Ok(None)
}

/// One connection: subscribe, then print data until it ends.
async fn session(opts: &Options, received: &mut u64, backoff: &mut Duration) -> End {
    let mut ws = match connect_async(opts.url.as_str()).await {
        Ok((ws, _response)) => ws,
        Err(e) => return End::Lost(format!("cannot connect to {}: {e}", opts.url)),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let request = json!({"type": "request", "id": id,
        "payload": {"method": "subscribe", "params": {"filter": opts.filter}}});
    if let Err(e) = ws.send(Message::text(request.to_string())).await {
        return End::Lost(e.to_string());
    }
    // Data arriving before our reply may not be filtered yet: skip it.
    let mut subscribed = false;
    loop {
        let env = match next_json(&mut ws).await {
            Err(e) => return End::Lost(e),
            Ok(None) => return End::Lost("the node closed the connection".into()),
            Ok(Some(env)) => env,
        };
        if env["type"] == "reply" && env["id"] == id {
            eprintln!("reply: {env}");
            if env["payload"]["status"] != "ok" {
                return End::Fatal(format!("subscribe refused: {}", env["payload"]));
            }
            subscribed = true;
            *backoff = FIRST_BACKOFF;
        } else if subscribed && env["type"] == "data" {
            println!("{}", env["payload"]);
            *received += 1;
            if opts.count.is_some_and(|n| *received >= n) {
                let _ = ws.close(None).await;
                return End::Done;
            }
        }
    }
}

/// Reconnect until `--count` is reached or the subscription is refused.
async fn consume(opts: &Options) -> Result<(), String> {
    let (mut received, mut backoff) = (0, FIRST_BACKOFF);
    loop {
        match session(opts, &mut received, &mut backoff).await {
            End::Done => return Ok(()),
            End::Fatal(e) => return Err(e),
            End::Lost(e) => {
                eprintln!("consumer: {e}; reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let opts = parse_args().unwrap_or_else(|e| {
        eprintln!("consumer: {e}\n{USAGE}");
        std::process::exit(1);
    });
    eprintln!("consumer: {} with filter {}", opts.url, opts.filter);
    tokio::select! {
        r = consume(&opts) => {
            if let Err(e) = r {
                eprintln!("consumer: {e}");
                std::process::exit(1);
            }
        }
        _ = tokio::signal::ctrl_c() => eprintln!("consumer: interrupted"),
    }
}
