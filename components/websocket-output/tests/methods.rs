//! The request methods  against a real server on 127.0.0.1:
//! success and every error code of each.

mod common;

use common::{code, ns, publish, publish_at, server, wait_fanned_out, Peer};
use fednode_kit::Component;
use serde_json::json;

#[tokio::test]
async fn status_has_the_spec_shape() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    let r = p.call("status", json!({})).await;
    assert_eq!(r["status"], "ok");
    let res = &r["result"];
    assert_eq!(res["throughput"]["unit"], "msg/sec");
    assert!(res["throughput"]["current"].is_number());
    assert!(res["throughput"]["average_1m"].is_number());
    assert_eq!(res["queue_depth"], 0);
    assert!(res["uptime_seconds"].is_u64());
    assert_eq!(res["connections"]["active"], 1);
    assert_eq!(res["connections"]["total"], 1);
    assert_eq!(res["node"], json!({"id": "test-node", "region": "test"}));
    assert_eq!(res["connection"]["id"], "conn-1");
    // Null params are the same as {}.
    let r = p.call("status", json!(null)).await;
    assert_eq!(r["status"], "ok");
    node.stop().await;
}

#[tokio::test]
async fn unknown_methods_and_malformed_requests() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    let r = p.call("reboot", json!({})).await;
    assert_eq!(code(&r), "unknown_method");
    assert!(r["error"]["message"].as_str().unwrap().contains("reboot"));
    // A request whose payload has no method, and params that are not an object.
    p.send(json!({"type": "request", "id": "bad1", "payload": {"params": {}}}))
        .await;
    assert_eq!(code(&p.reply_to("bad1").await["payload"]), "invalid_params");
    let r = p.call("status", json!([1])).await;
    assert_eq!(code(&r), "invalid_params");
    assert_eq!(
        node.metric(
            "websocket_output_requests_received_total",
            &[("method", "other")]
        ),
        1.0
    );
    assert_eq!(
        node.metric(
            "websocket_output_errors_total",
            &[("type", "invalid_request")]
        ),
        1.0
    );
    node.stop().await;
}

#[tokio::test]
async fn replies_use_the_encoding_of_their_request() {
    let node = server(json!({"encoding": "msgpack"})).await;
    let mut p = Peer::connect(&node.url).await;
    p.send_msgpack(
        json!({"type": "request", "id": "m1", "payload": {"method": "status", "params": {}}}),
    )
    .await;
    let (reply, binary) = p.frame(common::WAIT).await.unwrap();
    assert!(binary, "a MessagePack request gets a MessagePack reply");
    assert_eq!(reply["id"], "m1");
    assert_eq!(reply["payload"]["status"], "ok");
    let id = p.request("status", json!({})).await;
    let (reply, binary) = p.frame(common::WAIT).await.unwrap();
    assert!(!binary, "a text request gets a text reply");
    assert_eq!(reply["id"], id.as_str());
    // Data goes out as MessagePack (binary) with this config.
    publish(&node.bus, "data.x", json!({"n": 1}), "d1").await;
    let (d, binary) = p.frame(common::WAIT).await.unwrap();
    assert!(binary);
    assert_eq!(d["payload"], json!({"n": 1}));
    assert_eq!(d["id"], "d1");
    node.stop().await;
}

#[tokio::test]
async fn backpressure_sets_and_lifts_the_rate_and_checks_params() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    let r = p
        .call(
            "backpressure",
            json!({"rate_limit": 100, "unit": "msg/sec"}),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["adjusted_to"], 100.0);
    assert!(r["result"]["current_rate"].is_number());
    let d = node.out.describe();
    assert_eq!(d["connections"][0]["rate_limit"], 100.0);
    for lift in [json!({"rate_limit": 0}), json!({"rate_limit": null})] {
        let r = p.call("backpressure", lift).await;
        assert_eq!(r["result"]["adjusted_to"], json!(null), "{r}");
    }
    for bad in [
        json!({}),
        json!({"rate_limit": -5}),
        json!({"rate_limit": "fast"}),
        json!({"rate_limit": 5, "unit": "msg/min"}),
        json!({"rate_limit": 5, "burst": 3}),
    ] {
        let r = p.call("backpressure", bad.clone()).await;
        assert_eq!(code(&r), "invalid_params", "{bad}");
    }
    node.stop().await;
}

