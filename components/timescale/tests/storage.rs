//! The `timescale` component on the memory bus against a real, throwaway
//! PostgreSQL (plain PostgreSQL 15: no TimescaleDB here).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{build, count, publish, start, try_count};
use fednode_kit::testing;
use fednode_testkit::{merge, wait_until, wait_until_async, ClosedPort, PgCluster};
use serde_json::{json, Value};
use sqlx::Connection;

const BASE_TS: i64 = 1_700_000_000_000;

fn config(url: &str, extra: Value) -> Value {
    let mut c = json!({
        "url": url,
        "batch_size": 500,
        "flush_interval": "100ms",
        "retry": {"initial_interval": "100ms", "max_interval": "1s"},
        "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
    });
    merge(&mut c, extra);
    c
}

fn payload(i: i64) -> Value {
    json!({
        "user_id": format!("user-{}", i % 7),
        "i": i,
        "reading": {"values": [i, i + 1, 0.5], "ok": i % 2 == 0, "none": null},
        "text": "quote \" backslash \\ tab \t newline \n é ✓ \\u0000-as-text",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_then_a_burst_cancelled_at_once() {
    let pg = PgCluster::start();
    let url = pg.url();
    let (ctx, bus, metrics) = testing::context("store");
    let _c = start(config(&url, json!({})), &ctx).await.expect("start");
    let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);

    for i in 0..10_000 {
        publish(
            &publisher,
            &format!("data.user-{}", i % 7),
            &payload(i),
            &format!("m{i}"),
            BASE_TS + i,
        )
        .await;
    }
    wait_until_async(Duration::from_secs(30), "10,000 rows", || async {
        count(&url, "SELECT count(*) FROM fednode_messages").await == 10_000
    })
    .await;

    // Every row, once, with its payload, time, key, subject and node.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, String, String, Option<String>, String, i64)> = sqlx::query_as(
        "SELECT msg_id, payload::text, subject, key, node_id, \
         (extract(epoch from time) * 1000)::bigint FROM fednode_messages",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 10_000);
    let mut seen = HashMap::new();
    for (id, p, subject, key, node, ms) in rows {
        let i: i64 = id[1..].parse().unwrap();
        let stored: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(stored, payload(i), "payload of {id}");
        assert_eq!(subject, format!("data.user-{}", i % 7));
        assert_eq!(key.as_deref(), Some(format!("user-{}", i % 7).as_str()));
        assert_eq!(node, "test-node");
        assert_eq!(ms, BASE_TS + i);
        assert!(seen.insert(i, ()).is_none(), "{id} twice");
    }

    // A burst, then stop right away: everything is flushed before stop returns.
    for i in 10_000..15_000 {
        publish(
            &publisher,
            "data.burst",
            &payload(i),
            &format!("m{i}"),
            BASE_TS + i,
        )
        .await;
    }
    testing::stop(&ctx).await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        15_000
    );
    assert_eq!(
        count(&url, "SELECT count(DISTINCT msg_id) FROM fednode_messages").await,
        15_000
    );
    let written = metrics
        .value("timescale_rows_written_total", &[("component", "store")])
        .unwrap();
    assert_eq!(written, 15_000.0);
    assert!(
        metrics
            .value("timescale_batches_total", &[("component", "store")])
            .unwrap()
            >= 30.0
    );
    let text = metrics.render();
    assert!(
        text.contains("timescale_batch_duration_seconds_bucket{component=\"store\""),
        "{text}"
    );
    assert!(
        text.contains("timescale_buffered_rows{component=\"store\"} 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_loses_nothing_and_duplicates_nothing() {
    let mut pg = PgCluster::start();
    let url = pg.url();
    let (ctx, bus, metrics) = testing::context("store");
    let comp = start(config(&url, json!({"batch_size": 100})), &ctx)
        .await
        .expect("start");
    assert!(comp.health().healthy);
    let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);

    // ~1,000 msg/s for 8 s; PostgreSQL is killed once rows are being
    // written and restarted once the outage has buffered a backlog and been
    // retried, while the feed goes on.
    const N: i64 = 8_000;
    let feeding = tokio::spawn(async move {
        for i in 0..N {
            publish(
                &publisher,
                "data.stream",
                &payload(i),
                &format!("f{i}"),
                BASE_TS + i,
            )
            .await;
            if i % 50 == 49 {
                // Pacing, not waiting: the feed outlasts the outage.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    wait_until_async(
        Duration::from_secs(10),
        "rows written before the outage",
        || async { count(&url, "SELECT count(*) FROM fednode_messages").await > 0 },
    )
    .await;
    pg = tokio::task::spawn_blocking(move || {
        pg.kill();
        pg
    })
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(5),
        "unhealthy during the outage",
        || !comp.health().healthy,
    )
    .await;
    assert_eq!(comp.health().status, "database_unreachable");
    // The outage lasts until the component has retried and holds a
    // backlog (half a second of the feed) that it could not write.
    let m = |name: &str| {
        metrics
            .value(name, &[("component", "store")])
            .unwrap_or(0.0)
    };
    wait_until(
        Duration::from_secs(10),
        "retries and a backlog during the outage",
        || m("timescale_retries_total") >= 2.0 && m("timescale_buffered_rows") >= 500.0,
    )
    .await;
    assert!(!comp.health().healthy);
    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();

    feeding.await.unwrap();
    wait_until_async(
        Duration::from_secs(30),
        "every row after the outage",
        || async {
            try_count(&url, "SELECT count(DISTINCT msg_id) FROM fednode_messages").await == Some(N)
        },
    )
    .await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        N,
        "duplicated rows"
    );
    wait_until(Duration::from_secs(10), "healthy again", || {
        comp.health().healthy
    })
    .await;
    let m = |name: &str, labels: &[(&str, &str)]| metrics.value(name, labels).unwrap_or(0.0);
    assert!(m("timescale_retries_total", &[("component", "store")]) >= 1.0);
    assert!(
        m(
            "timescale_errors_total",
            &[("component", "store"), ("type", "connection")]
        ) >= 1.0
    );
    testing::stop(&ctx).await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        N
    );
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_stops_reading_and_the_publisher_waits() {
    let mut pg = PgCluster::start();
    let url = pg.url();
    let (ctx, bus, metrics) = testing::context("store");
    let _c = start(
        config(&url, json!({"batch_size": 50, "max_buffered": 200})),
        &ctx,
    )
    .await
    .expect("start");
    pg.stop();
    let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    let published = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let p2 = published.clone();
    const N: i64 = 5_000;
    let feeding = tokio::spawn(async move {
        for i in 0..N {
            publish(
                &publisher,
                "data.bp",
                &payload(i),
                &format!("b{i}"),
                BASE_TS + i,
            )
            .await;
            p2.store(i + 1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let buffered = || {
        metrics
            .value("timescale_buffered_rows", &[("component", "store")])
            .unwrap_or(0.0)
    };
    let published_now = || published.load(std::sync::atomic::Ordering::SeqCst);
    // The writer fills its buffer up to max_buffered...
    wait_until(Duration::from_secs(10), "max_buffered rows held", || {
        buffered() >= 200.0
    })
    .await;
    // ...and then the publisher stalls: it has not moved for 500 ms. That
    // it stays still is a negative, so it takes a quiet period to show.
    let quiet = Duration::from_millis(500);
    let mut last = (published_now(), std::time::Instant::now());
    wait_until(
        Duration::from_secs(10),
        "the publisher to stall for 500 ms",
        || {
            let now = published_now();
            if now != last.0 {
                last = (now, std::time::Instant::now());
            }
            last.1.elapsed() >= quiet
        },
    )
    .await;
    let stalled_at = last.0;
    assert!(stalled_at < N, "the publisher was never held back");
    let buffered = buffered();
    assert!(
        buffered <= 200.0,
        "held {buffered} rows, more than max_buffered"
    );

    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    feeding.await.unwrap();
    testing::stop(&ctx).await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        N
    );
    assert_eq!(
        count(&url, "SELECT count(DISTINCT msg_id) FROM fednode_messages").await,
        N
    );
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_idempotent_with_brin_on_plain_postgres() {
    let pg = PgCluster::start();
    let url = pg.url();
    for round in 0..2 {
        let (ctx, bus, metrics) = testing::context("store");
        let c = start(config(&url, json!({})), &ctx).await.expect("start");
        let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
        publish(
            &publisher,
            "data.x",
            &json!({"round": round}),
            &format!("r{round}"),
            BASE_TS,
        )
        .await;
        testing::stop(&ctx).await;
        let h = c.health();
        assert_eq!(h.details["timescaledb"], json!(false), "{h:?}");
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        2
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        )
        .await,
        0
    );
    let indexes = pg.psql(
        "postgres",
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'fednode_messages' ORDER BY indexname",
    );
    assert!(indexes.contains("USING brin (\"time\")"), "{indexes}");
    assert!(indexes.contains("USING btree (key, \"time\")"), "{indexes}");
    assert_eq!(indexes.lines().count(), 2, "{indexes}");
    let columns = pg.psql(
        "postgres",
        "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns \
         WHERE table_name = 'fednode_messages' ORDER BY ordinal_position",
    );
    assert_eq!(
        columns.lines().collect::<Vec<_>>(),
        [
            "time timestamp with time zone NO",
            "subject text NO",
            "node_id text NO",
            "key text YES",
            "payload jsonb NO",
            "msg_id text YES",
            "region text YES"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_tables_without_ddl_and_start_errors() {
    let pg = PgCluster::start();
    let url = pg.url();
    // manage_schema false: a table made elsewhere, with other types and no msg_id.
    pg.psql(
        "postgres",
        "CREATE SCHEMA app; CREATE TABLE app.events (time timestamptz NOT NULL, subject varchar(200) NOT NULL, \
         node_id text NOT NULL, key varchar(50), payload json NOT NULL, extra int DEFAULT 7)",
    );
    let (ctx, bus, metrics) = testing::context("store");
    start(
        config(
            &url,
            json!({"table": "app.events", "manage_schema": false, "key_path": "$.who.name"}),
        ),
        &ctx,
    )
    .await
    .expect("start on an existing table");
    let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    publish(
        &publisher,
        "data.e",
        &json!({"who": {"name": "ada"}, "v": 1}),
        "e1",
        BASE_TS,
    )
    .await;
    testing::stop(&ctx).await;
    assert_eq!(
        pg.psql("postgres", "SELECT key || ' ' || subject || ' ' || (payload->>'v') || ' ' || extra FROM app.events"),
        "ada data.e 1 7"
    );
    // No DDL happened.
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'fednode_messages'"
        )
        .await,
        0
    );

    // A missing table without DDL is a start error naming it.
    let (ctx, ..) = testing::context("store");
    let e = start(
        config(&url, json!({"table": "nope", "manage_schema": false})),
        &ctx,
    )
    .await
    .err()
    .expect("missing table accepted");
    assert!(e.to_string().contains("table nope does not exist"), "{e}");

    // A wrong column type too.
    pg.psql(
        "postgres",
        "CREATE TABLE badtypes (time bigint, subject text, node_id text, payload jsonb)",
    );
    let (ctx, ..) = testing::context("store");
    let e = start(
        config(&url, json!({"table": "badtypes", "manage_schema": false})),
        &ctx,
    )
    .await
    .err()
    .expect("bad types accepted");
    assert!(e.to_string().contains("column time has type bigint"), "{e}");

    // durable on the memory bus names the path.
    let (ctx, ..) = testing::context("store");
    let e = start(config(&url, json!({"durable": true})), &ctx)
        .await
        .err()
        .expect("durable accepted");
    assert!(
        e.to_string().contains("components.store.config.durable"),
        "{e}"
    );

    // An unreachable database names the component and the URL, never the password.
    // Nothing listens there (and nothing can start to, while it is held).
    let closed = ClosedPort::new();
    let port = closed.port();
    let bad = format!("postgres://fed:s3cret-pw@127.0.0.1:{port}/db");
    let (ctx, ..) = testing::context("store");
    let e = start(config(&bad, json!({})), &ctx)
        .await
        .err()
        .expect("unreachable accepted");
    let msg = e.to_string();
    assert!(msg.contains("component store"), "{msg}");
    assert!(
        msg.contains(&format!("postgres://fed:***@127.0.0.1:{port}/db")),
        "{msg}"
    );
    assert!(!msg.contains("s3cret-pw"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_start_buffers_until_the_database_appears() {
    let mut pg = PgCluster::start();
    let url = pg.url();
    pg.stop();
    let (ctx, bus, metrics) = testing::context("store");
    let c = start(config(&url, json!({"retry_on_start": true})), &ctx)
        .await
        .expect("retry_on_start starts without a database");
    let h = c.health();
    assert!(!h.healthy);
    assert_eq!(h.status, "database_unreachable");
    let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    for i in 0..100 {
        publish(
            &publisher,
            "data.late",
            &payload(i),
            &format!("l{i}"),
            BASE_TS + i,
        )
        .await;
    }
    pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    wait_until_async(
        Duration::from_secs(15),
        "rows after the database appeared",
        || async { try_count(&url, "SELECT count(*) FROM fednode_messages").await == Some(100) },
    )
    .await;
    wait_until(Duration::from_secs(5), "healthy", || c.health().healthy).await;
    testing::stop(&ctx).await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eeg_profile_writes_the_typed_tables() {
    let pg = PgCluster::start();
    let url = pg.url();
    let (ctx, bus, metrics) = testing::context("store");
    start(config(&url, json!({"profile": "eeg"})), &ctx)
        .await
        .expect("start");
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    let sid = "6f1c1f5e-8a4e-4d1a-9a51-2b8d8c1e0a01";
    let msgs = [
        json!({"type": "auth", "api_key": "k", "user_id": "u1", "session_id": sid,
               "device_info": {"sampling_rate": 128, "channel_names": ["F3", "F4"]}}),
        json!({"type": "raw", "user_id": "u1", "timestamp": BASE_TS, "channels": [0.1, 0.2]}),
        json!({"type": "raw", "user_id": "u1", "timestamp": BASE_TS + 8, "channels": [0.3, -0.4]}),
        json!({"type": "features", "user_id": "u1", "timestamp": BASE_TS + 2000, "workload": 0.65,
               "confidence": 0.89, "band_powers": {"alpha": 0.35}}),
        json!({"type": "prediction", "user_id": "u1", "prediction_type": "workload_azure_lstm",
               "classifier_name": "azure_ml_lstm_v2", "version": "v2.1.0",
               "data": {"workload_prediction": 0.72, "confidence": 0.94}}),
        json!({"type": "alert", "user_id": "u1", "level": "warning"}),
        json!({"type": "raw", "user_id": "u2", "channels": [1.0, 2.0]}),
        json!({"type": "session_end", "user_id": "u1"}),
    ];
    for (i, m) in msgs.iter().enumerate() {
        publish(
            &p,
            "data.eeg",
            m,
            &format!("e{i}"),
            BASE_TS + 5000 + i as i64,
        )
        .await;
    }
    testing::stop(&ctx).await;
    let q = |sql: &str| pg.psql("postgres", sql);
    assert_eq!(
        q("SELECT user_id, end_time IS NOT NULL, device_info->>'sampling_rate' FROM sessions WHERE session_id = '6f1c1f5e-8a4e-4d1a-9a51-2b8d8c1e0a01'"),
        "u1|t|128"
    );
    assert_eq!(
        q("SELECT count(*) FROM sessions"),
        "2",
        "u2 got an implicit session"
    );
    assert_eq!(
        q(&format!(
            "SELECT data::text FROM raw_samples WHERE session_id = '{sid}' ORDER BY timestamp"
        )),
        "{\"channels\": [0.1, 0.2]}\n{\"channels\": [0.3, -0.4]}"
    );
    assert_eq!(
        q("SELECT (extract(epoch from timestamp) * 1000)::bigint FROM raw_samples WHERE user_id = 'u1' ORDER BY 1 LIMIT 1"),
        BASE_TS.to_string()
    );
    assert_eq!(
        q("SELECT r.user_id FROM raw_samples r JOIN sessions s USING (session_id) WHERE s.user_id = 'u2'"),
        "u2"
    );
    assert_eq!(
        q(&format!("SELECT workload, confidence, data->'band_powers'->>'alpha' FROM features WHERE session_id = '{sid}'")),
        "0.65|0.89|0.35"
    );
    assert_eq!(
        q("SELECT prediction_type, classifier_name, classifier_version, confidence, data->>'workload_prediction' FROM predictions"),
        "workload_azure_lstm|azure_ml_lstm_v2|v2.1.0|0.94|0.72"
    );
    assert_eq!(
        q("SELECT payload->>'level' FROM fednode_messages"),
        "warning"
    );
    let brin = q("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING brin%'");
    assert_eq!(
        brin, "4",
        "BRIN on fednode_messages and the three typed tables"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_are_isolated_and_the_rest_is_written() {
    let pg = PgCluster::start();
    let url = pg.url();
    pg.psql(
        "postgres",
        "CREATE TABLE strict (time timestamptz NOT NULL, subject text NOT NULL, node_id text NOT NULL, \
         key varchar(5), payload jsonb NOT NULL, msg_id text)",
    );
    let (ctx, bus, metrics) = testing::context("store");
    let c = build(config(
        &url,
        json!({"table": "strict", "manage_schema": false, "batch_size": 100}),
    ));
    c.clone().start(ctx.clone()).await.unwrap();
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    for i in 0..300 {
        // Three keys too long for varchar(5), one payload that is not JSON.
        let user = if i % 100 == 42 {
            "much-too-long".to_string()
        } else {
            format!("u{}", i % 10)
        };
        publish(
            &p,
            "data.s",
            &json!({"user_id": user, "i": i}),
            &format!("s{i}"),
            BASE_TS + i,
        )
        .await;
    }
    p.bus
        .publish(
            "data.s",
            bytes::Bytes::from_static(b"{not json"),
            Default::default(),
        )
        .await
        .unwrap();
    testing::stop(&ctx).await;
    assert_eq!(count(&url, "SELECT count(*) FROM strict").await, 297);
    let m = |t: &str| {
        metrics
            .value(
                "timescale_errors_total",
                &[("component", "store"), ("type", t)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(m("rejected_row"), 3.0);
    assert_eq!(m("parse_error"), 1.0);
    drop(pg);
}
