//! The three `on_full` policies, with the queue really full: the publisher
//! is held by a bus subscriber with room for one message that the test does
//! not read (memory bus, `Overflow::Block`), so the queue fills up. And the
//! order of data that goes onto the bus partly straight from the connection,
//! partly through the queue.

use crate::common::*;
use fednode_kit::bus::Subscription;
use fednode_kit::envelope::Kind;
use serde_json::json;
use std::time::Duration;

struct Held {
    node: Node,
    ws: Ws,
    sub: Subscription,
}

/// Start with `queue_size: 3` and the given policy; send n=0 (parked in the
/// subscriber) and n=1 (taken by the publisher, which now waits): from here
/// on the queue only fills.
async fn held(on_full: &str) -> Held {
    let node = start(server_config(json!({
        "backpressure": {"queue_size": 3, "on_full": on_full}
    })))
    .await;
    let mut ws = connect(&node.url(), None).await;
    let sub = hold_publisher(
        &node,
        &mut ws,
        text(&json!({"n": 0})),
        text(&json!({"n": 1})),
    )
    .await;
    Held { node, ws, sub }
}

async fn send_range(ws: &mut Ws, range: std::ops::Range<i64>) {
    for n in range {
        send(ws, text(&json!({"n": n}))).await;
    }
}

async fn drain(sub: &mut Subscription, count: usize) -> Vec<i64> {
    let mut got = Vec::new();
    for _ in 0..count {
        got.push(json_of(&next_msg(sub).await)["n"].as_i64().unwrap());
    }
    got
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest() {
    let Held {
        node,
        mut ws,
        mut sub,
    } = held("drop_oldest").await;
    send_range(&mut ws, 2..10).await;
    node.wait_metric("websocket_input_messages_received_total", &[], 10.0)
        .await;
    assert_eq!(node.queue_depth(), 3);
    assert_eq!(node.dropped("queue_full"), 5.0);
    assert_eq!(drain(&mut sub, 5).await, vec![0, 1, 7, 8, 9]);
    node.wait_metric("websocket_input_messages_published_total", &[], 5.0)
        .await;
    assert!(sub.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn drop_newest_keeps_what_is_queued() {
    let Held {
        node,
        mut ws,
        mut sub,
    } = held("drop_newest").await;
    send_range(&mut ws, 2..10).await;
    node.wait_metric("websocket_input_messages_received_total", &[], 10.0)
        .await;
    assert_eq!(node.queue_depth(), 3);
    assert_eq!(node.dropped("queue_full"), 5.0);
    assert_eq!(drain(&mut sub, 5).await, vec![0, 1, 2, 3, 4]);
    node.stop().await;
}

#[tokio::test]
async fn block_stops_reading_and_loses_nothing() {
    let Held {
        node,
        mut ws,
        mut sub,
    } = held("block").await;
    send_range(&mut ws, 2..10).await;
    // n=2..4 fill the queue; the reader takes n=5 and waits for room, so
    // nothing more is read from the socket.
    node.wait_metric("websocket_input_messages_received_total", &[], 6.0)
        .await;
    wait_until(SOON, "a queue depth of 3", || node.queue_depth() == 3).await;
    // Proving a negative: nothing more is read for a while. No sentinel can
    // show it, the unread socket being the point.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        node.metric("websocket_input_messages_received_total", &[]),
        6.0
    );
    assert_eq!(node.dropped("queue_full"), 0.0);
    assert_eq!(drain(&mut sub, 10).await, (0..10).collect::<Vec<_>>());
    node.wait_metric("websocket_input_messages_published_total", &[], 10.0)
        .await;
    node.stop().await;
}

/// A connection that fails while its reader waits for room in a full
/// `block` queue: the frame it held is counted as lost (`connection_lost`),
/// the sender's resend of it is taken (not acked as a duplicate of data
/// never published), and the queued data goes first.
#[tokio::test]
async fn a_frame_lost_with_its_connection_is_counted_and_taken_when_resent() {
    use fednode_kit::Bus;
    let node = start(server_config(json!({
        "delivery": "at_least_once",
        "backpressure": {"queue_size": 3, "on_full": "block"},
        "ports": {"inputs": [{"name": "ws_downstream", "subject": "down.>"}]}
    })))
    .await;
    let msg = |n: i64| data(&format!("m{n}"), json!({"user_id": "u1", "n": n}));
    let mut ws = connect(&node.url(), None).await;
    let mut sub = hold_publisher(&node, &mut ws, msg(0), msg(1)).await;
    for n in 2..10 {
        send(&mut ws, msg(n)).await;
    }
    // n=2..4 fill the queue; the reader holds n=5, waiting for room.
    node.wait_metric("websocket_input_messages_received_total", &[], 6.0)
        .await;
    wait_until(SOON, "a queue depth of 3", || node.queue_depth() == 3).await;
    drop(ws);
    // Data for u1 goes down this connection: writing it fails once the
    // peer is gone, which ends the connection while its reader still waits.
    fednode_testkit::wait_until_async(SOON, "the held frame counted as lost", || async {
        node.bus
            .publish(fednode_kit::Message::new("down.u1", r#"{"user_id":"u1"}"#))
            .await
            .unwrap();
        node.dropped("connection_lost") == 1.0
    })
    .await;
    assert_eq!(drain(&mut sub, 5).await, vec![0, 1, 2, 3, 4]);
    // The sender, reconnected, sends what was not acked again.
    let mut again = connect(&node.url(), None).await;
    send(&mut again, msg(5)).await;
    assert_eq!(drain(&mut sub, 1).await, vec![5]);
    assert_eq!(&*next_of(&mut again, Kind::Ack).await.id, "m5");
    assert_eq!(node.dropped("connection_lost"), 1.0);
    assert_eq!(node.dropped("duplicate"), 0.0);
    node.stop().await;
}

/// Data the bus takes at once is published straight from the connection;
/// data it cannot take waits in the queue, and everything after it queues
/// behind it until the publisher has put it on the bus. A subscriber that
/// reads in fits and starts switches between the two all the time, and the
/// order holds throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_never_overtakes_data_waiting_in_the_queue() {
    use futures::SinkExt;
    const N: i64 = 20_000;
    let node = start(server_config(json!({
        "backpressure": {"queue_size": 64, "on_full": "block"}
    })))
    .await;
    let mut sub = node
        .subscribe_bounded("data", 4, fednode_kit::bus::Overflow::Block)
        .await;
    let mut ws = connect(&node.url(), None).await;
    let sender = tokio::spawn(async move {
        for n in 0..N {
            ws.feed(text(&json!({"n": n}))).await.expect("send");
            if n % 50 == 0 {
                ws.flush().await.expect("flush");
            }
        }
        ws.flush().await.expect("flush");
        ws
    });
    let mut queued_at_some_point = false;
    for expected in 0..N {
        let n = json_of(&next_msg(&mut sub).await)["n"].as_i64().unwrap();
        assert_eq!(n, expected, "out of order");
        queued_at_some_point |= node.queue_depth() > 0;
        if expected % 7 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(queued_at_some_point, "the queue was never used");
    let _ws = sender.await.unwrap();
    node.stop().await;
}
