//! The http_input against a real HTTP client (raw TCP) and the memory bus.

use fednode_kit::{testing, Bus, Component, SubscribeOptions};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

fn post(addr: std::net::SocketAddr, path: &str, body: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}

async fn start(
    cfg: serde_json::Value,
) -> (
    Arc<fednode_http_input::HttpInput>,
    fednode_kit::Context,
    fednode_kit::memory::MemoryBus,
) {
    let (cfg, cred) = fednode_http_input::Config::parse(&cfg, "c").unwrap();
    let input = Arc::new(fednode_http_input::HttpInput::new(cfg, cred));
    let (ctx, bus, _) = testing::context("http_in");
    input.clone().start(ctx.clone()).await.unwrap();
    (input, ctx, bus)
}

#[tokio::test]
async fn accepts_json_rejects_garbage() {
    let (input, ctx, bus) = start(
        json!({"http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
        "ports": {"outputs": [{"name": "out", "subject": "user.{user_id}.{type}"}]}}),
    )
    .await;
    let mut sub = bus
        .subscribe("user.>", SubscribeOptions::default())
        .await
        .unwrap();
    let addr = input.local_addr().unwrap();
    let (code, body) = tokio::task::spawn_blocking(move || {
        post(
            addr,
            "/ingest/devices/7",
            r#"{"type":"raw","user_id":"jamie"}"#,
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 202, "{body}");
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "user.jamie.raw");
    assert_eq!(&m.payload[..], br#"{"type":"raw","user_id":"jamie"}"#);

    let (code, body) = tokio::task::spawn_blocking(move || post(addr, "/ingest", "{nope", None))
        .await
        .unwrap();
    assert_eq!(code, 400);
    assert!(body.contains("the body is not JSON"), "{body}");
    let (code, _) = tokio::task::spawn_blocking(move || post(addr, "/other", "{}", None))
        .await
        .unwrap();
    assert_eq!(code, 404);
    testing::stop(&ctx).await;
}

#[tokio::test]
async fn bearer_auth_is_required() {
    std::env::set_var("HTTP_INPUT_TEST_TOKEN", "s3cret");
    let (input, ctx, _bus) = start(json!({"http_port": 0, "bind": "127.0.0.1",
        "auth": {"type": "bearer", "bearer_token_env": "HTTP_INPUT_TEST_TOKEN"},
        "ports": {"outputs": [{"name": "out", "subject": "x"}]}}))
    .await;
    let addr = input.local_addr().unwrap();
    let (bad, good) = tokio::task::spawn_blocking(move || {
        (
            post(addr, "/ingest", "{}", Some("Bearer wrong")).0,
            post(addr, "/ingest", "{}", Some("Bearer s3cret")).0,
        )
    })
    .await
    .unwrap();
    assert_eq!(bad, 401);
    assert_eq!(good, 202);
    testing::stop(&ctx).await;
}

#[test]
fn missing_token_env_is_a_config_error() {
    let err = fednode_http_input::Config::parse(
        &json!({"http_port": 1, "auth": {"type": "bearer", "bearer_token_env": "HTTP_INPUT_SURELY_UNSET"},
                "ports": {"outputs": [{"name": "out", "subject": "x"}]}}),
        "components.h.config",
    )
    .unwrap_err();
    assert_eq!(
        err[0].to_string(),
        "components.h.config.auth.bearer_token_env: environment variable HTTP_INPUT_SURELY_UNSET is not set"
    );
}
