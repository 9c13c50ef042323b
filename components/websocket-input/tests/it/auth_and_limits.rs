//! Auth before the upgrade (401) and the connection limit (503).

use crate::common::*;
use futures::StreamExt;
use serde_json::json;
use std::sync::Once;

static ENV: Once = Once::new();

/// The secrets live in the environment (the config names the variables).
/// Set once, before any component is built, with names no other test uses.
fn env() {
    ENV.call_once(|| {
        std::env::set_var("WSI_TEST_TOKEN", "s3cret-token");
        std::env::set_var("WSI_TEST_USER", "edge");
        std::env::set_var("WSI_TEST_PASS", "pa:ss");
    });
}

#[tokio::test]
async fn no_auth_accepts_anyone() {
    let node = start(server_config(json!({}))).await;
    let ws = connect(&node.url(), None).await;
    drop(ws);
    let ws = connect(&node.url(), Some("Bearer whatever")).await;
    drop(ws);
    node.stop().await;
}

#[tokio::test]
async fn bearer_good_and_bad() {
    env();
    let node = start(server_config(json!({
        "auth": {"type": "bearer", "bearer_token_env": "WSI_TEST_TOKEN"}
    })))
    .await;
    let url = node.url();
    assert_eq!(refused_status(&url, None).await, 401);
    assert_eq!(refused_status(&url, Some("Bearer wrong")).await, 401);
    assert_eq!(
        refused_status(&url, Some("Basic czNjcmV0LXRva2Vu")).await,
        401
    );
    let mut ws = connect(&url, Some("Bearer s3cret-token")).await;
    let mut sub = node.subscribe("data").await;
    send(&mut ws, data("a1", json!({"ok": true}))).await;
    assert_eq!(json_of(&next_msg(&mut sub).await), json!({"ok": true}));
    assert_eq!(
        node.metric("websocket_input_errors_total", &[("type", "unauthorized")]),
        3.0
    );
    node.stop().await;
}

#[tokio::test]
async fn basic_good_and_bad() {
    env();
    let node = start(server_config(json!({
        "auth": {"type": "basic", "basic_auth": {"username_env": "WSI_TEST_USER", "password_env": "WSI_TEST_PASS"}}
    })))
    .await;
    let url = node.url();
    let good = fednode_ws::peer::authorization(None, Some("edge:pa:ss")).unwrap();
    let bad = fednode_ws::peer::authorization(None, Some("edge:nope")).unwrap();
    assert_eq!(refused_status(&url, None).await, 401);
    assert_eq!(refused_status(&url, Some(&bad)).await, 401);
    assert_eq!(refused_status(&url, Some("Bearer s3cret-token")).await, 401);
    let _ws = connect(&url, Some(&good)).await;
    node.stop().await;
}

#[tokio::test]
async fn the_connection_over_the_limit_gets_503_and_slots_come_back() {
    let node = start(server_config(json!({"server": {"max_connections": 2}}))).await;
    let url = node.url();
    let a = connect(&url, None).await;
    let mut b = connect(&url, None).await;
    node.wait_metric("websocket_input_connections_active", &[], 2.0)
        .await;
    assert_eq!(refused_status(&url, None).await, 503);
    assert_eq!(
        node.metric(
            "websocket_input_errors_total",
            &[("type", "connection_limit")]
        ),
        1.0
    );

    // A clean close frees a slot...
    b.close(None).await.unwrap();
    while b.next().await.is_some() {}
    wait_until(SOON, "connections_active back to 1", || {
        node.metric("websocket_input_connections_active", &[]) == 1.0
    })
    .await;
    let c = connect(&url, None).await;

    // ...and so does an abrupt disconnect (TCP dropped, no close frame).
    drop(a);
    drop(c);
    wait_until(SOON, "connections_active back to 0", || {
        node.metric("websocket_input_connections_active", &[]) == 0.0
    })
    .await;
    assert_eq!(node.metric("websocket_input_connections_total", &[]), 3.0);
    let h = node.health();
    assert!(h.healthy);
    assert_eq!(h.status, "idle");
    let _d = connect(&url, None).await;
    node.stop().await;
}

#[tokio::test]
async fn other_paths_are_404_and_plain_http_is_refused() {
    let node = start(server_config(json!({}))).await;
    let addr = node.comp.local_addr().unwrap();
    assert_eq!(
        refused_status(&format!("ws://{addr}/other"), None).await,
        404
    );
    node.stop().await;
}
