//! Data a peer sends to an output: answered with an error reply when the
//! output has no `ws_upstream` port (without ever making the connection
//! wait), and what `fednode send` (`fednode_ws::peer::send`) makes of the
//! refusals it reads back.

mod common;

use common::{code, server, Node, Peer, WAIT};
use fednode_kit::{Bus, SubscribeOptions};
use fednode_testkit::wait_until;
use fednode_ws::peer::{self, PeerError};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;

const NO_UPSTREAM: &str = "this output has no ws_upstream port; data sent to it is not published";

fn no_upstream_dropped(node: &Node) -> f64 {
    node.metric(
        "websocket_output_messages_dropped_total",
        &[("reason", "no_upstream")],
    )
}

#[tokio::test]
async fn data_sent_to_an_output_without_ws_upstream_is_answered_with_an_error() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    p.send(json!({"type": "data", "id": "u1", "payload": {"v": 1}}))
        .await;
    let r = p.reply_to("u1").await;
    assert_eq!(code(&r["payload"]), "unavailable");
    assert_eq!(r["payload"]["error"]["message"], NO_UPSTREAM);
    // Data without an id: the reply's id is empty (none is made up).
    p.send(json!(42)).await;
    let r = p.reply_to("").await;
    assert_eq!(code(&r["payload"]), "unavailable");
    // MessagePack data: the reply is MessagePack too.
    p.send_msgpack(json!({"type": "data", "id": "u3", "payload": {"v": 3}}))
        .await;
    let (r, binary) = p.frame(WAIT).await.expect("open");
    assert!(binary, "{r}");
    assert_eq!(r["id"], "u3");
    assert_eq!(code(&r["payload"]), "unavailable");
    assert_eq!(no_upstream_dropped(&node), 3.0);
    node.stop().await;
}

#[tokio::test]
async fn a_peer_flooding_refused_data_is_read_without_waiting_for_it() {
    // Far more error replies than the sockets' buffers hold: a peer that
    // sends and never reads. Were the replies sent waiting for room, the
    // connection would stop reading once they filled the buffers.
    const N: usize = 60_000;
    let node = server(json!({})).await;
    let p = Peer::ready(&node.url).await;
    let mut ws = p.ws;
    let sender = tokio::spawn(async move {
        for _ in 0..N {
            ws.feed(Ws::Text(r#"{"v":1}"#.into())).await.unwrap();
        }
        ws.flush().await.unwrap();
        ws
    });
    wait_until(
        Duration::from_secs(60),
        "every refused frame to be read",
        || no_upstream_dropped(&node) == N as f64,
    )
    .await;
    // The connection still answers, once its peer reads again.
    let mut p = Peer::wrap(sender.await.unwrap());
    assert_eq!(p.call("status", json!({})).await["status"], "ok");
    node.stop().await;
}

#[tokio::test]
async fn answers_reach_a_peer_that_closes_right_after_its_data() {
    let node = server(json!({})).await;
    for round in 0..20 {
        let p = Peer::ready(&node.url).await;
        let mut ws = p.ws;
        // The data and the close leave in one write, so the output reads
        // them in one go.
        for i in 0..20 {
            let frame = json!({"type": "data", "id": format!("d{i}"), "payload": {"i": i}});
            ws.feed(Ws::Text(frame.to_string().into())).await.unwrap();
        }
        ws.feed(Ws::Close(Some(CloseFrame {
            code: 1000.into(),
            reason: "done".into(),
        })))
        .await
        .unwrap();
        ws.flush().await.unwrap();
        let mut replied = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("in time")
            {
                Some(Ok(Ws::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["payload"]["error"]["message"], NO_UPSTREAM, "{v}");
                    replied.push(v["id"].as_str().unwrap().to_string());
                }
                Some(Ok(Ws::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("round {round}: {e}"),
            }
        }
        let want: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        assert_eq!(replied, want, "round {round}");
    }
    node.stop().await;
}

/// Ten JSON lines, `{"i": 0}` … `{"i": 9}`.
fn ten_lines() -> Vec<u8> {
    (0..10)
        .map(|i| format!("{{\"i\": {i}}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn send_fails_naming_what_the_peer_refused() {
    let node = server(json!({})).await;
    // Several runs: each reads every refusal before the close handshake.
    for _ in 0..10 {
        let err = peer::send(&node.url, None, &ten_lines()[..])
            .await
            .expect_err("refused");
        assert!(
            matches!(
                err,
                PeerError::Refused {
                    refused: 10,
                    sent: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: the peer refused 10 of 10 messages; first: unavailable: {NO_UPSTREAM}",
                node.url
            )
        );
    }
    assert_eq!(no_upstream_dropped(&node), 100.0);
    node.stop().await;
}

#[tokio::test]
async fn send_succeeds_when_everything_is_published() {
    let node = server(json!({
        "ports": {"outputs": [{"name": "ws_upstream", "subject": "back"}]}
    }))
    .await;
    let mut back = node
        .bus
        .subscribe("back", SubscribeOptions::default())
        .await
        .unwrap();
    let sent = peer::send(&node.url, None, &ten_lines()[..])
        .await
        .expect("sent");
    assert_eq!(sent, 10);
    for i in 0..10 {
        let m = tokio::time::timeout(WAIT, back.next())
            .await
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["i"], i);
    }
    node.stop().await;
}

#[tokio::test]
async fn send_counts_only_the_refused_lines() {
    let node = server(json!({
        "server": {"path": "/subscribe/{user_id}"},
        "ports": {"outputs": [{"name": "ws_upstream", "subject": "back.{user_id}"}]}
    }))
    .await;
    let url = format!(
        "ws://{}/subscribe/jamie",
        node.out.local_addr().expect("listening")
    );
    let lines =
        b"{\"score\": 1}\n{\"user_id\": \"alex\", \"score\": 2}\n{\"user_id\": \"jamie\"}\n";
    let err = peer::send(&url, None, &lines[..])
        .await
        .expect_err("one refused");
    let PeerError::Refused {
        refused,
        sent,
        first,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*refused, *sent), (1, 3));
    assert!(
        first.starts_with(r#"invalid_params: this connection is bound to user_id = "jamie""#),
        "{first}"
    );
    assert_eq!(
        node.metric("websocket_output_upstream_messages_total", &[]),
        2.0
    );
    node.stop().await;
}
