//! The control path: requests this node sends (correlation, timeouts,
//! too_many_requests, unknown replies), requests peers send (local
//! `status`, forwarding to `<control>.request`), and `<control>.send`.

use crate::common::*;
use fednode_kit::bus::{Meta, SubscribeOptions};
use fednode_kit::envelope::{Encoding, Envelope, Kind, ReplyPayload};
use fednode_kit::{AdminError, AdminRequest, Bus, Component};
use fednode_ws::frame::encode;
use serde_json::{json, Value};
use std::time::Duration;

fn admin(method: &str, params: Value, connection: Option<&str>) -> AdminRequest {
    AdminRequest {
        method: method.into(),
        params,
        connection: connection.map(str::to_string),
    }
}

fn conn_ids(node: &Node) -> Vec<String> {
    node.comp.describe()["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

async fn reply(ws: &mut Ws, id: &str, payload: &ReplyPayload) {
    send(ws, encode(&Envelope::reply(id, payload), Encoding::Json)).await;
}

#[tokio::test]
async fn correlation_out_of_order_timeout_and_too_many() {
    let node = start(server_config(json!({
        "bidirectional": {"request_timeout": "300ms", "max_concurrent_requests": 2}
    })))
    .await;
    let mut ws = connect(&node.url(), None).await;
    wait_until(SOON, "one connection", || conn_ids(&node).len() == 1).await;
    let conn = conn_ids(&node)[0].clone();

    let ask = |method: &'static str| {
        let comp = node.comp.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            comp.admin_request(admin(method, json!({"m": method}), Some(&conn)))
                .await
                .unwrap()
        })
    };
    let a = ask("alpha");
    let b = ask("beta");
    let ra = next_of(&mut ws, Kind::Request).await;
    let rb = next_of(&mut ws, Kind::Request).await;
    // Two in flight: a third is refused at once.
    let third = node
        .comp
        .admin_request(admin("gamma", json!({}), Some(&conn)))
        .await
        .unwrap();
    assert_eq!(third["status"], "error");
    assert_eq!(third["error"]["code"], "too_many_requests");
    // Answer out of order, each with its own method name.
    for r in [&rb, &ra] {
        let method = r.payload_value()["method"].clone();
        reply(&mut ws, &r.id, &ReplyPayload::ok(json!({"echo": method}))).await;
    }
    assert_eq!(
        a.await.unwrap(),
        json!({"status": "ok", "result": {"echo": "alpha"}})
    );
    assert_eq!(
        b.await.unwrap(),
        json!({"status": "ok", "result": {"echo": "beta"}})
    );

    // A reply nobody waits for is counted and dropped.
    reply(&mut ws, "no-such-request", &ReplyPayload::ok(json!({}))).await;
    node.wait_metric(
        "websocket_input_messages_dropped_total",
        &[("reason", "unknown_reply")],
        1.0,
    )
    .await;

    // A peer that never answers: timeout after request_timeout.
    let t0 = std::time::Instant::now();
    let silent = node
        .comp
        .admin_request(admin("silent", json!({}), Some(&conn)))
        .await
        .unwrap();
    assert_eq!(silent["error"]["code"], "timeout");
    assert!(t0.elapsed() >= Duration::from_millis(290));
    assert_eq!(
        node.metric("websocket_input_request_timeouts_total", &[]),
        1.0
    );
    assert_eq!(
        node.metric(
            "websocket_input_requests_sent_total",
            &[("method", "alpha")]
        ),
        1.0
    );
    assert_eq!(
        node.metric(
            "websocket_input_replies_received_total",
            &[("status", "ok")]
        ),
        2.0
    );

    // Unknown connection names are a 404.
    let err = node
        .comp
        .admin_request(admin("status", json!({}), Some("conn-999")))
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::NotFound(_)), "{err:?}");
    node.stop().await;
}

