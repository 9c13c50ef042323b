//! Two hubs on one nats-server, with the edges split between them, share
//! one JetStream durable consumer: every message is stored exactly once,
//! by one hub or the other. Then one hub is SIGKILLed mid-stream, its
//! edges move to the other (`client.urls`), and nothing is lost.
//!
//! Everything is real: one nats-server with JetStream, one PostgreSQL
//! cluster, two hub processes and four edge processes. Each hub is a
//! `websocket_input` server publishing `edges.{$origin.node}.data` on NATS
//! and a `timescale` component with `durable: true` and the same stream
//! and consumer names as the other hub. Each edge takes JSON posted to an
//! `http_input` and pushes it `at_least_once`, through a `store`, to the
//! first reachable hub of its `client.urls`; two edges list hub-1 first,
//! two hub-2 first. The test posts `{"edge": …, "seq": n}` to each edge.

mod common;
use common::Node;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const EDGES: [&str; 4] = ["edge-1", "edge-2", "edge-3", "edge-4"];
/// Messages per edge while both hubs run.
const PHASE_1: u64 = 250;
/// Phase 2 kills hub-1 once every edge has this many more stored.
const BEFORE_KILL: u64 = 100;
/// And goes on sending at least this many per edge after the failover.
const AFTER_FAILOVER: u64 = 200;

fn hub(id: &str, nats: &str, pg: &str) -> Node {
    let config = common::nats_hub_config(
        id,
        nats,
        json!({
            "backpressure": {"on_full": "block"},
            "ports": {"outputs": [{"name": "ws_data", "subject": "edges.{$origin.node}.data"}]},
        }),
        json!({"store": {"type": "storage", "name": "timescale", "config": {
            "url": pg, "durable": true, "batch_size": 200, "flush_interval": "50ms",
            "jetstream": {"stream": "EDGES", "consumer": "edges_store", "ack_wait": "10s"},
            "ports": {"inputs": [{"name": "in", "subject": "edges.>"}]},
        }}}),
    );
    let mut node = Node::start_with(&config, &[]);
    node.wait_ready(Duration::from_secs(30));
    node
}

fn edge(id: &str, hubs: [&str; 2], data_dir: &std::path::Path) -> Node {
    let mut node = Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "{id}", "region": "eu"}},
        "data_dir": "{dir}",
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "src": {{"type": "input", "name": "http_input", "config": {{
            "http_port": 0, "bind": "127.0.0.1", "path": "/in",
            "ports": {{"outputs": [{{"name": "out", "subject": "edge.data"}}]}}
          }}}},
          "up": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"urls": ["{a}", "{b}"], "connect_timeout": "500ms",
                        "reconnect": {{"initial_interval": "20ms", "max_interval": "200ms"}}}},
            "heartbeat": {{"interval": "200ms", "timeout": "2s"}},
            "delivery": "at_least_once",
            "ack_timeout": "2s",
            "store": {{"sync_interval": "20ms"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#,
            dir = data_dir.display(),
            a = hubs[0],
            b = hubs[1],
        ),
        &[],
    );
    node.wait_ready(Duration::from_secs(30));
    node
}

fn query(pg: &fednode_testkit::PgCluster, sql: &str) -> String {
    pg.psql("postgres", sql).trim().to_string()
}

fn count(pg: &fednode_testkit::PgCluster, sql: &str) -> u64 {
    query(pg, sql).parse().unwrap_or(0)
}

/// The table's row count.
fn rows(pg: &fednode_testkit::PgCluster) -> u64 {
    count(pg, "SELECT count(*) FROM fednode_messages")
}

/// How many distinct sequence numbers of `edge` are stored.
fn stored_of(pg: &fednode_testkit::PgCluster, edge: &str) -> u64 {
    count(
        pg,
        &format!(
            "SELECT count(DISTINCT payload->>'seq') FROM fednode_messages \
             WHERE payload->>'edge' = '{edge}'"
        ),
    )
}

/// Distinct `(edge, seq)` pairs stored.
fn distinct(pg: &fednode_testkit::PgCluster) -> u64 {
    count(
        pg,
        "SELECT count(*) FROM (SELECT DISTINCT payload->>'edge', payload->>'seq' \
         FROM fednode_messages) d",
    )
}

