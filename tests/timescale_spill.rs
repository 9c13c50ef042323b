//! Shutdown with the database down (SPEC section 9), end to end with the
//! built binary on the memory bus: a client sends data `at_least_once` to
//! a `websocket_input` feeding `timescale`, whose PostgreSQL is stopped;
//! every message is acked (it is on the node's bus), then SIGTERM. The node
//! keeps what `timescale` holds in its spill (under the node's `data_dir`)
//! and exits 0 quickly; PostgreSQL comes back, the node is started again
//! with the same config, and every acked message is stored exactly once.

mod common;
use common::Node;
use futures::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const N: u64 = 2_000;

fn config(url: &str, data_dir: &std::path::Path) -> String {
    format!(
        r#"{{
      "node": {{"id": "spill-node"}},
      "data_dir": "{dir}",
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "in": {{"type": "input", "name": "websocket_input", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/in"}},
          "delivery": "at_least_once",
          "backpressure": {{"on_full": "block"}},
          "ports": {{"outputs": [{{"name": "ws_data", "subject": "spill.data"}}]}}
        }}}},
        "store": {{"type": "storage", "name": "timescale", "config": {{
          "url": "{url}", "retry_on_start": true, "flush_interval": "100ms",
          "retry": {{"initial_interval": "100ms", "max_interval": "1s"}},
          "ports": {{"inputs": [{{"name": "in", "subject": "spill.>"}}]}}
        }}}}
      }}
    }}"#,
        dir = data_dir.display(),
    )
}

fn rows(pg: &fednode_testkit::PgCluster, sql: &str) -> String {
    pg.psql("postgres", sql)
}

/// Send `n` data envelopes as an `at_least_once` sender does: at most
/// `WINDOW` unacknowledged, resending what is not acked after `RESEND`
/// (the input drops the duplicates and acks them again); return once the
/// node has acked every one.
async fn send_acked(node: &Node, n: u64) {
    const WINDOW: u64 = 200;
    const RESEND: Duration = Duration::from_secs(2);
    let url = format!("ws://{}/in", node.addr_of("in"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect to the input");
    let frame = |i: u64| {
        WsMessage::Text(
            format!(
                r#"{{"type":"data","id":"m{i}","payload":{{"user_id":"u{}","i":{i}}}}}"#,
                i % 3
            )
            .into(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = HashSet::new();
    let mut first = 1;
    while first <= n {
        let last = (first + WINDOW - 1).min(n);
        let mut resend_at = Instant::now();
        while (first..=last).any(|i| !acked.contains(&i)) {
            if Instant::now() >= resend_at {
                for i in (first..=last).filter(|i| !acked.contains(i)) {
                    ws.feed(frame(i)).await.unwrap();
                }
                ws.flush().await.unwrap();
                resend_at = Instant::now() + RESEND;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} acked within 60 s\n{}",
                acked.len(),
                node.log()
            );
            let wait = left.min(resend_at.saturating_duration_since(Instant::now()));
            let Ok(got) = tokio::time::timeout(wait, ws.next()).await else {
                continue;
            };
            let got = got
                .expect("the input closed the connection")
                .expect("WebSocket error");
            if let WsMessage::Text(text) = got {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_ne!(v["type"], "nack", "nacked: {v}");
                if v["type"] == "ack" && v.get("payload").is_none() {
                    let id = v["id"].as_str().unwrap();
                    acked.insert(id[1..].parse::<u64>().unwrap());
                }
            }
        }
        first = last + 1;
    }
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_rows_survive_a_sigterm_while_postgres_is_down() {
    let mut pg = fednode_testkit::PgCluster::start();
    let url = pg.url();
    pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = config(&url, data_dir.path());

    // Run 1: the database is down; everything sent is acked, then SIGTERM.
    let mut node = Node::start_with(&config, &[]);
    node.wait_ready(Duration::from_secs(30));
    send_acked(&node, N).await;
    node.signal("TERM");
    let t0 = Instant::now();
    let status = node
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM\n{}", node.log()));
    assert!(status.success(), "exit {status}\n{}", node.log());
    // It did not wait out shutdown_timeout (10 s) retrying the database.
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the stop took {:?}\n{}",
        t0.elapsed(),
        node.log()
    );
    let log = node.log();
    assert!(
        log.contains("kept in the spill"),
        "no word of the spill in the log:\n{log}"
    );
    assert!(data_dir.path().join("store").join("spill").is_dir());

    // Run 2: the database is back; the same config.
    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    let mut node = Node::start_with(&config, &[]);
    node.wait_ready(Duration::from_secs(30));
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        node.and_log("every acked message stored"),
        || {
            pg.psql(
                "postgres",
                "SELECT count(*) FROM pg_tables WHERE tablename = 'fednode_messages'",
            ) == "1"
                && rows(&pg, "SELECT count(*) FROM fednode_messages") == N.to_string()
        },
    );
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        node.and_log("the spill released"),
        || node.metric(r#"timescale_spill_rows{component="store"}"#) == 0.0,
    );
    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(30))
        .expect("no exit after the second SIGTERM");
    assert!(status.success(), "exit {status}\n{}", node.log());

    // Exactly once: every id, once, with its payload.
    assert_eq!(
        rows(&pg, "SELECT count(*) FROM fednode_messages"),
        N.to_string()
    );
    assert_eq!(
        rows(
            &pg,
            "SELECT count(DISTINCT msg_id) FROM fednode_messages \
             WHERE msg_id = 'm' || (payload->>'i') AND key = 'u' || ((payload->>'i')::int % 3)"
        ),
        N.to_string()
    );
    assert_eq!(
        rows(
            &pg,
            "SELECT min((payload->>'i')::int) || ' ' || max((payload->>'i')::int) FROM fednode_messages"
        ),
        format!("1 {N}")
    );
}
