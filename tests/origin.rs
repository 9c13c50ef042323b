//! Data remembers where it came from, through two hops: edge → regional
//! hub → central hub, all real `fednode` processes, plus a second edge in
//! another region pushing to the central hub directly.
//!
//! The central hub publishes what its input receives on
//! `edges.{$origin.region}.data`; a consumer of its output, which serves
//! only `edges.eu-west.data`, must get every message of the eu-west edge
//! (with that edge as `origin`) and none of the other region's; and its
//! `timescale` must store the edge (not the regional hub, not itself) in
//! `node_id` and the edge's region in `region`.

mod common;
use common::Node;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const PER_EDGE: u64 = 200;

fn central(pg_url: &str) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "central", "region": "core"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "edges.{{$origin.region}}.data"}}]}}
          }}}},
          "eu_feed": {{"type": "output", "name": "websocket", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/feed"}},
            "backpressure": {{"on_full": "block"}},
            "ports": {{"inputs": [{{"name": "in", "subject": "edges.eu-west.data"}}]}}
          }}}},
          "store": {{"type": "storage", "name": "timescale", "config": {{
            "url": "{pg_url}", "batch_size": 50, "flush_interval": "50ms",
            "ports": {{"inputs": [{{"name": "in", "subject": "edges.>"}}]}}
          }}}}
        }}
      }}"#
        ),
        &[],
    )
}

/// A node that takes data on `/in` and pushes it to `upstream`, acked.
fn relay(id: &str, region: &str, upstream: &str) -> Node {
    Node::start_with(
        &format!(
            r#"{{
        "node": {{"id": "{id}", "region": "{region}"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/in"}},
            "backpressure": {{"on_full": "block"}},
            "ports": {{"outputs": [{{"name": "ws_data", "subject": "local.data"}}]}}
          }}}},
          "up": {{"type": "output", "name": "websocket", "config": {{
            "mode": "client",
            "client": {{"url": "{upstream}"}},
            "delivery": "at_least_once",
            "ports": {{"inputs": [{{"name": "in", "subject": "local.data"}}]}}
          }}}}
        }}
      }}"#
        ),
        &[],
    )
}

fn connected(node: &Node, what: &str) {
    fednode_testkit::wait_until_blocking(Duration::from_secs(20), node.and_log(what), || {
        node.status_of("up").as_deref() == Some("connected")
    });
}

