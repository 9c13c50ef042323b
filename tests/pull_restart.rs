//! The pull set-up across a restart of the hub: the edge of
//! `configs/edge-pull.json` (UDP → filter → `websocket` output in server
//! mode with a `store`) keeps everything it fans out on disk; a hub pulling
//! from it in client mode with `at_least_once` and a `data_dir` keeps where
//! it stands. The hub is SIGKILLed mid-stream and started again on the
//! same `data_dir`; it asks the edge to replay after the last message it
//! published, the edge reads that from its store, and every message
//! reaches the hub's bus (counted distinct on NATS).

mod common;
use common::Node;
use fednode_testkit::{wait_until_blocking, NatsServer};
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);
const SENT: u64 = 3_000;

/// `configs/hub-pull.json`'s input, on the NATS bus so that what it
/// published outlives it.
fn hub(nats_url: &str, edge_url: &str, data_dir: &std::path::Path) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "cloud-01"}},
        "bus": {{"kind": "nats", "url": "{nats_url}"}},
        "data_dir": "{dir}",
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "client",
            "client": {{"url": "{edge_url}",
                        "reconnect": {{"initial_interval": "50ms", "max_interval": "200ms"}}}},
            "delivery": "at_least_once",
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "federated.data"}}]}}
          }}}}
        }}
      }}"#,
            dir = data_dir.display()
        ),
        &[],
    )
}

/// What a timeout names: the messages missing at the hub, the edge's drop
/// counters, and the hub's log.
struct Missing<'a> {
    got: &'a Mutex<BTreeSet<u64>>,
    edge: &'a Node,
    hub: &'a Node,
}

impl std::fmt::Display for Missing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let have = self.got.lock().clone();
        let missing: Vec<u64> = (1..=SENT).filter(|n| !have.contains(n)).collect();
        let counters = self
            .edge
            .get("/metrics")
            .map(|(_, text)| {
                text.lines()
                    .filter(|l| {
                        !l.starts_with('#') && (l.contains("dropped") || l.contains("replay"))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        write!(
            f,
            "every message at the hub after its restart: {} of {SENT} missing, the first {:?}\n\
             the edge's counters:\n{counters}\nthe hub logged:\n{}",
            missing.len(),
            &missing[..missing.len().min(20)],
            self.hub.log()
        )
    }
}

#[test]
fn a_hub_pulling_from_an_edge_loses_nothing_across_its_own_restart() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let hub_dir = data.path().join("hub");
    let mut edge = Node::start(
        "configs/edge-pull.json",
        &[
            (
                "FEDNODE_DATA_DIR",
                data.path().join("edge").to_str().unwrap(),
            ),
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_UDP_PORT", "0"),
            ("FEDNODE_WS_PORT", "0"),
        ],
    );
    edge.wait_ready(READY);
    let udp_addr = edge.addr_of("udp");
    let edge_url = format!("ws://{}/federation", edge.addr_of("ws_out"));

    // What reaches the hub's bus, by `n`.
    let got: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async_nats::connect(nats.url())).unwrap();
    let mut sub = rt.block_on(client.subscribe("federated.data")).unwrap();
    rt.block_on(client.flush()).unwrap();
    {
        let got = got.clone();
        rt.spawn(async move {
            while let Some(m) = sub.next().await {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                got.lock().insert(v["n"].as_u64().unwrap());
            }
        });
    }

    let mut first = hub(&nats.url(), &edge_url, &hub_dir);
    first.wait_ready(READY);
    wait_until_blocking(WAIT, first.and_log("the hub to reach the edge"), || {
        first.status_of("ws_in").as_deref() == Some("connected")
    });

    // The sensor sends SENT readings over UDP (all pass the edge's filter);
    // the hub is killed a third of the way through and back at two thirds.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |n: u64| {
        let line = format!(r#"{{"sensor":"s1","value":99,"n":{n}}}"#);
        socket.send_to(line.as_bytes(), udp_addr).unwrap();
        // Paced, so that no datagram is dropped by the kernel.
        std::thread::sleep(Duration::from_micros(500));
    };
    for n in 1..=SENT / 3 {
        send(n);
    }
    wait_until_blocking(WAIT, first.and_log("the first third at the hub"), || {
        got.lock().len() as u64 >= SENT / 4
    });
    first.signal("KILL");
    first
        .wait_exit(Duration::from_secs(10))
        .expect("the hub died");
    for n in SENT / 3 + 1..=2 * SENT / 3 {
        send(n);
    }
    let mut second = hub(&nats.url(), &edge_url, &hub_dir);
    second.wait_ready(READY);
    for n in 2 * SENT / 3 + 1..=SENT {
        send(n);
    }
    wait_until_blocking(
        WAIT,
        Missing {
            got: &got,
            edge: &edge,
            hub: &second,
        },
        || got.lock().len() as u64 == SENT,
    );
    let all: Vec<u64> = got.lock().iter().copied().collect();
    assert_eq!(all, (1..=SENT).collect::<Vec<_>>());
    assert!(
        second.log().contains("replay requested"),
        "the restarted hub asked to replay:\n{}",
        second.log()
    );
}
