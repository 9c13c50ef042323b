//! Helpers shared by the integration tests: build and start the component
//! from a JSON config, publish with envelope fields, poll PostgreSQL.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use fednode_kit::{BuildContext, Component, Context, Meta, NodeIdentity, StartError};
use fednode_testkit::PgCluster;
use serde_json::Value;
use sqlx::Connection;

/// Build `timescale` from `config` (panics on config errors).
pub fn build(config: Value) -> Arc<dyn Component> {
    let node = NodeIdentity {
        id: "test-node".into(),
        region: None,
        data_dir: None,
    };
    let ctx = BuildContext {
        instance: "store",
        path: "components.store.config",
        node: &node,
    };
    match (fednode_timescale::registration().build)(&ctx, &config) {
        Ok(c) => c,
        Err(e) => panic!("config refused: {e:?}"),
    }
}

/// Build and start.
pub async fn start(config: Value, ctx: &Context) -> Result<Arc<dyn Component>, StartError> {
    let c = build(config);
    c.clone().start(ctx.clone()).await?;
    Ok(c)
}

/// Publish `payload` on `subject` with envelope id and timestamp.
pub async fn publish(ctx: &Context, subject: &str, payload: &Value, id: &str, ts: i64) {
    ctx.bus
        .publish(
            subject,
            Bytes::from(payload.to_string()),
            Meta {
                id: Some(id.into()),
                timestamp: Some(ts),
                node: None,
                replay: false,
                origin: None,
            },
        )
        .await
        .expect("publish");
}

/// One number from `sql` (run with psql).
pub fn scalar(pg: &PgCluster, sql: &str) -> i64 {
    let out = pg.psql("postgres", sql);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number from {sql:?}: {out:?}"))
}

/// One `bigint` from `sql` over a fresh connection to `url`.
pub async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to PostgreSQL");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
    n
}

/// Like [`count`], but `None` while the database is unreachable.
pub async fn try_count(url: &str, sql: &str) -> Option<i64> {
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .ok();
    let _ = conn.close().await;
    n
}
