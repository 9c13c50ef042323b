//! Server mode: admission (401/503), start errors, upstream data, bad
//! frames, health, `/components` detail, the buffer, admin requests,
//! metrics and shutdown.

mod common;

use common::{publish, publish_at, server, start, wait_fanned_out, Peer, WAIT};
use fednode_kit::{AdminError, AdminRequest, Bus, Component, SubscribeOptions};
use fednode_testkit::{wait_until, wait_until_async};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;

fn http_status(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn bearer_auth_is_checked_before_the_upgrade() {
    std::env::set_var("WSO_TEST_TOKEN", "s3cret");
    let node =
        server(json!({"auth": {"type": "bearer", "bearer_token_env": "WSO_TEST_TOKEN"}})).await;
    assert_eq!(
        http_status(Peer::connect_with(&node.url, None).await.err().unwrap()),
        401
    );
    assert_eq!(
        http_status(
            Peer::connect_with(&node.url, Some("Bearer nope"))
                .await
                .err()
                .unwrap()
        ),
        401
    );
    let mut p = Peer::connect_with(&node.url, Some("Bearer s3cret"))
        .await
        .unwrap();
    assert_eq!(p.call("status", json!({})).await["status"], "ok");
    assert_eq!(
        node.metric("websocket_output_errors_total", &[("type", "unauthorized")]),
        2.0
    );
    node.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_slots_come_back() {
    let node = server(json!({"server": {"max_connections": 2}})).await;
    let a = Peer::ready(&node.url).await;
    let _b = Peer::ready(&node.url).await;
    assert_eq!(
        http_status(Peer::connect_with(&node.url, None).await.err().unwrap()),
        503
    );
    assert_eq!(
        node.metric(
            "websocket_output_errors_total",
            &[("type", "connection_limit")]
        ),
        1.0
    );
    drop(a);
    // The slot is freed when the connection task ends: a connection is
    // admitted again (each refused attempt meanwhile is another 503).
    wait_until_async(WAIT, "a slot to come back", || async {
        Peer::connect_with(&node.url, None).await.is_ok()
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_port_in_use_is_a_start_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let settings = fednode_websocket_output::Config::parse(
        &json!({"server": {"http_port": port, "bind": "127.0.0.1"},
                "ports": {"inputs": [{"name": "in", "subject": "a"}]}}),
        "c",
    )
    .unwrap();
    let out = std::sync::Arc::new(fednode_websocket_output::WebSocketOutput::new(settings));
    let (ctx, _bus, _m) = fednode_kit::testing::context("ws_out");
    let err = out.start(ctx).await.expect_err("port in use");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[tokio::test]
async fn the_flat_form_serves_and_several_inputs_are_merged() {
    let node = start(json!({
        "http_port": 0, "path": "/federation",
        "ports": {"inputs": [{"name": "a", "subject": "one.>"}, {"name": "b", "subject": "two"}]}
    }))
    .await;
    let url = format!(
        "ws://127.0.0.1:{}/federation",
        node.out.local_addr().unwrap().port()
    );
    let mut p = Peer::ready(&url).await;
    publish(&node.bus, "one.x", json!({"n": 1}), "a").await;
    publish(&node.bus, "two", json!({"n": 2}), "b").await;
    publish(&node.bus, "three", json!({"n": 3}), "c").await;
    // `a` and `b` come from two subscriptions, in either order...
    let mut ids = [p.data().await, p.data().await].map(|g| g["id"].as_str().unwrap().to_string());
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    // ...and `c`, on a subject no input names, never comes. Proving a
    // negative takes a quiet period (no sentinel can travel a subscription
    // that does not exist).
    assert!(p.data_within(Duration::from_millis(300)).await.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn data_frames_carry_the_bus_envelope_fields() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    publish_at(
        &node.bus,
        "data.x",
        json!({"n": 1, "s": "é"}),
        "id-1",
        Some(1704844800000),
    )
    .await;
    publish_at(&node.bus, "data.y", json!([1, 2]), "id-2", None).await;
    let a = p.data().await;
    assert_eq!(
        a,
        json!({"type": "data", "id": "id-1", "timestamp": 1704844800000i64, "payload": {"n": 1, "s": "é"}})
    );
    let b = p.data().await;
    assert_eq!(b["payload"], json!([1, 2]));
    assert!(
        b["timestamp"].as_i64().unwrap() > 1704844800000,
        "buffered time stands in"
    );
    assert_eq!(
        node.metric("websocket_output_messages_sent_total", &[]),
        2.0
    );
    node.stop().await;
}

#[tokio::test]
async fn upstream_data_is_published_on_ws_upstream_and_acked() {
    let node = server(json!({
        "delivery": "at_least_once",
        "ports": {"outputs": [{"name": "ws_upstream", "subject": "back.{kind}"}]}
    }))
    .await;
    let mut sub = node
        .bus
        .subscribe("back.>", SubscribeOptions::default())
        .await
        .unwrap();
    let mut p = Peer::ready(&node.url).await;
    p.send(json!({"type": "data", "id": "u1", "timestamp": 5, "payload": {"kind": "prediction", "v": 1}}))
        .await;
    // A plain object is data too (no id: published, not acked).
    p.send(json!({"kind": "command", "v": 2})).await;
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "back.prediction");
    assert_eq!(m.meta.id.as_deref(), Some("u1"));
    assert_eq!(m.meta.timestamp, Some(5));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["v"],
        1
    );
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "back.command");
    assert!(m.meta.id.is_some());
    assert_eq!(p.next().await, json!({"type": "ack", "id": "u1"}));
    assert_eq!(
        node.metric("websocket_output_upstream_messages_total", &[]),
        2.0
    );
    node.stop().await;
}

#[tokio::test]
async fn upstream_data_without_a_port_is_dropped_and_counted() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    p.send(json!({"type": "data", "id": "u1", "payload": {"v": 1}}))
        .await;
    p.send(json!(42)).await;
    // Still connected and answering.
    assert_eq!(p.call("status", json!({})).await["status"], "ok");
    assert_eq!(
        node.metric(
            "websocket_output_messages_dropped_total",
            &[("reason", "no_upstream")]
        ),
        2.0
    );
    node.stop().await;
}

#[tokio::test]
async fn garbage_is_counted_and_oversized_frames_close_with_1009() {
    let node = server(json!({"max_message_bytes": 1024})).await;
    let mut p = Peer::ready(&node.url).await;
    p.ws.send(Ws::Text("{not json".into())).await.unwrap();
    p.ws.send(Ws::Binary(vec![0xc1].into())).await.unwrap();
    assert_eq!(p.call("status", json!({})).await["status"], "ok");
    assert_eq!(
        node.metric("websocket_output_errors_total", &[("type", "parse_error")]),
        2.0
    );
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(4096));
    p.ws.send(Ws::Text(big.into())).await.unwrap();
    let code = loop {
        match tokio::time::timeout(WAIT, p.ws.next()).await.unwrap() {
            Some(Ok(Ws::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1009);
    node.stop().await;
}

#[tokio::test]
async fn health_describe_and_metrics_follow_the_connections() {
    let node = server(json!({})).await;
    let h = node.out.health();
    assert!(h.healthy);
    assert_eq!(h.status, "idle");
    let mut p = Peer::ready(&node.url).await;
    p.call("backpressure", json!({"rate_limit": 50})).await;
    let h = node.out.health();
    assert!(h.healthy);
    assert_eq!(h.status, "serving");
    assert_eq!(h.details["connections"]["active"], 1);
    let d = node.out.describe();
    assert_eq!(d["mode"], "server");
    let c = &d["connections"][0];
    assert_eq!(c["id"], "conn-1");
    assert!(c["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(c["rate_limit"], 50.0);
    assert_eq!(c["queue_depth"], 0);
    assert_eq!(c["filters"], json!([]));
    assert_eq!(node.metric("websocket_output_connections_active", &[]), 1.0);
    assert_eq!(node.metric("websocket_output_connections_total", &[]), 1.0);
    assert_eq!(
        node.metric(
            "websocket_output_requests_received_total",
            &[("method", "backpressure")]
        ),
        1.0
    );
    drop(p);
    wait_until(WAIT, "the output to be idle again", || {
        node.out.health().status == "idle"
    })
    .await;
    assert_eq!(node.metric("websocket_output_connections_active", &[]), 0.0);
    let text = node.metrics.render();
    for family in [
        "websocket_output_messages_sent_total",
        "websocket_output_messages_dropped_total",
        "websocket_output_connections_active",
        "websocket_output_connections_total",
        "websocket_output_queue_depth",
        "websocket_output_requests_received_total",
        "websocket_output_replay_messages_total",
        "websocket_output_rate_limited_total",
        "websocket_output_errors_total",
    ] {
        assert!(
            text.contains(&format!("{family}{{component=\"ws_out\"")),
            "{family} missing"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn the_buffer_answers_newest_last() {
    let node = server(json!({"replay": {"buffer_size": 3}})).await;
    for n in 1..=5 {
        publish_at(
            &node.bus,
            "data.x",
            json!({"n": n}),
            &format!("m{n}"),
            Some(100 * n),
        )
        .await;
    }
    wait_fanned_out(&node, "m5").await;
    let b = node.out.buffer(None, None).await.unwrap();
    let ids: Vec<&str> = b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["m3", "m4", "m5"]);
    assert_eq!(
        b["messages"][2],
        json!({"type": "data", "id": "m5", "timestamp": 500, "payload": {"n": 5}})
    );
    let b = node.out.buffer(Some(1), None).await.unwrap();
    assert_eq!(b["messages"][0]["id"], "m5");
    let b = node.out.buffer(None, Some(400)).await.unwrap();
    assert_eq!(b["messages"].as_array().unwrap().len(), 2);
    node.stop().await;
}

/// A peer that answers every request with `{"status":"ok","result":{"peer": name}}`.
async fn answering_peer(url: &str, name: &'static str) -> tokio::task::JoinHandle<()> {
    let mut p = Peer::ready(url).await;
    tokio::spawn(async move {
        while let Some((f, _)) = p.frame(Duration::from_secs(30)).await {
            if f["type"] == "request" {
                let method = f["payload"]["method"].clone();
                p.send(json!({"type": "reply", "id": f["id"],
                              "payload": {"status": "ok", "result": {"peer": name, "method": method}}}))
                    .await;
            }
        }
    })
}

#[tokio::test]
async fn admin_requests_reach_one_or_every_peer() {
    let node = server(json!({"bidirectional": {"request_timeout": "300ms"}})).await;
    let a = answering_peer(&node.url, "a").await;
    let b = answering_peer(&node.url, "b").await;
    let req = |connection: Option<&str>| AdminRequest {
        method: "status".into(),
        params: json!({}),
        connection: connection.map(str::to_string),
    };
    let one = node.out.admin_request(req(Some("conn-2"))).await.unwrap();
    assert_eq!(
        one,
        json!({"status": "ok", "result": {"peer": "b", "method": "status"}})
    );
    let all = node.out.admin_request(req(None)).await.unwrap();
    assert_eq!(all["replies"]["conn-1"]["result"]["peer"], "a");
    assert_eq!(all["replies"]["conn-2"]["result"]["peer"], "b");
    assert!(matches!(
        node.out.admin_request(req(Some("conn-9"))).await,
        Err(AdminError::NotFound(_))
    ));
    // A peer that never answers: timeout.
    let _silent = Peer::ready(&node.url).await;
    let r = node.out.admin_request(req(Some("conn-3"))).await.unwrap();
    assert_eq!(r["error"]["code"], "timeout");
    assert_eq!(
        node.metric("websocket_output_request_timeouts_total", &[]),
        1.0
    );
    a.abort();
    b.abort();
    node.stop().await;
}

#[tokio::test]
async fn shutdown_drains_the_queue_then_closes_with_1001() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    // Slow the connection right down so data is still queued at shutdown.
    p.call("backpressure", json!({"rate_limit": 1})).await;
    for n in 0..20 {
        publish(&node.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    // All twenty handed to the connection, whose limit holds them queued.
    wait_fanned_out(&node, "m19").await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, p.ws.next()).await.unwrap() {
                Some(Ok(Ws::Text(t))) => {
                    got.push(serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap())
                }
                Some(Ok(Ws::Close(f))) => return (got, f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    });
    let t = std::time::Instant::now();
    node.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stopped in {:?}",
        t.elapsed()
    );
    let (got, code) = reader.await.unwrap();
    assert_eq!(code, Some(1001));
    let data: Vec<_> = got.iter().filter(|g| g["type"] == "data").collect();
    assert_eq!(
        data.len(),
        20,
        "everything queued was sent before the close"
    );
}