#[tokio::test]
async fn backpressure_disabled_is_unavailable() {
    let node = server(json!({"backpressure": {"enabled": false}})).await;
    let mut p = Peer::ready(&node.url).await;
    let r = p.call("backpressure", json!({"rate_limit": 10})).await;
    assert_eq!(code(&r), "unavailable");
    node.stop().await;
}

#[tokio::test]
async fn subscriptions_are_alternatives_and_use_severity_words() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    let r = p
        .call(
            "subscribe",
            json!({"filter": {"path": "$.severity", "operator": ">=", "value": "error"}}),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["result"]["filter_applied"], true);
    let sub1 = r["result"]["subscription_id"].as_str().unwrap().to_string();
    let r = p
        .call(
            "subscribe",
            json!({"filters": [{"path": "$.site", "operator": "==", "value": "lab"},
                               {"path": "$.n", "operator": "<", "value": 3}], "match": "all"}),
        )
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    let sub2 = r["result"]["subscription_id"].as_str().unwrap().to_string();
    assert_ne!(sub1, sub2);

    let msgs = [
        json!({"n": 1, "severity": "warning", "site": "x"}), // neither
        json!({"n": 2, "severity": "critical", "site": "x"}), // first
        json!({"n": 3, "severity": "info", "site": "lab"}),  // second fails n < 3
        json!({"n": 2, "severity": "debug", "site": "lab", "k": 4}), // second
        json!({"n": 5, "severity": "emergency"}),            // first
    ];
    for (i, m) in msgs.iter().enumerate() {
        publish(&node.bus, "data.x", m.clone(), &format!("m{i}")).await;
    }
    // A sentinel that passes the first filter: what comes before it is all.
    publish(
        &node.bus,
        "data.x",
        json!({"n": 0, "severity": "critical"}),
        "end",
    )
    .await;
    let got = p.data_until("end").await;
    let ids: Vec<&str> = got.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["m1", "m3", "m4"]);

    // Unsubscribing one leaves the other.
    let r = p
        .call("unsubscribe", json!({"subscription_id": sub1}))
        .await;
    assert_eq!(r["result"], json!({"removed": true}));
    publish(
        &node.bus,
        "data.x",
        json!({"n": 9, "severity": "alert"}),
        "gone",
    )
    .await;
    publish(&node.bus, "data.x", json!({"n": 1, "site": "lab"}), "kept").await;
    // A sentinel that passes the remaining filter.
    publish(&node.bus, "data.x", json!({"n": 0, "site": "lab"}), "end2").await;
    let got = p.data_until("end2").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["id"], "kept");
    // With none left, everything flows again.
    p.call("unsubscribe", json!({"subscription_id": sub2}))
        .await;
    publish(&node.bus, "data.x", json!({"n": 100}), "all").await;
    assert_eq!(p.data().await["id"], "all");
    node.stop().await;
}

#[tokio::test]
async fn subscribe_and_unsubscribe_errors() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    // A bad operator or path is invalid_filter.
    for bad in [
        json!({"filter": {"path": "$.a", "operator": "=>", "value": 1}}),
        json!({"filter": {"path": "$.a[", "operator": "==", "value": 1}}),
        json!({"filter": {"path": "$.a", "operator": "matches", "value": "(unclosed"}}),
    ] {
        let r = p.call("subscribe", bad.clone()).await;
        assert_eq!(code(&r), "invalid_filter", "{bad}: {r}");
    }
    // A filter of the wrong shape is invalid_params.
    for bad in [
        json!({}),
        json!({"filter": {"path": "$.a", "value": 1}}),
        json!({"filter": {"path": "$.a", "operator": "==", "value": 1}, "extra": 1}),
        json!({"filters": [{"path": "$.a", "operator": "==", "value": 1}], "match": "most"}),
    ] {
        let r = p.call("subscribe", bad.clone()).await;
        assert_eq!(code(&r), "invalid_params", "{bad}: {r}");
    }
    for bad in [
        json!({}),
        json!({"subscription_id": 3}),
        json!({"subscription_id": "sub-99"}),
    ] {
        let r = p.call("unsubscribe", bad.clone()).await;
        assert_eq!(code(&r), "invalid_params", "{bad}: {r}");
    }
    // Nothing was subscribed by the failures: data still flows.
    publish(&node.bus, "data.x", json!({"n": 1}), "m").await;
    assert_eq!(p.data().await["id"], "m");
    node.stop().await;
}

