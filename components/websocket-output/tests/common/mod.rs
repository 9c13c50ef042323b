//! Shared helpers: start an output on 127.0.0.1 with a memory bus, publish
//! numbered messages, and talk to it with a tokio-tungstenite peer.
#![allow(dead_code)]

use bytes::Bytes;
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{testing, Bus, Component, Context, Message, Meta};
use fednode_testkit::merge;
use fednode_websocket_output::{Config, WebSocketOutput};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

pub struct Node {
    pub out: Arc<WebSocketOutput>,
    pub ctx: Context,
    pub bus: MemoryBus,
    pub metrics: Arc<Metrics>,
    pub url: String,
}

impl Node {
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("component", "ws_out")];
        all.extend_from_slice(labels);
        self.metrics.value(name, &all).unwrap_or(0.0)
    }

    pub async fn stop(&self) {
        testing::stop(&self.ctx).await;
    }
}

/// Start a server-mode output reading `data.>` with `extra` merged into its
/// config (listening on 127.0.0.1, a free port).
pub async fn server(extra: Value) -> Node {
    let mut cfg = json!({
        "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ws"},
        "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
    });
    merge(&mut cfg, extra);
    start(cfg).await
}

pub async fn start(cfg: Value) -> Node {
    let (ctx, bus, metrics) = testing::context("ws_out");
    start_on(cfg, ctx, bus, metrics).await
}

pub async fn start_on(cfg: Value, ctx: Context, bus: MemoryBus, metrics: Arc<Metrics>) -> Node {
    let settings = Config::parse(&cfg, "c").expect("valid config");
    let out = Arc::new(WebSocketOutput::new(settings));
    out.clone().start(ctx.clone()).await.expect("starts");
    let url = match out.local_addr() {
        Some(a) => format!("ws://{a}/ws"),
        None => String::new(),
    };
    Node {
        out,
        ctx,
        bus,
        metrics,
        url,
    }
}

/// Publish `payload` on `subject` with envelope id `id`.
pub async fn publish(bus: &MemoryBus, subject: &str, payload: Value, id: &str) {
    publish_at(
        bus,
        subject,
        payload,
        id,
        Some(fednode_kit::envelope::now_millis()),
    )
    .await;
}

pub async fn publish_at(bus: &MemoryBus, subject: &str, payload: Value, id: &str, ts: Option<i64>) {
    let msg =
        Message::new(subject, Bytes::from(serde_json::to_vec(&payload).unwrap())).with_meta(Meta {
            id: Some(id.into()),
            timestamp: ts,
            ..Meta::default()
        });
    bus.publish(msg).await.unwrap();
}

/// A WebSocket peer. Frames read while waiting for a reply are kept for
/// the next `data()` call, so order is never lost.
pub struct Peer {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    backlog: VecDeque<(Value, bool)>,
}

impl Peer {
    pub async fn connect(url: &str) -> Peer {
        Self::connect_with(url, None).await.expect("connects")
    }

    pub async fn connect_with(
        url: &str,
        auth: Option<&str>,
    ) -> Result<Peer, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request().unwrap();
        if let Some(a) = auth {
            req.headers_mut()
                .insert("authorization", a.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Peer {
            ws,
            backlog: VecDeque::new(),
        })
    }

