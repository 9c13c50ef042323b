//! The json_filter processor on the memory bus.

use bytes::Bytes;
use fednode_json_filter::JsonFilter;
use fednode_kit::metrics::Metrics;
use fednode_kit::{
    testing, BuildContext, Bus, Component, ComponentKind, Context, Message, Meta, NodeIdentity,
    SubscribeOptions, Subscription,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Build and start a filter named `filter` from a config block.
async fn started(
    cfg: Value,
) -> (
    Arc<JsonFilter>,
    Context,
    fednode_kit::memory::MemoryBus,
    Arc<Metrics>,
) {
    let filter = Arc::new(JsonFilter::build(&cfg, "components.filter.config").unwrap());
    let (ctx, bus, metrics) = testing::context("filter");
    filter.clone().start(ctx.clone()).await.unwrap();
    (filter, ctx, bus, metrics)
}

/// The edge filter of `configs/edge-pull.json` with a configurable criteria block.
fn config(criteria: Value) -> Value {
    json!({
        "criteria": criteria,
        "ports": {
            "inputs": [{"name": "in", "subject": "raw.data"}],
            "outputs": [{"name": "out", "subject": "filtered.data"}]
        }
    })
}

async fn publish(bus: &dyn Bus, subject: &str, payload: &[u8]) {
    bus.publish(Message::new(subject, Bytes::copy_from_slice(payload)))
        .await
        .unwrap();
}

async fn next(sub: &mut Subscription) -> Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message within 5s")
        .expect("subscription open")
}

