//! The udp input against a real socket and the memory bus.

use fednode_kit::{testing, Bus, Component, SubscribeOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn publishes_json_datagrams_and_counts_garbage() {
    let cfg = fednode_udp::Config::parse(
        &json!({"port": 0, "bind": "127.0.0.1",
                "ports": {"outputs": [{"name": "out", "subject": "raw.{sensor}"}]}}),
        "c",
    )
    .unwrap();
    let input = Arc::new(fednode_udp::UdpInput::new(cfg));
    let (ctx, bus, metrics) = testing::context("udp_in");
    let mut sub = bus
        .subscribe("raw.>", SubscribeOptions::default())
        .await
        .unwrap();
    input.clone().start(ctx.clone()).await.unwrap();
    let addr = input.local_addr().unwrap();

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"not json", addr).await.unwrap();
    sock.send_to(br#"{"sensor":"t1","value":51}"#, addr)
        .await
        .unwrap();

    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "raw.t1");
    assert_eq!(&m.payload[..], br#"{"sensor":"t1","value":51}"#);
    assert!(m.meta.id.is_some() && m.meta.timestamp.is_some());
    assert_eq!(m.meta.node.as_deref(), Some("test-node"));
    assert_eq!(
        metrics.value(
            "udp_errors_total",
            &[("component", "udp_in"), ("type", "parse_error")]
        ),
        Some(1.0)
    );
    testing::stop(&ctx).await;
}

#[test]
fn config_errors_name_paths() {
    let errs = fednode_udp::Config::parse(&json!({"port": 1, "prot": 2}), "components.u.config")
        .unwrap_err();
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("components.u.config.prot: unknown field")),
        "{lines:?}"
    );
}
