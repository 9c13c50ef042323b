//! A server path with placeholders (`/subscribe/{user_id}`): each
//! connection is bound to the values in its URL, gets only the data that
//! holds them (on top of its own filters), shows them in `status` and
//! `/components`, and has them added to (or checked in) the data it sends.

mod common;

use common::{code, ns, publish, server, Node, Peer, WAIT};
use fednode_kit::{Bus, Component, Message, SubscribeOptions, Subscription};
use serde_json::{json, Value};

/// `ws://127.0.0.1:<port>`.
fn base(node: &Node) -> String {
    format!("ws://{}", node.out.local_addr().expect("listening"))
}

/// The next message on `sub`, within `WAIT`.
async fn next(sub: &mut Subscription) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscribed")
}

fn http_status(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn each_connection_gets_only_the_data_its_path_binds() {
    let node = server(json!({"server": {"path": "/subscribe/{user_id}"}})).await;
    let base = base(&node);
    let mut jamie = Peer::ready(&format!("{base}/subscribe/jamie")).await;
    let mut alex = Peer::ready(&format!("{base}/subscribe/alex")).await;
    let mut seven = Peer::ready(&format!("{base}/subscribe/7")).await;
    let mut accented = Peer::ready(&format!("{base}/subscribe/j%C3%A9r%C3%B4me")).await;
    for (payload, id) in [
        (json!({"user_id": "alex", "n": 1}), "a1"),
        (json!({"user_id": "jamie", "n": 2}), "j2"),
        (json!({"n": 3}), "x3"),
        (json!({"user_id": 7, "n": 4}), "s4"),
        (json!({"user_id": "jérôme", "n": 5}), "e5"),
        (json!({"user": {"user_id": "jamie"}, "n": 6}), "nested6"),
        (json!(["jamie"]), "array7"),
        (json!({"n": 8, "user_id": "jamie"}), "j8"),
    ] {
        publish(&node.bus, "data.x", payload, id).await;
    }
    // One sentinel per user, published last: each arrives after whatever
    // was going to reach that connection.
    for user in [json!("jamie"), json!("alex"), json!(7), json!("jérôme")] {
        let id = format!(
            "end-{}",
            user.as_str().map_or(user.to_string(), str::to_string)
        );
        publish(&node.bus, "data.x", json!({"user_id": user}), &id).await;
    }
    assert_eq!(ns(&jamie.data_until("end-jamie").await), [2, 8]);
    assert_eq!(ns(&alex.data_until("end-alex").await), [1]);
    assert_eq!(
        ns(&seven.data_until("end-7").await),
        [4],
        "a number by its JSON text"
    );
    assert_eq!(
        ns(&accented.data_until("end-jérôme").await),
        [5],
        "percent-decoded"
    );

    // A replay goes through the binding as live data does.
    let reply = jamie.call("replay", json!({})).await;
    assert_eq!(reply["result"]["messages_available"], 3, "{reply}");
    let replayed: Vec<Value> = [jamie.data().await, jamie.data().await, jamie.data().await].into();
    assert!(replayed.iter().all(|d| d["replay"] == true), "{replayed:?}");
    let ids: Vec<&str> = replayed.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["j2", "j8", "end-jamie"]);

    // `status` and `/components` show what each connection is bound to.
    let status = jamie.call("status", json!({})).await;
    assert_eq!(
        status["result"]["connection"]["bound"],
        json!({"user_id": "jamie"})
    );
    let described = node.out.describe();
    let mut bound: Vec<Value> = described["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bound"].clone())
        .collect();
    bound.sort_by_key(|b| b.to_string());
    assert_eq!(
        bound,
        [
            json!({"user_id": "7"}),
            json!({"user_id": "alex"}),
            json!({"user_id": "jamie"}),
            json!({"user_id": "jérôme"})
        ]
    );
    assert_eq!(described["path"], "/subscribe/{user_id}");

    // A path the template does not match is 404, as any other path.
    for path in [
        "/subscribe",
        "/subscribe/",
        "/subscribe/a/b",
        "/other/jamie",
        "/subscribe/%zz",
        "/ws",
    ] {
        let refused = Peer::connect_with(&format!("{base}{path}"), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{path} was accepted"));
        assert_eq!(http_status(refused), 404, "{path}");
    }
    node.stop().await;
}

