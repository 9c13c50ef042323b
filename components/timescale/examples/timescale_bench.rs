//! Run with: cargo run --release -p fednode-timescale --example timescale_bench [-- ROWS [small]]
//!
//! Pushes ROWS (default 200,000) feature-sized messages (~340 bytes of JSON;
//! `small`: ~40 bytes) through the real `timescale` component (memory bus,
//! default batch_size 500) into a throwaway PostgreSQL and, for comparison
//! in the same run on the same server, times the same rows loaded by
//! `psql -c "\copy … from file"` (one statement), by binary COPY in 500-row
//! batches (`BENCH_COPY_BATCH` changes that) and by
//! `INSERT … SELECT FROM UNNEST(…)` in 500-row batches, both straight from
//! sqlx. Every target table has the same indexes (BRIN on time, b-tree on
//! (key, time)). A warm-up load runs first so that no phase pays for the
//! fresh cluster.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fednode_kit::{testing, BuildContext, Meta, NodeIdentity};
use fednode_testkit::PgCluster;
use serde_json::json;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const BASE_TS: i64 = 1_700_000_000_000;
const BATCH: usize = 500;

struct Msg {
    subject: String,
    key: String,
    payload: Bytes,
    id: String,
    ts: i64,
}

fn messages(n: usize, small: bool) -> Vec<Msg> {
    (0..n)
        .map(|i| {
            let user = format!("user-{}", i % 16);
            let f = |k: usize| ((i * 7919 + k * 104_729) % 1000) as f64 / 1000.0;
            let payload = if small {
                json!({"user_id": user, "i": i, "v": f(1)})
            } else { json!({
                "type": "features", "user_id": user, "timestamp": BASE_TS + i as i64,
                "window": {"index": i, "start_sample": i * 128, "end_sample": i * 128 + 256},
                "band_powers": {"delta": f(1), "theta": f(2), "alpha": f(3), "beta": f(4), "gamma": f(5)},
                "metrics": {"frontal_theta": f(6), "theta_beta_ratio": f(7), "engagement_index": f(8)},
                "workload": f(9), "confidence": f(10)
            }) };
            Msg {
                subject: format!("eeg.{user}.features"),
                key: user,
                payload: Bytes::from(payload.to_string()),
                id: format!("bench-{i}"),
                ts: BASE_TS + i as i64,
            }
        })
        .collect()
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn clone_table(conn: &mut PgConnection, name: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (LIKE fednode_messages INCLUDING ALL)"
    )))
    .execute(conn)
    .await
    .unwrap();
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Through the component: publish everything, then stop (which flushes).
async fn component(url: &str, msgs: &[Msg]) -> Duration {
    let node = NodeIdentity {
        id: "bench".into(),
        region: None,
        data_dir: None,
    };
    let b = BuildContext {
        instance: "store",
        path: "components.store.config",
        node: &node,
    };
    let config = json!({"url": url, "ports": {"inputs": [{"name": "in", "subject": "eeg.>"}]}});
    let c =
        (fednode_timescale::registration().build)(&b, &config).unwrap_or_else(|e| panic!("{e:?}"));
    let (ctx, bus, metrics) = testing::context("store");
    c.start(ctx.clone()).await.expect("start");
    let publisher = testing::context_on("pub", Arc::new(bus), &metrics);
    let t0 = Instant::now();
    for m in msgs {
        publisher
            .bus
            .publish(
                &m.subject,
                m.payload.clone(),
                Meta {
                    id: Some(m.id.as_str().into()),
                    timestamp: Some(m.ts),
                    node: None,
                    replay: false,
                    origin: None,
                },
            )
            .await
            .unwrap();
    }
    testing::stop(&ctx).await;
    t0.elapsed()
}

fn pg_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// COPY text escaping: backslash, tab, newline, carriage return.
fn esc(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn psql_copy(pg: &PgCluster, msgs: &[Msg]) -> Duration {
    let file = tempfile_path();
    let mut text = String::with_capacity(msgs.len() * 400);
    for m in msgs {
        text.push_str(&pg_time(m.ts).format("%Y-%m-%d %H:%M:%S%.3f+00").to_string());
        text.push('\t');
        esc(&m.subject, &mut text);
        text.push_str("\tbench\t");
        esc(&m.key, &mut text);
        text.push('\t');
        esc(std::str::from_utf8(&m.payload).unwrap(), &mut text);
        text.push('\t');
        esc(&m.id, &mut text);
        text.push('\n');
    }
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write the COPY file");
    let sql = format!(
        "\\copy bench_psql (time, subject, node_id, key, payload, msg_id) from '{}'",
        file.display()
    );
    let t0 = Instant::now();
    let out = std::process::Command::new("/usr/bin/psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &pg.url(),
            "-c",
            &sql,
        ])
        .output()
        .expect("run psql");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
    took
}

fn tempfile_path() -> std::path::PathBuf {
    // psql reads the file as the invoking user; /tmp is fine for both.
    std::env::temp_dir().join(format!("timescale_bench_{}.copy", std::process::id()))
}

