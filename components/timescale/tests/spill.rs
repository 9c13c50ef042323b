//! Stopping with the database down (SPEC section 9): what the component
//! holds goes to its spill at once, without waiting for PostgreSQL, and is
//! written first, exactly once, at the next start. Without a spill the
//! rows lost at the shutdown deadline are logged and counted.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{count, publish, start};
use fednode_kit::metrics::Metrics;
use fednode_kit::testing;
use fednode_testkit::{merge, wait_until, wait_until_async, ClosedPort, PgCluster};
use serde_json::{json, Value};

const BASE_TS: i64 = 1_700_000_000_000;

fn config(url: &str, spill: Option<&Path>, extra: Value) -> Value {
    let mut c = json!({
        "url": url, "retry_on_start": true, "batch_size": 100, "flush_interval": "100ms",
        "retry": {"initial_interval": "100ms", "max_interval": "1s"},
        "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
    });
    if let Some(p) = spill {
        c["spill_path"] = json!(p);
    }
    merge(&mut c, extra);
    c
}

fn metric(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .value(name, &[("component", "store")])
        .unwrap_or(0.0)
}

async fn feed(ctx: &fednode_kit::Context, prefix: &str, n: i64, ts: i64) {
    for i in 0..n {
        let row = json!({"user_id": format!("u{}", i % 4), "i": i, "batch": prefix});
        publish(ctx, "data.s", &row, &format!("{prefix}{i}"), ts + i).await;
    }
}

