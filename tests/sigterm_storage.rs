//! SIGTERM right after a burst loses no row, end to end with the
//! built binary on the memory bus: `fednode send` pushes a burst into a
//! `websocket_input`, which publishes to `timescale`; the batch size and
//! flush interval are far larger than the burst, so when SIGTERM arrives
//! every row is still held in memory. After exit 0 every row must be in
//! PostgreSQL, once, with its payload.
//!
//! The input runs with `on_full: block` so that it cannot shed load: with
//! its default policy (`drop_oldest`, queue 1,000) a burst at wire speed may
//! legitimately drop a few messages (counted in
//! `websocket_input_messages_dropped_total`), which is not what this test is
//! about.

mod common;
use common::{bin, Node};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const N: usize = 20_000;

fn rows(pg: &fednode_testkit::PgCluster, sql: &str) -> usize {
    let out = pg.psql("postgres", sql);
    out.parse()
        .unwrap_or_else(|_| panic!("psql said {out:?} to {sql}"))
}

#[test]
fn sigterm_right_after_a_burst_flushes_every_row() {
    let pg = fednode_testkit::PgCluster::start();
    // The admin server and the input on port 0 (read back from the log).
    let config = format!(
        r#"{{
      "node": {{"id": "burst-node"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "in": {{"type": "input", "name": "websocket_input", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/in"}},
          "backpressure": {{"on_full": "block"}},
          "ports": {{"outputs": [{{"name": "ws_data", "subject": "burst.data"}}]}}
        }}}},
        "store": {{"type": "storage", "name": "timescale", "config": {{
          "url": "{url}", "batch_size": 100000, "flush_interval": "10m",
          "ports": {{"inputs": [{{"name": "in", "subject": "burst.>"}}]}}
        }}}}
      }}
    }}"#,
        url = pg.url()
    );
    let mut node = Node::start_with(&config, &[]);
    node.wait_ready(Duration::from_secs(30));
    let url = format!("ws://{}/in", node.addr_of("in"));

    // The burst: N JSON lines through the CLI peer, which returns once
    // every frame is written and the node has answered its close.
    let mut send = bin()
        .args(["send", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fednode send");
    {
        let mut stdin = send.stdin.take().expect("stdin");
        let mut lines = String::with_capacity(N * 40);
        for i in 0..N {
            lines.push_str(&format!("{{\"user_id\":\"u{}\",\"i\":{i}}}\n", i % 5));
        }
        stdin.write_all(lines.as_bytes()).expect("write the burst");
    }
    let out = send.wait_with_output().expect("fednode send");
    assert!(
        out.status.success(),
        "fednode send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing may be stored yet (batch 100,000, flush every 10 minutes):
    // the rows are in the node's queues and buffers.
    let table = "fednode_messages";
    assert_eq!(
        rows(&pg, &format!("SELECT count(*) FROM {table}")),
        0,
        "rows were written before SIGTERM; the test would not exercise the flush"
    );

    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(30))
        .expect("fednode did not exit within 30 s of SIGTERM");
    assert!(status.success(), "exit {status}\n{}", node.log());

    assert_eq!(
        rows(&pg, &format!("SELECT count(*) FROM {table}")),
        N,
        "{}",
        node.log()
    );
    assert_eq!(
        rows(
            &pg,
            &format!("SELECT count(DISTINCT (payload->>'i')::int) FROM {table}")
        ),
        N
    );
    assert_eq!(
        rows(
            &pg,
            &format!(
                "SELECT count(*) FROM {table} WHERE payload->>'user_id' = 'u' || ((payload->>'i')::int % 5) \
                 AND subject = 'burst.data' AND node_id = 'burst-node'"
            )
        ),
        N
    );
}
