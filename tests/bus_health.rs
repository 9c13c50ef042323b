//! The bus's connection: a NATS server that wants a user and password
//! takes a node that has them and refuses one that has not, which says so;
//! `/health` reports the bus: a node whose NATS server goes away is
//! unhealthy, says why, and is healthy again once it has reconnected.

mod common;
use common::Node;
use fednode_testkit::wait_until_blocking;
use std::time::Duration;

/// A node with one filter on a NATS bus; `bus` is what the `bus` object
/// holds besides its kind.
fn node_config(bus: &str) -> String {
    format!(
        r#"{{
      "node": {{"id": "bus-health"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "bus": {{"kind": "nats", {bus}}},
      "components": {{
        "filter": {{"type": "processor", "name": "json_filter", "config": {{
          "criteria": [{{"path": "$.v", "operator": "exists"}}],
          "ports": {{"inputs": [{{"name": "in", "subject": "h.in"}}],
                    "outputs": [{{"name": "out", "subject": "h.out"}}]}}
        }}}}
      }}
    }}"#
    )
}

fn health(node: &Node) -> (u16, serde_json::Value) {
    let (code, body) = node.get("/health").expect("/health answers");
    (code, serde_json::from_str(&body).unwrap())
}

#[test]
fn a_lost_nats_server_makes_the_node_unhealthy_with_the_reason() {
    let mut nats = fednode_testkit::NatsServer::start();
    let config = node_config(&format!(r#""url": "{}""#, nats.url()));
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

#[test]
fn a_nats_server_with_a_password_takes_the_node_that_has_it() {
    let nats =
        fednode_testkit::NatsServer::start_with_args(&["--user", "edge", "--pass", "s3cret"]);
    let config = |password: &str| {
        node_config(&format!(
            r#""url": "{}", "user": "edge", "password": "{password}", "connect_timeout": "3s""#,
            nats.url()
        ))
    };
    let mut node = Node::start_with(&config("s3cret"), &[]);
    node.wait_ready(Duration::from_secs(30));
    let (code, h) = health(&node);
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["bus"]["status"], "connected", "{h}");
    node.signal("TERM");
    assert!(node.wait_exit(Duration::from_secs(20)).is_some());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.json");
    std::fs::write(&path, config("wrong")).unwrap();
    let out = common::fednode(&["run", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to NATS at {}", nats.url()))
            && err.to_lowercase().contains("authorization"),
        "{err}"
    );
}
