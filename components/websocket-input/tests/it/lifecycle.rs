//! Registration, build-time validation and start errors.

use fednode_kit::{BuildContext, Component, ComponentKind, NodeIdentity};
use serde_json::json;

fn cx(node: &NodeIdentity) -> BuildContext<'_> {
    BuildContext {
        instance: "ws_in",
        path: "components.ws_in.config",
        node,
    }
}

#[test]
fn registration_reports_every_error_with_its_path() {
    let reg = fednode_websocket_input::registration();
    assert_eq!(reg.name, "websocket_input");
    assert_eq!(reg.kinds, &[ComponentKind::Input]);
    let node = NodeIdentity::default();
    let errs = match (reg.build)(
        &cx(&node),
        &json!({
            "mode": "client",
            "client": {"url": "http://nope", "reconnect": {"multiplier": 0.5}},
            "bidirectional": {"request_timeout": "soon"},
            "ports": {"outputs": [{"name": "ws_data", "subject": "a..b"}]}
        }),
    ) {
        Ok(_) => panic!("invalid config accepted"),
        Err(e) => e,
    };
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    for want in [
        "components.ws_in.config.bidirectional.request_timeout:",
        "components.ws_in.config.client.url: expected a ws:// or wss:// URL",
        "components.ws_in.config.client.reconnect.multiplier:",
        "components.ws_in.config.ports.outputs[0].subject:",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {lines:#?}"
        );
    }
}

#[tokio::test]
async fn a_port_in_use_is_a_start_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let node = NodeIdentity::default();
    let comp = fednode_websocket_input::build(
        &cx(&node),
        &json!({"mode": "server", "server": {"http_port": port, "bind": "127.0.0.1"},
                "ports": {"outputs": [{"name": "ws_data", "subject": "d"}]}}),
    )
    .unwrap();
    let (ctx, _bus, _m) = fednode_kit::testing::context("ws_in");
    let err = comp.start(ctx).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("port {port} is already in use")),
        "{err}"
    );
}
