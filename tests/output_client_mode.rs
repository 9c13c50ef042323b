//! The `websocket` output in client mode: pushing to a real
//! `websocket_input` server (the input's registration on its own memory
//! bus), acknowledged delivery
//! across a hub restart, exact resends against a scripted hub, and the
//! state machine's health.

#[path = "../components/websocket-output/tests/common/mod.rs"]
mod common;

use common::{publish, start, Node};
use fednode_kit::component::BuildContext;
use fednode_kit::memory::MemoryBus;
use fednode_kit::{
    testing, AdminError, AdminRequest, Bus, Component, Context, NodeIdentity, StartError,
    SubscribeOptions,
};
use fednode_testkit::{merge, wait_until, ClosedPort};
use fednode_websocket_input::WebSocketInput;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;

struct Hub {
    comp: Arc<WebSocketInput>,
    ctx: Context,
    bus: MemoryBus,
}

impl Hub {
    /// The port the hub listens on.
    fn port(&self) -> u16 {
        self.comp.local_addr().expect("a listening hub").port()
    }

    /// `ws://127.0.0.1:PORT/ingest`.
    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ingest", self.port())
    }
}

/// A `websocket_input` server on a port of its own (see [`Hub::port`]),
/// publishing to `hub.data`.
async fn hub(extra: Value) -> Hub {
    try_hub(0, extra).await.expect("hub starts")
}

/// A hub on `port`, the port an earlier hub had and the edge keeps
/// dialling; the start is retried while that port is still in use.
async fn hub_again(port: u16, extra: Value) -> Hub {
    fednode_testkit::rebind("the restarted hub", || try_hub(port, extra.clone())).await
}

async fn try_hub(port: u16, extra: Value) -> Result<Hub, StartError> {
    let mut cfg = json!({
        "mode": "server",
        "server": {"http_port": port, "bind": "127.0.0.1", "path": "/ingest"},
        "ports": {"outputs": [{"name": "ws_data", "subject": "hub.data"}]}
    });
    merge(&mut cfg, extra);
    let node = NodeIdentity {
        id: "hub".into(),
        region: None,
        data_dir: None,
    };
    let cx = BuildContext {
        instance: "ws_in",
        path: "c",
        node: &node,
    };
    let comp = fednode_websocket_input::build(&cx, &cfg).unwrap_or_else(|e| panic!("{e:?}"));
    let (ctx, bus, _m) = testing::context("ws_in");
    comp.clone().start(ctx.clone()).await?;
    Ok(Hub { comp, ctx, bus })
}

/// A client-mode output pushing `data.>` to `url`.
async fn edge(url: &str, extra: Value) -> Node {
    let mut cfg = json!({
        "mode": "client",
        "client": {"url": url, "reconnect": {"initial_interval": "20ms", "max_interval": "100ms", "max_retries": 0}},
        "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
    });
    merge(&mut cfg, extra);
    start(cfg).await
}

