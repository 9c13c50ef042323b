//! Reloading the config of a running node (SIGHUP, `POST /reload`), with
//! the built binary:
//!
//! - a changed filter applies while data streams through it, and a
//!   consumer of the untouched output keeps its connection and loses
//!   nothing (the filter hands over to its successor);
//! - a broken file, or one that changes what only a restart applies,
//!   changes nothing and says why, one line per problem;
//! - timescale's buffered rows survive a reload that leaves it untouched
//!   and one that restarts it.

mod common;
use common::{bin, http, Node};
use fednode_testkit::wait_until_blocking;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(20);

/// ws input → json_filter (`$.v < limit`) → ws output, on the memory bus.
fn pipeline(limit: u32, extra: &str) -> String {
    format!(
        r#"{{
      "node": {{"id": "reloading"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/in"}},
          "backpressure": {{"on_full": "block"}},
          "ports": {{"outputs": [{{"name": "ws_data", "subject": "r.in"}}]}}
        }}}},
        "filter": {{"type": "processor", "name": "json_filter", "config": {{
          "criteria": [{{"path": "$.v", "operator": "<", "value": {limit}}}],
          "ports": {{"inputs": [{{"name": "in", "subject": "r.in"}}],
                    "outputs": [{{"name": "out", "subject": "r.out"}}]}}
        }}}},
        "ws_out": {{"type": "output", "name": "websocket", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/out"}},
          "backpressure": {{"queue_size": 100000}},
          "ports": {{"inputs": [{{"name": "in", "subject": "r.out"}}]}}
        }}}}{extra}
      }}
    }}"#
    )
}

/// Replace the config file the node runs (write, then rename: the node
/// never reads half a file).
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn generation(node: &Node) -> u64 {
    let (_, body) = node.get("/health").expect("/health answers");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["config_generation"].as_u64().expect("config_generation")
}

/// `fednode tail URL`, each payload sent to the returned channel.
fn tail(url: &str) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = bin()
        .args(["tail", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = common::json_lines(&mut child);
    (child, rx)
}

/// `fednode send URL` with its stdin to write JSON lines to.
fn sender(url: &str) -> (Child, ChildStdin) {
    let mut child = bin()
        .args(["send", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Receive payloads until one with `"seq": seq` arrives.
fn until_seq(rx: &mpsc::Receiver<serde_json::Value>, seq: i64) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    loop {
        let v = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("seq {seq} did not arrive; got {} before", got.len()));
        let done = v["seq"].as_i64() == Some(seq);
        got.push(v);
        if done {
            return got;
        }
    }
}

#[test]
fn a_changed_filter_applies_while_the_consumer_of_an_untouched_output_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.json");
    write_config(&path, &pipeline(100, ""));
    let mut node = Node::start(path.to_str().unwrap(), &[]);
    node.wait_ready(READY);
    let admin = node.admin().to_string();
    assert_eq!(generation(&node), 1);

    let (mut consumer, rx) = tail(&format!("ws://{}/out", node.addr_of("ws_out")));
    wait_until_blocking(WAIT, node.and_log("the consumer to connect"), || {
        node.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });
    let (mut send, mut stdin) = sender(&format!("ws://{}/in", node.addr_of("ws_in")));

    // A steady stream (every message passes both filters) with the reload
    // in the middle of it: messages flow before the SIGHUP, while the old
    // filter hands over to the new one, and after.
    let mut seq: i64 = 0;
    let send_batch = |stdin: &mut ChildStdin, seq: &mut i64| {
        for _ in 0..20 {
            writeln!(stdin, r#"{{"seq":{seq},"v":10}}"#).unwrap();
            *seq += 1;
        }
        stdin.flush().unwrap();
        // Pacing, so that the stream spans the reload.
        std::thread::sleep(Duration::from_millis(1));
    };
    while seq < 2_000 {
        send_batch(&mut stdin, &mut seq);
    }
    write_config(&path, &pipeline(50, ""));
    node.signal("HUP");
    // Densest while the reload runs: a gap of a millisecond loses data.
    let deadline = std::time::Instant::now() + WAIT;
    while generation(&node) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            node.and_log("the reload to apply")
        );
        for _ in 0..200 {
            writeln!(stdin, r#"{{"seq":{seq},"v":10}}"#).unwrap();
            seq += 1;
        }
        stdin.flush().unwrap();
    }
    let reloaded_at = seq;
    while seq < reloaded_at + 2_000 {
        send_batch(&mut stdin, &mut seq);
    }
    let n = seq;
    // 70 passed the old filter and must not pass the new one.
    writeln!(stdin, r#"{{"seq":-1,"v":70}}"#).unwrap();
    writeln!(stdin, r#"{{"seq":{n},"v":10}}"#).unwrap();
    stdin.flush().unwrap();

    let got = until_seq(&rx, n);
    let seqs: Vec<i64> = got.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
    assert!(!seqs.contains(&-1), "the new filter did not apply");
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a message arrived twice");
    let missing: Vec<i64> = (0..=n).filter(|s| !unique.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} messages lost (reload after seq {reloaded_at}): {:?}…; bus drops {}, output drops {}",
        missing.len(),
        n + 1,
        &missing[..missing.len().min(20)],
        node.metric("bus_messages_dropped_total{component=\"ws_out\"}")
            + node.metric("bus_messages_dropped_total{component=\"filter\"}"),
        node.get("/metrics")
            .map(|(_, m)| m
                .lines()
                .filter(|l| l.starts_with("websocket_output_messages_dropped_total"))
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default(),
    );
    // One connection all along: the output was not restarted.
    assert_eq!(
        node.metric("websocket_output_connections_total{component=\"ws_out\"}"),
        1.0
    );
    assert_eq!(
        consumer.try_wait().unwrap(),
        None,
        "the consumer was dropped"
    );
    assert_eq!(
        node.metric("fednode_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    let log = node.log();
    assert!(log.contains("config reloaded"), "{log}");

    // A broken file changes nothing: POST /reload answers the errors.
    std::fs::write(&path, "{ \"components\": ").unwrap();
    let (code, body) = http("POST", &admin, "/reload", Some("")).unwrap();
    assert_eq!(code, 400, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"], "invalid_config");
    assert_eq!(answer["config_generation"], 2);
    let errors = answer["errors"].as_array().unwrap();
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("invalid JSON at line 1"),
        "{body}"
    );
    // And on SIGHUP, each error is one log line.
    node.signal("HUP");
    wait_until_blocking(
        WAIT,
        node.and_log("the refused reload to be logged"),
        || node.log().contains("config reload refused"),
    );
    assert_eq!(generation(&node), 2);
    assert_eq!(
        node.metric("fednode_config_reloads_total{result=\"invalid\"}"),
        2.0
    );

    // What only a restart applies is refused, naming the section.
    let moved_bus = pipeline(50, "").replacen(
        r#""http": {"listen": "127.0.0.1:0"},"#,
        r#""http": {"listen": "127.0.0.1:0"}, "bus": {"kind": "nats", "url": "nats://127.0.0.1:1"},"#,
        1,
    );
    write_config(&path, &moved_bus);
    let (code, body) = http("POST", &admin, "/reload", Some("")).unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("bus: changed, and only a restart applies it"),
        "{body}"
    );

    // Data still flows through the generation-2 filter.
    writeln!(stdin, r#"{{"seq":-2,"v":70}}"#).unwrap();
    writeln!(stdin, r#"{{"seq":{},"v":10}}"#, n + 1).unwrap();
    stdin.flush().unwrap();
    let got = until_seq(&rx, n + 1);
    assert_eq!(got.len(), 1, "{got:?}");

    drop(stdin);
    let _ = send.wait();
    let _ = consumer.kill();
    let _ = consumer.wait();
    node.signal("TERM");
    assert!(node.wait_exit(WAIT).is_some_and(|s| s.success()));
}

fn rows(pg: &fednode_testkit::PgCluster) -> usize {
    let out = pg.psql("postgres", "SELECT count(*) FROM fednode_messages");
    out.parse().unwrap_or_else(|_| panic!("psql said {out:?}"))
}

/// ws input → timescale holding every row (batch and interval far larger
/// than the test), plus `extra` components.
fn storing(url: &str, flush_interval: &str, extra: &str) -> String {
    format!(
        r#"{{
      "node": {{"id": "reloading-storage"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/in"}},
          "backpressure": {{"on_full": "block"}},
          "ports": {{"outputs": [{{"name": "ws_data", "subject": "s.data"}}]}}
        }}}},
        "store": {{"type": "storage", "name": "timescale", "config": {{
          "url": "{url}", "batch_size": 100000, "flush_interval": "{flush_interval}",
          "ports": {{"inputs": [{{"name": "in", "subject": "s.>"}}]}}
        }}}}{extra}
      }}
    }}"#
    )
}

