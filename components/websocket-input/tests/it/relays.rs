//! Relays that authenticate with their first message, their sessions, and
//! the way back: `ws_downstream` data reaches only the connection that
//! streams that user.

use crate::common::*;
use fednode_kit::envelope::Kind;
use fednode_kit::{Bus, Component};
use fednode_ws::frame::WsMessage;
use futures::StreamExt;
use serde_json::{json, Value};

fn relay_config() -> Value {
    std::env::set_var("RELAY_TEST_KEYS", "key-one, key-two");
    server_config(json!({
        "auth_message": {"api_keys_env": "RELAY_TEST_KEYS", "timeout": "500ms"},
        "ports": {
            "outputs": [
                {"name": "ws_data", "subject": "user.{user_id}.{type}"},
                {"name": "ws_sessions", "subject": "sessions.{user_id}"}
            ],
            "inputs": [{"name": "ws_downstream", "subject": "user.*.predictions"}]
        }
    }))
}

/// The next plain JSON text frame (pings skipped).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(SOON, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        match msg {
            WsMessage::Text(t) => return serde_json::from_str(&t).expect("json"),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn relay(node: &Node, key: &str, user: &str) -> Ws {
    let mut ws = connect(&node.url(), None).await;
    send(
        &mut ws,
        text(&json!({"type": "auth", "api_key": key, "user_id": user,
                     "device_info": {"device_type": "Emotiv EPOC", "channel_count": 8}})),
    )
    .await;
    let ok = next_json(&mut ws).await;
    assert_eq!(ok["type"], "auth_ok", "{ok}");
    assert_eq!(ok["user_id"], user);
    ws
}

