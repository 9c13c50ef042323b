//! Storage never stops for one row (SPEC section 9): rows PostgreSQL
//! refuses for a reason of their own (SQLSTATE classes 22, 23, 54) are
//! isolated, logged and counted, and every other row of their batch and
//! after it is written. Against a real, throwaway PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{count, publish, start};
use fednode_kit::testing;
use fednode_testkit::{wait_until_async, PgCluster};
use serde_json::{json, Value};

const BASE_TS: i64 = 1_700_000_000_000;

/// `n` characters that do not compress (an index entry made of them stays
/// as long as they are): PostgreSQL compresses long index entries, so a
/// repeated character would fit in the b-tree.
fn incompressible(n: usize) -> String {
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            alphabet[(r >> 58) as usize % alphabet.len()]
        })
        .collect()
}

fn rejected(metrics: &fednode_kit::metrics::Metrics, reason: &str) -> f64 {
    metrics
        .value(
            "timescale_rows_rejected_total",
            &[("component", "store"), ("reason", reason)],
        )
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_postgres_refuses_never_stops_the_rows_after_it() {
    let pg = PgCluster::start();
    let url = pg.url();
    let (ctx, bus, metrics) = testing::context("store");
    let c = start(
        json!({
            "url": url, "flush_interval": "100ms",
            "retry": {"initial_interval": "100ms", "max_interval": "1s"},
            "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
        }),
        &ctx,
    )
    .await
    .expect("start");
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);

    // An 8,000-character key: too long for the b-tree on (key, time)
    // ("index row size … exceeds btree version 4 maximum", 54000).
    let long_key = json!({"user_id": incompressible(8_000), "what": "long key"});
    publish(&p, "data.bad.key", &long_key, "bad-key", BASE_TS).await;
    // A 100,000-level nested array: valid JSON that jsonb refuses ("stack
    // depth limit exceeded", 54001). Built as a string: serde_json would
    // not build such a tree.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    p.bus
        .publish(
            "data.bad.deep",
            bytes::Bytes::from(deep),
            fednode_kit::Meta {
                id: Some("bad-deep".into()),
                timestamp: Some(BASE_TS + 1),
                ..Default::default()
            },
        )
        .await
        .expect("publish");
    for i in 0..100 {
        let row: Value = json!({"user_id": format!("u{}", i % 3), "i": i});
        publish(&p, "data.good", &row, &format!("g{i}"), BASE_TS + 10 + i).await;
    }

    wait_until_async(
        Duration::from_secs(15),
        "the 100 good rows to be stored",
        || async {
            count(
                &url,
                "SELECT count(*) FROM fednode_messages WHERE subject = 'data.good'",
            )
            .await
                == 100
        },
    )
    .await;
    wait_until_async(
        Duration::from_secs(5),
        "both refused rows counted",
        || async { rejected(&metrics, "program_limit") == 2.0 },
    )
    .await;
    assert_eq!(rejected(&metrics, "data_exception"), 0.0);
    assert_eq!(rejected(&metrics, "integrity_violation"), 0.0);
    assert!(
        c.health().healthy,
        "one refused row made the component unhealthy: {:?}",
        c.health()
    );
    testing::stop(&ctx).await;
    assert_eq!(
        count(&url, "SELECT count(*) FROM fednode_messages").await,
        100,
        "a refused row was stored"
    );
    assert_eq!(
        count(&url, "SELECT count(DISTINCT msg_id) FROM fednode_messages").await,
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_in_every_class_are_counted_by_reason() {
    let pg = PgCluster::start();
    let url = pg.url();
    // A table of our own with a CHECK (class 23) and a varchar (class 22).
    pg.psql(
        "postgres",
        "CREATE TABLE picky (time timestamptz NOT NULL, subject text NOT NULL, node_id text NOT NULL, \
         key varchar(10) CHECK (key <> 'forbidden'), payload jsonb NOT NULL, msg_id text)",
    );
    let (ctx, bus, metrics) = testing::context("store");
    start(
        json!({
            "url": url, "table": "picky", "manage_schema": false,
            "batch_size": 64, "flush_interval": "50ms",
            "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
        }),
        &ctx,
    )
    .await
    .expect("start");
    let p = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for i in 0..200i64 {
        let id = format!("r{i}");
        match i {
            17 => {
                publish(
                    &p,
                    "data.x",
                    &json!({"user_id": "much-too-long"}),
                    &id,
                    BASE_TS + i,
                )
                .await
            }
            18 | 120 => {
                publish(
                    &p,
                    "data.x",
                    &json!({"user_id": "forbidden"}),
                    &id,
                    BASE_TS + i,
                )
                .await
            }
            63 => p
                .bus
                .publish(
                    "data.x",
                    bytes::Bytes::from(deep.clone()),
                    fednode_kit::Meta {
                        id: Some(id.as_str().into()),
                        timestamp: Some(BASE_TS + i),
                        ..Default::default()
                    },
                )
                .await
                .expect("publish"),
            _ => {
                publish(
                    &p,
                    "data.x",
                    &json!({"user_id": format!("u{}", i % 4)}),
                    &id,
                    BASE_TS + i,
                )
                .await
            }
        }
    }
    wait_until_async(Duration::from_secs(15), "196 rows stored", || async {
        count(&url, "SELECT count(*) FROM picky").await == 196
    })
    .await;
    testing::stop(&ctx).await;
    assert_eq!(rejected(&metrics, "data_exception"), 1.0);
    assert_eq!(rejected(&metrics, "integrity_violation"), 2.0);
    assert_eq!(rejected(&metrics, "program_limit"), 1.0);
    assert_eq!(count(&url, "SELECT count(*) FROM picky").await, 196);
    let stored = pg.psql(
        "postgres",
        "SELECT string_agg(msg_id, ',' ORDER BY msg_id) FROM picky WHERE msg_id IN ('r16', 'r19', 'r62', 'r64', 'r199')",
    );
    assert_eq!(stored, "r16,r19,r199,r62,r64");
}