/// Stop within `limit`, or fail: with a spill, a stop never waits for
/// the database.
async fn stop_within(ctx: &fednode_kit::Context, limit: Duration) {
    tokio::time::timeout(limit, testing::stop(ctx))
        .await
        .unwrap_or_else(|_| panic!("the component did not stop within {limit:?}"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_held_at_a_stop_with_the_database_down_are_written_first_at_the_next_start() {
    let mut pg = PgCluster::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    pg.stop();

    // Run 1: PostgreSQL is down. Rows pile up in memory (and in the
    // subscription); the stop puts them all in the spill, at once.
    const N: i64 = 1_000;
    let (ctx, bus, metrics) = testing::context("store");
    let c = start(config(&url, Some(&spill), json!({})), &ctx)
        .await
        .expect("start without the database");
    assert_eq!(c.health().status, "database_unreachable");
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    feed(&p, "old", N, BASE_TS).await;
    wait_until(Duration::from_secs(10), "a write to fail", || {
        metrics
            .value(
                "timescale_errors_total",
                &[("component", "store"), ("type", "connection")],
            )
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    stop_within(&ctx, Duration::from_secs(5)).await;
    assert_eq!(metric(&metrics, "timescale_spilled_rows_total"), N as f64);
    assert_eq!(metric(&metrics, "timescale_spill_rows"), N as f64);
    assert_eq!(
        metrics.value(
            "timescale_rows_dropped_total",
            &[("component", "store"), ("reason", "shutdown")]
        ),
        Some(0.0)
    );
    let snapshot = dir.path().join("snapshot");
    copy_dir(&spill, &snapshot);

    // Run 2: PostgreSQL is back. New rows arrive at once; the spilled ones
    // are written before them.
    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    const M: i64 = 300;
    let (ctx, bus, metrics) = testing::context("store");
    let c = start(config(&url, Some(&spill), json!({})), &ctx)
        .await
        .expect("start");
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    feed(&p, "new", M, BASE_TS + 10 * N).await;
    wait_until_async(Duration::from_secs(15), "every row stored", || async {
        count(&url, "SELECT count(*) FROM fednode_messages").await == N + M
    })
    .await;
    wait_until(Duration::from_secs(5), "the spill released", || {
        metric(&metrics, "timescale_spill_rows") == 0.0
    })
    .await;
    assert_eq!(c.health().details["spill"]["rows"], json!(0));
    stop_within(&ctx, Duration::from_secs(10)).await;
    assert_eq!(
        count(&url, "SELECT count(DISTINCT msg_id) FROM fednode_messages").await,
        N + M
    );
    // First: every spilled row was committed no later than any new row.
    let order = pg.psql(
        "postgres",
        "SELECT (SELECT max(xmin::text::bigint) FROM fednode_messages WHERE msg_id LIKE 'old%') \
         <= (SELECT min(xmin::text::bigint) FROM fednode_messages WHERE msg_id LIKE 'new%')",
    );
    assert_eq!(order, "t", "new rows were written before spilled ones");
    // Spilled rows keep their time, key, subject and payload.
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM fednode_messages WHERE msg_id = 'old' || (payload->>'i') \
             AND key = 'u' || ((payload->>'i')::int % 4) AND subject = 'data.s' \
             AND node_id = 'test-node' AND region = 'test' \
             AND (extract(epoch from time) * 1000)::bigint = 1700000000000 + (payload->>'i')::int"
        )
        .await,
        N
    );

    // Run 3: a spill whose rows were committed but not released (as after
    // a crash between the two) writes nothing twice.
    std::fs::remove_dir_all(&spill).unwrap();
    copy_dir(&snapshot, &spill);
    let (ctx, _bus, metrics) = testing::context("store");
    start(config(&url, Some(&spill), json!({})), &ctx)
        .await
        .expect("start");
    wait_until(Duration::from_secs(10), "the stale spill released", || {
        metric(&metrics, "timescale_spill_rows") == 0.0
    })
    .await;
    stop_within(&ctx, Duration::from_secs(10)).await;
    assert_eq!(metric(&metrics, "timescale_duplicates_total"), N as f64);
    assert_eq!(metric(&metrics, "timescale_rows_written_total"), 0.0);
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        N + M
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spill_defaults_to_the_node_data_dir() {
    let closed = ClosedPort::new();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed.port());
    let dir = tempfile::tempdir().unwrap();
    let node = fednode_kit::NodeIdentity {
        id: "test-node".into(),
        region: None,
        data_dir: Some(dir.path().to_path_buf()),
    };
    let ctx = fednode_kit::BuildContext {
        instance: "store",
        path: "components.store.config",
        node: &node,
    };
    let c = (fednode_timescale::registration().build)(&ctx, &config(&url, None, json!({})))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        c.describe()["spill_path"],
        json!(dir.path().join("store").join("spill"))
    );
    let (ctx, bus, metrics) = testing::context("store");
    c.clone().start(ctx.clone()).await.expect("start");
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    feed(&p, "d", 10, BASE_TS).await;
    stop_within(&ctx, Duration::from_secs(5)).await;
    assert_eq!(metric(&metrics, "timescale_spilled_rows_total"), 10.0);
    assert!(dir.path().join("store").join("spill").is_dir());
}

#[test]
fn without_a_spill_rows_lost_at_the_deadline_are_counted() {
    let closed = ClosedPort::new();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed.port());
    let metrics = Metrics::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let m = metrics.clone();
    rt.block_on(async move {
        let bus = fednode_kit::memory::MemoryBus::new();
        let ctx = testing::context_on("store", Arc::new(bus.clone()), &m);
        start(config(&url, None, json!({})), &ctx)
            .await
            .expect("start");
        let p = testing::context_on("pub", Arc::new(bus), &m);
        feed(&p, "x", 50, BASE_TS).await;
        wait_until(Duration::from_secs(10), "50 rows held", || {
            metric(&m, "timescale_buffered_rows") == 50.0
        })
        .await;
        // The stop begins; the database stays away...
        ctx.cancel.cancel();
    });
    // ...until the deadline, where the runtime drops the writer.
    rt.shutdown_timeout(Duration::from_secs(5));
    assert_eq!(
        metrics.value(
            "timescale_rows_dropped_total",
            &[("component", "store"), ("reason", "shutdown")]
        ),
        Some(50.0)
    );
}
