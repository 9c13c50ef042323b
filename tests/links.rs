//! Links stay up: an edge pushing over a `websocket` output in client mode
//! to a hub's `websocket_input`, both real `fednode` processes.
//!
//! - With the default reconnect policy the edge keeps trying through a hub
//!   outage of any length (here: well over 100 attempts), stays healthy
//!   (`reconnecting`), and delivers once the hub is there.
//! - Heartbeats catch a frozen hub: frozen with SIGSTOP, its sockets stay
//!   open (as a hung host's or a half-open link's do); the edge notices
//!   within the heartbeat timeout, reconnects once the hub is thawed with
//!   SIGCONT, and data flows again.

mod common;
use common::Node;
use fednode_testkit::wait_until_blocking;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const HEARTBEAT: &str = r#"{"interval": "200ms", "timeout": "1s"}"#;
const TIMEOUT: Duration = Duration::from_secs(1);
/// The default policy (no `max_retries`: unlimited), with short delays.
const FAST_RECONNECT: &str = r#"{"initial_interval": "5ms", "max_interval": "20ms"}"#;

fn hub(port: u16) -> Node {
    let config = format!(
        r#"{{
        "node": {{"id": "hub"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": {port}, "bind": "127.0.0.1", "path": "/ingest"}},
            "heartbeat": {HEARTBEAT},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "hub.data"}}]}}
          }}}}
        }}
      }}"#
    );
    Node::start_with(&config, &[])
}

fn edge(hub_url: &str, reconnect: &str) -> Node {
    let config = format!(
        r#"{{
        "node": {{"id": "edge"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "udp_in": {{"type": "input", "name": "udp", "config": {{
            "port": 0, "bind": "127.0.0.1",
            "ports": {{"outputs": [{{"name": "out", "subject": "edge.data"}}]}}
          }}}},
          "up": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"url": "{hub_url}", "connect_timeout": "500ms", "reconnect": {reconnect}}},
            "heartbeat": {HEARTBEAT},
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#
    );
    Node::start_with(&config, &[])
}

fn received_by_hub(hub: &Node) -> f64 {
    hub.metric(r#"websocket_input_messages_received_total{component="ws_in"}"#)
}

/// Send datagrams to the edge until the hub has received more than
/// `before`.
fn flows(edge_udp: std::net::SocketAddr, hub: &Node, before: f64, within: Duration, what: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut n = 0u64;
    wait_until_blocking(within, hub.and_log(what), || {
        n += 1;
        let datagram = format!(r#"{{"seq": {n}}}"#);
        socket.send_to(datagram.as_bytes(), edge_udp).unwrap();
        received_by_hub(hub) > before
    });
}

#[test]
fn a_frozen_hub_is_noticed_within_the_heartbeat_timeout_and_data_flows_after_it_thaws() {
    let mut hub = hub(0);
    hub.wait_ready(Duration::from_secs(20));
    let hub_url = format!("ws://{}/ingest", hub.addr_of("ws_in"));
    let mut edge = edge(&hub_url, FAST_RECONNECT);
    edge.wait_ready(Duration::from_secs(20));
    let edge_udp = edge.addr_of("udp_in");

    flows(
        edge_udp,
        &hub,
        0.0,
        Duration::from_secs(15),
        "the first datagrams to reach the hub",
    );
    let timeouts = r#"websocket_output_heartbeat_timeouts_total{component="up"}"#;
    assert_eq!(edge.metric(timeouts), 0.0, "a live hub is never timed out");

    hub.signal("STOP");
    let frozen_at = Instant::now();
    wait_until_blocking(
        TIMEOUT + Duration::from_secs(5),
        edge.and_log("the edge to notice the frozen hub"),
        || edge.metric(timeouts) >= 1.0,
    );
    let noticed_after = frozen_at.elapsed();
    assert!(
        noticed_after < TIMEOUT + Duration::from_secs(2),
        "noticed after {noticed_after:?}, the timeout is {TIMEOUT:?}"
    );
    // The link is being re-established (never `connected` while the hub is
    // frozen: its upgrade answers never come).
    wait_until_blocking(
        Duration::from_secs(5),
        edge.and_log("the edge to report that it reconnects"),
        || {
            edge.get("/health")
                .is_some_and(|(_, h)| h.contains("\"reconnecting\""))
        },
    );

    // Thawed, the hub takes the reconnect and the data again.
    hub.signal("CONT");
    let before = received_by_hub(&hub);
    flows(
        edge_udp,
        &hub,
        before,
        Duration::from_secs(20),
        "data to reach the hub again after SIGCONT",
    );
}

#[test]
fn with_the_default_policy_an_edge_retries_through_a_long_outage_and_delivers_after_it() {
    // Nothing listens on the hub's port yet: every attempt is refused.
    let hub_port = fednode_testkit::ClosedPort::new();
    let hub_url = format!("ws://127.0.0.1:{}/ingest", hub_port.port());
    let mut edge = edge(&hub_url, FAST_RECONNECT);
    edge.wait_ready(Duration::from_secs(20));
    let edge_udp = edge.addr_of("udp_in");
    let attempts = r#"websocket_output_reconnect_attempts_total{component="up"}"#;
    wait_until_blocking(
        Duration::from_secs(60),
        edge.and_log("over 100 reconnect attempts"),
        || edge.metric(attempts) > 100.0,
    );
    let (code, health) = edge.get("/health").expect("edge health");
    assert_eq!(code, 200, "still healthy while it keeps trying: {health}");
    assert!(health.contains("\"reconnecting\""), "{health}");

    // The hub comes up on its port, and the edge delivers.
    let port = hub_port.port();
    drop(hub_port);
    let mut hub = hub(port);
    hub.wait_ready(Duration::from_secs(20));
    flows(
        edge_udp,
        &hub,
        0.0,
        Duration::from_secs(20),
        "data to reach the hub once it is up",
    );
}