async fn publish(node: &Node, subject: &str, payload: Value) {
    node.bus
        .publish(fednode_kit::Message::new(subject, payload.to_string()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_relay_authenticates_first_and_its_data_is_bound_to_its_user() {
    let node = start(relay_config()).await;
    let mut raw = node.subscribe("user.>").await;
    let mut sessions = node.subscribe("sessions.>").await;

    let mut ws = relay(&node, "key-two", "jamie").await;
    let started = tokio::time::timeout(SOON, sessions.next())
        .await
        .unwrap()
        .unwrap();
    let started: Value = serde_json::from_slice(&started.payload).unwrap();
    assert_eq!(started["type"], "session_start");
    assert_eq!(started["user_id"], "jamie");
    assert_eq!(started["device_info"]["channel_count"], 8);
    assert!(started.get("api_key").is_none(), "{started}");

    // Samples without user_id get it; the auth message itself was never
    // published (the first message on user.> is the sample).
    send(
        &mut ws,
        text(&json!({"type": "raw", "channels": [1, 2, 3]})),
    )
    .await;
    let m = tokio::time::timeout(SOON, raw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "user.jamie.raw");
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        v,
        json!({"user_id": "jamie", "type": "raw", "channels": [1, 2, 3]})
    );

    // Another user's data on this connection is refused, with a reason.
    send(
        &mut ws,
        text(&json!({"type": "raw", "user_id": "alex", "channels": [1]})),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["error"].as_str().unwrap().contains("alex"), "{e}");
    // A second auth message (it holds a key) is not published either.
    send(
        &mut ws,
        text(&json!({"type": "auth", "api_key": "key-one", "user_id": "jamie"})),
    )
    .await;
    send(&mut ws, text(&json!({"type": "features", "workload": 0.5}))).await;
    let m = tokio::time::timeout(SOON, raw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "user.jamie.features");
    // Members of any type are fine where text is looked for.
    send(&mut ws, text(&json!({"type": 5, "user_id": 7}))).await;
    let e = next_json(&mut ws).await;
    assert_eq!(e["type"], "error", "user 7 is not jamie: {e}");
    send(&mut ws, text(&json!({"type": 5}))).await;
    let m = tokio::time::timeout(SOON, raw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*m.subject, "user.jamie.5");
    assert_eq!(node.dropped("user_mismatch"), 2.0);
    let described = node.comp.describe();
    assert_eq!(
        described["connections"][0]["user_id"], "jamie",
        "{described}"
    );

    drop(ws);
    let ended = tokio::time::timeout(SOON, sessions.next())
        .await
        .unwrap()
        .unwrap();
    let ended: Value = serde_json::from_slice(&ended.payload).unwrap();
    assert_eq!(ended["type"], "session_end");
    assert_eq!(ended["session_id"], started["session_id"]);
    assert_eq!(ended["messages"], 3);
    node.stop().await;
}

#[tokio::test]
async fn a_wrong_key_a_wrong_first_message_and_silence_are_refused() {
    let node = start(relay_config()).await;
    let mut raw = node.subscribe("user.>").await;

    let mut ws = connect(&node.url(), None).await;
    send(
        &mut ws,
        text(&json!({"type": "auth", "api_key": "nope", "user_id": "u"})),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(e, json!({"type": "error", "error": "invalid api_key"}));
    assert_eq!(close_code(&mut ws).await, Some(1008));

    let mut ws = connect(&node.url(), None).await;
    send(
        &mut ws,
        text(&json!({"type": "raw", "user_id": "u", "channels": [1]})),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "error");
    assert_eq!(close_code(&mut ws).await, Some(1008));

    let mut ws = connect(&node.url(), None).await;
    assert_eq!(next_json(&mut ws).await["type"], "error");
    assert_eq!(close_code(&mut ws).await, Some(1008));

    for result in ["invalid_key", "invalid_message", "timeout"] {
        assert_eq!(
            node.metric("websocket_input_auth_messages_total", &[("result", result)]),
            1.0,
            "{result}"
        );
    }
    // Nothing of it reached the bus.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), raw.next())
            .await
            .is_err()
    );
    node.stop().await;
}

#[tokio::test]
async fn downstream_data_reaches_only_the_relay_of_its_user() {
    let node = start(relay_config()).await;
    let mut jamie = relay(&node, "key-one", "jamie").await;
    let mut alex = relay(&node, "key-two", "alex").await;

    publish(
        &node,
        "user.jamie.predictions",
        json!({"type": "prediction", "user_id": "jamie", "workload": 0.7}),
    )
    .await;
    publish(
        &node,
        "user.alex.predictions",
        json!({"type": "prediction", "user_id": "alex", "workload": 0.2}),
    )
    .await;
    // A user nobody streams: counted, not sent.
    publish(
        &node,
        "user.kim.predictions",
        json!({"type": "prediction", "user_id": "kim"}),
    )
    .await;

    let p = next_json(&mut jamie).await;
    assert_eq!(
        p,
        json!({"type": "prediction", "user_id": "jamie", "workload": 0.7})
    );
    let p = next_json(&mut alex).await;
    assert_eq!(p["user_id"], "alex");
    node.wait_metric(
        "websocket_input_downstream_dropped_total",
        &[("reason", "no_route")],
        1.0,
    )
    .await;
    assert_eq!(
        node.metric("websocket_input_downstream_sent_total", &[]),
        2.0
    );
    // Nothing else arrived at either relay.
    for ws in [&mut jamie, &mut alex] {
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), ws.next())
                .await
                .is_err()
        );
    }

    // After jamie's relay leaves, jamie's predictions route nowhere.
    drop(jamie);
    wait_until(SOON, "jamie's relay gone", || {
        node.comp.describe()["connections"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    publish(
        &node,
        "user.jamie.predictions",
        json!({"type": "prediction", "user_id": "jamie"}),
    )
    .await;
    node.wait_metric(
        "websocket_input_downstream_dropped_total",
        &[("reason", "no_route")],
        2.0,
    )
    .await;
    node.stop().await;
}

#[tokio::test]
async fn without_auth_messages_the_last_sender_of_a_key_gets_its_downstream_data() {
    let node = start(server_config(json!({
        "ports": {
            "outputs": [{"name": "ws_data", "subject": "edges.data"}],
            "inputs": [{"name": "ws_downstream", "subject": "predictions.>"}]
        }
    })))
    .await;
    let mut edge_a = connect(&node.url(), None).await;
    let mut edge_b = connect(&node.url(), None).await;
    // Edges speak envelopes; each streams its own users.
    send(&mut edge_a, data("a1", json!({"user_id": "u1", "v": 1}))).await;
    send(&mut edge_b, data("b1", json!({"user_id": "u2", "v": 1}))).await;
    send(&mut edge_b, data("b2", json!({"user_id": "u3", "v": 1}))).await;
    node.wait_metric("websocket_input_messages_published_total", &[], 3.0)
        .await;

    for user in ["u1", "u2", "u3"] {
        publish(
            &node,
            &format!("predictions.{user}"),
            json!({"user_id": user, "p": 1}),
        )
        .await;
    }
    let got = next_of(&mut edge_a, Kind::Data).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got.payload).unwrap()["user_id"],
        "u1"
    );
    let mut to_b = Vec::new();
    for _ in 0..2 {
        let e = next_of(&mut edge_b, Kind::Data).await;
        to_b.push(serde_json::from_slice::<Value>(&e.payload).unwrap()["user_id"].clone());
    }
    assert_eq!(to_b, vec![json!("u2"), json!("u3")]);

    // u1 moves to edge b: its data follows.
    send(&mut edge_b, data("b3", json!({"user_id": "u1", "v": 2}))).await;
    node.wait_metric("websocket_input_messages_published_total", &[], 4.0)
        .await;
    publish(&node, "predictions.u1", json!({"user_id": "u1", "p": 2})).await;
    let e = next_of(&mut edge_b, Kind::Data).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&e.payload).unwrap(),
        json!({"user_id": "u1", "p": 2})
    );
    // A message without the key: counted.
    publish(&node, "predictions.x", json!({"p": 3})).await;
    node.wait_metric(
        "websocket_input_downstream_dropped_total",
        &[("reason", "no_key")],
        1.0,
    )
    .await;
    node.stop().await;
}
