//! Client mode against a throwaway WebSocket server the test controls:
//! reconnect after the server dies and comes back (with `replay {after_id}`
//! under at_least_once), FAILED after max_retries, 401 is fatal.

use crate::common::*;
use fednode_kit::envelope::{Encoding, Envelope, Kind, ReplyPayload};
use fednode_websocket_input::ConnectionState;
use fednode_ws::frame::encode;
use serde_json::{json, Value};
use std::sync::Once;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::WebSocketStream;

pub type PeerWs = WebSocketStream<TcpStream>;

/// A WebSocket server on 127.0.0.1 handing each accepted connection (and
/// the `Authorization` header it came with) to the test.
pub struct TestServer {
    pub port: u16,
    conns: mpsc::Receiver<(PeerWs, Option<String>)>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Listen on `port` (0: any; a port that an earlier server had is
    /// bound again, retried while it is still in use); refuse with 401
    /// unless the header equals `require` when given.
    pub async fn start(port: u16, require: Option<&'static str>) -> Self {
        let listener = match port {
            0 => TcpListener::bind(("127.0.0.1", 0)).await.expect("bind"),
            _ => {
                fednode_testkit::rebind("the restarted test server", || {
                    TcpListener::bind(("127.0.0.1", port))
                })
                .await
            }
        };
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut seen = None;
                    #[allow(clippy::result_large_err)] // tungstenite's callback signature
                    let check =
                        |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                            seen = req
                                .headers()
                                .get(http::header::AUTHORIZATION)
                                .map(|v| v.to_str().unwrap().to_string());
                            match require {
                                Some(r) if seen.as_deref() != Some(r) => {
                                    let mut e = ErrorResponse::new(Some("unauthorized".into()));
                                    *e.status_mut() = http::StatusCode::UNAUTHORIZED;
                                    Err(e)
                                }
                                _ => Ok(resp),
                            }
                        };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await {
                        let _ = tx.send((ws, seen)).await;
                    }
                });
            }
        });
        TestServer {
            port,
            conns: rx,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/federation", self.port)
    }

    pub async fn accept(&mut self) -> (PeerWs, Option<String>) {
        tokio::time::timeout(SOON, self.conns.recv())
            .await
            .expect("the node connects in time")
            .expect("server running")
    }

    /// Stop listening (connections already handed out are the test's).
    pub fn kill(self) {
        self.task.abort();
    }
}

static ENV: Once = Once::new();
fn env() {
    ENV.call_once(|| {
        std::env::set_var("WSI_CLIENT_GOOD", "right");
        std::env::set_var("WSI_CLIENT_BAD", "wrong");
    });
}

fn client_config(url: &str, max_retries: u32, extra: Value) -> Value {
    let mut c = json!({
        "mode": "client",
        "client": {"url": url, "reconnect": {
            "max_retries": max_retries, "initial_interval": "20ms", "max_interval": "100ms"
        }},
        "ports": {"outputs": [{"name": "out", "subject": "data"}]}
    });
    merge(&mut c, extra);
    c
}

pub async fn peer_send(ws: &mut PeerWs, env: &Envelope) {
    use futures::SinkExt;
    ws.send(encode(env, Encoding::Json)).await.unwrap();
}