#[tokio::test]
async fn server_mode_asks_every_peer_and_control_send_answers_the_same() {
    let node = start(server_config(json!({}))).await;
    let mut p1 = connect(&node.url(), None).await;
    let p2 = connect(&node.url(), None).await;
    wait_until(SOON, "two connections", || conn_ids(&node).len() == 2).await;
    let ids = conn_ids(&node);

    // Each peer answers with its own name, whichever request reaches it.
    let answer = |mut ws: Ws, name: &'static str| {
        tokio::spawn(async move {
            for _ in 0..2 {
                let r = next_of(&mut ws, Kind::Request).await;
                reply(&mut ws, &r.id, &ReplyPayload::ok(json!({"peer": name}))).await;
            }
            ws
        })
    };
    // Learn which connection id is which peer from a first data frame.
    send(&mut p1, data("p1", json!({}))).await;
    node.wait_metric("websocket_input_messages_received_total", &[], 1.0)
        .await;
    let d = node.comp.describe();
    let p1_id = d["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["messages_received"] == 1)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let p2_id = ids.iter().find(|i| **i != p1_id).unwrap().clone();
    let h1 = answer(p1, "one");
    let h2 = answer(p2, "two");

    let all = node
        .comp
        .admin_request(admin("status", json!({}), None))
        .await
        .unwrap();
    assert_eq!(
        all,
        json!({"replies": {
            p1_id.clone(): {"status": "ok", "result": {"peer": "one"}},
            p2_id.clone(): {"status": "ok", "result": {"peer": "two"}},
        }})
    );

    // The same through a bus request on <control>.send (the default control
    // subject: this node and component, outside any data namespace).
    let body = json!({"method": "status", "params": {}});
    let m = node
        .bus
        .request(
            "_fednode.test-node.ws_in.control.send",
            bytes(&body),
            Meta::default(),
            SOON,
        )
        .await
        .unwrap();
    assert_eq!(json_of(&m), all);
    // A bad body answers invalid_params.
    let m = node
        .bus
        .request(
            "_fednode.test-node.ws_in.control.send",
            bytes(&json!({"nope": 1})),
            Meta::default(),
            SOON,
        )
        .await
        .unwrap();
    assert_eq!(json_of(&m)["error"]["code"], "invalid_params");
    h1.await.unwrap();
    h2.await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn peer_requests_status_locally_and_forward_the_rest() {
    let node = start(server_config(json!({
        "bidirectional": {"request_timeout": "200ms"},
        "ports": {"outputs": [
            {"name": "ws_data", "subject": "data"},
            {"name": "ws_control", "subject": "ctl"}
        ]}
    })))
    .await;
    let mut ws = connect(&node.url(), None).await;

    // status: answered by the input itself, in JSON.
    let id = request(&mut ws, "status", json!({}), Encoding::Json).await;
    let (r, enc) = next_envelope(&mut ws).await;
    assert_eq!(
        (r.kind, r.id.as_ref(), enc),
        (Kind::Reply, id.as_str(), Encoding::Json)
    );
    assert_eq!(r.payload_value()["status"], "ok");
    assert_eq!(r.payload_value()["result"]["connections"]["active"], 1);

    // Nobody on ctl.request: unavailable, at once.
    let id = request(
        &mut ws,
        "backpressure",
        json!({"rate_limit": 5}),
        Encoding::Json,
    )
    .await;
    let r = next_of(&mut ws, Kind::Reply).await;
    assert_eq!(&*r.id, id);
    assert_eq!(r.payload_value()["error"]["code"], "unavailable");

    // A responder that stays silent: timeout.
    let silent = node
        .bus
        .subscribe("ctl.request", SubscribeOptions::default())
        .await
        .unwrap();
    let id = request(
        &mut ws,
        "backpressure",
        json!({"rate_limit": 5}),
        Encoding::Json,
    )
    .await;
    let r = next_of(&mut ws, Kind::Reply).await;
    assert_eq!(&*r.id, id);
    assert_eq!(r.payload_value()["error"]["code"], "timeout");
    drop(silent);

    // A responder: its reply payload comes back under the request's id.
    let mut responder = node
        .bus
        .subscribe("ctl.request", SubscribeOptions::default())
        .await
        .unwrap();
    let bus = node.bus.clone();
    let answering = tokio::spawn(async move {
        let m = responder.next().await.unwrap();
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        let out = json!({"status": "ok", "result": {"seen": body}});
        bus.publish(fednode_kit::Message::new(
            m.reply.clone().unwrap(),
            bytes(&out),
        ))
        .await
        .unwrap();
    });
    let id = request(
        &mut ws,
        "backpressure",
        json!({"rate_limit": 5}),
        Encoding::Json,
    )
    .await;
    let r = next_of(&mut ws, Kind::Reply).await;
    assert_eq!(&*r.id, id);
    assert_eq!(
        r.payload_value(),
        json!({"status": "ok", "result": {"seen": {"method": "backpressure", "params": {"rate_limit": 5}}}})
    );
    answering.await.unwrap();

    // A request that is not {method, params}: invalid_params.
    send(
        &mut ws,
        text(&json!({"type": "request", "id": "bad", "payload": {"x": 1}})),
    )
    .await;
    let r = next_of(&mut ws, Kind::Reply).await;
    assert_eq!(&*r.id, "bad");
    assert_eq!(r.payload_value()["error"]["code"], "invalid_params");
    node.stop().await;
}

/// The peer's next request, skipping anything else.
async fn next_request(ws: &mut Ws) -> Envelope {
    next_of(ws, Kind::Request).await
}

#[tokio::test]
async fn fednode_peers_are_asked_for_their_status_and_shown_with_it() {
    let node = start(server_config(json!({"peer_status_interval": "100ms"}))).await;
    let mut edge = connect_with(&node.url(), &[("fednode-node", "edge-01")]).await;
    let mut device = connect(&node.url(), None).await;

    // The edge is asked at once; the device, not a fednode node, never.
    let ask = next_request(&mut edge).await;
    assert_eq!(ask.payload_value()["method"], "status");
    let status = json!({
        "queue_depth": 7,
        "throughput": {"current": 12.5},
        "connection": {"in_flight": 3},
        "store": {"messages": 420, "bytes": 84000, "dropped": 0, "oldest_timestamp": 1}
    });
    reply(&mut edge, &ask.id, &ReplyPayload::ok(status)).await;
    let shown = |node: &Node, peer: &str| {
        node.comp.describe()["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["peer_node"] == peer)
            .map(|c| c["peer_status"].clone())
    };
    wait_until(SOON, "the edge's answer in /components", || {
        shown(&node, "edge-01").is_some_and(|s| s["store_messages"] == 420)
    })
    .await;
    let s = shown(&node, "edge-01").unwrap();
    assert_eq!(
        (
            &s["queue_depth"],
            &s["in_flight"],
            &s["store_bytes"],
            &s["rate"]
        ),
        (&json!(7), &json!(3), &json!(84000), &json!(12.5)),
        "{s}"
    );
    assert!(s["updated_at"].is_i64() && s["error"].is_null(), "{s}");
    let conns = node.comp.describe()["connections"].clone();
    assert!(
        conns
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["peer_node"].is_null() && c["peer_status"].is_null()),
        "the device has no peer_status: {conns}"
    );

    // An error answer is shown beside the last good figures.
    let ask = next_request(&mut edge).await;
    let refused = ReplyPayload::error(fednode_kit::ErrorCode::Unavailable, "busy");
    reply(&mut edge, &ask.id, &refused).await;
    wait_until(SOON, "the error in /components", || {
        shown(&node, "edge-01").is_some_and(|s| s["error"] == "unavailable: busy")
    })
    .await;
    assert_eq!(shown(&node, "edge-01").unwrap()["store_messages"], 420);

    // The input's own status lists its fednode peers.
    let id = request(&mut device, "status", json!({}), Encoding::Json).await;
    let r = next_of(&mut device, Kind::Reply).await;
    assert_eq!(&*r.id, id);
    let peers = r.payload_value()["result"]["peers"].clone();
    assert_eq!(peers.as_array().map(Vec::len), Some(1), "{peers}");
    assert_eq!(peers[0]["node"], "edge-01", "{peers}");
    assert_eq!(peers[0]["status"]["store_messages"], 420, "{peers}");
    node.stop().await;
}
