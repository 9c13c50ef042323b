//! `fednode tail` as an operator uses it: `--replay` prints what the
//! output still buffers before the live data, and a tail whose node
//! restarts connects again by itself (`--once` exits instead).

mod common;
use common::{bin, http_with, Node};
use fednode_testkit::wait_until_blocking;
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn node(ws_port: u16) -> Node {
    let config = format!(
        r#"{{
      "node": {{"id": "tailed"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "shutdown_timeout": "3s",
      "components": {{
        "http_in": {{"type": "input", "name": "http_input", "config": {{
          "http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
          "ports": {{"outputs": [{{"name": "out", "subject": "t.data"}}]}}
        }}}},
        "ws_out": {{"type": "output", "name": "websocket", "config": {{
          "mode": "server", "server": {{"http_port": {ws_port}, "bind": "127.0.0.1", "path": "/out"}},
          "ports": {{"inputs": [{{"name": "in", "subject": "t.>"}}]}}
        }}}}
      }}
    }}"#
    );
    let mut n = Node::start_with(&config, &[]);
    n.wait_ready(WAIT);
    n
}

fn post(node: &Node, n: u32) {
    let (code, body) = http_with(
        "POST",
        &node.addr_of("http_in").to_string(),
        "/ingest",
        &[],
        Some(&format!(r#"{{"n":{n}}}"#)),
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
}

#[test]
fn replay_first_then_live_and_a_restarted_node_is_followed() {
    let mut first = node(0);
    for n in 0..5 {
        post(&first, n);
    }
    let out_addr = first.addr_of("ws_out");
    wait_until_blocking(WAIT, first.and_log("the buffer to hold five"), || {
        first
            .get("/components/ws_out/buffer?count=10")
            .is_some_and(|(_, b)| b.matches("\"n\":").count() == 5)
    });
    let mut tail = bin()
        .args([
            "tail",
            &format!("ws://{out_addr}/out"),
            "--replay",
            r#"{"count":3}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = common::json_lines(&mut tail);
    // The last three buffered, replayed, then what comes live.
    for n in 2..5 {
        assert_eq!(rx.recv_timeout(WAIT).unwrap()["n"], n);
    }
    post(&first, 5);
    assert_eq!(rx.recv_timeout(WAIT).unwrap()["n"], 5);

    // The node restarts on the same port: the tail connects again and
    // goes on printing.
    first.signal("TERM");
    assert!(first.wait_exit(WAIT).is_some());
    let second = node(out_addr.port());
    wait_until_blocking(WAIT, second.and_log("the tail to connect again"), || {
        second.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });
    post(&second, 6);
    assert_eq!(rx.recv_timeout(WAIT).unwrap()["n"], 6);
    assert_eq!(tail.try_wait().unwrap(), None);
    let _ = tail.kill();
    let _ = tail.wait();

    // With --once, the tail ends with the connection.
    let mut once = bin()
        .args(["tail", &format!("ws://{out_addr}/out"), "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_blocking(WAIT, second.and_log("the --once tail to connect"), || {
        second.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });
    let mut second = second;
    second.signal("TERM");
    assert!(second.wait_exit(WAIT).is_some());
    wait_until_blocking(WAIT, "tail --once to exit with its connection", || {
        once.try_wait().unwrap().is_some()
    });
    assert!(once.wait().unwrap().success());
}
