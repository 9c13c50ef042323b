//! Store and forward: an edge whose `websocket` output pushes to a hub with
//! `at_least_once` and a `store`, both real `fednode` processes.
//!
//! The hub is away while the edge takes messages; the edge is SIGKILLed
//! with everything in its store and started again on the same `data_dir`;
//! then the hub comes up, and every message arrives, in order, once.

mod common;
use common::Node;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const MESSAGES: u64 = 5_000;

fn edge(hub_url: &str, data_dir: &std::path::Path, max_bytes: u64) -> Node {
    edge_with(hub_url, data_dir, max_bytes, "")
}

/// An edge; `extra` is inserted in its output's config.
fn edge_with(hub_url: &str, data_dir: &std::path::Path, max_bytes: u64, extra: &str) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "edge-01"}},
        "data_dir": "{dir}",
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "device": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/device"}},
            "backpressure": {{"on_full": "block"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "edge.data"}}]}}
          }}}},
          "up": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"url": "{hub_url}", "connect_timeout": "500ms",
                        "reconnect": {{"initial_interval": "20ms", "max_interval": "100ms"}}}},
            "delivery": "at_least_once",{extra}
            "store": {{"max_bytes": {max_bytes}, "sync_interval": "50ms"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "edge.data"}}]}}
          }}}}
        }}
      }}"#,
            dir = data_dir.display(),
        ),
        &[],
    )
}

/// The hub pushes what it receives to `consumer` (a WebSocket server the
/// test runs): its output in client mode keeps what arrives before the
/// consumer has accepted, and under `block` loses nothing.
fn hub(port: u16, consumer: &str) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "hub"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": {port}, "bind": "127.0.0.1", "path": "/ingest"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "hub.data"}}]}}
          }}}},
          "feed": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"url": "{consumer}"}},
            "backpressure": {{"on_full": "block"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "hub.data"}}]}}
          }}}}
        }}
      }}"#
        ),
        &[],
    )
}

