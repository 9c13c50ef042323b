//! The peer commands against a running node: `fednode send` into a
//! websocket_input, `fednode request` for its `status`, and the failures a
//! user sees (unknown method, nothing listening).

mod common;
use common::{fednode, metric, Node};
use fednode_testkit::{wait_until_blocking, ClosedPort};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

/// A node with a `websocket_input` server; it and the admin server listen
/// on port 0 (the ports are read from the node's log).
fn hub() -> Node {
    let cfg = r#"{
      "node": {"id": "hub-1", "region": "eu"},
      "http": {"listen": "127.0.0.1:0"},
      "components": {
        "ws_in": {"type": "input", "name": "websocket_input", "config": {
          "mode": "server",
          "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"},
          "ports": {"outputs": [{"name": "ws_data", "subject": "federated.data"}]}
        }}
      }
    }"#;
    let mut node = Node::start_with(cfg, &[]);
    node.wait_ready(Duration::from_secs(20));
    node
}

#[test]
fn send_then_request_status() {
    let node = hub();
    let url = format!("ws://{}/ingest", node.addr_of("ws_in"));

    let mut child = common::bin()
        .args(["send", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..100 {
            writeln!(stdin, r#"{{"seq": {i}, "value": {}}}"#, i * 2).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_until_blocking(
        Duration::from_secs(10),
        node.and_log("100 messages published"),
        || {
            let (_, text) = node.get("/metrics").unwrap();
            metric(
                &text,
                "websocket_input_messages_published_total{component=\"ws_in\"}",
            ) == Some(100.0)
        },
    );

    let out = fednode(&["request", &url, "status"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["result"]["node"]["id"], "hub-1");
    assert!(reply["result"]["uptime_seconds"].is_number(), "{reply}");

    // Nobody answers `<control>.request` on this node: unavailable, exit 1.
    let out = fednode(
        &["request", &url, "replay", "--params", r#"{"count": 1}"#],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
}

#[test]
fn request_to_nothing_fails_with_a_reason() {
    // Held for the whole test, so nothing can start listening on it.
    let closed = ClosedPort::new();
    let port = closed.port();
    let out = fednode(
        &[
            "request",
            &format!("ws://127.0.0.1:{port}/x"),
            "status",
            "--timeout",
            "2s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_params_and_bad_filter_are_reported() {
    let out = fednode(
        &[
            "request",
            "ws://127.0.0.1:1/x",
            "status",
            "--params",
            "{nope",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--params is not valid JSON"));
    let out = fednode(
        &["tail", "ws://127.0.0.1:1/x", "--filter", "$.v", "=>", "1"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown operator \"=>\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
