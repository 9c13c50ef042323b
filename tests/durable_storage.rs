//! `timescale` with `durable: true` on the real NATS bus, across a `kill -9`
//! of the fednode process itself: every message JetStream stored ends up
//! in PostgreSQL at least once, and what the restarted node finds already
//! stored is skipped and counted (`timescale_duplicates_total`), so the
//! table holds each message exactly once.
//!
//! Everything is real: the built binary, a throwaway nats-server with
//! JetStream and a throwaway PostgreSQL cluster, both started here.

mod common;
use common::{metric, Node};
use fednode_testkit::{wait_until, wait_until_async};
use std::time::Duration;

const N: usize = 6_000;
const BASE_TS: i64 = 1_700_000_000_000;

/// The node's config; its admin server listens on port 0 (read back from
/// its log by [`Node`]). `ack_wait` is long enough that nothing is
/// redelivered to the first node however loaded the machine (a commit and
/// its ack take milliseconds): the exact duplicate accounting below needs
/// every redelivery to reach the second node.
fn config(nats: &str, pg: &str) -> String {
    format!(
        r#"{{
      "node": {{"id": "store-node"}},
      "bus": {{"kind": "nats", "url": "{nats}"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "store": {{"type": "storage", "name": "timescale", "config": {{
          "url": "{pg}", "durable": true, "batch_size": 200, "flush_interval": "50ms",
          "jetstream": {{"ack_wait": "10s"}},
          "ports": {{"inputs": [{{"name": "in", "subject": "dur.>"}}]}}
        }}}}
      }}
    }}"#
    )
}

async fn publish(js: &async_nats::jetstream::Context, i: usize) {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Fednode-Id", format!("m{i}").as_str());
    h.insert(
        "Fednode-Timestamp",
        (BASE_TS + i as i64).to_string().as_str(),
    );
    h.insert("Fednode-Node", "edge-3");
    let body = format!(r#"{{"user_id":"u{}","i":{i}}}"#, i % 7);
    js.publish_with_headers(format!("dur.u{}", i % 7), h, body.into())
        .await
        .expect("publish")
        .await
        .expect("stored by JetStream");
}

fn rows(pg: &fednode_testkit::PgCluster, sql: &str) -> usize {
    pg.psql("postgres", sql).parse().unwrap_or(0)
}

async fn start_node(cfg: String) -> Node {
    tokio::task::spawn_blocking(move || {
        let mut node = Node::start_with(&cfg, &[]);
        node.wait_ready(Duration::from_secs(30));
        node
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_fednode_loses_nothing_and_counts_duplicates() {
    let nats = fednode_testkit::NatsServer::start_jetstream();
    let pg = fednode_testkit::PgCluster::start();
    let cfg = config(&nats.url(), &pg.url());

    let mut first = start_node(cfg.clone()).await;

    // Feed through JetStream (each publish acknowledged as stored), paced,
    // and kill the node with SIGKILL part-way: no flush, no acks. The
    // stream keeps receiving while no node runs.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let feeder = js.clone();
    let feeding = tokio::spawn(async move {
        for i in 0..N {
            publish(&feeder, i).await;
            if i % 100 == 99 {
                // Pacing, not waiting: about 3,000 messages a second.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    });
    wait_until(
        Duration::from_secs(30),
        first.and_log("the first node to store a sixth of the messages"),
        || rows(&pg, "SELECT count(*) FROM fednode_messages") >= N / 6,
    )
    .await;
    first.signal("KILL");
    let status = first
        .wait_exit(Duration::from_secs(5))
        .expect("exit after kill -9");
    assert!(!status.success(), "kill -9 ended with {status}");
    let at_kill = rows(&pg, "SELECT count(*) FROM fednode_messages");
    feeding.await.unwrap();
    assert!(at_kill < N, "everything was stored before the kill");

    // What JetStream knows at the kill: messages delivered in stream order
    // up to `delivered`, of which `num_ack_pending` were never acked. Rows
    // are committed before their ack, so the committed-but-unacked ones
    // are exactly the duplicates the restarted node must skip.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("FEDNODE_STORE")
        .await
        .unwrap()
        .get_consumer("fednode_store")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap().clone();
    let acked = info.delivered.stream_sequence as usize - info.num_ack_pending;
    assert!(
        acked <= at_kill,
        "acked before commit: {info:?}, {at_kill} rows"
    );
    let expected_duplicates = at_kill - acked;

    // The restarted node resumes the same durable consumer. Unacked
    // messages whose rows were committed before the kill come again.
    let second = start_node(cfg).await;
    // An upstream retry as well (same ids and times): whatever the kill
    // left, the duplicate path is exercised.
    const RESENT: usize = 50;
    for i in 0..RESENT {
        publish(&js, i).await;
    }
    wait_until(
        Duration::from_secs(60),
        second.and_log("every message stored"),
        || rows(&pg, "SELECT count(DISTINCT msg_id) FROM fednode_messages") == N,
    )
    .await;
    // Every row exactly once, with its payload and node.
    assert_eq!(rows(&pg, "SELECT count(*) FROM fednode_messages"), N);
    assert_eq!(
        rows(
            &pg,
            "SELECT count(*) FROM fednode_messages \
             WHERE node_id = 'edge-3' AND payload->>'i' = substr(msg_id, 2)"
        ),
        N
    );

    // Redeliveries are reported: the consumer acks every message, and the
    // node counts what it skipped as already stored.
    wait_until_async(Duration::from_secs(20), "every message acked", || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.unwrap();
            info.num_ack_pending == 0 && info.num_pending == 0
        }
    })
    .await;
    let metrics = second.get("/metrics").expect("metrics").1;
    let written = metric(
        &metrics,
        r#"timescale_rows_written_total{component="store"}"#,
    )
    .expect("rows written metric");
    let duplicates =
        metric(&metrics, r#"timescale_duplicates_total{component="store"}"#).unwrap_or(0.0);
    assert_eq!(
        written as usize + at_kill,
        N,
        "the second node wrote what the first had not"
    );
    // Exact unless JetStream redelivered to the first node before the kill
    // (it does at times within a second of a pull consumer's start, well
    // inside `ack_wait`): a redelivered message is delivered twice but
    // pending once, so each redelivery makes `acked` above one too small.
    let exact = expected_duplicates + RESENT;
    let redelivered = info.num_redelivered;
    assert!(
        (exact.saturating_sub(redelivered)..=exact).contains(&(duplicates as usize)),
        "{duplicates} duplicates, {exact} expected ({redelivered} redelivered before the kill): {info:?}"
    );
    println!(
        "rows at kill: {at_kill}; acked: {acked}; \
         skipped as duplicates: {duplicates} ({RESENT} resent upstream)"
    );
}