/// The peer nodes connected to a hub's `ws_in`.
fn peers_of(hub: &Node) -> BTreeSet<String> {
    hub.described("ws_in")["connections"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["peer_node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The hub an edge's `up` is connected to, when it is.
fn hub_of(edge: &Node) -> Option<String> {
    let up = edge.described("up");
    if up["connection_state"] != "connected" {
        return None;
    }
    up["connections"][0]["peer_node"]
        .as_str()
        .map(str::to_string)
}

fn sum(nodes: &[&Node], metric: &str) -> f64 {
    nodes.iter().map(|n| n.metric(metric)).sum()
}

/// POST `{"edge": edge, "seq": n}` to an edge's `http_input`.
fn post(addr: &str, edge: &str, n: u64) {
    let body = format!(r#"{{"edge":"{edge}","seq":{n}}}"#);
    let (status, answer) =
        common::http("POST", addr, "/in", Some(&body)).expect("the edge answers");
    assert_eq!(status, 202, "{edge} seq {n}: {answer}");
}

/// A thread posting `from, from+1, …` to one edge until `stop`; `sent`
/// holds the last sequence number accepted (202).
struct Sender {
    sent: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

fn sender(addr: String, edge: &'static str, from: u64, stop: Arc<AtomicBool>) -> Sender {
    let sent = Arc::new(AtomicU64::new(from - 1));
    let thread = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut n = from;
            while !stop.load(Ordering::Relaxed) {
                post(&addr, edge, n);
                sent.store(n, Ordering::Relaxed);
                n += 1;
                // Pacing, not waiting for anything: a steady stream.
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    Sender { sent, thread }
}

#[test]
fn two_hubs_share_the_storage_and_take_over_each_others_edges() {
    let nats = fednode_testkit::NatsServer::start_jetstream();
    let pg = fednode_testkit::PgCluster::start();
    let hub_1 = hub("hub-1", &nats.url(), &pg.url());
    let hub_2 = hub("hub-2", &nats.url(), &pg.url());
    let url_1 = format!("ws://{}/ingest", hub_1.addr_of("ws_in"));
    let url_2 = format!("ws://{}/ingest", hub_2.addr_of("ws_in"));

    let dirs: Vec<_> = EDGES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let edges: Vec<Node> = EDGES
        .iter()
        .zip(&dirs)
        .enumerate()
        .map(|(i, (id, dir))| {
            let hubs = if i < 2 {
                [url_1.as_str(), url_2.as_str()]
            } else {
                [url_2.as_str(), url_1.as_str()]
            };
            edge(id, hubs, dir.path())
        })
        .collect();
    let inputs: Vec<String> = edges.iter().map(|e| e.addr_of("src").to_string()).collect();

    // The split: each edge on the first hub of its list.
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        hub_1.and_log("edge-1 and edge-2 on hub-1, edge-3 and edge-4 on hub-2"),
        || {
            peers_of(&hub_1) == BTreeSet::from(["edge-1".into(), "edge-2".into()])
                && peers_of(&hub_2) == BTreeSet::from(["edge-3".into(), "edge-4".into()])
        },
    );

    // Phase 1: both hubs up. Every message once in the table, written by
    // exactly one of the two hubs (one shared consumer, not one each).
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for (addr, edge) in inputs.iter().zip(EDGES) {
            s.spawn(move || (1..=PHASE_1).for_each(|n| post(addr, edge, n)));
        }
    });
    let phase_1 = PHASE_1 * EDGES.len() as u64;
    let written = r#"timescale_rows_written_total{component="store"}"#;
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(60),
        hub_1.and_log(&format!("{phase_1} rows written by the two hubs together")),
        || rows(&pg) >= phase_1 && sum(&[&hub_1, &hub_2], written) >= phase_1 as f64,
    );
    assert_eq!(rows(&pg), phase_1, "rows after phase 1");
    assert_eq!(distinct(&pg), phase_1, "distinct messages after phase 1");
    for edge in EDGES {
        assert_eq!(stored_of(&pg, edge), PHASE_1, "{edge} after phase 1");
    }
    assert_eq!(
        sum(&[&hub_1, &hub_2], written),
        phase_1 as f64,
        "each message written by one hub only"
    );
    assert_eq!(
        sum(
            &[&hub_1, &hub_2],
            r#"timescale_duplicates_total{component="store"}"#
        ),
        0.0,
        "no hub was handed a message the other had stored"
    );
    let (by_1, by_2) = (hub_1.metric(written), hub_2.metric(written));
    assert_eq!(
        query(
            &pg,
            "SELECT string_agg(DISTINCT node_id || '/' || region || '/' || subject, ' ' \
             ORDER BY node_id || '/' || region || '/' || subject) FROM fednode_messages"
        ),
        "edge-1/eu/edges.edge-1.data edge-2/eu/edges.edge-2.data \
         edge-3/eu/edges.edge-3.data edge-4/eu/edges.edge-4.data",
        "every row names its edge as origin"
    );

    // Phase 2: a steady stream into every edge; hub-1 is SIGKILLed while
    // it flows.
    let senders: Vec<Sender> = inputs
        .iter()
        .zip(EDGES)
        .map(|(addr, edge)| sender(addr.clone(), edge, PHASE_1 + 1, stop.clone()))
        .collect();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(60),
        hub_1.and_log("phase 2 data of every edge stored before the kill"),
        || {
            EDGES
                .iter()
                .all(|e| stored_of(&pg, e) >= PHASE_1 + BEFORE_KILL)
        },
    );
    let mut hub_1 = hub_1;
    hub_1.signal("KILL");
    hub_1
        .wait_exit(Duration::from_secs(10))
        .expect("hub-1 died");
    let at_kill: Vec<u64> = senders
        .iter()
        .map(|s| s.sent.load(Ordering::Relaxed))
        .collect();

    // Its edges move to hub-2, and the others stay there.
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        hub_2.and_log("every edge on hub-2"),
        || {
            edges.iter().all(|e| hub_of(e).as_deref() == Some("hub-2"))
                && peers_of(&hub_2).len() == EDGES.len()
        },
    );
    assert_eq!(
        peers_of(&hub_2),
        EDGES.iter().map(|e| e.to_string()).collect::<BTreeSet<_>>()
    );
    let moved: Vec<u64> = senders
        .iter()
        .map(|s| s.sent.load(Ordering::Relaxed))
        .collect();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        "every edge to take more data after the failover",
        || {
            senders
                .iter()
                .zip(&moved)
                .all(|(s, m)| s.sent.load(Ordering::Relaxed) >= m + AFTER_FAILOVER)
        },
    );
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<u64> = senders
        .into_iter()
        .map(|s| {
            s.thread.join().expect("sender");
            s.sent.load(Ordering::Relaxed)
        })
        .collect();
    for (edge, (k, s)) in EDGES.iter().zip(at_kill.iter().zip(&sent)) {
        assert!(s > k, "{edge} sent nothing after the kill");
    }

    // Nothing lost: every sequence number of every edge is stored.
    let total: u64 = sent.iter().sum();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(60),
        hub_2.and_log(&format!("all {total} messages stored")),
        || {
            EDGES
                .iter()
                .zip(&sent)
                .all(|(e, s)| stored_of(&pg, e) >= *s)
        },
    );
    for (edge, s) in EDGES.iter().zip(&sent) {
        assert_eq!(stored_of(&pg, edge), *s, "distinct seq of {edge}");
        assert_eq!(
            count(
                &pg,
                &format!(
                    "SELECT count(DISTINCT payload->>'seq') FROM fednode_messages \
                     WHERE payload->>'edge' = '{edge}' \
                     AND (payload->>'seq')::bigint BETWEEN 1 AND {s}"
                )
            ),
            *s,
            "{edge}: exactly the numbers 1..={s}"
        );
    }
    assert_eq!(distinct(&pg), total);

    // Duplicates: only what an edge sent again can be stored twice.
    let stored = rows(&pg);
    let resent = sum(
        &edges.iter().collect::<Vec<_>>(),
        r#"websocket_output_resent_total{component="up"}"#,
    );
    let duplicates = stored - total;
    assert!(
        duplicates as f64 <= resent,
        "{stored} rows for {total} messages, but the edges resent only {resent}"
    );
    println!(
        "phase 1: {phase_1} rows (hub-1 wrote {by_1}, hub-2 {by_2}); \
         phase 2: {total} sent, {stored} rows, {duplicates} duplicates, {resent} resent by the edges, \
         hub-2 skipped {} already stored",
        hub_2.metric(r#"timescale_duplicates_total{component="store"}"#)
    );
}
