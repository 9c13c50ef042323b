//! The edge example (`configs/edge-pull.json`) end to end, with the built binary: UDP datagrams
//! → json_filter `$.value > 50` → websocket output, read by `fednode tail`
//! and by a hub node (`configs/hub-pull.json`) pulling in client mode.

mod common;
use common::{metric, Node};
use fednode_testkit::wait_until_blocking;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

#[test]
fn udp_filter_websocket_and_a_hub_pulling_from_it() {
    // Every server on port 0; the ports it got are read from the log.
    let data = tempfile::tempdir().unwrap();
    let edge_dir = data.path().join("edge");
    let hub_dir = data.path().join("hub");
    let mut edge = Node::start(
        "configs/edge-pull.json",
        &[
            ("FEDNODE_DATA_DIR", edge_dir.to_str().unwrap()),
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_UDP_PORT", "0"),
            ("FEDNODE_WS_PORT", "0"),
        ],
    );
    edge.wait_ready(Duration::from_secs(20));
    let udp = edge.addr_of("udp");
    let url = format!("ws://{}/federation", edge.addr_of("ws_out"));

    // A consumer, and a hub pulling from the edge.
    let mut tail = common::bin()
        .args(["tail", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut hub = Node::start(
        "configs/hub-pull.json",
        &[
            ("FEDNODE_DATA_DIR", hub_dir.to_str().unwrap()),
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_EDGE_URL", url.as_str()),
        ],
    );
    hub.wait_ready(Duration::from_secs(20));

    // Wait until both peers are connected to the edge's output.
    let what = edge.and_log("both peers to connect");
    wait_until_blocking(Duration::from_secs(15), what, || {
        let (_, text) = edge.get("/metrics").unwrap();
        metric(
            &text,
            "websocket_output_connections_active{component=\"ws_out\"}",
        ) == Some(2.0)
    });

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for v in [10, 51, 50, 70, 99] {
        sock.send_to(format!(r#"{{"sensor":"t1","value":{v}}}"#).as_bytes(), udp)
            .unwrap();
        // Pacing, not waiting: datagrams a few ms apart.
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let got: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap())
        .collect();
    let values: Vec<i64> = got.iter().map(|v| v["value"].as_i64().unwrap()).collect();
    assert_eq!(values, vec![51, 70, 99]);
    let _ = tail.kill();
    let _ = tail.wait();

    // The hub published the same three on its bus.
    wait_until_blocking(
        Duration::from_secs(10),
        hub.and_log("the hub to publish three messages"),
        || {
            let (_, text) = hub.get("/metrics").unwrap();
            metric(
                &text,
                "websocket_input_messages_published_total{component=\"ws_in\"}",
            ) == Some(3.0)
        },
    );
    let (_, text) = edge.get("/metrics").unwrap();
    assert_eq!(
        metric(
            &text,
            "json_filter_messages_passed_total{component=\"filter\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "json_filter_messages_rejected_total{component=\"filter\"}"
        ),
        Some(2.0)
    );

    hub.signal("TERM");
    edge.signal("TERM");
    assert!(hub.wait_exit(Duration::from_secs(10)).unwrap().success());
    assert!(edge.wait_exit(Duration::from_secs(10)).unwrap().success());
}