#[tokio::test]
async fn pushes_to_a_real_websocket_input_and_answers_its_requests() {
    std::env::set_var("WSO_CLIENT_TOKEN", "edge-secret");
    let auth = json!({"type": "bearer", "bearer_token_env": "WSO_CLIENT_TOKEN"});
    let hub = hub(json!({"auth": auth, "delivery": "at_least_once"})).await;
    let mut arrived = hub
        .bus
        .subscribe("hub.data", SubscribeOptions::default())
        .await
        .unwrap();
    let edge = edge(
        &hub.url(),
        json!({"auth": auth, "delivery": "at_least_once"}),
    )
    .await;
    wait_until(common::WAIT, "connected", || {
        edge.out.health().status == "connected"
    })
    .await;
    assert!(edge.out.health().healthy);

    for n in 0..100 {
        publish(&edge.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    for n in 0..100 {
        let m = tokio::time::timeout(common::WAIT, arrived.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.meta.id.as_deref(), Some(format!("m{n}").as_str()));
        assert_eq!(
            serde_json::from_slice::<Value>(&m.payload).unwrap(),
            json!({"n": n})
        );
    }
    // Every one acknowledged: nothing left in flight.
    wait_until(common::WAIT, "acks", || {
        edge.metric("websocket_output_acks_received_total", &[]) == 100.0
    })
    .await;
    assert_eq!(edge.out.describe()["connections"][0]["in_flight"], 0);

    // The operator asks the hub through the edge (the input answers status).
    let r = edge
        .out
        .admin_request(AdminRequest {
            method: "status".into(),
            params: json!({}),
            connection: None,
        })
        .await
        .unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    // And the hub asks the edge: a rate limit for the link.
    let r = hub
        .comp
        .admin_request(AdminRequest {
            method: "backpressure".into(),
            params: json!({"rate_limit": 10}),
            connection: None,
        })
        .await
        .unwrap();
    let replies = r["replies"].as_object().unwrap();
    assert_eq!(replies.len(), 1, "{r}");
    assert_eq!(
        replies.values().next().unwrap()["result"]["adjusted_to"],
        10.0
    );
    assert_eq!(edge.out.describe()["connections"][0]["rate_limit"], 10.0);
    assert_eq!(edge.out.describe()["connection_state"], "connected");
    edge.stop().await;
    testing::stop(&hub.ctx).await;
}

#[tokio::test]
async fn at_least_once_loses_nothing_across_a_hub_restart() {
    const N: usize = 3000;
    let first = hub(json!({"delivery": "at_least_once"})).await;
    let port = first.port();
    let mut sub_a = first
        .bus
        .subscribe("hub.data", SubscribeOptions::default())
        .await
        .unwrap();
    let edge = edge(
        &first.url(),
        json!({"delivery": "at_least_once", "backpressure": {"queue_size": 10000}}),
    )
    .await;
    wait_until(common::WAIT, "connected", || {
        edge.out.health().status == "connected"
    })
    .await;

    let bus = edge.bus.clone();
    let publisher = tokio::spawn(async move {
        for n in 0..N {
            publish(&bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
            if n % 20 == 19 {
                // Pacing, not waiting: the stream outlasts the restart.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    // Restart the hub mid-stream.
    let mut seen = HashSet::new();
    while seen.len() < N / 3 {
        let m = tokio::time::timeout(common::WAIT, sub_a.next())
            .await
            .unwrap()
            .unwrap();
        seen.insert(m.meta.id.unwrap().to_string());
    }
    testing::stop(&first.ctx).await;
    while let Some(m) = sub_a.try_next() {
        seen.insert(m.meta.id.unwrap().to_string());
    }
    let before_restart = seen.len();
    let second = hub_again(port, json!({"delivery": "at_least_once"})).await;
    let mut sub_b = second
        .bus
        .subscribe("hub.data", SubscribeOptions::default())
        .await
        .unwrap();
    while seen.len() < N {
        let m = tokio::time::timeout(common::WAIT, sub_b.next())
            .await
            .unwrap_or_else(|_| panic!("stalled with {} of {N}", seen.len()))
            .unwrap();
        seen.insert(m.meta.id.unwrap().to_string());
    }
    publisher.await.unwrap();
    assert!(before_restart < N, "the restart happened mid-stream");
    assert!(edge.metric("websocket_output_reconnect_attempts_total", &[]) >= 1.0);
    edge.stop().await;
    testing::stop(&second.ctx).await;
}

/// A scripted hub: accepts connections and hands each to the test.
async fn scripted_hub() -> (
    String,
    tokio::sync::mpsc::Receiver<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                if tx.send(ws).await.is_err() {
                    break;
                }
            }
        }
    });
    (url, rx)
}

async fn read_data(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Value {
    loop {
        match tokio::time::timeout(common::WAIT, ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap()
        {
            Ws::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "data" {
                    return v;
                }
            }
            _ => continue,
        }
    }
}

async fn ack(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, id: &str) {
    ws.send(Ws::Text(
        json!({"type": "ack", "id": id}).to_string().into(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn unacknowledged_data_is_resent_first_after_a_reconnect() {
    let (url, mut sessions) = scripted_hub().await;
    let edge = edge(&url, json!({"delivery": "at_least_once"})).await;
    let mut s1 = sessions.recv().await.unwrap();
    wait_until(common::WAIT, "connected", || {
        edge.out.health().status == "connected"
    })
    .await;
    for n in 0..10 {
        publish(&edge.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(read_data(&mut s1).await["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids, (0..10).map(|n| format!("m{n}")).collect::<Vec<_>>());
    // The hub acknowledges four, nacks one, and drops the connection.
    for id in &ids[..4] {
        ack(&mut s1, id).await;
    }
    s1.send(Ws::Text(
        json!({"type": "nack", "id": "m4", "payload": {"reason": "full"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    wait_until(common::WAIT, "acks", || {
        edge.metric("websocket_output_acks_received_total", &[]) == 4.0
    })
    .await;
    wait_until(common::WAIT, "nack", || {
        edge.metric(
            "websocket_output_messages_dropped_total",
            &[("reason", "nack")],
        ) == 1.0
    })
    .await;
    drop(s1);
    wait_until(common::WAIT, "reconnecting", || {
        edge.out.health().status != "connected"
    })
    .await;
    assert!(edge.out.health().healthy, "reconnecting is healthy");
    for n in 10..13 {
        publish(&edge.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    let mut s2 = sessions.recv().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(read_data(&mut s2).await["id"].as_str().unwrap().to_string());
    }
    // The unacknowledged five again, then what was queued meanwhile.
    assert_eq!(ids, ["m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12"]);
    edge.stop().await;
}

#[tokio::test]
async fn max_in_flight_pauses_sending_until_acks_come() {
    let (url, mut sessions) = scripted_hub().await;
    let edge = edge(
        &url,
        json!({"delivery": "at_least_once", "max_in_flight": 3}),
    )
    .await;
    let mut s = sessions.recv().await.unwrap();
    wait_until(common::WAIT, "connected", || {
        edge.out.health().status == "connected"
    })
    .await;
    for n in 0..6 {
        publish(&edge.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    for n in 0..3 {
        assert_eq!(read_data(&mut s).await["id"], format!("m{n}"));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), read_data(&mut s))
            .await
            .is_err(),
        "a fourth was sent with three unacknowledged"
    );
    ack(&mut s, "m0").await;
    assert_eq!(read_data(&mut s).await["id"], "m3");
    edge.stop().await;
}

#[tokio::test]
async fn a_client_that_gives_up_is_unhealthy() {
    // Nothing listens there (and nothing can start to, while it is held).
    let closed = ClosedPort::new();
    let edge = edge(
        &format!("ws://{}/nothing", closed.addr()),
        json!({"client": {"reconnect": {"max_retries": 2, "initial_interval": "20ms", "max_interval": "40ms"}}}),
    )
    .await;
    let h = edge.out.health();
    assert!(h.healthy, "connecting or reconnecting is healthy: {h:?}");
    wait_until(common::WAIT, "failed", || !edge.out.health().healthy).await;
    let h = edge.out.health();
    assert_eq!(h.status, "failed");
    assert!(
        h.details["last_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{h:?}"
    );
    assert_eq!(
        edge.metric("websocket_output_connection_state", &[("state", "failed")]),
        1.0
    );
    assert_eq!(
        edge.metric(
            "websocket_output_connection_state",
            &[("state", "connected")]
        ),
        0.0
    );
    let r = edge
        .out
        .admin_request(AdminRequest {
            method: "status".into(),
            params: json!({}),
            connection: None,
        })
        .await;
    assert!(matches!(r, Err(AdminError::Unavailable(_))), "{r:?}");
    edge.stop().await;
}