#[tokio::test]
async fn the_binding_holds_beside_subscriptions_and_after_unsubscribe() {
    let node = server(json!({"server": {"path": "/u/{user_id}/s/{session}"}})).await;
    let mut p = Peer::ready(&format!("{}/u/jamie/s/7", base(&node))).await;
    let reply = p
        .call(
            "subscribe",
            json!({"filter": {"path": "$.n", "operator": ">", "value": 1}}),
        )
        .await;
    let sub = reply["result"]["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let jamie = |n: i64| json!({"user_id": "jamie", "session": 7, "n": n});
    publish(&node.bus, "data.x", jamie(1), "m1").await;
    publish(
        &node.bus,
        "data.x",
        json!({"user_id": "alex", "session": 7, "n": 5}),
        "m2",
    )
    .await;
    publish(
        &node.bus,
        "data.x",
        json!({"user_id": "jamie", "session": 8, "n": 5}),
        "m3",
    )
    .await;
    publish(&node.bus, "data.x", jamie(2), "m4").await;
    publish(&node.bus, "data.x", jamie(100), "end-1").await;
    // Both the filter and every bound member must match.
    assert_eq!(ns(&p.data_until("end-1").await), [2]);

    let reply = p.call("unsubscribe", json!({"subscription_id": sub})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    publish(&node.bus, "data.x", jamie(1), "m5").await;
    publish(
        &node.bus,
        "data.x",
        json!({"user_id": "alex", "session": 7, "n": 1}),
        "m6",
    )
    .await;
    publish(&node.bus, "data.x", json!({"session": 7, "n": 1}), "m7").await;
    publish(&node.bus, "data.x", jamie(100), "end-2").await;
    // No subscription left: everything bound to jamie's session, and only that.
    assert_eq!(ns(&p.data_until("end-2").await), [1]);
    let status = p.call("status", json!({})).await;
    assert_eq!(
        status["result"]["connection"]["bound"],
        json!({"user_id": "jamie", "session": "7"})
    );
    node.stop().await;
}

#[tokio::test]
async fn data_from_a_bound_consumer_gets_its_members_or_is_refused() {
    let node = server(json!({
        "server": {"path": "/subscribe/{user_id}"},
        "ports": {"outputs": [{"name": "ws_upstream", "subject": "back.{user_id}"}]}
    }))
    .await;
    let mut back = node
        .bus
        .subscribe("back.>", SubscribeOptions::default())
        .await
        .unwrap();
    let mut p = Peer::ready(&format!("{}/subscribe/jamie", base(&node))).await;
    let data = |id: &str, payload: Value| json!({"type": "data", "id": id, "payload": payload});
    p.send(data("p1", json!({"score": 1}))).await;
    p.send(data("p2", json!({"user_id": "jamie", "score": 2})))
        .await;
    p.send(data("p3", json!({"user_id": "alex", "score": 3})))
        .await;
    p.send(data("p4", json!([1, 2]))).await;
    p.send(data("p5", json!({"score": 5}))).await;
    // The missing member is added first; the rest of the bytes are kept.
    let m = next(&mut back).await;
    assert_eq!(&*m.subject, "back.jamie");
    assert_eq!(m.meta.id.as_deref(), Some("p1"));
    assert_eq!(&m.payload[..], br#"{"user_id":"jamie","score":1}"#);
    let m = next(&mut back).await;
    assert_eq!(m.meta.id.as_deref(), Some("p2"));
    assert_eq!(&m.payload[..], br#"{"user_id":"jamie","score":2}"#);
    // p3 and p4 were not published: the next one is p5.
    let m = next(&mut back).await;
    assert_eq!(m.meta.id.as_deref(), Some("p5"));
    assert_eq!(&*m.subject, "back.jamie");
    let r3 = p.reply_to("p3").await;
    assert_eq!(code(&r3["payload"]), "invalid_params");
    let message = r3["payload"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(r#"user_id = "jamie""#) && message.contains(r#"user_id = "alex""#),
        "{message}"
    );
    let r4 = p.reply_to("p4").await;
    assert_eq!(code(&r4["payload"]), "invalid_params");
    assert!(
        r4["payload"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be a JSON object"),
        "{r4}"
    );
    assert_eq!(
        node.metric(
            "websocket_output_messages_dropped_total",
            &[("reason", "bound_mismatch")]
        ),
        2.0
    );
    assert_eq!(
        node.metric("websocket_output_upstream_messages_total", &[]),
        3.0
    );
    node.stop().await;
}

#[tokio::test]
async fn with_acknowledged_delivery_a_refusal_is_a_nack() {
    let node = server(json!({
        "server": {"path": "/subscribe/{user_id}"},
        "delivery": "at_least_once",
        "ports": {"outputs": [{"name": "ws_upstream", "subject": "back"}]}
    }))
    .await;
    let mut p = Peer::ready(&format!("{}/subscribe/jamie", base(&node))).await;
    p.send(json!({"type": "data", "id": "p1", "payload": {"user_id": "alex"}}))
        .await;
    p.send(json!({"type": "data", "id": "p2", "payload": {"v": 2}}))
        .await;
    assert_eq!(
        p.next().await,
        json!({"type": "nack", "id": "p1", "payload": {"reason": "bound_mismatch"}})
    );
    assert_eq!(p.next().await, json!({"type": "ack", "id": "p2"}));
    node.stop().await;
}
