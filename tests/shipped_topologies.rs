//! The shipped federation configs, run as a user would run them: a
//! regional hub (`configs/regional-hub.json`) takes data from its edges and
//! pushes it on, acknowledged and stored on disk, to a central hub
//! (`configs/hub.json`: NATS bus, durable timescale), whose consumers and
//! storage see where each message came from; an operator steers the
//! regional hub through the central hub's admin server. Only environment
//! variables differ from the files: ports 0, the test's own NATS and
//! PostgreSQL.

mod common;
use common::{bin, Node};
use fednode_testkit::wait_until_blocking;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);
const N: usize = 200;

#[test]
fn a_regional_hub_pushes_to_the_central_hub_which_stores_and_serves() {
    let nats = fednode_testkit::NatsServer::start_jetstream();
    let pg = fednode_testkit::PgCluster::start();
    let mut central = common::shipped_hub(&nats.url(), &pg.url(), READY);
    let central_in = format!("ws://{}/ingest", central.addr_of("ws_in"));
    let data = tempfile::tempdir().unwrap();
    let mut regional = Node::start(
        "configs/regional-hub.json",
        &[
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_INGEST_PORT", "0"),
            ("FEDNODE_DATA_DIR", data.path().to_str().unwrap()),
            ("FEDNODE_CENTRAL_A", central_in.as_str()),
            // The second central hub of the list is down: the first serves.
            ("FEDNODE_CENTRAL_B", "ws://127.0.0.1:9/ingest"),
        ],
    );
    regional.wait_ready(READY);
    wait_until_blocking(
        WAIT,
        regional.and_log("the regional hub to reach the central one"),
        || regional.status_of("central").as_deref() == Some("connected"),
    );

    // A consumer of the central hub's feed.
    let mut tail = bin()
        .args(["tail", &format!("ws://{}/feed", central.addr_of("ws_out"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_blocking(WAIT, central.and_log("the consumer to connect"), || {
        central.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });

    // An edge's data into the regional hub.
    let mut send = bin()
        .args([
            "send",
            &format!("ws://{}/ingest", regional.addr_of("edges")),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = send.stdin.take().unwrap();
        for i in 0..N {
            writeln!(stdin, r#"{{"sensor":"s1","i":{i}}}"#).unwrap();
        }
    }
    let out = send.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The consumer gets all of it, in order.
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    for i in 0..N {
        let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(v["i"], i, "{v}");
    }
    // Storage has every row once, from the regional hub (where the data
    // entered fednode), routed by its region.
    let count = |sql: &str| pg.psql("postgres", sql);
    wait_until_blocking(WAIT, central.and_log("every row to be stored"), || {
        count("SELECT count(*) FROM fednode_messages") == N.to_string()
    });
    assert_eq!(
        count("SELECT count(DISTINCT (payload->>'i')) FROM fednode_messages WHERE node_id = 'regional-eu' AND subject = 'edges.eu.data'"),
        N.to_string()
    );
    // The link was acknowledged: nothing left in the regional hub's store.
    wait_until_blocking(WAIT, regional.and_log("the store to drain"), || {
        regional.metric("websocket_output_store_messages{component=\"central\"}") == 0.0
    });

    // The operator steers the regional hub through the central one: by
    // the node id it announced, then every peer at once.
    let through = format!("http://{}/components/ws_in", central.admin());
    let ask = |args: &[&str]| -> serde_json::Value {
        let out = bin()
            .arg("request")
            .arg(&through)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let reply = ask(&["status", "--connection", "regional-eu"]);
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["result"]["node"]["id"], "regional-eu", "{reply}");
    let replies = ask(&["backpressure", "--params", r#"{"rate_limit": 500}"#]);
    let all = replies["replies"].as_object().unwrap();
    assert_eq!(all.len(), 1, "{replies}");
    assert_eq!(all.values().next().unwrap()["result"]["adjusted_to"], 500.0);
    assert_eq!(
        regional.described("central")["connections"][0]["rate_limit"],
        500.0
    );
    // A peer that is not there is named in the error, exit 1.
    let out = bin()
        .args(["request", &through, "status", "--connection", "edge-99"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no connection named edge-99"));

    let _ = tail.kill();
    let _ = tail.wait();
    for node in [&mut regional, &mut central] {
        node.signal("TERM");
        assert!(node.wait_exit(WAIT).is_some_and(|s| s.success()));
    }
}
