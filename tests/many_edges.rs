//! Twenty edges from `configs/edge-push.json` push to one hub from
//! `configs/hub.json` (NATS bus, durable storage). Each edge has a device
//! streaming one user's raw EEG; the edges compute features and push them
//! up. A consumer at the hub gets every edge's features with its origin,
//! the hub stores them, and a prediction the consumer sends back for a
//! user reaches only the device of the edge that streams that user. Only
//! environment variables differ from the files.

mod common;
use common::Node;
use fednode_testkit::{wait_until_blocking, NatsServer, PgCluster};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const EDGES: usize = 20;
const READY: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(60);
/// 256 Hz for four seconds: feature windows of 2 s with 50 % overlap end
/// at samples 512, 768 and 1024.
const SAMPLES: usize = 1024;
const WINDOWS: usize = 3;
const BATCH: usize = 32;

fn edge_id(i: usize) -> String {
    format!("edge-{i:02}")
}

fn region(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "eu-west"
    } else {
        "us-east"
    }
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

/// The next text frame as JSON (pings skipped), or `None` after `within`.
async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(within, ws.next()).await.ok()??.ok()?;
        if let WsMessage::Text(t) = m {
            return Some(serde_json::from_str(&t).unwrap());
        }
    }
}

/// One device's raw EEG: 8 channels of sines, `BATCH` samples a message.
fn batches(user: &str) -> Vec<Value> {
    (0..SAMPLES / BATCH)
        .map(|b| {
            let samples: Vec<Vec<f64>> = (0..BATCH)
                .map(|k| {
                    let t = (b * BATCH + k) as f64 / 256.0;
                    (0..8)
                        .map(|c| (2.0 * std::f64::consts::PI * (6.0 + c as f64) * t).sin())
                        .collect()
                })
                .collect();
            json!({"type": "raw", "user_id": user, "samples": samples})
        })
        .collect()
}

#[test]
fn twenty_edges_push_to_one_hub_and_predictions_find_their_device() {
    let nats = NatsServer::start_jetstream();
    let pg = PgCluster::start();
    let hub = common::shipped_hub(&nats.url(), &pg.url(), READY);
    let ingest = format!("ws://{}/ingest", hub.addr_of("ws_in"));
    let feed = format!("ws://{}/feed", hub.addr_of("ws_out"));

    let data = tempfile::tempdir().unwrap();
    let mut edges: Vec<Node> = (0..EDGES)
        .map(|i| {
            let dir = data.path().join(edge_id(i));
            Node::start(
                "configs/edge-push.json",
                &[
                    ("FEDNODE_NODE_ID", edge_id(i).as_str()),
                    ("FEDNODE_REGION", region(i)),
                    ("FEDNODE_DATA_DIR", dir.to_str().unwrap()),
                    ("FEDNODE_ADMIN", "127.0.0.1:0"),
                    ("FEDNODE_DEVICE_PORT", "0"),
                    ("FEDNODE_HUB_A", ingest.as_str()),
                    // The second hub of the list is down: the first serves.
                    ("FEDNODE_HUB_B", "ws://127.0.0.1:9/ingest"),
                ],
            )
        })
        .collect();
    for e in &mut edges {
        e.wait_ready(READY);
    }
    wait_until_blocking(WAIT, hub.and_log("every edge to connect"), || {
        hub.metric("websocket_input_connections_active{component=\"ws_in\"}") == EDGES as f64
    });
    let described = hub.described("ws_in");
    let mut peers: Vec<String> = described["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["peer_node"].as_str().unwrap(),
                c["peer_region"].as_str().unwrap()
            )
        })
        .collect();
    peers.sort();
    let expected: Vec<String> = (0..EDGES)
        .map(|i| format!("{}/{}", edge_id(i), region(i)))
        .collect();
    assert_eq!(peers, expected, "the hub lists every edge with its region");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut consumer = rt.block_on(connect(&feed));
    wait_until_blocking(WAIT, hub.and_log("the consumer to connect"), || {
        hub.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });

    // Every edge's device streams its user.
    let mut devices: Vec<Ws> = rt.block_on(async {
        let mut devices = Vec::new();
        for (i, e) in edges.iter().enumerate() {
            let mut ws = connect(&format!("ws://{}/device", e.addr_of("device"))).await;
            for b in batches(&format!("u{i}")) {
                ws.send(WsMessage::Text(b.to_string().into()))
                    .await
                    .unwrap();
            }
            devices.push(ws);
        }
        devices
    });

    // The consumer gets each edge's feature windows, with the edge as origin.
    let mut by_origin: BTreeMap<String, (usize, String)> = BTreeMap::new();
    rt.block_on(async {
        for n in 0..EDGES * WINDOWS {
            let Some(env) = next_json(&mut consumer, WAIT).await else {
                panic!(
                    "the consumer got {n} of {} feature messages: {by_origin:?}",
                    EDGES * WINDOWS
                );
            };
            assert_eq!(env["type"], "data", "{env}");
            assert_eq!(env["payload"]["type"], "features", "{env}");
            let node = env["origin"]["node"]
                .as_str()
                .expect("origin.node")
                .to_string();
            let from_region = env["origin"]["region"]
                .as_str()
                .expect("origin.region")
                .to_string();
            let user = env["payload"]["user_id"].as_str().unwrap().to_string();
            let i: usize = node.trim_start_matches("edge-").parse().unwrap();
            assert_eq!(user, format!("u{i}"), "{env}");
            assert_eq!(from_region, region(i));
            let entry = by_origin.entry(node).or_insert((0, from_region));
            entry.0 += 1;
        }
    });
    assert_eq!(by_origin.len(), EDGES);
    assert!(
        by_origin.values().all(|(n, _)| *n == WINDOWS),
        "{by_origin:?}"
    );

    // The hub stored each window once, under its edge.
    wait_until_blocking(WAIT, hub.and_log("every window stored"), || {
        pg.psql(
            "postgres",
            "SELECT count(*) || '/' || count(DISTINCT node_id) FROM fednode_messages",
        )
        .trim()
            == format!("{}/{EDGES}", EDGES * WINDOWS)
    });

    // Predictions for u3 and u17 go back through the hub and the edge to
    // that user's device, and nowhere else.
    rt.block_on(async {
        for user in ["u3", "u17"] {
            let p = json!({"type": "prediction", "user_id": user, "prediction_type": "workload", "data": {"workload": 0.7}});
            consumer.send(WsMessage::Text(p.to_string().into())).await.unwrap();
        }
        for (user, i) in [("u3", 3), ("u17", 17)] {
            let got = next_json(&mut devices[i], WAIT).await.expect("the prediction reaches its device");
            let got = if got["type"] == "data" { got["payload"].clone() } else { got };
            assert_eq!(got["type"], "prediction", "{got}");
            assert_eq!(got["user_id"], user, "{got}");
        }
    });
    for (i, e) in edges.iter().enumerate() {
        let sent = e.metric("websocket_input_downstream_sent_total{component=\"device\"}");
        let want = if i == 3 || i == 17 { 1.0 } else { 0.0 };
        assert_eq!(
            sent,
            want,
            "{}: downstream data sent to its devices",
            edge_id(i)
        );
    }
    assert_eq!(
        hub.metric("websocket_input_downstream_sent_total{component=\"ws_in\"}"),
        2.0
    );
    rt.block_on(async {
        for (i, d) in devices.iter_mut().enumerate() {
            if i != 3 && i != 17 {
                assert!(
                    next_json(d, Duration::from_millis(50)).await.is_none(),
                    "device {i} got data"
                );
            }
        }
    });
}
