//! Frames: size limit (1009), text that is not UTF-8 (1007), garbage, MessagePack, plain JSON as data,
//! subject templates.

use crate::common::*;
use fednode_kit::envelope::{Encoding, Kind};
use fednode_ws::frame::WsMessage;
use futures::SinkExt;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let node = start(server_config(json!({"max_message_bytes": 1024}))).await;
    let mut ws = connect(&node.url(), None).await;
    // Just under the limit passes.
    let mut sub = node.subscribe("data").await;
    send(&mut ws, text(&json!({"pad": "x".repeat(900)}))).await;
    next_msg(&mut sub).await;
    send(&mut ws, text(&json!({"pad": "x".repeat(2000)}))).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    node.wait_metric(
        "websocket_input_errors_total",
        &[("type", "message_too_large")],
        1.0,
    )
    .await;
    wait_until(SOON, "the connection to be gone", || {
        node.metric("websocket_input_connections_active", &[]) == 0.0
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let node = start(server_config(json!({}))).await;
    let mut ws = connect(&node.url(), None).await;
    let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    send(&mut ws, WsMessage::Frame(bad)).await;
    assert_eq!(close_code(&mut ws).await, Some(1007));
    wait_until(SOON, "the connection to be gone", || {
        node.metric("websocket_input_connections_active", &[]) == 0.0
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn ten_thousand_garbage_frames_leave_the_node_healthy() {
    let node = start(server_config(
        json!({"backpressure": {"queue_size": 20000}}),
    ))
    .await;
    let mut sub = node.subscribe("data").await;
    let mut ws = connect(&node.url(), None).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let alphabet = b"{}[]\":,0123456789abcdefnulltrue \\\t\n-+.eE";
    for i in 0..10_000u32 {
        let len = rng.random_range(0..96);
        let msg = match i % 4 {
            0 => WsMessage::Binary(
                (0..len)
                    .map(|_| rng.random::<u8>())
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            1 => WsMessage::Text(
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                    .collect::<String>()
                    .into(),
            ),
            2 => {
                // A valid envelope cut short.
                let full =
                    json!({"type": "data", "id": i.to_string(), "payload": {"i": i}}).to_string();
                let cut = rng.random_range(0..full.len());
                WsMessage::Text(full[..cut].to_string().into())
            }
            _ => WsMessage::Text(
                (0..len)
                    .map(|_| rng.random_range(0x20u8..0x7f) as char)
                    .collect::<String>()
                    .into(),
            ),
        };
        ws.feed(msg).await.unwrap();
    }
    ws.flush().await.unwrap();
    // The same connection still works: a valid message arrives after them.
    send(&mut ws, data("marker", json!({"marker": true}))).await;
    loop {
        let m = next_msg(&mut sub).await;
        if m.meta.id.as_deref() == Some("marker") {
            assert_eq!(json_of(&m), json!({"marker": true}));
            break;
        }
    }
    let parse_errors = node.metric("websocket_input_errors_total", &[("type", "parse_error")]);
    assert!(
        parse_errors > 5_000.0,
        "parse errors counted: {parse_errors}"
    );
    assert_eq!(node.metric("websocket_input_connections_active", &[]), 1.0);
    let h = node.health();
    assert!(h.healthy, "{h:?}");
    assert_eq!(h.status, "connected");
    node.stop().await;
}

#[tokio::test]
async fn msgpack_frames_and_replies_in_msgpack() {
    let node = start(server_config(json!({}))).await;
    let mut sub = node.subscribe("data").await;
    let mut ws = connect(&node.url(), None).await;
    let frame = rmp_serde::to_vec_named(&json!({
        "type": "data", "id": "m1", "timestamp": 1_704_844_800_000i64, "payload": {"a": 1, "b": [true, null]}
    }))
    .unwrap();
    send(&mut ws, WsMessage::Binary(frame.into())).await;
    let m = next_msg(&mut sub).await;
    assert_eq!(json_of(&m), json!({"a": 1, "b": [true, null]}));
    assert_eq!(m.meta.id.as_deref(), Some("m1"));
    assert_eq!(m.meta.timestamp, Some(1_704_844_800_000));

    let id = request(&mut ws, "status", json!({}), Encoding::Msgpack).await;
    let (reply, enc) = next_envelope(&mut ws).await;
    assert_eq!(
        enc,
        Encoding::Msgpack,
        "a reply uses its request's encoding"
    );
    assert_eq!((reply.kind, reply.id.as_ref()), (Kind::Reply, id.as_str()));
    let p = reply.payload_value();
    assert_eq!(p["status"], "ok");
    let r = &p["result"];
    assert_eq!(r["node"], json!({"id": "test-node", "region": "test"}));
    assert_eq!(r["connections"], json!({"active": 1, "total": 1}));
    assert_eq!(r["throughput"]["unit"], "msg/sec");
    assert!(r["queue_depth"].is_number() && r["uptime_seconds"].is_number());
    assert!(r["throughput"]["current"].is_number() && r["throughput"]["average_1m"].is_number());
    node.stop().await;
}

#[tokio::test]
async fn plain_json_is_data_with_an_assigned_id_and_timestamp() {
    let node = start(server_config(json!({}))).await;
    let mut sub = node.subscribe("data").await;
    let mut ws = connect(&node.url(), None).await;
    let raw = json!({"type": "raw", "user_id": "jamie", "channels": [1.5, 2.5]});
    send(&mut ws, text(&raw)).await;
    send(&mut ws, WsMessage::Text("42".into())).await;
    send(
        &mut ws,
        WsMessage::Text(r#"{"type":"data","id":"x"}"#.into()),
    )
    .await;
    let m = next_msg(&mut sub).await;
    assert_eq!(json_of(&m), raw);
    let id = m.meta.id.as_deref().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "assigned id {id}");
    let ts = m.meta.timestamp.unwrap();
    assert!((ts - fednode_kit::envelope::now_millis()).abs() < 60_000);
    assert_eq!(m.meta.node.as_deref(), Some("test-node"));
    assert_eq!(json_of(&next_msg(&mut sub).await), json!(42));
    assert_eq!(
        json_of(&next_msg(&mut sub).await),
        json!({"type": "data", "id": "x"})
    );
    // Payload bytes travel untouched (no re-serialisation).
    send(
        &mut ws,
        WsMessage::Text(r#"{"type":"data","payload":{ "spaced" :  1 }}"#.into()),
    )
    .await;
    assert_eq!(
        &next_msg(&mut sub).await.payload[..],
        br#"{ "spaced" :  1 }"#
    );
    node.stop().await;
}

#[tokio::test]
async fn subject_templates_fan_out_per_user() {
    let node = start(server_config(json!({
        "ports": {"outputs": [{"name": "ws_data", "subject": "user.{user_id}.{type}"}]}
    })))
    .await;
    let mut jamie = node.subscribe("user.jamie.raw").await;
    let mut alex = node.subscribe("user.alex.raw").await;
    let mut all = node.subscribe("user.>").await;
    let mut ws = connect(&node.url(), None).await;
    for (user, n) in [("jamie", 1), ("alex", 2), ("jamie", 3)] {
        send(
            &mut ws,
            text(&json!({"type": "raw", "user_id": user, "n": n})),
        )
        .await;
    }
    send(&mut ws, text(&json!({"type": "features", "n": 4}))).await;
    assert_eq!(json_of(&next_msg(&mut jamie).await)["n"], 1);
    assert_eq!(json_of(&next_msg(&mut jamie).await)["n"], 3);
    assert_eq!(json_of(&next_msg(&mut alex).await)["n"], 2);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_msg(&mut all).await.subject.to_string());
    }
    assert_eq!(
        got,
        [
            "user.jamie.raw",
            "user.alex.raw",
            "user.jamie.raw",
            "user._.features"
        ]
    );
    assert!(jamie.is_empty() && alex.is_empty());
    node.stop().await;
}

/// Frames that arrive together are queued as one burst: the publisher is
/// woken and the counters move at the burst's end (every 64 frames, and
/// when the connection ends), so nothing of a burst that ends with the
/// peer's close frame may stay behind.
#[tokio::test]
async fn a_burst_ending_with_the_close_frame_is_published_and_counted() {
    let node = start(server_config(json!({}))).await;
    let mut sub = node.subscribe("data").await;
    let mut ws = connect(&node.url(), None).await;
    // 200 frames and the close frame in one write: three full bursts of
    // 64, then 8 frames that only the end of the connection finishes.
    for n in 0..200 {
        ws.feed(text(&json!({ "n": n }))).await.unwrap();
    }
    ws.close(None).await.unwrap();
    for n in 0..200 {
        assert_eq!(json_of(&next_msg(&mut sub).await)["n"], n);
    }
    node.wait_metric("websocket_input_messages_received_total", &[], 200.0)
        .await;
    node.wait_metric("websocket_input_messages_published_total", &[], 200.0)
        .await;
    node.stop().await;
}