pub async fn peer_next(ws: &mut PeerWs) -> Envelope {
    use fednode_ws::frame::{classify, Incoming};
    use futures::StreamExt;
    loop {
        let m = tokio::time::timeout(SOON, ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("frame");
        if let Incoming::Envelope(e, _) = classify(m) {
            return e;
        }
    }
}

fn data_env(id: &str, payload: Value) -> Envelope {
    let mut e = Envelope::data(bytes(&payload));
    e.id = id.into();
    e
}

async fn wait_state(node: &Node, state: ConnectionState) {
    wait_until(SOON, format!("connection state {state:?}"), || {
        node.comp.connection_state() == state
    })
    .await;
    assert_eq!(
        node.metric(
            "websocket_input_connection_state",
            &[("state", state.as_str())]
        ),
        1.0
    );
}

#[tokio::test]
async fn reconnects_after_the_server_restarts_and_asks_for_replay() {
    let mut server = TestServer::start(0, None).await;
    let port = server.port;
    let node = start(client_config(
        &server.url(),
        0,
        json!({"delivery": "at_least_once"}),
    ))
    .await;
    let mut sub = node.subscribe("data").await;
    let (mut ws, _) = server.accept().await;
    wait_state(&node, ConnectionState::Connected).await;
    assert_eq!(node.health().status, "connected");

    peer_send(&mut ws, &data_env("d1", json!({"n": 1}))).await;
    let m = next_msg(&mut sub).await;
    assert_eq!(json_of(&m), json!({"n": 1}));
    assert_eq!(m.meta.id.as_deref(), Some("d1"));
    let ack = peer_next(&mut ws).await;
    assert_eq!((ack.kind, ack.id.as_ref()), (Kind::Ack, "d1"));

    // Kill the server and the connection (no close frame).
    server.kill();
    drop(ws);
    wait_state(&node, ConnectionState::Reconnecting).await;
    let h = node.health();
    assert!(h.healthy, "reconnecting is healthy: {h:?}");
    assert_eq!(h.status, "reconnecting");

    // Same port again: the node reconnects and asks for what it missed.
    let mut server = TestServer::start(port, None).await;
    let (mut ws, _) = server.accept().await;
    wait_state(&node, ConnectionState::Connected).await;
    let req = peer_next(&mut ws).await;
    assert_eq!(req.kind, Kind::Request);
    assert_eq!(
        req.payload_value(),
        json!({"method": "replay", "params": {"after_id": "d1"}})
    );
    peer_send(
        &mut ws,
        &Envelope::reply(
            &req.id,
            &ReplyPayload::ok(json!({"messages_available": 1, "replay_started": true})),
        ),
    )
    .await;
    // The replayed duplicate is acked but not published again; new data flows.
    let mut again = data_env("d1", json!({"n": 1}));
    again.replay = true;
    peer_send(&mut ws, &again).await;
    peer_send(&mut ws, &data_env("d2", json!({"n": 2}))).await;
    assert_eq!(json_of(&next_msg(&mut sub).await), json!({"n": 2}));
    let a1 = peer_next(&mut ws).await;
    let a2 = peer_next(&mut ws).await;
    assert_eq!((a1.kind, a1.id.as_ref()), (Kind::Ack, "d1"));
    assert_eq!((a2.kind, a2.id.as_ref()), (Kind::Ack, "d2"));
    assert_eq!(node.dropped("duplicate"), 1.0);
    assert!(node.metric("websocket_input_reconnect_attempts_total", &[]) >= 1.0);
    assert_eq!(node.metric("websocket_input_connections_total", &[]), 2.0);
    node.stop().await;
}

#[tokio::test]
async fn fails_after_max_retries_and_turns_unhealthy() {
    let mut server = TestServer::start(0, None).await;
    let node = start(client_config(&server.url(), 2, json!({}))).await;
    let (ws, _) = server.accept().await;
    wait_state(&node, ConnectionState::Connected).await;
    server.kill();
    drop(ws);
    wait_state(&node, ConnectionState::Failed).await;
    let h = node.health();
    assert!(!h.healthy);
    assert_eq!(h.status, "failed");
    assert_eq!(h.details["state"], "failed");
    assert_eq!(
        node.metric("websocket_input_reconnect_attempts_total", &[]),
        2.0
    );
    for s in ["init", "connecting", "connected", "reconnecting"] {
        assert_eq!(
            node.metric("websocket_input_connection_state", &[("state", s)]),
            0.0
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn presents_the_credential_and_a_401_is_fatal() {
    env();
    let mut server = TestServer::start(0, Some("Bearer right")).await;
    let good = start(client_config(
        &server.url(),
        1,
        json!({"auth": {"type": "bearer", "bearer_token_env": "WSI_CLIENT_GOOD"}}),
    ))
    .await;
    let (_ws, auth) = server.accept().await;
    assert_eq!(auth.as_deref(), Some("Bearer right"));
    wait_state(&good, ConnectionState::Connected).await;

    let bad = start(client_config(
        &server.url(),
        1,
        json!({"auth": {"type": "bearer", "bearer_token_env": "WSI_CLIENT_BAD"}}),
    ))
    .await;
    wait_state(&bad, ConnectionState::Failed).await;
    let h = bad.health();
    assert!(!h.healthy);
    assert!(
        h.details["last_error"].as_str().unwrap().contains("401"),
        "{h:?}"
    );
    good.stop().await;
    bad.stop().await;
}

#[tokio::test]
async fn admin_request_goes_to_the_peer() {
    use fednode_kit::{AdminRequest, Component};
    let mut server = TestServer::start(0, None).await;
    let node = start(client_config(&server.url(), 0, json!({}))).await;
    let (mut ws, _) = server.accept().await;
    wait_state(&node, ConnectionState::Connected).await;
    let comp = node.comp.clone();
    let ask = tokio::spawn(async move {
        comp.admin_request(AdminRequest {
            method: "backpressure".into(),
            params: json!({"rate_limit": 100, "unit": "msg/sec"}),
            connection: None,
        })
        .await
    });
    let req = peer_next(&mut ws).await;
    assert_eq!(req.kind, Kind::Request);
    assert_eq!(req.payload_value()["method"], "backpressure");
    peer_send(
        &mut ws,
        &Envelope::reply(
            &req.id,
            &ReplyPayload::ok(json!({"current_rate": 250, "adjusted_to": 100})),
        ),
    )
    .await;
    let reply = ask.await.unwrap().unwrap();
    assert_eq!(
        reply,
        json!({"status": "ok", "result": {"current_rate": 250, "adjusted_to": 100}})
    );
    assert_eq!(
        node.metric(
            "websocket_input_requests_sent_total",
            &[("method", "backpressure")]
        ),
        1.0
    );
    assert_eq!(
        node.metric(
            "websocket_input_replies_received_total",
            &[("status", "ok")]
        ),
        1.0
    );
    node.stop().await;
}
