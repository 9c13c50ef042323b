//! Helpers: a started component on a memory bus, raw WebSocket peers, waits.

use bytes::Bytes;
use fednode_kit::bus::{Message, SubscribeOptions, Subscription};
use fednode_kit::envelope::{Encoding, Envelope, Kind};
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{BuildContext, Component, Context, NodeIdentity};
pub use fednode_testkit::{merge, wait_until};
use fednode_websocket_input::build;
use fednode_websocket_input::WebSocketInput;
use fednode_ws::frame::{classify, encode, Incoming, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous bound for anything that should happen "at once".
pub const SOON: Duration = Duration::from_secs(5);

pub struct Node {
    pub comp: Arc<WebSocketInput>,
    pub ctx: Context,
    pub bus: MemoryBus,
    pub metrics: Arc<Metrics>,
}

/// Build and start a `websocket_input` named `ws_in` from `config`.
pub async fn start(config: Value) -> Node {
    let (ctx, bus, metrics) = fednode_kit::testing::context("ws_in");
    let node = NodeIdentity {
        id: "test-node".into(),
        region: Some("test".into()),
        data_dir: None,
    };
    let cx = BuildContext {
        instance: "ws_in",
        path: "components.ws_in.config",
        node: &node,
    };
    let comp = match build(&cx, &config) {
        Ok(c) => c,
        Err(errs) => panic!("config errors: {errs:?}"),
    };
    comp.clone().start(ctx.clone()).await.expect("start");
    Node {
        comp,
        ctx,
        bus,
        metrics,
    }
}

/// A server-mode config on 127.0.0.1, port 0 (the OS picks; see
/// [`Node::url`]), data on `data`, with `extra` merged in (see
/// [`fednode_testkit::merge`]).
pub fn server_config(extra: Value) -> Value {
    let mut base = json!({
        "mode": "server",
        "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"},
        "ports": {"outputs": [{"name": "ws_data", "subject": "data"}]}
    });
    merge(&mut base, extra);
    base
}

impl Node {
    pub fn url(&self) -> String {
        let addr = self.comp.local_addr().expect("server mode is bound");
        let path = self
            .comp
            .settings()
            .server
            .as_ref()
            .map_or("/".to_string(), |s| s.path.clone());
        format!("ws://{addr}{path}")
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("component", "ws_in")];
        all.extend_from_slice(labels);
        self.metrics.value(name, &all).unwrap_or(0.0)
    }

    /// `websocket_input_messages_dropped_total` for one `reason`.
    pub fn dropped(&self, reason: &str) -> f64 {
        self.metric(
            "websocket_input_messages_dropped_total",
            &[("reason", reason)],
        )
    }

    pub async fn subscribe(&self, subject: &str) -> Subscription {
        self.subscribe_with(subject, SubscribeOptions::default())
            .await
    }

    /// A subscriber with room for `capacity` messages; `overflow` says what
    /// a full one does to the publisher.
    pub async fn subscribe_bounded(
        &self,
        subject: &str,
        capacity: usize,
        overflow: fednode_kit::bus::Overflow,
    ) -> Subscription {
        self.subscribe_with(
            subject,
            SubscribeOptions {
                capacity,
                overflow,
                ..Default::default()
            },
        )
        .await
    }

    async fn subscribe_with(&self, subject: &str, opts: SubscribeOptions) -> Subscription {
        use fednode_kit::Bus;
        self.bus.subscribe(subject, opts).await.expect("subscribe")
    }

    /// Wait until metric `name{labels}` reaches `want`.
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        wait_until(SOON, format!("{name}{labels:?} to reach {want}"), || {
            self.metric(name, labels) >= want
        })
        .await;
    }

    pub fn health(&self) -> fednode_kit::Health {
        self.comp.health()
    }

    /// `health().details.queue.depth` (read from the queue itself).
    pub fn queue_depth(&self) -> u64 {
        self.health().details["queue"]["depth"].as_u64().unwrap()
    }

    pub async fn stop(&self) {
        fednode_kit::testing::stop(&self.ctx).await;
    }
}

/// Connect as a raw peer.
pub async fn connect(url: &str, auth: Option<&str>) -> Ws {
    try_connect(url, auth).await.expect("connect")
}

pub async fn try_connect(
    url: &str,
    auth: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let auth = auth.map(|a| ("authorization", a));
    try_connect_with(url, auth.as_slice()).await
}

/// Connect as a raw peer that puts `headers` on its upgrade request.
pub async fn connect_with(url: &str, headers: &[(&'static str, &str)]) -> Ws {
    try_connect_with(url, headers).await.expect("connect")
}

pub async fn try_connect_with(
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status a refused upgrade got.
pub async fn refused_status(url: &str, auth: Option<&str>) -> u16 {
    match try_connect(url, auth).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

pub fn text(v: &Value) -> WsMessage {
    WsMessage::Text(v.to_string().into())
}

pub fn data(id: &str, payload: Value) -> WsMessage {
    text(&json!({"type": "data", "id": id, "timestamp": 1_704_844_800_000i64, "payload": payload}))
}

pub async fn send(ws: &mut Ws, msg: WsMessage) {
    ws.send(msg).await.expect("send");
}

/// The next envelope from the node (skipping pings), within `SOON`.
pub async fn next_envelope(ws: &mut Ws) -> (Envelope, Encoding) {
    loop {
        let msg = tokio::time::timeout(SOON, ws.next())
            .await
            .expect("an envelope in time")
            .expect("open")
            .expect("frame");
        match classify(msg) {
            Incoming::Envelope(e, enc) => return (e, enc),
            Incoming::Control => continue,
            other => panic!("expected an envelope, got {other:?}"),
        }
    }
}

/// The next envelope of `kind` (others skipped).
pub async fn next_of(ws: &mut Ws, kind: Kind) -> Envelope {
    loop {
        let (e, _) = next_envelope(ws).await;
        if e.kind == kind {
            return e;
        }
    }
}

/// The close code the node sends next (data frames skipped).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(SOON, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(WsMessage::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before a close frame: {e}"),
            None => return None,
        }
    }
}

/// The next bus message within `SOON`.
pub async fn next_msg(sub: &mut Subscription) -> Message {
    tokio::time::timeout(SOON, sub.next())
        .await
        .expect("a bus message in time")
        .expect("subscription open")
}

pub fn json_of(m: &Message) -> Value {
    serde_json::from_slice(&m.payload).expect("payload is JSON")
}

/// Send a request envelope and return its id.
pub async fn request(ws: &mut Ws, method: &str, params: Value, encoding: Encoding) -> String {
    let env = Envelope::request(method, &params);
    send(ws, encode(&env, encoding)).await;
    env.id.to_string()
}

pub fn bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// Hold the input's publisher: `first` is published into a subscriber on
/// `data` with room for one message that nobody reads, and `second` is
/// taken off the queue by the publisher, which then waits for room. From
/// here on the queue only fills, until the test reads the subscriber.
pub async fn hold_publisher(
    node: &Node,
    ws: &mut Ws,
    first: WsMessage,
    second: WsMessage,
) -> Subscription {
    let sub = node
        .subscribe_bounded("data", 1, fednode_kit::bus::Overflow::Block)
        .await;
    let received = node.metric("websocket_input_messages_received_total", &[]);
    send(ws, first).await;
    wait_until(SOON, "the first message parked in the subscriber", || {
        sub.len() == 1
    })
    .await;
    send(ws, second).await;
    wait_until(SOON, "the publisher to hold the second", || {
        node.metric("websocket_input_messages_received_total", &[]) == received + 2.0
            && node.queue_depth() == 0
    })
    .await;
    sub
}