#[tokio::test]
async fn announce_routes_by_type_and_combines_with_filters() {
    let node = server(json!({})).await;
    let mut a = Peer::ready(&node.url).await;
    let mut b = Peer::ready(&node.url).await;
    let r = a
        .call(
            "announce",
            json!({"capabilities": {"region": "us-west", "message_types": ["sensor", "telemetry"], "max_rate": 1000}}),
        )
        .await;
    assert_eq!(
        r["result"],
        json!({"registered": true, "routing_updated": true})
    );
    // A filter on top: a message must pass both.
    let r = a
        .call(
            "subscribe",
            json!({"filter": {"path": "$.value", "operator": ">", "value": 10}}),
        )
        .await;
    assert_eq!(r["status"], "ok");

    let msgs = [
        json!({"n": 1, "type": "sensor", "value": 50}), // a: both pass
        json!({"n": 2, "type": "sensor", "value": 5}),  // a: filter fails
        json!({"n": 3, "type": "alert", "value": 50}),  // a: type fails
        json!({"n": 4, "type": "telemetry", "value": 11}), // a: both pass
        json!({"n": 5, "value": 99}),                   // a: no type
    ];
    for (i, m) in msgs.iter().enumerate() {
        publish(&node.bus, "data.x", m.clone(), &format!("m{i}")).await;
    }
    // A sentinel both connections accept: what comes before it is all.
    publish(
        &node.bus,
        "data.x",
        json!({"n": 0, "type": "sensor", "value": 50}),
        "end",
    )
    .await;
    assert_eq!(ns(&a.data_until("end").await), vec![1, 4]);
    // The other connection is unaffected.
    assert_eq!(ns(&b.data_until("end").await), vec![1, 2, 3, 4, 5]);

    // Remembered and shown by status and describe.
    let s = a.call("status", json!({})).await;
    let c = &s["result"]["connection"];
    assert_eq!(c["capabilities"]["region"], "us-west");
    assert_eq!(c["max_rate"], 1000.0);
    assert_eq!(c["message_types"], json!(["sensor", "telemetry"]));
    let d = node.out.describe();
    let conns = d["connections"].as_array().unwrap();
    let mine = conns
        .iter()
        .find(|x| x["capabilities"].is_object())
        .unwrap();
    assert_eq!(mine["filters"].as_array().unwrap().len(), 1);
    assert_eq!(mine["effective_rate_limit"], 1000.0);

    // max_rate and a backpressure limit: the lower applies.
    let r = a.call("backpressure", json!({"rate_limit": 5000})).await;
    assert_eq!(r["result"]["adjusted_to"], 1000.0);
    node.stop().await;
}

#[tokio::test]
async fn announce_errors() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    for bad in [
        json!({}),
        json!({"capabilities": "all"}),
        json!({"capabilities": {"message_types": "sensor"}}),
        json!({"capabilities": {"message_types": [1]}}),
        json!({"capabilities": {"max_rate": -1}}),
        json!({"capabilities": {"region": 5}}),
        json!({"capabilities": {}, "extra": true}),
    ] {
        let r = p.call("announce", bad.clone()).await;
        assert_eq!(code(&r), "invalid_params", "{bad}: {r}");
    }
    node.stop().await;
}

