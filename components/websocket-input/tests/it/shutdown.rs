//! Shutdown: peers get close code 1001, then the queue is flushed to the bus;
//! a peer that floods the connection does not hold shutdown up.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn closes_with_1001_and_flushes_the_queue() {
    let node = start(server_config(json!({"backpressure": {"queue_size": 100}}))).await;
    let mut ws = connect(&node.url(), None).await;
    // n=0 parked in the subscriber, n=1 held by the publisher, 2..4 queued.
    let mut sub = hold_publisher(
        &node,
        &mut ws,
        text(&json!({"n": 0})),
        text(&json!({"n": 1})),
    )
    .await;
    for n in 2..5 {
        send(&mut ws, text(&json!({"n": n}))).await;
    }
    wait_until(SOON, "a queue depth of 3", || node.queue_depth() == 3).await;

    let ctx = node.ctx.clone();
    let stopping = tokio::spawn(async move { fednode_kit::testing::stop(&ctx).await });
    assert_eq!(close_code(&mut ws).await, Some(1001));
    // Nothing queued is lost: the publisher drains after the sockets close.
    for n in 0..5 {
        assert_eq!(json_of(&next_msg(&mut sub).await)["n"], n);
    }
    tokio::time::timeout(SOON, stopping)
        .await
        .expect("stops in time")
        .unwrap();
    assert_eq!(
        node.metric("websocket_input_messages_published_total", &[]),
        5.0
    );
    assert_eq!(node.metric("websocket_input_connections_active", &[]), 0.0);
    // Not accepting any more.
    assert!(try_connect(&node.url(), None).await.is_err());
}

/// A peer that sends without a pause, faster than the node reads: the
/// connection still closes on shutdown and the component stops in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_pauses_is_closed_on_shutdown() {
    use fednode_testkit::loadgen;
    use tokio::io::AsyncWriteExt;
    // `drop_oldest` (the default): a full queue never makes the connection
    // wait either.
    let node = start(server_config(json!({}))).await;
    let mut sub = node
        .subscribe_bounded("data", 1 << 16, fednode_kit::bus::Overflow::Drop)
        .await;
    tokio::spawn(async move { while sub.next().await.is_some() {} });
    // Pre-built masked frames, written 64 KiB at a time: the peer costs
    // next to nothing per frame, so the socket always holds more.
    let (mut peer, _) = loadgen::connect(&node.url()).await;
    let payload = json!({"reading": 1, "pad": "x".repeat(150)}).to_string();
    let mut batch = Vec::new();
    for salt in 0..300 {
        loadgen::push_masked_frame(&mut batch, payload.as_bytes(), salt);
    }
    let flood = tokio::spawn(async move {
        let mut writes = 0u64;
        while peer.write_all(&batch).await.is_ok() {
            writes += 1;
        }
        writes
    });
    node.wait_metric("websocket_input_messages_received_total", &[], 50_000.0)
        .await;
    tokio::time::timeout(SOON, node.stop())
        .await
        .expect("the component stops while the peer is still sending");
    assert_eq!(node.metric("websocket_input_connections_active", &[]), 0.0);
    tokio::time::timeout(SOON, flood)
        .await
        .expect("the peer's writes fail once the connection is closed")
        .unwrap();
}
