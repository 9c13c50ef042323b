//! The whole promise, end to end, with real processes: an edge pushing
//! `at_least_once` with a `store` to a hub on a real nats-server, whose
//! `timescale` (durable: a JetStream consumer) writes to PostgreSQL.
//!
//! 20,000 messages enter the edge. The hub is SIGKILLed three times while
//! they flow and started again each time; then the hub goes away, the edge
//! takes the last messages into its store and is SIGKILLed itself, and is
//! started again on the same `data_dir` before the hub returns. Every
//! message must be stored, counted distinct; rows beyond that (duplicates)
//! at most what the edge's resends explain.

mod common;
use common::Node;
use futures::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const TOTAL: u64 = 20_000;
/// Messages sent while the hub is being killed and restarted.
const FLOWING: u64 = 15_000;

fn edge(hub_url: &str, data_dir: &std::path::Path) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "edge-01", "region": "eu"}},
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
                        "reconnect": {{"initial_interval": "20ms", "max_interval": "200ms"}}}},
            "heartbeat": {{"interval": "200ms", "timeout": "1s"}},
            "delivery": "at_least_once",
            "ack_timeout": "2s",
            "store": {{"sync_interval": "20ms"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#,
            dir = data_dir.display()
        ),
        &[],
    )
}

fn hub(port: u16, nats: &str, pg: &str) -> Node {
    let mut node = Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "hub"}},
        "bus": {{"kind": "nats", "url": "{nats}"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": {port}, "bind": "127.0.0.1", "path": "/ingest"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "hub.data"}}]}}
          }}}},
          "store": {{"type": "storage", "name": "timescale", "config": {{
            "url": "{pg}", "durable": true, "batch_size": 500, "flush_interval": "50ms",
            "jetstream": {{"ack_wait": "10s"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "hub.>"}}]}}
          }}}}
        }}
      }}"#
        ),
        &[],
    );
    node.wait_ready(Duration::from_secs(30));
    node
}

fn count(pg: &fednode_testkit::PgCluster, sql: &str) -> u64 {
    pg.psql("postgres", sql).trim().parse().unwrap_or(0)
}

fn distinct(pg: &fednode_testkit::PgCluster) -> u64 {
    count(pg, "SELECT count(DISTINCT msg_id) FROM fednode_messages")
}

/// The edge's store as `/components` shows it.
fn store(edge: &Node) -> serde_json::Value {
    edge.described("up")["store"].clone()
}

/// Send messages `from..=to` to the edge's device input, paced.
async fn send(edge_device: String, from: u64, to: u64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{edge_device}/device"))
        .await
        .expect("connect to the edge");
    for n in from..=to {
        let frame = format!(r#"{{"type":"data","id":"m{n}","payload":{{"n":{n}}}}}"#);
        ws.feed(WsMessage::Text(frame.into())).await.unwrap();
        if n % 200 == 0 {
            ws.flush().await.unwrap();
            // Pacing, not waiting for anything: about 4,000 messages a second.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    ws.flush().await.unwrap();
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_messages_survive_three_hub_kills_and_an_edge_kill() {
    let nats = fednode_testkit::NatsServer::start_jetstream();
    let pg = fednode_testkit::PgCluster::start();
    let data_dir = tempfile::tempdir().unwrap();

    // The hub's port is fixed across its restarts (the edge's URL).
    let port = {
        let probe = hub(0, &nats.url(), &pg.url());
        let port = probe.addr_of("ws_in").port();
        drop(probe);
        port
    };
    let mut hub_node = hub(port, &nats.url(), &pg.url());
    let hub_url = format!("ws://127.0.0.1:{port}/ingest");
    let mut edge_node = edge(&hub_url, data_dir.path());
    edge_node.wait_ready(Duration::from_secs(20));
    let device = edge_node.addr_of("device").to_string();

    let sending = tokio::spawn(send(device.clone(), 1, FLOWING));
    for (round, stored) in [(1, 2_000), (2, 6_000), (3, 10_000)] {
        fednode_testkit::wait_until_blocking(
            Duration::from_secs(60),
            hub_node.and_log(&format!("{stored} rows before kill {round} of the hub")),
            || distinct(&pg) >= stored,
        );
        hub_node.signal("KILL");
        hub_node
            .wait_exit(Duration::from_secs(10))
            .expect("the hub died");
        hub_node = hub(port, &nats.url(), &pg.url());
    }
    sending.await.unwrap();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(90),
        hub_node.and_log("everything sent so far to be stored"),
        || distinct(&pg) >= FLOWING,
    );

    // The hub goes away; the last messages wait in the edge's store, which
    // is killed with them, on disk and unacknowledged.
    hub_node.signal("KILL");
    hub_node
        .wait_exit(Duration::from_secs(10))
        .expect("the hub died");
    send(device, FLOWING + 1, TOTAL).await;
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        edge_node.and_log("the last messages on disk in the edge's store"),
        || store(&edge_node)["synced_through"].as_u64() >= Some(TOTAL),
    );
    let waiting = store(&edge_node)["messages"].as_u64().unwrap();
    assert!(waiting >= TOTAL - FLOWING, "{}", store(&edge_node));
    let resent_before = edge_node.metric(r#"websocket_output_resent_total{component="up"}"#);
    edge_node.signal("KILL");
    edge_node
        .wait_exit(Duration::from_secs(10))
        .expect("the edge died");

    let mut edge_node = edge(&hub_url, data_dir.path());
    edge_node.wait_ready(Duration::from_secs(20));
    let hub_node = hub(port, &nats.url(), &pg.url());
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(90),
        hub_node.and_log("every message to be stored"),
        || distinct(&pg) >= TOTAL,
    );
    assert_eq!(distinct(&pg), TOTAL);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM fednode_messages WHERE node_id = 'edge-01' AND region = 'eu'"
        ),
        count(&pg, "SELECT count(*) FROM fednode_messages"),
        "every row carries the edge as its origin"
    );
    // Duplicates: only what the edge sent twice can be stored twice.
    let rows = count(&pg, "SELECT count(*) FROM fednode_messages");
    let resent = resent_before
        + edge_node.metric(r#"websocket_output_resent_total{component="up"}"#)
        + waiting as f64;
    assert!(
        (rows - TOTAL) as f64 <= resent,
        "{rows} rows for {TOTAL} messages, but only {resent} were sent again"
    );
    println!("rows {rows}, distinct {TOTAL}, resent at most {resent}");
}