/// Push `PER_EDGE` data frames `{"edge": name, "n": …}` into a node's `/in`.
async fn push(node: &Node, name: &str) {
    let url = format!("ws://{}/in", node.addr_of("ws_in"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    for n in 1..=PER_EDGE {
        let frame =
            format!(r#"{{"type":"data","id":"{name}-{n}","payload":{{"edge":"{name}","n":{n}}}}}"#);
        ws.feed(WsMessage::Text(frame.into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_region_survive_two_hops_and_route_by_region() {
    let pg = fednode_testkit::PgCluster::start();
    let mut central = central(&pg.url());
    central.wait_ready(Duration::from_secs(30));
    let central_url = format!("ws://{}/ingest", central.addr_of("ws_in"));
    let mut regional = relay("regional", "eu", &central_url);
    regional.wait_ready(Duration::from_secs(20));
    let regional_url = format!("ws://{}/in", regional.addr_of("ws_in"));
    let mut edge = relay("edge-01", "eu-west", &regional_url);
    edge.wait_ready(Duration::from_secs(20));
    let mut other = relay("edge-02", "us-east", &central_url);
    other.wait_ready(Duration::from_secs(20));
    for (n, what) in [
        (&regional, "the regional hub to reach the central one"),
        (&edge, "edge-01 to reach the regional hub"),
        (&other, "edge-02 to reach the central hub"),
    ] {
        connected(n, what);
    }

    let (mut feed, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/feed", central.addr_of("eu_feed")))
            .await
            .expect("connect to the feed");
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        central.and_log("the feed reader to be counted"),
        || central.metric(r#"websocket_output_connections_active{component="eu_feed"}"#) >= 1.0,
    );
    push(&other, "edge-02").await;
    push(&edge, "edge-01").await;

    // The consumer of eu-west: all of edge-01, in order, with its origin.
    read_eu_west_feed(&mut feed).await;

    // Storage: every row of both edges, each with its own origin.
    let count = |sql: &str| -> u64 { pg.psql("postgres", sql).trim().parse().unwrap_or(0) };
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(30),
        central.and_log("every row to be stored"),
        || count("SELECT count(*) FROM fednode_messages") >= 2 * PER_EDGE,
    );
    let by_origin = pg.psql(
        "postgres",
        "SELECT node_id || '/' || coalesce(region, '-') || '/' || subject || '=' || count(*) \
         FROM fednode_messages GROUP BY node_id, region, subject ORDER BY 1",
    );
    assert_eq!(
        by_origin.split_whitespace().collect::<Vec<_>>(),
        vec![
            format!("edge-01/eu-west/edges.eu-west.data={PER_EDGE}"),
            format!("edge-02/us-east/edges.us-east.data={PER_EDGE}"),
        ],
        "rows by node_id/region/subject"
    );
}

/// Read the eu-west feed until it has every message of edge-01: in order,
/// each with edge-01's origin and region, and nothing of another region.
async fn read_eu_west_feed<S>(feed: &mut S)
where
    S: futures::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut got = Vec::new();
    while (got.len() as u64) < PER_EDGE {
        let frame = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {PER_EDGE} reached the feed", got.len()))
            .expect("feed open")
            .unwrap();
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["type"] != "data" {
            continue;
        }
        assert_eq!(v["payload"]["edge"], "edge-01", "only eu-west data: {v}");
        assert_eq!(v["origin"]["node"], "edge-01", "{v}");
        assert_eq!(v["origin"]["region"], "eu-west", "{v}");
        got.push(v["payload"]["n"].as_u64().unwrap());
    }
    assert_eq!(got, (1..=PER_EDGE).collect::<Vec<_>>());
}

/// A hub on NATS publishing `edges.{$origin.region}.data`, with an output
/// serving `edges.eu-west.>` only.
fn nats_hub(nats_url: &str) -> Node {
    let config = common::nats_hub_config(
        "hub",
        nats_url,
        json!({
            "backpressure": {"on_full": "block"},
            "ports": {"outputs": [{"name": "ws_data", "subject": "edges.{$origin.region}.data"}]},
        }),
        json!({"eu_feed": {"type": "output", "name": "websocket", "config": {
            "mode": "server",
            "server": {"http_port": 0, "bind": "127.0.0.1", "path": "/feed"},
            "backpressure": {"on_full": "block"},
            "ports": {"inputs": [{"name": "in", "subject": "edges.eu-west.>"}]},
        }}}),
    );
    Node::start_with(&config, &[])
}

/// The next message of a NATS subscription, within 30 s.
async fn next_on(sub: &mut async_nats::Subscriber, what: &str) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("subscription open")
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// Consumers of a hub on the NATS bus pick a region by subject: a plain
/// NATS subscriber on `edges.eu-west.>` and a WebSocket consumer of an
/// output serving that subject get every message of the eu-west edge,
/// with its origin, and nothing of the us-east edge, which the hub
/// publishes on `edges.us-east.data` before the eu-west data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_picks_one_region_by_subject_on_nats() {
    let nats = fednode_testkit::NatsServer::start();
    let client = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    let mut eu = client
        .subscribe("edges.eu-west.>")
        .await
        .expect("subscribe");
    let mut us = client
        .subscribe("edges.us-east.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");

    let mut hub = nats_hub(&nats.url());
    hub.wait_ready(Duration::from_secs(30));
    let hub_url = format!("ws://{}/ingest", hub.addr_of("ws_in"));
    let mut west = relay("edge-01", "eu-west", &hub_url);
    west.wait_ready(Duration::from_secs(20));
    let mut east = relay("edge-02", "us-east", &hub_url);
    east.wait_ready(Duration::from_secs(20));
    connected(&west, "edge-01 to reach the hub");
    connected(&east, "edge-02 to reach the hub");

    let (mut feed, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/feed", hub.addr_of("eu_feed")))
            .await
            .expect("connect to the feed");
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        hub.and_log("the feed reader to be counted"),
        || hub.metric(r#"websocket_output_connections_active{component="eu_feed"}"#) >= 1.0,
    );

    // us-east first, all of it on the bus before any eu-west data: had any
    // of it gone to an eu-west consumer, it would come before eu-west's.
    push(&east, "edge-02").await;
    for n in 1..=PER_EDGE {
        let m = next_on(&mut us, "the us-east data on NATS").await;
        assert_eq!(m.subject.as_str(), "edges.us-east.data");
        assert_eq!(header(&m, "Fednode-Origin"), Some("edge-02"));
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v, serde_json::json!({"edge": "edge-02", "n": n}));
    }
    push(&west, "edge-01").await;

    // The plain NATS subscriber: eu-west only, origin in the headers.
    for n in 1..=PER_EDGE {
        let m = next_on(&mut eu, "the eu-west data on NATS").await;
        assert_eq!(m.subject.as_str(), "edges.eu-west.data");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"edge": "edge-01", "n": n}),
            "only eu-west data, in order"
        );
        assert_eq!(header(&m, "Fednode-Origin"), Some("edge-01"));
        assert_eq!(header(&m, "Fednode-Origin-Region"), Some("eu-west"));
        assert_eq!(
            header(&m, "Fednode-Node"),
            Some("hub"),
            "the hub published it"
        );
        assert_eq!(
            header(&m, "Fednode-Id"),
            Some(format!("edge-01-{n}").as_str())
        );
    }

    // The WebSocket consumer: the same, with `origin` in each envelope.
    read_eu_west_feed(&mut feed).await;
    let sent = r#"websocket_output_messages_sent_total{component="eu_feed"}"#;
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(10),
        hub.and_log("the feed's count of sent messages"),
        || hub.metric(sent) >= PER_EDGE as f64,
    );
    assert_eq!(
        hub.metric(sent),
        PER_EDGE as f64,
        "the feed sent nothing else"
    );
}