    /// A peer on a stream already open.
    pub fn wrap(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Peer {
        Peer {
            ws,
            backlog: VecDeque::new(),
        }
    }

    /// Connect and wait until the output has registered this connection
    /// (a `status` round trip), so no data published afterwards is missed.
    pub async fn ready(url: &str) -> Peer {
        let mut p = Self::connect(url).await;
        let r = p.call("status", json!({})).await;
        assert_eq!(r["status"], "ok", "{r}");
        p
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Ws::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn send_msgpack(&mut self, v: Value) {
        self.ws
            .send(Ws::Binary(Bytes::from(
                rmp_serde::to_vec_named(&v).unwrap(),
            )))
            .await
            .unwrap();
    }

    /// Send a request; returns its id.
    pub async fn request(&mut self, method: &str, params: Value) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.send(json!({"type": "request", "id": id, "timestamp": 1, "payload": {"method": method, "params": params}}))
            .await;
        id
    }

    /// The next frame as JSON and whether it was binary; None on close.
    pub async fn frame(&mut self, wait: Duration) -> Option<(Value, bool)> {
        loop {
            let m = tokio::time::timeout(wait, self.ws.next())
                .await
                .expect("a frame in time")?
                .ok()?;
            match m {
                Ws::Text(t) => {
                    return Some((serde_json::from_str(t.as_str()).expect("JSON frame"), false))
                }
                Ws::Binary(b) => {
                    return Some((rmp_serde::from_slice(&b).expect("MessagePack frame"), true))
                }
                Ws::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Read until the reply to `id`; data read meanwhile is kept.
    pub async fn reply_to(&mut self, id: &str) -> Value {
        loop {
            let (v, bin) = self.frame(WAIT).await.expect("connection open");
            if v["type"] == "reply" && v["id"] == id {
                return v;
            }
            self.backlog.push_back((v, bin));
        }
    }

    /// A request and its reply payload.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.reply_to(&id).await["payload"].clone()
    }

    /// The next frame (kept ones first).
    pub async fn next(&mut self) -> Value {
        if let Some((v, _)) = self.backlog.pop_front() {
            return v;
        }
        self.frame(WAIT).await.expect("connection open").0
    }

    /// The next data envelope.
    pub async fn data(&mut self) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], "data", "expected data, got {v}");
        v
    }

    /// The data frames that arrive before the one with id `last`: a
    /// sentinel the test published after them, which must come within
    /// `WAIT`. Frames reach a peer in the order they were published, so
    /// whatever was going to arrive before the sentinel has: "these and
    /// no others", without a quiet period to wait out.
    pub async fn data_until(&mut self, last: &str) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let v = self.next().await;
            if v["type"] != "data" {
                continue;
            }
            if v["id"] == last {
                return got;
            }
            got.push(v);
        }
    }

    /// Data frames arriving within `wait` (after the kept ones): for
    /// proving that nothing (more) comes, where no sentinel can.
    pub async fn data_within(&mut self, wait: Duration) -> Vec<Value> {
        let mut got: Vec<Value> = self.backlog.drain(..).map(|(v, _)| v).collect();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Ws::Text(t)))) => got.push(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Some(Ok(Ws::Binary(b)))) => got.push(rmp_serde::from_slice(&b).unwrap()),
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        got.into_iter().filter(|v| v["type"] == "data").collect()
    }
}

/// The ids in the output's replay buffer, oldest first.
pub async fn buffered_ids(node: &Node) -> Vec<String> {
    let b = node.out.buffer(None, None).await.expect("a running output");
    b["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("an id").to_string())
        .collect()
}

/// Waits until the fan-out has taken every message up to id `last` off
/// the bus: `last` is the newest in the replay buffer. The fan-out puts a
/// batch in the buffer and hands it to the connections in one synchronous
/// step, so on a test's (single-threaded) runtime everything published so
/// far is then in the connections' queues, or in the peers' sockets.
pub async fn wait_fanned_out(node: &Node, last: &str) {
    fednode_testkit::wait_until_async(WAIT, format!("{last} to be fanned out"), || async move {
        buffered_ids(node).await.last().map(String::as_str) == Some(last)
    })
    .await;
}

/// `payload.n` of each data envelope.
pub fn ns(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| f["payload"]["n"].as_i64().unwrap())
        .collect()
}

/// The error code of a reply payload.
pub fn code(reply: &Value) -> &str {
    assert_eq!(reply["status"], "error", "{reply}");
    reply["error"]["code"].as_str().unwrap()
}