/// A consumer for the hub to push to: its URL, and a channel of the `n` of
/// each data frame received, in order.
async fn consumer() -> (String, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(frame)) = ws.next().await {
            if let WsMessage::Text(text) = frame {
                if let Some(n) = n_of(&text) {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (url, rx)
}

/// The next `n` the consumer got, or a panic after `within` of nothing.
async fn next_n(rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>, got: usize) -> u64 {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing more after {got} messages"))
        .expect("the consumer is gone")
}

/// The edge's store as `/components` shows it.
fn store(edge: &Node) -> serde_json::Value {
    edge.described("up")["store"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_survive_a_sigkill_of_the_edge_and_go_first_in_order() {
    let data_dir = tempfile::tempdir().unwrap();
    let hub_port = fednode_testkit::ClosedPort::new();
    let hub_url = format!("ws://127.0.0.1:{}/ingest", hub_port.port());
    let mut first = edge(&hub_url, data_dir.path(), 64 << 20);
    first.wait_ready(Duration::from_secs(20));

    // The hub is away: everything stays in the edge's store.
    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/device", first.addr_of("device")))
            .await
            .expect("connect to the edge");
    for n in 1..=MESSAGES {
        let frame = format!(r#"{{"type":"data","id":"m{n}","payload":{{"n":{n}}}}}"#);
        device.feed(WsMessage::Text(frame.into())).await.unwrap();
    }
    device.flush().await.unwrap();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        first.and_log("the store to hold every message, on disk"),
        || store(&first)["synced_through"].as_u64() >= Some(MESSAGES),
    );
    assert_eq!(store(&first)["messages"], MESSAGES, "{}", store(&first));
    assert!(
        first.metric(r#"websocket_output_store_bytes{component="up"}"#) > (MESSAGES * 20) as f64
    );
    drop(device);
    first.signal("KILL");
    first
        .wait_exit(Duration::from_secs(10))
        .expect("the edge died");

    // Back on the same data_dir: the store is recovered and waits.
    let mut edge = edge(&hub_url, data_dir.path(), 64 << 20);
    edge.wait_ready(Duration::from_secs(20));
    assert_eq!(store(&edge)["messages"], MESSAGES, "{}", store(&edge));

    // The hub comes up; every message arrives, in order, once.
    let port = hub_port.port();
    drop(hub_port);
    let (consumer_url, mut got) = consumer().await;
    let mut hub = hub(port, &consumer_url);
    hub.wait_ready(Duration::from_secs(20));
    let mut seen = Vec::new();
    while (seen.len() as u64) < MESSAGES {
        seen.push(next_n(&mut got, seen.len()).await);
    }
    assert_eq!(seen, (1..=MESSAGES).collect::<Vec<_>>(), "in order, once");
    // Acked, the store lets go of them.
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(20),
        edge.and_log("the store to empty once the hub acked everything"),
        || store(&edge)["messages"] == 0,
    );
}

/// `n` of a data frame `{"type":"data",…,"payload":{"n":…,…}}` without
/// parsing the whole frame (a million of them are read).
fn n_of(frame: &str) -> Option<u64> {
    let at = frame.find(r#""payload":{"n":"#)? + r#""payload":{"n":"#.len();
    let digits: &str = &frame[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_messages_buffered_while_the_hub_is_away_all_arrive_in_order() {
    const BACKLOG: u64 = 1_000_000;
    let data_dir = tempfile::tempdir().unwrap();
    let hub_port = fednode_testkit::ClosedPort::new();
    let hub_url = format!("ws://127.0.0.1:{}/ingest", hub_port.port());
    // About 240 MB of records: a log of 1 GiB (the default) holds them.
    let mut edge = edge(&hub_url, data_dir.path(), 1 << 30);
    edge.wait_ready(Duration::from_secs(20));

    // 200-byte payloads, into the edge while the hub is away.
    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/device", edge.addr_of("device")))
            .await
            .expect("connect to the edge");
    for n in 1..=BACKLOG {
        let head = format!(r#"{{"n":{n},"pad":""#);
        let pad = "x".repeat(200 - head.len() - 2);
        let frame = format!(r#"{{"type":"data","id":"m{n}","payload":{head}{pad}"}}}}"#);
        device.feed(WsMessage::Text(frame.into())).await.unwrap();
    }
    device.flush().await.unwrap();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(300),
        edge.and_log("the backlog to be in the store"),
        || store(&edge)["synced_through"].as_u64() >= Some(BACKLOG),
    );
    assert_eq!(store(&edge)["messages"], BACKLOG);
    assert_eq!(store(&edge)["dropped"], 0);

    let port = hub_port.port();
    drop(hub_port);
    let (consumer_url, mut got) = consumer().await;
    let mut hub = hub(port, &consumer_url);
    hub.wait_ready(Duration::from_secs(20));
    for want in 1..=BACKLOG {
        let n = next_n(&mut got, (want - 1) as usize).await;
        assert_eq!(n, want, "in order, each once");
    }
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(60),
        edge.and_log("the store to empty once the hub acked everything"),
        || store(&edge)["messages"] == 0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_drops_the_oldest_and_counts_them() {
    const SENT: u64 = 20_000;
    let data_dir = tempfile::tempdir().unwrap();
    let hub_port = fednode_testkit::ClosedPort::new();
    let hub_url = format!("ws://127.0.0.1:{}/ingest", hub_port.port());
    // 1 MiB of log for about 4.6 MB of messages; dropping, not blocking.
    let mut edge = edge_with(
        &hub_url,
        data_dir.path(),
        1 << 20,
        r#" "backpressure": {"on_full": "drop_oldest"},"#,
    );
    edge.wait_ready(Duration::from_secs(20));
    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/device", edge.addr_of("device")))
            .await
            .expect("connect to the edge");
    for n in 1..=SENT {
        let frame = format!(
            r#"{{"type":"data","id":"m{n}","payload":{{"n":{n},"pad":"{}"}}}}"#,
            "x".repeat(180)
        );
        device.feed(WsMessage::Text(frame.into())).await.unwrap();
    }
    device.flush().await.unwrap();
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(60),
        edge.and_log("every message through the store"),
        || store(&edge)["synced_through"].as_u64() >= Some(SENT),
    );
    let dropped = edge.metric(r#"websocket_output_store_dropped_total{component="up"}"#);
    assert!(dropped > 0.0, "{}", store(&edge));
    assert_eq!(store(&edge)["dropped"].as_f64(), Some(dropped));
    assert!(
        store(&edge)["bytes"].as_u64().unwrap() <= 1 << 20,
        "{}",
        store(&edge)
    );

    // What is left arrives, oldest first, ending with the newest.
    let port = hub_port.port();
    drop(hub_port);
    let (consumer_url, mut got) = consumer().await;
    let mut hub = hub(port, &consumer_url);
    hub.wait_ready(Duration::from_secs(20));
    let mut seen: Vec<u64> = Vec::new();
    while seen.last() != Some(&SENT) {
        seen.push(next_n(&mut got, seen.len()).await);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, each once");
    // Everything was either delivered or counted as dropped (messages
    // already on their way to the socket when their segment went are both).
    assert!(
        seen.len() as f64 + dropped >= SENT as f64,
        "{} delivered + {dropped} dropped < {SENT}",
        seen.len()
    );
    assert!((seen.len() as u64) < SENT, "the store held everything?");
}

/// The store is also the history `replay` reads: after the edge restarts
/// (its replay buffer empty) a replay asked through the hub still reaches
/// back, from the store on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_hub_reaches_back_into_the_store_after_a_restart() {
    const SENT: u64 = 50;
    const COUNT: u64 = 20;
    let data_dir = tempfile::tempdir().unwrap();
    let (consumer_url, mut got) = consumer().await;
    let mut hub = hub(0, &consumer_url);
    hub.wait_ready(Duration::from_secs(20));
    let hub_url = format!("ws://{}/ingest", hub.addr_of("ws_in"));
    // A replay buffer of 5: anything further back comes from the store.
    let small_buffer = r#" "replay": {"buffer_size": 5},"#;
    let mut first = edge_with(&hub_url, data_dir.path(), 64 << 20, small_buffer);
    first.wait_ready(Duration::from_secs(20));
    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/device", first.addr_of("device")))
            .await
            .expect("connect to the edge");
    for n in 1..=SENT {
        let frame = format!(r#"{{"type":"data","id":"m{n}","payload":{{"n":{n}}}}}"#);
        device.send(WsMessage::Text(frame.into())).await.unwrap();
    }
    let mut seen = Vec::new();
    while (seen.len() as u64) < SENT {
        seen.push(next_n(&mut got, seen.len()).await);
    }
    assert_eq!(seen, (1..=SENT).collect::<Vec<_>>());
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(20),
        first.and_log("every message acked and synced"),
        || {
            let s = store(&first);
            s["messages"] == 0 && s["synced_through"].as_u64() >= Some(SENT)
        },
    );
    drop(device);
    first.signal("KILL");
    first
        .wait_exit(Duration::from_secs(10))
        .expect("the edge died");

    // Back on the same data_dir, connected again; its buffer is empty.
    let edge = edge_with(&hub_url, data_dir.path(), 64 << 20, small_buffer);
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(20),
        hub.and_log("the edge back at the hub"),
        || {
            hub.described("ws_in")["connections"]
                .as_array()
                .is_some_and(|c| c.len() == 1)
        },
    );
    let ask = |params: &str| -> serde_json::Value {
        let body = format!(r#"{{"method":"replay","params":{params},"connection":"edge-01"}}"#);
        let (status, text) = common::http(
            "POST",
            hub.admin(),
            "/components/ws_in/request",
            Some(&body),
        )
        .expect("the hub answers");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let reply = ask(&format!(r#"{{"count":{COUNT}}}"#));
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["result"]["messages_available"], COUNT, "{reply}");
    let mut again = Vec::new();
    while (again.len() as u64) < COUNT {
        again.push(next_n(&mut got, again.len()).await);
    }
    assert_eq!(again, (SENT - COUNT + 1..=SENT).collect::<Vec<_>>());

    // After an id, from the store too.
    let reply = ask(r#"{"after_id":"m45"}"#);
    assert_eq!(reply["result"]["messages_available"], 5, "{reply}");
    let mut after = Vec::new();
    while after.len() < 5 {
        after.push(next_n(&mut got, after.len()).await);
    }
    assert_eq!(after, vec![46, 47, 48, 49, 50]);
    drop(edge);
}
