//! The `timescale` component against PostgreSQL over TLS: a throwaway
//! cluster that takes TCP clients over TLS only (`hostssl` lines alone in
//! `pg_hba.conf`), with a CA and certificates made by `openssl` at start.
//!
//! Every test here needs sqlx's TLS: without it a URL asking for TLS fails
//! at connect ("SQLx was built without TLS support") and a URL without
//! `sslmode` (`prefer`) falls back to plain TCP, which the server refuses.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{count, publish, start};
use fednode_kit::testing;
use fednode_testkit::{merge, wait_until, PgCluster, PgTlsAuth, TestCa};
use serde_json::{json, Value};

const BASE_TS: i64 = 1_700_000_000_000;
const ROWS: i64 = 100;

fn config(url: &str, extra: Value) -> Value {
    let mut c = json!({
        "url": url,
        "batch_size": 50,
        "flush_interval": "100ms",
        "retry": {"initial_interval": "100ms", "max_interval": "1s"},
        "ports": {"inputs": [{"name": "in", "subject": "data.>"}]}
    });
    merge(&mut c, extra);
    c
}

/// The CA that signed the cluster's certificate.
fn ca(pg: &PgCluster) -> String {
    pg.tls()
        .expect("a TLS cluster")
        .ca_cert
        .display()
        .to_string()
}

/// The distinct rows of `fednode_messages` (0 before it exists), read
/// with psql through the Unix socket, so that the check does not depend on
/// the TLS under test.
fn stored(pg: &PgCluster) -> i64 {
    tokio::task::block_in_place(|| {
        let exists = pg.psql(
            "postgres",
            "SELECT to_regclass('fednode_messages') IS NOT NULL",
        );
        if exists == "t" {
            common::scalar(pg, "SELECT count(DISTINCT msg_id) FROM fednode_messages")
        } else {
            0
        }
    })
}

/// The component's connections to the server, and how many of them are
/// encrypted (`pg_stat_ssl`).
fn component_connections(pg: &PgCluster) -> (i64, i64) {
    let out = tokio::task::block_in_place(|| {
        pg.psql(
            "postgres",
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'fednode-timescale'",
        )
    });
    let (all, ssl) = out.split_once('|').expect("two columns");
    (all.parse().unwrap(), ssl.parse().unwrap())
}

/// Starts the component on `url`, publishes [`ROWS`] messages, waits until
/// every one is stored, checks that the component's connection is
/// encrypted, and stops it.
async fn stores_rows_over_tls(pg: &PgCluster, url: &str, prefix: &str) {
    let before = stored(pg);
    let (ctx, bus, metrics) = testing::context("store");
    let c = start(config(url, json!({})), &ctx)
        .await
        .unwrap_or_else(|e| panic!("start on {url}: {e}"));
    assert!(c.health().healthy, "{:?}", c.health());
    let publisher = testing::context_on("pub", Arc::new(bus.clone()), &metrics);
    for i in 0..ROWS {
        publish(
            &publisher,
            "data.tls",
            &json!({"user_id": "ada", "i": i}),
            &format!("{prefix}{i}"),
            BASE_TS + i,
        )
        .await;
    }
    wait_until(
        Duration::from_secs(20),
        format!("{ROWS} rows through {url}"),
        || stored(pg) == before + ROWS,
    )
    .await;
    let (all, ssl) = component_connections(pg);
    assert!(all >= 1, "the component holds no connection");
    assert_eq!(ssl, all, "a connection of the component is not encrypted");
    testing::stop(&ctx).await;
    assert_eq!(stored(pg), before + ROWS);
    assert_eq!(
        metrics.value("timescale_rows_written_total", &[("component", "store")]),
        Some(ROWS as f64)
    );
}

