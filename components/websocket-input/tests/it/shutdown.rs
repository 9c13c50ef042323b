//! Shutdown: peers get close code 1001, then the queue is flushed to the bus.

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