/// Binary COPY, `batch` rows per statement, from one sqlx connection.
async fn raw_copy(conn: &mut PgConnection, msgs: &[Msg], batch: usize) -> Duration {
    let t0 = Instant::now();
    let mut buf = Vec::with_capacity(BATCH * 400);
    for chunk in msgs.chunks(batch) {
        buf.clear();
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        for m in chunk {
            buf.extend_from_slice(&6i16.to_be_bytes());
            let field = |buf: &mut Vec<u8>, b: &[u8]| {
                buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
                buf.extend_from_slice(b);
            };
            field(
                &mut buf,
                &((m.ts * 1000) - 946_684_800_000_000).to_be_bytes(),
            );
            field(&mut buf, m.subject.as_bytes());
            field(&mut buf, b"bench");
            field(&mut buf, m.key.as_bytes());
            buf.extend_from_slice(&((m.payload.len() + 1) as i32).to_be_bytes());
            buf.push(1);
            buf.extend_from_slice(&m.payload);
            field(&mut buf, m.id.as_bytes());
        }
        buf.extend_from_slice(&[0xff, 0xff]);
        let mut c = conn
            .copy_in_raw("COPY bench_copy (time, subject, node_id, key, payload, msg_id) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        c.send(buf.as_slice()).await.unwrap();
        c.finish().await.unwrap();
    }
    t0.elapsed()
}

/// One `INSERT … SELECT FROM UNNEST` per 500 rows.
async fn unnest(conn: &mut PgConnection, msgs: &[Msg]) -> Duration {
    let t0 = Instant::now();
    for chunk in msgs.chunks(BATCH) {
        let times: Vec<DateTime<Utc>> = chunk.iter().map(|m| pg_time(m.ts)).collect();
        let subjects: Vec<&str> = chunk.iter().map(|m| m.subject.as_str()).collect();
        let nodes: Vec<&str> = chunk.iter().map(|_| "bench").collect();
        let keys: Vec<&str> = chunk.iter().map(|m| m.key.as_str()).collect();
        let payloads: Vec<&str> = chunk
            .iter()
            .map(|m| std::str::from_utf8(&m.payload).unwrap())
            .collect();
        let ids: Vec<&str> = chunk.iter().map(|m| m.id.as_str()).collect();
        sqlx::query(
            "INSERT INTO bench_unnest (time, subject, node_id, key, payload, msg_id) \
             SELECT t, s, n, k, p::jsonb, i FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             AS u(t, s, n, k, p, i)",
        )
        .bind(times)
        .bind(subjects)
        .bind(nodes)
        .bind(keys)
        .bind(payloads)
        .bind(ids)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    t0.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROWS must be a number"))
        .unwrap_or(200_000);
    let small = std::env::args().nth(2).is_some_and(|a| a == "small");
    let pg = PgCluster::start();
    let url = pg.url();
    let msgs = messages(n, small);
    let avg = msgs.iter().map(|m| m.payload.len()).sum::<usize>() / n;
    println!(
        "{n} rows, payload ~{avg} bytes, PostgreSQL on port {}",
        pg.port()
    );

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    // Warm-up, so that no phase pays for the fresh cluster (new WAL
    // segments, cold catalog): load the rows once into a scratch table.
    {
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE fednode_messages (time timestamptz NOT NULL, subject text NOT NULL, \
             node_id text NOT NULL, key text, payload jsonb NOT NULL, msg_id text)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        clone_table(&mut conn, "bench_copy").await;
        raw_copy(&mut conn, &msgs, 5000).await;
        sqlx::raw_sql("DROP TABLE bench_copy; DROP TABLE fednode_messages; CHECKPOINT")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let cpu0 = cpu_seconds();
    let comp = component(&url, &msgs).await;
    let cpu = cpu_seconds() - cpu0;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    assert_eq!(count(&mut conn, "fednode_messages").await, n as i64);
    sqlx::raw_sql("CHECKPOINT")
        .execute(&mut conn)
        .await
        .unwrap();

    clone_table(&mut conn, "bench_psql").await;
    let psql = psql_copy(&pg, &msgs);
    assert_eq!(count(&mut conn, "bench_psql").await, n as i64);
    sqlx::raw_sql("CHECKPOINT")
        .execute(&mut conn)
        .await
        .unwrap();

    clone_table(&mut conn, "bench_copy").await;
    let copy_batch: usize = std::env::var("BENCH_COPY_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BATCH);
    let copy = raw_copy(&mut conn, &msgs, copy_batch).await;
    assert_eq!(count(&mut conn, "bench_copy").await, n as i64);
    sqlx::raw_sql("CHECKPOINT")
        .execute(&mut conn)
        .await
        .unwrap();

    clone_table(&mut conn, "bench_unnest").await;
    let un = unnest(&mut conn, &msgs).await;
    assert_eq!(count(&mut conn, "bench_unnest").await, n as i64);

    println!(
        "component (memory bus, UNNEST, batch 500):      {:>9.0} rows/s  ({:.2?})",
        rate(comp),
        comp
    );
    println!(
        "psql \\copy (text, one statement):               {:>9.0} rows/s  ({:.2?})",
        rate(psql),
        psql
    );
    println!(
        "sqlx COPY binary, {copy_batch:>5}-row batches:            {:>9.0} rows/s  ({:.2?})",
        rate(copy),
        copy
    );
    println!(
        "sqlx INSERT … UNNEST, 500-row batches:          {:>9.0} rows/s  ({:.2?})",
        rate(un),
        un
    );
    println!(
        "fednode CPU (publisher + bus + component) during the component run: {:.1} µs/row",
        cpu * 1e6 / n as f64
    );
    println!(
        "component / psql \\copy: {:.0}%",
        100.0 * psql.as_secs_f64() / comp.as_secs_f64()
    );
}