/// The start error for `url` (panics if the component starts).
async fn start_error(url: &str) -> String {
    let (ctx, ..) = testing::context("store");
    match start(config(url, json!({})), &ctx).await {
        Ok(_) => {
            testing::stop(&ctx).await;
            panic!("started on {url}")
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_stores_rows() {
    let pg = PgCluster::start_tls();
    stores_rows_over_tls(&pg, &format!("{}?sslmode=require", pg.url()), "r").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sslmode_means_prefer_and_upgrades_to_tls() {
    let pg = PgCluster::start_tls();
    stores_rows_over_tls(&pg, &pg.url(), "p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_disable_against_a_tls_only_server_fails_saying_why() {
    let pg = PgCluster::start_tls();
    let plain = format!("{}?sslmode=disable", pg.url());

    // At start: the server's refusal, and what to change.
    let msg = start_error(&plain).await;
    assert!(msg.contains("component store"), "{msg}");
    assert!(msg.contains("cannot connect to PostgreSQL at"), "{msg}");
    assert!(msg.contains("no pg_hba.conf entry"), "{msg}");
    assert!(msg.contains("no encryption"), "{msg}");
    assert!(msg.contains("set sslmode=require"), "{msg}");

    // With retry_on_start the component starts, unhealthy, and its health
    // says the same.
    let (ctx, ..) = testing::context("store");
    let c = start(config(&plain, json!({"retry_on_start": true})), &ctx)
        .await
        .expect("retry_on_start starts anyway");
    let h = c.health();
    assert!(!h.healthy, "{h:?}");
    let last = h.details["last_error"].as_str().unwrap_or_default();
    assert!(
        last.contains("pg_hba.conf") && last.contains("sslmode=require"),
        "{h:?}"
    );
    testing::stop(&ctx).await;
    assert_eq!(stored(&pg), 0);

    // The same server and URL with TLS asked for: the rows go in.
    let tls = format!("{}?sslmode=require", pg.url());
    stores_rows_over_tls(&pg, &tls, "d").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_needs_the_ca_that_signed_the_server() {
    let pg = PgCluster::start_tls();
    let ca = ca(&pg);

    // The right CA: the server's certificate and its name (127.0.0.1, an
    // IP subject alternative name) are verified, and rows are stored.
    let good = format!("{}?sslmode=verify-full&sslrootcert={ca}", pg.url());
    stores_rows_over_tls(&pg, &good, "g").await;
    // verify-ca checks the chain but not the name.
    let ca_only = format!("{}?sslmode=verify-ca&sslrootcert={ca}", pg.url());
    stores_rows_over_tls(&pg, &ca_only, "c").await;

    // A CA that did not sign it: refused on certificate verification.
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::new(dir.path(), "unrelated");
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        other.cert().display()
    );
    let msg = start_error(&wrong).await;
    assert!(msg.contains("cannot connect to PostgreSQL at"), "{msg}");
    assert!(
        msg.contains("invalid peer certificate: UnknownIssuer"),
        "{msg}"
    );
    assert!(
        msg.contains("TLS certificate is signed neither by the CA in the URL's sslrootcert"),
        "{msg}"
    );
    // verify-ca too: the chain is what fails.
    let msg = start_error(&wrong.replace("verify-full", "verify-ca")).await;
    assert!(msg.contains("UnknownIssuer"), "{msg}");

    // A CA file that is not there is named before any connect.
    let missing = format!(
        "{}?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
        pg.url()
    );
    let msg = start_error(&missing).await;
    assert!(
        msg.contains(
            "components.store.config.url: sslrootcert \"/nonexistent/ca.crt\" cannot be read"
        ),
        "{msg}"
    );
    assert_eq!(stored(&pg), 2 * ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_sslcert_and_sslkey() {
    let pg = PgCluster::start_tls_with(PgTlsAuth::ClientCert);
    let files = pg.tls().expect("a TLS cluster").clone();
    let base = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        files.ca_cert.display()
    );

    // Without a client certificate the server refuses (`cert` auth).
    let msg = start_error(&base).await;
    assert!(msg.contains("cannot connect to PostgreSQL at"), "{msg}");
    assert!(
        msg.contains("connection requires a valid client certificate"),
        "{msg}"
    );
    assert!(msg.contains("as sslcert and sslkey in the URL"), "{msg}");

    // With one whose common name is the user: rows are stored.
    let with_cert = format!(
        "{base}&sslcert={}&sslkey={}",
        files.client_cert.display(),
        files.client_key.display()
    );
    stores_rows_over_tls(&pg, &with_cert, "k").await;

    // A missing key file is named.
    let msg = start_error(&format!(
        "{base}&sslcert={}&sslkey=/nonexistent/client.key",
        files.client_cert.display()
    ))
    .await;
    assert!(
        msg.contains("sslkey \"/nonexistent/client.key\" cannot be read"),
        "{msg}"
    );
    // And the rows read back over the same URL, as any client sees them.
    assert_eq!(
        count(&with_cert, "SELECT count(*) FROM fednode_messages").await,
        ROWS
    );
}
