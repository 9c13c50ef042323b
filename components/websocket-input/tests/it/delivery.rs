//! at_least_once: acks after publishing, duplicates dropped by id (and
//! acked again), nacks for data the queue refused; at_most_once sends none;
//! one ack frame for many envelopes to a peer that announced it takes them.

use crate::common::*;
use fednode_kit::envelope::{Encoding, Kind};
use fednode_ws::frame::WsMessage;
use serde_json::json;

#[tokio::test]
async fn acks_and_duplicates() {
    let node = start(server_config(json!({"delivery": "at_least_once"}))).await;
    let mut sub = node.subscribe("data").await;
    let mut ws = connect(&node.url(), None).await;

    send(&mut ws, data("d1", json!({"n": 1}))).await;
    assert_eq!(json_of(&next_msg(&mut sub).await), json!({"n": 1}));
    let ack = next_of(&mut ws, Kind::Ack).await;
    assert_eq!(&*ack.id, "d1");

    // The same id again: acked, not published twice.
    send(&mut ws, data("d1", json!({"n": 1}))).await;
    assert_eq!(next_of(&mut ws, Kind::Ack).await.id.as_ref(), "d1");
    assert_eq!(node.dropped("duplicate"), 1.0);

    // Data without an id cannot be acked; MessagePack data is acked in MessagePack.
    send(&mut ws, text(&json!({"plain": true}))).await;
    let frame =
        rmp_serde::to_vec_named(&json!({"type": "data", "id": "d2", "payload": {"n": 2}})).unwrap();
    send(&mut ws, WsMessage::Binary(frame.into())).await;
    let (ack, enc) = next_envelope(&mut ws).await;
    assert_eq!(
        (ack.kind, ack.id.as_ref(), enc),
        (Kind::Ack, "d2", Encoding::Msgpack)
    );
    assert_eq!(json_of(&next_msg(&mut sub).await), json!({"plain": true}));
    assert_eq!(json_of(&next_msg(&mut sub).await), json!({"n": 2}));
    assert!(sub.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn at_most_once_sends_no_acks() {
    let node = start(server_config(json!({}))).await;
    let mut ws = connect(&node.url(), None).await;
    send(&mut ws, data("d1", json!({"n": 1}))).await;
    send(&mut ws, data("d1", json!({"n": 1}))).await;
    node.wait_metric("websocket_input_messages_published_total", &[], 2.0)
        .await;
    let id = request(&mut ws, "status", json!({}), Encoding::Json).await;
    let (first, _) = next_envelope(&mut ws).await;
    assert_eq!((first.kind, first.id.to_string()), (Kind::Reply, id));
    node.stop().await;
}

#[tokio::test]
async fn refused_data_is_nacked_and_may_be_resent() {
    let node = start(server_config(json!({
        "delivery": "at_least_once",
        "backpressure": {"queue_size": 1, "on_full": "drop_newest"}
    })))
    .await;
    let mut ws = connect(&node.url(), None).await;
    let mut sub = hold_publisher(
        &node,
        &mut ws,
        data("d0", json!({"n": 0})),
        data("d1", json!({"n": 1})),
    )
    .await;
    assert_eq!(next_of(&mut ws, Kind::Ack).await.id.as_ref(), "d0");
    send(&mut ws, data("d2", json!({"n": 2}))).await; // queued
    send(&mut ws, data("d3", json!({"n": 3}))).await; // refused
    let nack = next_of(&mut ws, Kind::Nack).await;
    assert_eq!(&*nack.id, "d3");
    assert_eq!(nack.payload_value(), json!({"reason": "queue_full"}));
    for n in 0..3 {
        assert_eq!(json_of(&next_msg(&mut sub).await)["n"], n);
    }
    // The refused id is not a duplicate when it comes again.
    send(&mut ws, data("d3", json!({"n": 3}))).await;
    assert_eq!(json_of(&next_msg(&mut sub).await)["n"], 3);
    node.stop().await;
}

/// Ten envelopes, most of them published in one round: the ids each ack
/// frame names, in the order the frames came.
async fn ack_frames(headers: &[(&'static str, &str)]) -> Vec<Vec<String>> {
    let node = start(server_config(json!({}))).await;
    let mut ws = connect_with(&node.url(), headers).await;
    // d0 waits in the subscription, d1 in the publisher, d2..d9 in the queue.
    let mut sub = hold_publisher(
        &node,
        &mut ws,
        data("d0", json!({"n": 0})),
        data("d1", json!({"n": 1})),
    )
    .await;
    let received = |n: f64| node.metric("websocket_input_messages_received_total", &[]) == n;
    for n in 2..10 {
        send(&mut ws, data(&format!("d{n}"), json!({"n": n}))).await;
    }
    wait_until(SOON, "d2..d9 queued", || {
        received(10.0) && node.queue_depth() == 8
    })
    .await;
    for n in 0..10 {
        assert_eq!(json_of(&next_msg(&mut sub).await)["n"], n);
    }
    let mut frames = Vec::new();
    let mut acked = 0;
    while acked < 10 {
        let ack = next_of(&mut ws, Kind::Ack).await;
        let ids: Vec<String> = ack
            .acked_ids()
            .unwrap()
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            ids.last().map(String::as_str),
            Some(&*ack.id),
            "id names the last"
        );
        acked += ids.len();
        frames.push(ids);
    }
    let all: Vec<String> = frames.concat();
    let want: Vec<String> = (0..10).map(|n| format!("d{n}")).collect();
    assert_eq!(all, want, "every id acked once, in the order published");
    node.stop().await;
    frames
}

const FEDNODE_PEER: [(&str, &str); 2] = [
    ("fednode-node", "edge-01"),
    ("fednode-delivery", "at_least_once"),
];

#[tokio::test]
async fn a_peer_that_takes_batched_acks_gets_one_frame_per_round() {
    let mut headers = FEDNODE_PEER.to_vec();
    headers.push(("fednode-acks", "batch"));
    let frames = ack_frames(&headers).await;
    assert!(
        frames.iter().any(|ids| ids.len() == 8),
        "d2..d9, published in one round, acked in one frame: {frames:?}"
    );
}

#[tokio::test]
async fn any_other_peer_gets_one_ack_per_envelope() {
    let frames = ack_frames(&FEDNODE_PEER).await;
    assert!(frames.iter().all(|ids| ids.len() == 1), "{frames:?}");
}