#[test]
fn reloads_lose_none_of_the_rows_timescale_holds() {
    let pg = fednode_testkit::PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.json");
    write_config(&path, &storing(&pg.url(), "10m", ""));
    let mut node = Node::start(path.to_str().unwrap(), &[]);
    node.wait_ready(READY);
    let (mut send, mut stdin) = sender(&format!("ws://{}/in", node.addr_of("ws_in")));

    const N: usize = 3_000;
    for seq in 0..N {
        writeln!(stdin, r#"{{"seq":{seq}}}"#).unwrap();
    }
    stdin.flush().unwrap();
    let buffered = "timescale_buffered_rows{component=\"store\"}";
    wait_until_blocking(WAIT, node.and_log("timescale to hold every row"), || {
        node.metric(buffered) == N as f64
    });

    // A reload that adds a component leaves timescale and its rows alone.
    let filter = r#",
        "filter": {"type": "processor", "name": "json_filter", "config": {
          "criteria": [{"path": "$.seq", "operator": "exists"}],
          "ports": {"inputs": [{"name": "in", "subject": "other.in"}],
                    "outputs": [{"name": "out", "subject": "other.out"}]}
        }}"#;
    write_config(&path, &storing(&pg.url(), "10m", filter));
    node.signal("HUP");
    wait_until_blocking(WAIT, node.and_log("the first reload"), || {
        generation(&node) == 2
    });
    assert_eq!(node.metric(buffered), N as f64);
    assert_eq!(rows(&pg), 0);

    // A reload that changes timescale drains the old instance into the
    // database before its successor starts.
    write_config(&path, &storing(&pg.url(), "9m", filter));
    node.signal("HUP");
    wait_until_blocking(WAIT, node.and_log("the second reload"), || {
        generation(&node) == 3
    });
    assert_eq!(rows(&pg), N);

    // The successor stores what comes next, and flushes it at SIGTERM.
    for seq in N..2 * N {
        writeln!(stdin, r#"{{"seq":{seq}}}"#).unwrap();
    }
    drop(stdin);
    assert!(send.wait().unwrap().success());
    wait_until_blocking(
        WAIT,
        node.and_log("the new instance to hold the rest"),
        || node.metric(buffered) == N as f64,
    );
    node.signal("TERM");
    assert!(node.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert_eq!(rows(&pg), 2 * N);
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(DISTINCT (payload->>'seq')) FROM fednode_messages"
        ),
        (2 * N).to_string()
    );
}
