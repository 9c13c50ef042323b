//! Store and forward: an edge whose `websocket` output pushes to a hub with
//! `at_least_once` and a `store`, both real `fednode` processes.
//!
//! The hub is away while the edge takes messages; the edge is SIGKILLed
//! with everything in its store and started again on the same `data_dir`;
//! then the hub comes up, and every message arrives, in order, once.

mod common;
use common::Node;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const MESSAGES: u64 = 5_000;

fn edge(hub_url: &str, data_dir: &std::path::Path) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "edge-01"}},
        "data_dir": "{dir}",
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
            "client": {{"url": "{hub_url}", "connect_timeout": "500ms",
                        "reconnect": {{"initial_interval": "20ms", "max_interval": "100ms"}}}},
            "delivery": "at_least_once",
            "store": {{"max_bytes": 67108864, "sync_interval": "50ms"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#,
            dir = data_dir.display()
        ),
        &[],
    )
}

fn hub(port: u16) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "hub"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": {port}, "bind": "127.0.0.1", "path": "/ingest"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "hub.data"}}]}}
          }}}},
          "feed": {{"type": "output", "name": "websocket", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/feed"}},
            "backpressure": {{"on_full": "block"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "hub.data"}}]}}
          }}}}
        }}
      }}"#
        ),
        &[],
    )
}

/// The edge's store as `/components` shows it.
fn store(edge: &Node) -> serde_json::Value {
    let (_, body) = edge.get("/components").expect("edge /components");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["up"]["store"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_survive_a_sigkill_of_the_edge_and_go_first_in_order() {
    let data_dir = tempfile::tempdir().unwrap();
    let hub_port = fednode_testkit::ClosedPort::new();
    let hub_url = format!("ws://127.0.0.1:{}/ingest", hub_port.port());
    let mut first = edge(&hub_url, data_dir.path());
    first.wait_ready(Duration::from_secs(20));

    // The hub is away: everything stays in the edge's store.
    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/device", first.addr_of("device")))
            .await
            .expect("connect to the edge");
    for n in 1..=MESSAGES {
        let frame = format!(r#"{{"type":"data","id":"m{n}","payload":{{"n":{n}}}}}"#);
        device.feed(WsMessage::Text(frame.into())).await.unwrap();
    }
    device.flush().await.unwrap();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        first.and_log("the store to hold every message, on disk"),
        || store(&first)["synced_through"].as_u64() >= Some(MESSAGES),
    );
    assert_eq!(store(&first)["messages"], MESSAGES, "{}", store(&first));
    assert!(
        first.metric(r#"websocket_output_store_bytes{component="up"}"#) > (MESSAGES * 20) as f64
    );
    drop(device);
    first.signal("KILL");
    first
        .wait_exit(Duration::from_secs(10))
        .expect("the edge died");

    // Back on the same data_dir: the store is recovered and waits.
    let mut edge = edge(&hub_url, data_dir.path());
    edge.wait_ready(Duration::from_secs(20));
    assert_eq!(store(&edge)["messages"], MESSAGES, "{}", store(&edge));

    // The hub comes up; every message arrives, in order, once.
    let port = hub_port.port();
    drop(hub_port);
    let mut hub = hub(port);
    hub.wait_ready(Duration::from_secs(20));
    let (mut feed, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/feed", hub.addr_of("feed")))
            .await
            .expect("connect to the hub's feed");
    let mut seen = Vec::new();
    while (seen.len() as u64) < MESSAGES {
        let frame = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {MESSAGES} arrived\n{}",
                    seen.len(),
                    edge.and_log("edge")
                )
            })
            .expect("feed open")
            .unwrap();
        if let WsMessage::Text(text) = frame {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "data" {
                seen.push(v["payload"]["n"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(seen, (1..=MESSAGES).collect::<Vec<_>>(), "in order, once");
    // Acked, the store lets go of them.
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(20),
        edge.and_log("the store to empty once the hub acked everything"),
        || store(&edge)["messages"] == 0,
    );
}
