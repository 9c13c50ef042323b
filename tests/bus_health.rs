//! `/health` reports the bus: a node whose NATS server goes away is
//! unhealthy, says why, and is healthy again once it has reconnected.

mod common;
use common::Node;
use fednode_testkit::wait_until_blocking;
use std::time::Duration;

fn health(node: &Node) -> (u16, serde_json::Value) {
    let (code, body) = node.get("/health").expect("/health answers");
    (code, serde_json::from_str(&body).unwrap())
}

#[test]
fn a_lost_nats_server_makes_the_node_unhealthy_with_the_reason() {
    let mut nats = fednode_testkit::NatsServer::start();
    let config = format!(
        r#"{{
      "node": {{"id": "bus-health"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "bus": {{"kind": "nats", "url": "{}"}},
      "components": {{
        "filter": {{"type": "processor", "name": "json_filter", "config": {{
          "criteria": [{{"path": "$.v", "operator": "exists"}}],
          "ports": {{"inputs": [{{"name": "in", "subject": "h.in"}}],
                    "outputs": [{{"name": "out", "subject": "h.out"}}]}}
        }}}}
      }}
    }}"#,
        nats.url()
    );
    let mut node = Node::start_with(&config, &[]);
    node.wait_ready(Duration::from_secs(30));
    let (code, h) = health(&node);
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["bus"]["healthy"], true, "{h}");
    assert_eq!(h["bus"]["status"], "connected", "{h}");
    assert_eq!(h["bus"]["details"]["kind"], "nats", "{h}");

    nats.kill();
    let mut last = serde_json::Value::Null;
    wait_until_blocking(
        Duration::from_secs(20),
        node.and_log("/health to report the lost bus"),
        || {
            let (code, h) = health(&node);
            last = h;
            code == 503
        },
    );
    assert_eq!(last["healthy"], false, "{last}");
    assert_eq!(last["bus"]["healthy"], false, "{last}");
    assert_eq!(last["bus"]["status"], "disconnected", "{last}");
    let why = last["bus"]["details"]["error"].as_str().unwrap();
    assert!(why.contains(&nats.url()), "{why}");
    // The components themselves are fine: the bus is what is wrong.
    assert_eq!(last["components"]["filter"]["healthy"], true, "{last}");

    nats.restart();
    wait_until_blocking(
        Duration::from_secs(30),
        node.and_log("/health to recover with the bus"),
        || health(&node).0 == 200,
    );
    node.signal("TERM");
    assert!(node.wait_exit(Duration::from_secs(20)).is_some());
}
