use super::*;
use bytes::Bytes;
use fednode_kit::{Message, Meta};
use fednode_ws::frame::outbound;
use std::time::Duration;

fn item(seq: u64) -> Arc<Item> {
    Arc::new(Item::from_message(
        seq,
        Message::new(
            "s",
            Bytes::from(format!(r#"{{"n":{seq},"type":"t{}"}}"#, seq % 2)),
        )
        .with_meta(Meta {
            id: Some(format!("m{seq}").into()),
            ..Meta::default()
        }),
    ))
}

fn conn() -> Conn {
    let pending = PendingRequests::new(10, Duration::from_secs(1), None);
    Conn::new(
        "c".into(),
        None,
        Encoding::Json,
        Out::queue(10, usize::MAX, OnFull::DropOldest),
        pending,
        true,
    )
}

/// Whether the connection's routing takes `item` (no path placeholders).
fn routes(c: &Conn, item: &Item) -> bool {
    c.routing
        .load()
        .route(item, &crate::routing::Keys::new(&[], item))
        .is_match()
}

fn seqs(c: &Conn) -> Vec<(Option<u64>, bool)> {
    let mut buf = Vec::new();
    c.take_script(&mut buf, usize::MAX);
    let mut q = c.queue.take_all();
    buf.append(&mut q);
    buf.iter()
        .map(|o| (o.seq(), matches!(o, Out::Replay(_))))
        .collect()
}

fn metrics() -> OutputMetrics {
    OutputMetrics::new(&fednode_kit::metrics::Metrics::new().component("t"), false)
}

fn share(seqs: std::ops::RangeInclusive<u64>) -> Vec<Arc<Item>> {
    seqs.map(item).collect()
}

fn data_seqs(outs: &VecDeque<Out>) -> Vec<u64> {
    outs.iter().filter_map(Out::seq).collect()
}

#[test]
fn a_share_beyond_the_queue_follows_the_policy() {
    for (policy, kept, left, dropped) in [
        (OnFull::DropOldest, vec![3, 4, 5], vec![], 2),
        (OnFull::DropNewest, vec![1, 2, 3], vec![], 2),
        (OnFull::Block, vec![1, 2, 3], vec![4, 5], 0),
    ] {
        let m = metrics();
        let pending = PendingRequests::new(10, Duration::from_secs(1), None);
        let queue = Out::queue(3, usize::MAX, policy);
        let c = Conn::new("c".into(), None, Encoding::Json, queue, pending, true);
        let (mut items, mut rest) = (share(1..=5), VecDeque::new());
        c.hand_over(&mut items, &mut VecDeque::new(), &mut rest, &m);
        assert!(items.is_empty());
        assert_eq!(data_seqs(&rest), left, "{policy:?}: left to wait with");
        assert_eq!(m.dropped_queue_full.get(), dropped, "{policy:?}");
        // What waits: the queue, and what the fan-out still holds.
        assert_eq!(c.waiting.load(Ordering::Acquire), 3 + left.len());
        let queued: VecDeque<Out> = c.queue.take_all().into();
        assert_eq!(data_seqs(&queued), kept, "{policy:?}: queued");
    }
}

#[test]
fn a_share_goes_to_the_writer_while_it_has_room_and_the_rest_waits_behind() {
    let (m, c) = (metrics(), conn());
    let (out, _rx) = outbound(2);
    c.set_outbound(Some(out.clone()));
    let mut rest = VecDeque::new();
    c.hand_over(&mut share(1..=5), &mut VecDeque::new(), &mut rest, &m);
    assert!(rest.is_empty());
    // Two frames to the writer (sent), three to the queue, in order.
    assert_eq!(m.sent.get(), 2);
    assert_eq!(out.room(), 0);
    assert_eq!(
        seqs(&c),
        vec![(Some(3), false), (Some(4), false), (Some(5), false)]
    );
    // While anything waits for the connection, nothing overtakes it:
    // even with room at the writer, the next share goes to the queue.
    c.waiting.store(1, Ordering::Release);
    let (roomy, _rx) = outbound(8);
    c.set_outbound(Some(roomy.clone()));
    c.hand_over(&mut share(6..=6), &mut VecDeque::new(), &mut rest, &m);
    assert_eq!(m.sent.get(), 2);
    assert_eq!(seqs(&c), vec![(Some(6), false)]);
    assert_eq!(roomy.room(), 8);
}

#[test]
fn replay_takes_waiting_data_once_and_in_order() {
    let (m, c) = (metrics(), conn());
    let mut rest = VecDeque::new();
    c.hand_over(
        &mut vec![item(5), item(6), item(7)],
        &mut VecDeque::new(),
        &mut rest,
        &m,
    );
    assert!(rest.is_empty());
    // Selection 4..=6: 5 and 6 were waiting and go out once, replayed; 7
    // was waiting but not selected and keeps its place after them.
    c.install_replay(WsMessage::Text("r".into()), vec![item(4), item(5), item(6)]);
    assert_eq!(
        seqs(&c),
        vec![
            (None, false),
            (Some(4), true),
            (Some(5), true),
            (Some(6), true),
            (Some(7), false)
        ]
    );
}

#[test]
fn routing_needs_both_types_and_any_subscription() {
    let c = conn();
    assert!(routes(&c, &item(1)));
    c.announce(json!({}), Some(["t1".to_string()].into()), None);
    assert!(routes(&c, &item(1)));
    assert!(!routes(&c, &item(2)));
    let filter = |v: Value| Filter::from_value(&json!({ "filter": v })).unwrap();
    let id = c
        .subscribe(
            filter(json!({"path": "$.n", "operator": ">", "value": 3})),
            2,
        )
        .unwrap();
    c.subscribe(
        filter(json!({"path": "$.n", "operator": "==", "value": 1})),
        2,
    )
    .unwrap();
    // The cap: a third is refused and changes nothing.
    assert_eq!(
        c.subscribe(
            filter(json!({"path": "$.n", "operator": "==", "value": 9})),
            2
        ),
        None
    );
    assert_eq!(c.subscription_count(), 2);
    assert!(routes(&c, &item(1)));
    assert!(!routes(&c, &item(3)));
    assert!(routes(&c, &item(5)));
    assert!(!routes(&c, &item(4)));
    assert!(c.unsubscribe(&id));
    assert!(!c.unsubscribe(&id));
    assert!(!routes(&c, &item(5)));
}

#[test]
fn the_lower_limit_applies() {
    let c = conn();
    assert_eq!(c.set_rate_limit(Some(50.0)), Some(50.0));
    c.announce(json!({"max_rate": 20}), None, Some(20.0));
    assert_eq!(c.effective_rate_limit(), Some(20.0));
    assert_eq!(c.set_rate_limit(None), Some(20.0));
    assert!(c.limiter.load().is_some());
    c.announce(json!({}), None, None);
    assert!(c.limiter.load().is_none());
}

#[test]
fn a_binding_is_anded_with_subscriptions_and_outlives_them() {
    let names: Vec<Arc<str>> = vec!["user_id".into()];
    let c = conn().with_binding(Some(crate::routing::Binding::new(
        &names,
        vec!["jamie".into()],
    )));
    let payload = |p: &'static str| {
        Arc::new(Item::from_message(
            1,
            Message::new("s", Bytes::from_static(p.as_bytes())),
        ))
    };
    let takes = |c: &Conn, p: &'static str| {
        let item = payload(p);
        c.routing
            .load()
            .route(&item, &crate::routing::Keys::new(&names, &item))
            .is_match()
    };
    assert!(takes(&c, r#"{"user_id":"jamie","n":1}"#));
    assert!(
        takes(&c, r#"{"n":1,"user_id":"ja\u006die"}"#),
        "decoded text"
    );
    assert!(!takes(&c, r#"{"user_id":"alex","n":1}"#));
    assert!(!takes(&c, r#"{"n":1}"#));
    assert!(
        !takes(&c, r#"{"user":{"user_id":"jamie"}}"#),
        "top level only"
    );
    assert!(!takes(&c, r#"["jamie"]"#));
    assert!(!takes(&c, r#"{"user_id":["jamie"]}"#));
    let filter = |v: Value| Filter::from_value(&json!({ "filter": v })).unwrap();
    let id = c
        .subscribe(
            filter(json!({"path": "$.n", "operator": ">", "value": 3})),
            4,
        )
        .unwrap();
    assert!(!takes(&c, r#"{"user_id":"jamie","n":1}"#), "the filter too");
    assert!(takes(&c, r#"{"user_id":"jamie","n":5}"#));
    assert!(!takes(&c, r#"{"user_id":"alex","n":5}"#), "and the binding");
    c.announce(json!({}), None, None);
    assert!(c.unsubscribe(&id));
    assert!(takes(&c, r#"{"user_id":"jamie","n":1}"#));
    assert!(
        !takes(&c, r#"{"user_id":"alex","n":5}"#),
        "survives unsubscribe"
    );
    assert_eq!(c.describe()["bound"], json!({"user_id": "jamie"}));
    // A number binds by its JSON text.
    let n = conn().with_binding(Some(crate::routing::Binding::new(&names, vec!["7".into()])));
    assert!(takes(&n, r#"{"user_id":7}"#));
    assert!(takes(&n, r#"{"user_id":"7"}"#));
    assert!(!takes(&n, r#"{"user_id":7.0}"#));
    assert_eq!(conn().describe()["bound"], Value::Null);
}
