//! Acknowledged delivery from one side: an edge whose `websocket` output
//! sends `at_least_once` to a hub whose `websocket_input` keeps the default
//! `delivery`. The edge announces it on the handshake and the hub acks
//! every data envelope anyway, so the edge never stalls at `max_in_flight`
//! and nothing is lost. Both are real `fednode` processes; the test feeds
//! the edge over a WebSocket and reads what the hub serves over another.

mod common;
use common::Node;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const MESSAGES: u64 = 10_000;

fn hub() -> Node {
    // `ws_in` keeps the default delivery (at_most_once). `ws_out` blocks
    // rather than drop for a slow reader, so what the test reads is all
    // the hub had.
    Node::start_with(
        r#"{
        "node": {"id": "hub", "region": "eu"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
          "ws_in": {"type": "input", "name": "websocket_input", "config": {
            "mode": "server",
            "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"},
            "ports": {"outputs": [{"name": "ws_data", "subject": "hub.data"}]}
          }},
          "ws_out": {"type": "output", "name": "websocket", "config": {
            "mode": "server",
            "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/feed"},
            "backpressure": {"on_full": "block"},
            "ports": {"inputs": [{"name": "in", "subject": "hub.data"}]}
          }}
        }
      }"#,
        &[],
    )
}

fn edge(hub_url: &str) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "edge-01", "region": "eu-west"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "device": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/device"}},
            "backpressure": {{"on_full": "block"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "edge.data"}}]}}
          }}}},
          "up": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"url": "{hub_url}"}},
            "delivery": "at_least_once",
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#
        ),
        &[],
    )
}

/// The `n` of each data frame read from the hub's feed, until `count`
/// arrived or nothing more came for a while.
async fn read_feed(url: String, count: u64, ready: tokio::sync::oneshot::Sender<()>) -> Vec<u64> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect to the hub's feed");
    ready.send(()).unwrap();
    let mut seen = Vec::new();
    while (seen.len() as u64) < count {
        let frame = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(f))) => f,
            _ => break,
        };
        if let WsMessage::Text(text) = frame {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "data" {
                seen.push(v["payload"]["n"].as_u64().expect("payload n"));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_sending_at_least_once_to_a_hub_at_its_defaults_delivers_everything_in_order() {
    let mut hub = hub();
    hub.wait_ready(Duration::from_secs(20));
    let hub_url = format!("ws://{}/ingest", hub.addr_of("ws_in"));
    let mut edge = edge(&hub_url);
    edge.wait_ready(Duration::from_secs(20));

    // The link is up and the hub says who is on the other end.
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(20),
        edge.and_log("the edge to connect to the hub"),
        || edge.status_of("up").as_deref() == Some("connected"),
    );
    let ws_in = hub.described("ws_in");
    let conn = &ws_in["connections"][0];
    assert_eq!(conn["peer_node"], "edge-01", "{ws_in}");
    assert_eq!(conn["peer_region"], "eu-west", "{ws_in}");
    assert_eq!(conn["acks"], true, "the edge asked for acks: {ws_in}");
    assert_eq!(conn["batch_acks"], true, "one ack frame per round: {ws_in}");

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let feed = tokio::spawn(read_feed(
        format!("ws://{}/feed", hub.addr_of("ws_out")),
        MESSAGES,
        ready_tx,
    ));
    ready_rx.await.unwrap();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        hub.and_log("the feed reader to be counted"),
        || hub.metric(r#"websocket_output_connections_active{component="ws_out"}"#) >= 1.0,
    );

    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/device", edge.addr_of("device")))
            .await
            .expect("connect to the edge");
    for n in 1..=MESSAGES {
        let frame = format!(r#"{{"type":"data","id":"m{n}","payload":{{"n":{n}}}}}"#);
        device.feed(WsMessage::Text(frame.into())).await.unwrap();
    }
    device.flush().await.unwrap();

    let seen = feed.await.unwrap();
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    assert_eq!(
        seen.len() as u64,
        MESSAGES,
        "the hub served {} of {MESSAGES}\n{}",
        seen.len(),
        edge.and_log("edge")
    );
    assert_eq!(seen, expected, "in order, each once");
    // The acks travel back after the data went on: wait for the last ones.
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        edge.and_log("the hub to ack every message"),
        || {
            edge.metric(r#"websocket_output_acks_received_total{component="up"}"#)
                >= MESSAGES as f64
        },
    );
    let dropped = hub
        .metric(r#"websocket_input_messages_dropped_total{component="ws_in",reason="queue_full"}"#);
    assert_eq!(dropped, 0.0);
    drop(device);
}
