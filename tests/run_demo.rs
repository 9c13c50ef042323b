//! `fednode run configs/demo.json`: ready, metrics rising, SIGTERM → exit 0
//! within 5 s; a component that cannot start makes `run` exit 1 naming it.

mod common;
use common::{metric, Node};
use fednode_testkit::wait_until_blocking;
use std::time::{Duration, Instant};

#[test]
fn demo_runs_reports_and_stops_on_sigterm() {
    // Every server on port 0 (the admin port is read from the log).
    let mut node = Node::start(
        "configs/demo.json",
        &[
            ("FEDNODE_ADMIN", "127.0.0.1:0"),
            ("FEDNODE_UDP_PORT", "0"),
            ("FEDNODE_WS_PORT", "0"),
        ],
    );
    node.wait_ready(Duration::from_secs(20));

    let (code, health) = node.get("/health").unwrap();
    assert_eq!(code, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["components"]["sim"]["status"], "running");

    let read = |node: &Node| {
        let (_, text) = node.get("/metrics").unwrap();
        (
            metric(&text, "eeg_simulator_samples_total{component=\"sim\"}").unwrap_or(0.0),
            metric(&text, "bus_messages_published_total{component=\"sim\"}").unwrap_or(0.0),
        )
    };
    let first = read(&node);
    wait_until_blocking(
        Duration::from_secs(10),
        format!("simulator samples and bus publishes to rise from {first:?}"),
        || {
            let now = read(&node);
            now.0 > first.0 && now.1 > first.1
        },
    );

    // The features processor emits one window per second per user once the
    // first 2 s window is complete.
    wait_until_blocking(
        Duration::from_secs(10),
        node.and_log("two feature windows"),
        || {
            let (_, text) = node.get("/metrics").unwrap();
            metric(&text, "eeg_features_windows_total{component=\"features\"}").unwrap_or(0.0)
                >= 2.0
        },
    );

    let (code, comps) = node.get("/components").unwrap();
    assert_eq!(code, 200);
    let comps: serde_json::Value = serde_json::from_str(&comps).unwrap();
    assert_eq!(comps["sim"]["type"], "input");
    assert_eq!(comps["sim"]["factory"], "eeg_simulator");
    assert_eq!(comps["sim"]["state"], "running");
    assert_eq!(
        comps["sim"]["subjects"]["outputs"][0]["subject"],
        "eeg.{user_id}.raw"
    );

    let t0 = Instant::now();
    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(5))
        .expect("exit within 5 s");
    assert!(status.success(), "exit status {status}:\n{}", node.log());
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_component_that_cannot_start_fails_the_run_naming_it() {
    // Hold a UDP port so the node cannot bind it.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let cfg = format!(
        r#"{{"http": {{"listen": "127.0.0.1:0"}}, "components": {{"udp_in": {{"type": "input", "name": "udp",
           "config": {{"port": {port}, "bind": "127.0.0.1",
           "ports": {{"outputs": [{{"name": "out", "subject": "raw"}}]}}}}}}}}}}"#
    );
    let mut node = Node::start_with(&cfg, &[]);
    let status = node.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(1));
    let log = node.log();
    assert!(log.contains("component udp_in (udp) cannot start"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
}

#[test]
fn an_invalid_config_exits_before_binding() {
    // The admin port is held (bound, not listening): a node that bound
    // anything before checking its config would fail on it instead.
    let admin = fednode_testkit::ClosedPort::new();
    let cfg = format!(
        r#"{{"http": {{"listen": "{}"}}, "components": {{"x": {{"type": "input", "name": "udp", "config": {{"port": "nope"}}}}}}}}"#,
        admin.addr()
    );
    let mut node = Node::start_with(&cfg, &[]);
    let status = node.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        node.log()
            .contains("components.x.config.port: invalid type"),
        "{}",
        node.log()
    );
}
