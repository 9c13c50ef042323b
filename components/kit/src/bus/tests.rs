use super::*;
use crate::testing;

/// Every queue and channel on the way moves messages by value: a
/// bigger `Message` costs copies on each hop.
#[test]
fn a_message_takes_152_bytes() {
    assert_eq!(std::mem::size_of::<Message>(), 152);
}

#[tokio::test]
async fn data_subscribers_never_see_control_traffic() {
    let (ctx, _bus, _metrics) = testing::context("c");
    let mut data = ctx
        .bus
        .subscribe(">", SubscribeOptions::default())
        .await
        .unwrap();
    let control = SubscribeOptions {
        requests: true,
        ..SubscribeOptions::default()
    };
    let mut responder = ctx.bus.subscribe("svc.ask", control).await.unwrap();
    let asking = {
        let bus = ctx.bus.clone();
        tokio::spawn(async move {
            bus.request("svc.ask", Bytes::from_static(b"{}"), Duration::from_secs(5))
                .await
        })
    };
    let request = responder.next().await.unwrap();
    ctx.bus
        .reply(&request, Bytes::from_static(b"\"ok\""))
        .await
        .unwrap();
    assert_eq!(&asking.await.unwrap().unwrap().payload[..], b"\"ok\"");
    // Data after the request and its reply: the first thing `>` sees.
    ctx.bus
        .publish("plain.data", Bytes::from_static(b"1"), Meta::default())
        .await
        .unwrap();
    let first = data.next().await.unwrap();
    assert_eq!(&*first.subject, "plain.data");
    assert!(data.try_next().is_none());
}

#[tokio::test]
async fn the_first_publish_stamps_the_origin_and_later_hops_keep_it() {
    let (ctx, _bus, _metrics) = testing::context("c");
    let mut sub = ctx
        .bus
        .subscribe("o.>", SubscribeOptions::default())
        .await
        .unwrap();
    ctx.bus
        .publish("o.own", Bytes::from_static(b"1"), Meta::default())
        .await
        .unwrap();
    let far = Origin::from_wire(Some("edge-01"), Some("eu"));
    let meta = Meta {
        origin: far.clone(),
        ..Meta::default()
    };
    ctx.bus
        .publish("o.far", Bytes::from_static(b"2"), meta)
        .await
        .unwrap();
    let own = sub.next().await.unwrap().meta.origin.unwrap();
    assert_eq!(
        (&*own.node, own.region.as_deref()),
        ("test-node", Some("test"))
    );
    assert_eq!(sub.next().await.unwrap().meta.origin, far);
}

#[tokio::test]
async fn a_blocking_subscriber_takes_what_fits_at_once_and_the_rest_waits() {
    let (ctx, bus, _metrics) = testing::context("c");
    let opts = SubscribeOptions {
        overflow: Overflow::Block,
        capacity: 2,
        ..SubscribeOptions::default()
    };
    let mut sub = ctx.bus.subscribe("s", opts).await.unwrap();
    let msg = |p: &'static [u8]| Message::new("s", Bytes::from_static(p));
    assert!(matches!(
        ctx.bus.try_publish_message(msg(b"1")),
        TryPublish::Sent
    ));
    assert!(matches!(
        ctx.bus.try_publish_message(msg(b"2")),
        TryPublish::Sent
    ));
    // Full: the message comes back, stamped with this node, untouched.
    let TryPublish::WouldWait(back) = ctx.bus.try_publish_message(msg(b"3")) else {
        panic!("a full blocking subscriber hands the message back")
    };
    assert_eq!(&back.payload[..], b"3");
    assert!(back.meta.node.is_some());
    let handle = ctx.bus.clone();
    let third = tokio::spawn(async move { handle.publish_message(back).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !third.is_finished(),
        "a blocking subscriber makes publish wait"
    );
    for want in [b"1", b"2", b"3"] {
        assert_eq!(&sub.next().await.unwrap().payload[..], want);
    }
    third.await.unwrap().unwrap();
    // A closed bus hands the message back; publishing reports Closed.
    bus.close();
    let TryPublish::WouldWait(back) = ctx.bus.try_publish_message(msg(b"4")) else {
        panic!("a closed bus hands the message back")
    };
    assert!(matches!(
        ctx.bus.publish_message(back).await,
        Err(BusError::Closed)
    ));
    let cancelled = tokio_util::sync::CancellationToken::new();
    cancelled.cancel();
    assert!(matches!(
        ctx.bus.publish_retrying(msg(b"5"), &cancelled).await,
        Err(BusError::Closed)
    ));
}

#[tokio::test]
async fn subscribe_all_subscribes_to_each_subject_and_names_a_bad_one() {
    let (ctx, _bus, _metrics) = testing::context("c");
    let opts = SubscribeOptions::default();
    let mut subs = ctx
        .bus
        .subscribe_all(&["a.x".to_string(), "b.*".to_string()], &opts)
        .await
        .unwrap();
    assert_eq!(subs.len(), 2);
    ctx.bus
        .publish("a.x", Bytes::from_static(b"1"), Meta::default())
        .await
        .unwrap();
    ctx.bus
        .publish("b.y", Bytes::from_static(b"2"), Meta::default())
        .await
        .unwrap();
    assert_eq!(&subs[0].next().await.unwrap().payload[..], b"1");
    assert_eq!(&subs[1].next().await.unwrap().payload[..], b"2");
    let err = ctx
        .bus
        .subscribe_all(&["ok.x".to_string(), "bad..subject".to_string()], &opts)
        .await
        .err()
        .expect("an invalid subject fails");
    assert!(err.0.contains("\"bad..subject\""), "{}", err.0);
}