/// Everything queued on `sub` once the filter has stopped.
fn queued(sub: &mut Subscription) -> Vec<Value> {
    std::iter::from_fn(|| sub.try_next())
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

fn metric(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .value(name, &[("component", "filter")])
        .unwrap_or_else(|| panic!("{name} not registered"))
}

fn errors(metrics: &Metrics, kind: &str) -> f64 {
    metrics
        .value(
            "json_filter_errors_total",
            &[("component", "filter"), ("type", kind)],
        )
        .unwrap()
}

/// Errors of building the filter through its registration, as the runtime
/// prints them.
fn build_errors(cfg: Value) -> Vec<String> {
    let node = NodeIdentity::default();
    let cx = BuildContext {
        instance: "filter",
        path: "components.filter.config",
        node: &node,
    };
    match (fednode_json_filter::registration().build)(&cx, &cfg) {
        Ok(_) => panic!("config should be rejected: {cfg}"),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[tokio::test]
async fn the_edge_filter_passes_values_over_50_unchanged() {
    let (_f, ctx, bus, metrics) = started(config(
        json!({"path": "$.value", "operator": ">", "value": 50}),
    ))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();

    // Odd spacing and key order: the bytes must come out exactly as they went in.
    let pass = br#"{ "value":51,  "sensor" : "t1" }"#;
    let meta = Meta {
        id: Some("msg-51".into()),
        timestamp: Some(1_704_844_800_000),
        node: Some("edge-7".into()),
        replay: true,
        // Where the data entered fednode: kept by the filter.
        origin: fednode_kit::Origin::from_wire(Some("edge-7"), Some("eu")),
    };
    bus.publish(Message::new(
        "raw.data",
        Bytes::from_static(br#"{"value":50}"#),
    ))
    .await
    .unwrap();
    bus.publish(Message::new("raw.data", Bytes::from_static(pass)).with_meta(meta.clone()))
        .await
        .unwrap();

    let m = next(&mut out).await;
    assert_eq!(&*m.subject, "filtered.data");
    assert_eq!(&m.payload[..], &pass[..]);
    assert_eq!(m.meta, meta);
    testing::stop(&ctx).await;
    assert!(out.try_next().is_none(), "50 is not > 50");
    assert_eq!(metric(&metrics, "json_filter_messages_in_total"), 2.0);
    assert_eq!(metric(&metrics, "json_filter_messages_passed_total"), 1.0);
    assert_eq!(metric(&metrics, "json_filter_messages_rejected_total"), 1.0);
    assert_eq!(errors(&metrics, "parse_error"), 0.0);
}

#[tokio::test]
async fn severity_words_compare_by_rank() {
    let (_f, ctx, bus, _) = started(config(
        json!({"path": "$.level", "operator": ">=", "value": "warning"}),
    ))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    for level in [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
        "Warning",
        "ERROR",
    ] {
        publish(
            &bus,
            "raw.data",
            json!({"level": level}).to_string().as_bytes(),
        )
        .await;
    }
    // Missing path and non-string values never match an ordering.
    publish(&bus, "raw.data", br#"{"other":"error"}"#).await;
    publish(&bus, "raw.data", br#"{"level":7}"#).await;
    testing::stop(&ctx).await;
    let levels: Vec<Value> = queued(&mut out)
        .into_iter()
        .map(|v| v["level"].clone())
        .collect();
    assert_eq!(
        levels,
        vec![
            json!("warning"),
            json!("error"),
            json!("critical"),
            json!("alert"),
            json!("emergency"),
            json!("Warning"),
            json!("ERROR")
        ]
    );
}

#[tokio::test]
async fn match_any_passes_when_one_criterion_holds() {
    let mut cfg = config(json!([
        {"path": "$.value", "operator": ">", "value": 100},
        {"path": "$.alarm", "operator": "exists"}
    ]));
    cfg["match"] = json!("any");
    let (_f, ctx, bus, metrics) = started(cfg).await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    for payload in [
        json!({"id": 1, "value": 101}),
        json!({"id": 2, "value": 5, "alarm": null}),
        json!({"id": 3, "value": 5}),
        json!({"id": 4, "value": 500, "alarm": true}),
        json!({"id": 5}),
    ] {
        publish(&bus, "raw.data", payload.to_string().as_bytes()).await;
    }
    testing::stop(&ctx).await;
    let ids: Vec<Value> = queued(&mut out)
        .into_iter()
        .map(|v| v["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(2), json!(4)]);
    assert_eq!(metric(&metrics, "json_filter_messages_rejected_total"), 2.0);

    // The same criteria with the default `match: all` need both.
    let (_f, ctx, bus, _) = started(config(json!([
        {"path": "$.value", "operator": ">", "value": 100},
        {"path": "$.alarm", "operator": "exists"}
    ])))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    publish(&bus, "raw.data", br#"{"id":1,"value":101}"#).await;
    publish(&bus, "raw.data", br#"{"id":4,"value":500,"alarm":true}"#).await;
    testing::stop(&ctx).await;
    let ids: Vec<Value> = queued(&mut out)
        .into_iter()
        .map(|v| v["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(4)]);
}

#[tokio::test]
async fn wildcard_input_subjects_and_several_inputs() {
    let (_f, ctx, bus, metrics) = started(json!({
        "criteria": {"path": "$.value", "operator": ">", "value": 50},
        "ports": {
            "inputs": [
                {"name": "in", "subject": "sensors.*.temp"},
                {"name": "logs", "subject": "logs.>"}
            ],
            "outputs": [{"name": "out", "subject": "filtered.data"}]
        }
    }))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    publish(&bus, "sensors.a.temp", br#"{"src":"a","value":60}"#).await;
    publish(&bus, "sensors.b.temp", br#"{"src":"b","value":70}"#).await;
    publish(&bus, "sensors.b.temp", br#"{"src":"b-low","value":1}"#).await;
    publish(
        &bus,
        "sensors.a.b.temp",
        br#"{"src":"too-deep","value":99}"#,
    )
    .await;
    publish(&bus, "logs.x.y", br#"{"src":"log","value":80}"#).await;
    publish(&bus, "other.temp", br#"{"src":"other","value":99}"#).await;
    testing::stop(&ctx).await;
    let mut srcs: Vec<String> = queued(&mut out)
        .into_iter()
        .map(|v| v["src"].as_str().unwrap().to_string())
        .collect();
    srcs.sort();
    assert_eq!(srcs, vec!["a", "b", "log"]);
    assert_eq!(metric(&metrics, "json_filter_messages_in_total"), 4.0);
}

#[tokio::test]
async fn paths_beyond_one_member_see_the_whole_payload() {
    // `$..temp` searches the whole document and `$[0]` a top-level array:
    // neither can be answered from selected members.
    let mut cfg = config(json!([
        {"path": "$..temp", "operator": ">", "value": 90},
        {"path": "$[0]", "operator": "==", "value": "alarm"}
    ]));
    cfg["match"] = json!("any");
    let (_f, ctx, bus, _) = started(cfg).await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    publish(&bus, "raw.data", br#"{"id":1,"site":{"room":{"temp":95}}}"#).await;
    publish(&bus, "raw.data", br#"{"id":2,"site":{"room":{"temp":20}}}"#).await;
    publish(&bus, "raw.data", br#"["alarm", 3]"#).await;
    publish(&bus, "raw.data", br#"["ok", 4]"#).await;
    testing::stop(&ctx).await;
    let got: Vec<Value> = queued(&mut out);
    assert_eq!(
        got,
        vec![
            json!({"id":1,"site":{"room":{"temp":95}}}),
            json!(["alarm", 3])
        ]
    );
}

#[tokio::test]
async fn template_output_subject_is_filled_from_the_payload() {
    let (_f, ctx, bus, _) = started(json!({
        "criteria": {"path": "$.value", "operator": ">", "value": 50},
        "ports": {
            "inputs": [{"name": "in", "subject": "raw.data"}],
            "outputs": [{"name": "out", "subject": "alerts.{user_id}.{meta.site}"}]
        }
    }))
    .await;
    let mut out = bus
        .subscribe("alerts.>", SubscribeOptions::default())
        .await
        .unwrap();
    publish(
        &bus,
        "raw.data",
        br#"{"user_id":"jamie","meta":{"site":"lab.1"},"value":60}"#,
    )
    .await;
    publish(&bus, "raw.data", br#"{"user_id":"alex","value":10}"#).await;
    publish(&bus, "raw.data", br#"{"value":99}"#).await;
    let m = next(&mut out).await;
    assert_eq!(&*m.subject, "alerts.jamie.lab_1");
    let m = next(&mut out).await;
    assert_eq!(&*m.subject, "alerts._._");
    assert_eq!(&m.payload[..], br#"{"value":99}"#);
    testing::stop(&ctx).await;
    assert!(out.try_next().is_none());
}

#[tokio::test]
async fn non_json_is_counted_and_the_stream_continues() {
    let (f, ctx, bus, metrics) = started(config(
        json!({"path": "$.value", "operator": ">", "value": 50}),
    ))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    publish(&bus, "raw.data", br#"{"n":1,"value":60}"#).await;
    publish(&bus, "raw.data", b"not json").await;
    publish(&bus, "raw.data", br#"{"n":2,"value":"#).await;
    publish(&bus, "raw.data", b"").await;
    publish(&bus, "raw.data", br#"{"n":3,"value":70}"#).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&next(&mut out).await.payload).unwrap()["n"],
        1
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&next(&mut out).await.payload).unwrap()["n"],
        3
    );
    testing::stop(&ctx).await;
    assert_eq!(errors(&metrics, "parse_error"), 3.0);
    assert_eq!(errors(&metrics, "publish_error"), 0.0);
    assert_eq!(metric(&metrics, "json_filter_messages_in_total"), 5.0);
    assert_eq!(metric(&metrics, "json_filter_messages_passed_total"), 2.0);
    let h = f.health();
    assert!(h.healthy);
    assert_eq!(h.status, "running");
    assert_eq!(
        h.details,
        json!({"in": 5, "passed": 2, "rejected": 0, "errors": 3})
    );
}

#[tokio::test]
async fn clean_stop_drains_queued_messages_in_order() {
    let (_f, ctx, bus, metrics) = started(config(
        json!({"path": "$.value", "operator": ">", "value": 50}),
    ))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    // On this single-threaded test runtime the filter task cannot run while
    // we publish: all 10,000 messages are still queued when the stop begins.
    for i in 0..10_000u32 {
        publish(
            &bus,
            "raw.data",
            json!({"i": i, "value": i % 100}).to_string().as_bytes(),
        )
        .await;
    }
    testing::stop(&ctx).await;
    let got: Vec<u64> = queued(&mut out)
        .iter()
        .map(|v| v["i"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (0..10_000).filter(|i| i % 100 > 50).collect();
    assert_eq!(got.len(), 4_900);
    assert_eq!(got, want, "every passing message, in publish order");
    assert_eq!(metric(&metrics, "json_filter_messages_in_total"), 10_000.0);
    assert_eq!(
        metric(&metrics, "json_filter_messages_rejected_total"),
        5_100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_kept_while_running() {
    let (_f, ctx, bus, _) = started(config(
        json!({"path": "$.keep", "operator": "==", "value": true}),
    ))
    .await;
    let mut out = bus
        .subscribe("filtered.data", SubscribeOptions::default())
        .await
        .unwrap();
    for i in 0..20_000u32 {
        publish(
            &bus,
            "raw.data",
            json!({"i": i, "keep": i % 3 != 0}).to_string().as_bytes(),
        )
        .await;
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let want: Vec<u64> = (0..20_000).filter(|i| i % 3 != 0).collect();
    let mut got = Vec::with_capacity(want.len());
    while got.len() < want.len() {
        let m = next(&mut out).await;
        got.push(
            serde_json::from_slice::<Value>(&m.payload).unwrap()["i"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(got, want);
    testing::stop(&ctx).await;
}

#[tokio::test]
async fn describe_shows_the_filter() {
    let mut cfg = config(json!([
        {"path": "$.value", "operator": ">", "value": 50},
        {"path": "$.tag", "operator": "exists"}
    ]));
    cfg["match"] = json!("any");
    let f = JsonFilter::build(&cfg, "c").unwrap();
    assert_eq!(
        f.describe(),
        json!({"filter": {
            "filters": [
                {"path": "$.value", "operator": ">", "value": 50},
                {"path": "$.tag", "operator": "exists"}
            ],
            "match": "any"
        }})
    );
}

#[test]
fn registration_names_the_factory() {
    let r = fednode_json_filter::registration();
    assert_eq!(r.name, "json_filter");
    assert_eq!(r.kinds, &[ComponentKind::Processor]);
    let node = NodeIdentity::default();
    let cx = BuildContext {
        instance: "filter",
        path: "components.filter.config",
        node: &node,
    };
    let c = (r.build)(
        &cx,
        &config(json!({"path": "$.value", "operator": ">", "value": 50})),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.ports().input("in"), Some("raw.data"));
}

#[test]
fn unknown_operator_is_a_config_error_at_its_path() {
    let errs = build_errors(config(json!([
        {"path": "$.value", "operator": ">", "value": 50},
        {"path": "$.value", "operator": "=>", "value": 50}
    ])));
    assert_eq!(
        errs,
        vec![
            "components.filter.config.criteria[1].operator: unknown operator \"=>\" \
             (valid operators: ==, !=, >, >=, <, <=, contains, exists, matches)"
        ]
    );
    // A single criterion object has no index.
    let errs = build_errors(config(
        json!({"path": "$.v", "operator": "equals", "value": 1}),
    ));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .starts_with("components.filter.config.criteria.operator: unknown operator \"equals\""),
        "{errs:?}"
    );
}

#[test]
fn bad_jsonpath_and_regex_are_config_errors() {
    let errs = build_errors(config(json!([
        {"path": "value", "operator": ">", "value": 50},
        {"path": "$.msg", "operator": "matches", "value": "(unclosed"},
        {"path": "$.a[", "operator": "exists"}
    ])));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0]
            .starts_with("components.filter.config.criteria[0].path: invalid JSONPath \"value\"")
            && errs[0].ends_with("(a JSONPath starts with \"$\", e.g. \"$.a.b\")"),
        "{errs:?}"
    );
    assert!(
        errs[1]
            .starts_with("components.filter.config.criteria[1].value: invalid regex \"(unclosed\""),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("components.filter.config.criteria[2].path: invalid JSONPath \"$.a[\""),
        "{errs:?}"
    );
    assert!(
        errs.iter().all(|l| !l.contains('\n')),
        "one line each: {errs:?}"
    );
}

#[test]
fn typos_are_config_errors_at_their_paths() {
    let errs = build_errors(config(
        json!({"paht": "$.value", "operator": ">", "value": 50}),
    ));
    assert_eq!(
        errs,
        vec![
            "components.filter.config.criteria.paht: unknown field, expected one of \"path\", \"operator\", \"value\"",
            "components.filter.config.criteria.path: required field is missing",
        ]
    );

    let mut cfg = config(json!({"path": "$.value", "operator": ">", "value": 50}));
    cfg["matc"] = json!("any");
    let errs = build_errors(cfg);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("components.filter.config.matc: unknown field, expected one of"),
        "{errs:?}"
    );

    let mut cfg = config(json!({"path": "$.value", "operator": ">", "value": 50}));
    cfg["match"] = json!("some");
    assert_eq!(
        build_errors(cfg),
        vec!["components.filter.config.match: expected \"all\" or \"any\", got \"some\""]
    );

    let mut cfg = config(json!({"path": "$.value", "operator": ">", "value": 50}));
    cfg["critera"] = cfg["criteria"].take();
    cfg.as_object_mut().unwrap().remove("criteria");
    let errs = build_errors(cfg);
    assert!(
        errs.iter()
            .any(|l| l
                .starts_with("components.filter.config.critera: unknown field, expected one of")),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"components.filter.config.criteria: required field is missing".to_string()),
        "{errs:?}"
    );
}

#[test]
fn port_problems_are_config_errors() {
    let errs = build_errors(json!({
        "criteria": {"path": "$.value", "operator": ">", "value": 50},
        "ports": {"inputs": [{"name": "in", "subject": "raw.data"}]}
    }));
    assert_eq!(
        errs,
        vec!["components.filter.config.ports.outputs: a port named \"out\" is required"]
    );

    let errs = build_errors(json!({
        "criteria": {"path": "$.value", "operator": "=>", "value": 50},
        "queue_size": 0,
        "ports": {
            "outputs": [{"name": "output", "subject": "filtered.*"}]
        }
    }));
    assert_eq!(
        errs,
        vec![
            "components.filter.config.ports.outputs[0].name: expected \"out\", got \"output\"",
            "components.filter.config.ports.outputs[0].subject: subject \"filtered.*\" has a wildcard, which only input subjects may use",
            "components.filter.config.ports.outputs: a port named \"out\" is required",
            "components.filter.config.ports.inputs: at least one input port is required (conventionally named \"in\")",
            "components.filter.config.queue_size: expected at least 1, got 0",
            "components.filter.config.criteria.operator: unknown operator \"=>\" \
             (valid operators: ==, !=, >, >=, <, <=, contains, exists, matches)",
        ],
        "every problem at once"
    );
}

#[test]
fn defaults() {
    let cfg = fednode_json_filter::Config::parse(
        &config(json!({"path": "$.value", "operator": ">", "value": 50})),
        "c",
    )
    .unwrap();
    assert_eq!(cfg.queue_size, 65_536);
    assert_eq!(cfg.match_mode, fednode_kit::filter::MatchMode::All);
}
