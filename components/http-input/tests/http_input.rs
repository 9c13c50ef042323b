//! The http_input against a real HTTP client (raw TCP) and the memory bus.

use fednode_kit::{testing, Bus, Component, SubscribeOptions};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

fn post(addr: std::net::SocketAddr, path: &str, body: &str, auth: Option<&str>) -> (u16, String) {
    request(addr, "POST", path, body, auth)
}

fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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

#[tokio::test]
async fn a_templated_path_binds_its_values_into_the_body() {
    let (input, ctx, bus) = start(json!({"http_port": 0, "bind": "127.0.0.1",
        "path": "/predictions/{user_id}",
        "ports": {"outputs": [{"name": "out", "subject": "predictions.{user_id}"}]}}))
    .await;
    let mut sub = bus
        .subscribe("predictions.>", SubscribeOptions::default())
        .await
        .unwrap();
    let addr = input.local_addr().unwrap();
    let call = move |method: &'static str, path: &'static str, body: &'static str| {
        tokio::task::spawn_blocking(move || request(addr, method, path, body, None))
    };
    // The member is added when missing, first, and the rest kept as sent.
    let (code, body) = call("POST", "/predictions/jamie", r#"{"score": 0.9}"#)
        .await
        .unwrap();
    assert_eq!(code, 202, "{body}");
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "predictions.jamie");
    assert_eq!(&m.payload[..], br#"{"user_id":"jamie","score": 0.9}"#);
    // Present and equal: the body goes unchanged; the value is decoded.
    let (code, body) = call(
        "POST",
        "/predictions/j%C3%A9r%C3%B4me",
        r#"{"user_id":"jérôme","score":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(code, 202, "{body}");
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "predictions.jérôme");
    assert_eq!(
        &m.payload[..],
        r#"{"user_id":"jérôme","score":1}"#.as_bytes()
    );
    // Another user's data, or a body with nowhere to put the member: 400.
    let (code, body) = call("POST", "/predictions/jamie", r#"{"user_id":"alex"}"#)
        .await
        .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bound_mismatch"), "{body}");
    assert!(
        body.contains(r#"\"jamie\""#) && body.contains(r#"\"alex\""#),
        "{body}"
    );
    let (code, body) = call("POST", "/predictions/jamie", "[1,2]").await.unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not_an_object"), "{body}");
    // Only the paths the template matches.
    for path in [
        "/predictions",
        "/predictions/",
        "/predictions/jamie/more",
        "/other/jamie",
    ] {
        let (code, body) = call("POST", path, "{}").await.unwrap();
        assert_eq!(code, 404, "{path}: {body}");
    }
    let (code, _) = call("GET", "/predictions/jamie", "").await.unwrap();
    assert_eq!(code, 405);
    // Nothing refused was published: the next message is this one.
    let (code, _) = call("POST", "/predictions/last", "{}").await.unwrap();
    assert_eq!(code, 202);
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "predictions.last");
    testing::stop(&ctx).await;
}
