//! The CLI peer (`peer.rs`) against a real node and a test server.

use crate::client_mode::{peer_next, peer_send, TestServer};
use crate::common::*;
use fednode_kit::envelope::{Envelope, Kind, ReplyPayload};
use fednode_kit::filter::Filter;
use fednode_ws::peer::{self, PeerError};
use futures::SinkExt;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn request_status_from_a_node() {
    let node = start(server_config(json!({}))).await;
    let reply = peer::request(
        &node.url(),
        "status",
        json!({}),
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(reply.is_ok());
    assert_eq!(reply.result.unwrap()["node"]["id"], "test-node");
    node.stop().await;
}

#[tokio::test]
async fn clear_errors() {
    std::env::set_var("WSI_PEER_TOKEN", "tok");
    let node = start(server_config(json!({
        "auth": {"type": "bearer", "bearer_token_env": "WSI_PEER_TOKEN"}
    })))
    .await;
    let url = node.url();
    let e = peer::request(&url, "status", json!({}), None, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), format!("HTTP 401 Unauthorized from {url}"));
    let ok = peer::request(
        &url,
        "status",
        json!({}),
        peer::authorization(Some("tok"), None),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(ok.is_ok());

    // Nothing listens there (and nothing can start to, while it is held).
    let closed = fednode_testkit::ClosedPort::new();
    let nowhere = format!("ws://{}/", closed.addr());
    let e = peer::request(&nowhere, "status", json!({}), None, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), format!("connection refused to {nowhere}"));

    // A peer that accepts but never answers.
    let mut server = TestServer::start(0, None).await;
    let url = server.url();
    let asking = tokio::spawn(async move {
        peer::request(&url, "status", json!({}), None, Duration::from_millis(300)).await
    });
    let (_ws, _) = server.accept().await;
    let e = asking.await.unwrap().unwrap_err();
    assert!(matches!(e, PeerError::Timeout { .. }));
    assert_eq!(
        e.to_string(),
        format!("timeout after 300ms: no reply from {}", server.url())
    );
    node.stop().await;
}

#[tokio::test]
async fn request_ignores_data_while_waiting() {
    let mut server = TestServer::start(0, None).await;
    let url = server.url();
    let asking = tokio::spawn(async move {
        peer::request(
            &url,
            "replay",
            json!({"count": 1}),
            None,
            Duration::from_secs(5),
        )
        .await
    });
    let (mut ws, _) = server.accept().await;
    let req = peer_next(&mut ws).await;
    assert_eq!(
        req.payload_value(),
        json!({"method": "replay", "params": {"count": 1}})
    );
    peer_send(&mut ws, &Envelope::data(bytes(&json!({"noise": 1})))).await;
    peer_send(
        &mut ws,
        &Envelope::reply("other-id", &ReplyPayload::ok(json!({}))),
    )
    .await;
    peer_send(
        &mut ws,
        &Envelope::reply(&req.id, &ReplyPayload::ok(json!({"messages_available": 1}))),
    )
    .await;
    let reply = asking.await.unwrap().unwrap();
    assert_eq!(reply.result.unwrap()["messages_available"], 1);
}

#[tokio::test]
async fn send_lines_as_data() {
    let node = start(server_config(json!({}))).await;
    let mut sub = node.subscribe("data").await;
    let input: &[u8] = b"{\"n\":1}\n\n  {\"n\": 2}\n[3]\n\"four\"";
    let sent = peer::send(&node.url(), None, input).await.unwrap();
    assert_eq!(sent, 4);
    for want in [json!({"n": 1}), json!({"n": 2}), json!([3]), json!("four")] {
        assert_eq!(json_of(&next_msg(&mut sub).await), want);
    }
    let bad: &[u8] = b"{\"n\":1}\nnot json\n";
    let e = peer::send(&node.url(), None, bad).await.unwrap_err();
    assert!(matches!(e, PeerError::InvalidInput { line: 2, .. }), "{e}");
    node.stop().await;
}

#[tokio::test]
async fn tail_prints_matching_data_lines() {
    let mut server = TestServer::start(0, None).await;
    let url = server.url();
    let filter = Filter::from_value(&json!({"path": "$.n", "operator": ">", "value": 1})).unwrap();
    let tailing = tokio::spawn(async move {
        let mut out = Vec::new();
        peer::tail(&url, None, Some(filter), &mut out)
            .await
            .map(|()| out)
    });
    let (mut ws, _) = server.accept().await;
    for n in 0..4 {
        peer_send(&mut ws, &Envelope::data(bytes(&json!({"n": n})))).await;
    }
    // Pretty-printed payloads still come out as one line; requests are ignored.
    ws.send(text(
        &json!({"type": "data", "payload": json!({"n": 9, "nested": {"a": [1, 2]}})}),
    ))
    .await
    .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "{\"type\":\"data\",\"payload\":{\n  \"n\": 10\n}}".into(),
    ))
    .await
    .unwrap();
    peer_send(&mut ws, &Envelope::request("status", &json!({}))).await;
    ws.close(None).await.unwrap();
    let out = String::from_utf8(tailing.await.unwrap().unwrap()).unwrap();
    assert_eq!(
        out,
        "{\"n\":2}\n{\"n\":3}\n{\"n\":9,\"nested\":{\"a\":[1,2]}}\n{\"n\":10}\n"
    );
    let _ = Kind::Data;
}
