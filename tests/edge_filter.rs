//! The edge example (`configs/edge.json`) end to end, with the built binary: UDP datagrams
//! → json_filter `$.value > 50` → websocket output, read by `fednode tail`
//! and by a hub node (`configs/cloud.json`) pulling in client mode.

mod common;
use common::{free_port, metric, Node};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn udp_filter_websocket_and_a_hub_pulling_from_it() {
    let admin = format!("127.0.0.1:{}", free_port());
    let udp = free_port();
    let ws = free_port();
    let (udp_s, ws_s) = (udp.to_string(), ws.to_string());
    let mut edge = Node::start(
        "configs/edge.json",
        &admin,
        &[
            ("FEDNODE_ADMIN", admin.as_str()),
            ("FEDNODE_UDP_PORT", udp_s.as_str()),
            ("FEDNODE_WS_PORT", ws_s.as_str()),
        ],
    );
    edge.wait_ready(Duration::from_secs(20));
    let url = format!("ws://127.0.0.1:{ws}/federation");

    // A consumer, and a hub pulling from the edge.
    let mut tail = common::bin()
        .args(["tail", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hub_admin = format!("127.0.0.1:{}", free_port());
    let mut hub = Node::start(
        "configs/cloud.json",
        &hub_admin,
        &[
            ("FEDNODE_ADMIN", hub_admin.as_str()),
            ("FEDNODE_EDGE_URL", url.as_str()),
        ],
    );
    hub.wait_ready(Duration::from_secs(20));

    // Wait until both peers are connected to the edge's output.
    let t0 = Instant::now();
    loop {
        let (_, text) = edge.get("/metrics").unwrap();
        if metric(
            &text,
            "websocket_output_connections_active{component=\"ws_out\"}",
        ) == Some(2.0)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "peers did not connect:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for v in [10, 51, 50, 70, 99] {
        sock.send_to(
            format!(r#"{{"sensor":"t1","value":{v}}}"#).as_bytes(),
            ("127.0.0.1", udp),
        )
        .unwrap();
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
    let t0 = Instant::now();
    loop {
        let (_, text) = hub.get("/metrics").unwrap();
        let n = metric(
            &text,
            "websocket_input_messages_published_total{component=\"ws_in\"}",
        );
        if n == Some(3.0) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "hub published {n:?}:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