#[tokio::test]
async fn replay_by_count_time_and_id() {
    let node = server(json!({"replay": {"buffer_size": 5}})).await;
    for n in 1..=8 {
        publish_at(
            &node.bus,
            "data.x",
            json!({"n": n}),
            &format!("m{n}"),
            Some(1000 + n),
        )
        .await;
    }
    // Let the fan-out buffer them (no connection yet).
    wait_fanned_out(&node, "m8").await;
    let mut p = Peer::ready(&node.url).await;

    // The reply comes first, then the data marked replay, in order.
    let id = p.request("replay", json!({"count": 3})).await;
    let first = p.next().await;
    assert_eq!(first["type"], "reply");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(
        first["payload"]["result"],
        json!({"messages_available": 3, "replay_started": true})
    );
    let got: Vec<_> = [p.data().await, p.data().await, p.data().await].into();
    assert_eq!(ns(&got), vec![6, 7, 8]);
    assert!(got.iter().all(|g| g["replay"] == true));
    assert_eq!(got[0]["timestamp"], 1006);

    let r = p.call("replay", json!({"start_time": 1007})).await;
    assert_eq!(r["result"]["messages_available"], 2);
    assert_eq!(ns(&[p.data().await, p.data().await]), vec![7, 8]);

    let r = p.call("replay", json!({"after_id": "m5"})).await;
    assert_eq!(r["result"]["messages_available"], 3);
    assert_eq!(
        ns(&[p.data().await, p.data().await, p.data().await]),
        vec![6, 7, 8]
    );

    // An id no longer buffered: everything buffered, and it says so.
    let r = p
        .call("replay", json!({"after_id": "m1", "count": 2}))
        .await;
    assert_eq!(r["result"]["messages_available"], 2);
    assert_eq!(r["result"]["after_id_found"], false);
    assert_eq!(ns(&[p.data().await, p.data().await]), vec![7, 8]);

    // Nothing matches: zero, not started.
    let r = p.call("replay", json!({"start_time": 99999})).await;
    assert_eq!(
        r["result"],
        json!({"messages_available": 0, "replay_started": false})
    );

    // Replayed data goes through the connection's filters.
    p.call(
        "subscribe",
        json!({"filter": {"path": "$.n", "operator": ">=", "value": 7}}),
    )
    .await;
    let r = p.call("replay", json!({})).await;
    assert_eq!(r["result"]["messages_available"], 2);
    assert_eq!(ns(&[p.data().await, p.data().await]), vec![7, 8]);
    // Nothing else was replayed: a live sentinel (which passes the filter)
    // is the next data.
    publish(&node.bus, "data.x", json!({"n": 9}), "end").await;
    assert!(p.data_until("end").await.is_empty());
    assert_eq!(
        node.metric("websocket_output_replay_messages_total", &[]),
        12.0
    );
    node.stop().await;
}

#[tokio::test]
async fn replay_errors() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    for bad in [
        json!({"count": -1}),
        json!({"count": 1.5}),
        json!({"count": "10"}),
        json!({"start_time": "yesterday"}),
        json!({"after_id": 7}),
        json!({"since": 1}),
    ] {
        let r = p.call("replay", bad.clone()).await;
        assert_eq!(code(&r), "invalid_params", "{bad}: {r}");
    }
    node.stop().await;
}

#[tokio::test]
async fn requests_can_be_switched_off() {
    let node = server(json!({"bidirectional": {"enabled": false}})).await;
    let mut p = Peer::connect(&node.url).await;
    let r = p.call("status", json!({})).await;
    assert_eq!(code(&r), "unavailable");
    node.stop().await;
}

#[tokio::test]
async fn replays_beyond_max_concurrent_requests_are_refused() {
    // A lossless output held up by a slow peer: the fan-out waits, so a
    // replay request stays pending and a second one is one too many.
    let node = server(json!({
        "backpressure": {"queue_size": 1, "on_full": "block"},
        "bidirectional": {"max_concurrent_requests": 1}
    }))
    .await;
    let mut slow = Peer::ready(&node.url).await;
    slow.call("backpressure", json!({"rate_limit": 0.5})).await;
    let mut p = Peer::ready(&node.url).await;
    for n in 0..5 {
        publish(&node.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    // All five fanned out: more than the slow peer takes at 0.5 msg/s with a
    // queue of one, so the fan-out now waits for room in its queue, and
    // serves no replay until it has it.
    wait_fanned_out(&node, "m4").await;
    let first = p.request("replay", json!({"count": 1})).await;
    let r = p.call("replay", json!({"count": 1})).await;
    assert_eq!(code(&r), "too_many_requests");
    // Lifting the slow peer's limit unblocks the fan-out; the first replay
    // is answered.
    slow.call("backpressure", json!({"rate_limit": null})).await;
    let reply = p.reply_to(&first).await;
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    node.stop().await;
}
