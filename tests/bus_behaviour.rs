//! One behaviour suite for both buses: the memory bus and the NATS bus
//! against a real nats-server started by the test (a missing binary fails
//! loudly with the install command; nothing is skipped).

use bytes::Bytes;
use fednode::bus::nats::NatsBus;
use fednode::config::{BusConfig, BusKind};
use fednode_kit::memory::MemoryBus;
use fednode_kit::metrics::Metrics;
use fednode_kit::{Bus, BusError, Message, Meta, SubscribeOptions};
use fednode_testkit::{wait_until, wait_until_async};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

async fn nats_bus(server: &fednode_testkit::NatsServer) -> Arc<dyn Bus> {
    let cfg = BusConfig {
        kind: BusKind::Nats,
        url: Some(server.url()),
        ..BusConfig::default()
    };
    Arc::new(
        NatsBus::connect(&cfg, &Metrics::new())
            .await
            .expect("connect to the test nats-server"),
    )
}

/// NATS subscriptions become active asynchronously on the server: a flush
/// makes the next publish see them (the memory bus needs nothing).
async fn settle(bus: &Arc<dyn Bus>) {
    bus.flush().await.unwrap();
}

async fn recv(sub: &mut fednode_kit::Subscription) -> Message {
    tokio::time::timeout(T, sub.next())
        .await
        .expect("message in time")
        .expect("open")
}

async fn exact_and_wildcards(bus: Arc<dyn Bus>) {
    let mut exact = bus
        .subscribe("a.b", SubscribeOptions::default())
        .await
        .unwrap();
    let mut star = bus
        .subscribe("a.*", SubscribeOptions::default())
        .await
        .unwrap();
    let mut gt = bus
        .subscribe("a.>", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    bus.publish(Message::new("a.b", Bytes::from_static(b"1")))
        .await
        .unwrap();
    bus.publish(Message::new("a.b.c", Bytes::from_static(b"2")))
        .await
        .unwrap();
    bus.publish(Message::new("x.y", Bytes::from_static(b"3")))
        .await
        .unwrap();
    settle(&bus).await;
    assert_eq!(&recv(&mut exact).await.payload[..], b"1");
    assert_eq!(&recv(&mut star).await.payload[..], b"1");
    assert_eq!(&recv(&mut gt).await.payload[..], b"1");
    assert_eq!(&recv(&mut gt).await.payload[..], b"2");
    // Nothing else came: messages arrive in publish order, so a sentinel
    // published last, on a subject all three match, is the next message of
    // each (no quiet period to wait out).
    bus.publish(Message::new("a.b", Bytes::from_static(b"end")))
        .await
        .unwrap();
    settle(&bus).await;
    assert_eq!(&recv(&mut exact).await.payload[..], b"end");
    assert_eq!(
        &recv(&mut star).await.payload[..],
        b"end",
        "a.* must not match a.b.c"
    );
    assert_eq!(&recv(&mut gt).await.payload[..], b"end", "x.y is not a.>");
}

async fn headers_round_trip(bus: Arc<dyn Bus>) {
    let mut sub = bus
        .subscribe("h", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    let meta = Meta {
        id: Some("id-1".into()),
        timestamp: Some(1704844800000),
        node: Some("edge-01".into()),
        replay: true,
        origin: None,
    };
    bus.publish(Message::new("h", Bytes::from_static(b"{\"v\":1}")).with_meta(meta.clone()))
        .await
        .unwrap();
    let m = recv(&mut sub).await;
    assert_eq!(m.meta, meta);
    assert_eq!(&m.payload[..], b"{\"v\":1}");
    assert_eq!(&*m.subject, "h");
}

async fn order_is_kept(bus: Arc<dyn Bus>) {
    let mut sub = bus
        .subscribe("o", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    for i in 0..2000u32 {
        bus.publish(Message::new("o", Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    for i in 0..2000u32 {
        assert_eq!(recv(&mut sub).await.payload, Bytes::from(i.to_string()));
    }
}

async fn queue_groups_share(bus: Arc<dyn Bus>) {
    let opts = || SubscribeOptions {
        queue_group: Some("workers".into()),
        ..Default::default()
    };
    let mut a = bus.subscribe("q", opts()).await.unwrap();
    let mut b = bus.subscribe("q", opts()).await.unwrap();
    let mut all = bus
        .subscribe("q", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    for i in 0..200u32 {
        bus.publish(Message::new("q", Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    settle(&bus).await;
    for _ in 0..200 {
        recv(&mut all).await;
    }
    // Count each member's share up to a sentinel it receives: a member gets
    // its messages in publish order, so once a sentinel published after the
    // data reaches it, all of its data has. Each sentinel goes to one
    // member; they are sent one at a time until both have had one.
    let (mut na, mut nb) = (0, 0);
    let (mut a_done, mut b_done) = (false, false);
    let mut sentinels = 0;
    while !(a_done && b_done) {
        assert!(
            sentinels < 100,
            "one member never got a sentinel: {na}/{nb}"
        );
        bus.publish(Message::new("q", Bytes::from_static(b"end")))
            .await
            .unwrap();
        sentinels += 1;
        loop {
            let (m, from_a) = tokio::select! {
                m = recv(&mut a) => (m, true),
                m = recv(&mut b) => (m, false),
            };
            let sentinel = &m.payload[..] == b"end";
            match (from_a, sentinel) {
                (true, false) => na += 1,
                (false, false) => nb += 1,
                (true, true) => a_done = true,
                (false, true) => b_done = true,
            }
            if sentinel {
                break;
            }
        }
    }
    assert_eq!(
        na + nb,
        200,
        "each message goes to exactly one group member"
    );
    assert!(na > 0 && nb > 0, "both members get work: {na}/{nb}");
}

async fn request_reply(bus: Arc<dyn Bus>) {
    // No responders: an immediate error, not a timeout.
    let t0 = std::time::Instant::now();
    let err = bus
        .request("svc.none", Bytes::from_static(b"{}"), Meta::default(), T)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoResponders(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));

    let mut responder = bus
        .subscribe("svc.echo", SubscribeOptions::default())
        .await
        .unwrap();
    let rbus = bus.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = responder.next().await {
            let reply = m.reply.clone().expect("request has a reply subject");
            let mut body = b"echo:".to_vec();
            body.extend_from_slice(&m.payload);
            rbus.publish(Message::new(reply, Bytes::from(body)))
                .await
                .unwrap();
        }
    });
    settle(&bus).await;
    let r = bus
        .request("svc.echo", Bytes::from_static(b"hi"), Meta::default(), T)
        .await
        .unwrap();
    assert_eq!(&r.payload[..], b"echo:hi");
    task.abort();

    // A silent responder: timeout after the given time.
    let _silent = bus
        .subscribe("svc.silent", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    let t0 = std::time::Instant::now();
    let err = bus
        .request(
            "svc.silent",
            Bytes::from_static(b"{}"),
            Meta::default(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout(_)), "{err:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

async fn full_queues_drop_and_count(bus: Arc<dyn Bus>) {
    let mut slow = bus
        .subscribe(
            "full",
            SubscribeOptions {
                capacity: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    settle(&bus).await;
    for i in 0..100u32 {
        bus.publish(Message::new("full", Bytes::from(i.to_string())))
            .await
            .unwrap();
    }
    settle(&bus).await;
    // Let the transport deliver what it can.
    wait_until(T, "90 messages dropped", || slow.dropped() >= 90).await;
    assert_eq!(slow.dropped(), 90);
    assert!(bus.dropped_total() >= 90);
    // The first ten are kept, in order.
    for i in 0..10u32 {
        assert_eq!(recv(&mut slow).await.payload, Bytes::from(i.to_string()));
    }
}

async fn unsubscribe_on_drop(bus: Arc<dyn Bus>) {
    let sub = bus
        .subscribe("gone", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    drop(sub);
    settle(&bus).await;
    // Until the unsubscribe has reached the server, the silent subscriber
    // makes a request time out; then it must find no responders at once.
    wait_until_async(T, "a request to find no responders", || async {
        let r = bus
            .request(
                "gone",
                Bytes::from_static(b"{}"),
                Meta::default(),
                Duration::from_millis(500),
            )
            .await;
        matches!(r, Err(BusError::NoResponders(_)))
    })
    .await;
}

/// A queue group member that closes while messages stream in (a reloaded
/// processor handing over to its successor): each message reaches exactly
/// one of the two, none is lost, and the closed one reads to the end of
/// what it had taken.
async fn a_closing_group_member_hands_over(bus: Arc<dyn Bus>) {
    const N: u32 = 20_000;
    let opts = || SubscribeOptions {
        queue_group: Some("handover".into()),
        capacity: N as usize + 10,
        ..Default::default()
    };
    let mut old = bus.subscribe("h", opts()).await.unwrap();
    settle(&bus).await;
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(0u32);
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let m = Message::new("h", Bytes::from(i.to_string()));
                // Both ways in: without waiting, and the awaited path.
                if i % 2 == 0 {
                    if let fednode_kit::TryPublish::WouldWait(m) = bus.try_publish(m) {
                        bus.publish(m).await.unwrap();
                    }
                } else {
                    bus.publish(m).await.unwrap();
                }
                if i % 100 == 0 {
                    sent_tx.send_replace(i);
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    sent_rx.wait_for(|&i| i >= N / 4).await.unwrap();
    let mut new = bus.subscribe("h", opts()).await.unwrap();
    sent_rx.wait_for(|&i| i >= N / 2).await.unwrap();
    old.close();
    let mut seen = vec![0u8; N as usize];
    let mut from_old = 0;
    while let Some(m) = tokio::time::timeout(T, old.next()).await.expect("old ends") {
        seen[std::str::from_utf8(&m.payload)
            .unwrap()
            .parse::<usize>()
            .unwrap()] += 1;
        from_old += 1;
    }
    publisher.await.unwrap();
    settle(&bus).await;
    bus.publish(Message::new("h", Bytes::from_static(b"end")))
        .await
        .unwrap();
    loop {
        let m = recv(&mut new).await;
        if &m.payload[..] == b"end" {
            break;
        }
        seen[std::str::from_utf8(&m.payload)
            .unwrap()
            .parse::<usize>()
            .unwrap()] += 1;
    }
    let lost: Vec<usize> = (0..N as usize).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..N as usize).filter(|&i| seen[i] > 1).collect();
    assert!(
        lost.is_empty(),
        "{} lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(twice.is_empty(), "{} delivered twice", twice.len());
    assert!(
        (N / 4..N).contains(&from_old),
        "the old member took {from_old}"
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(super::MemoryBus::new())).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = fednode_testkit::NatsServer::start();
                    super::$name(super::nats_bus(&server).await).await;
                }
            )*
        }
    };
}

suite!(
    exact_and_wildcards,
    headers_round_trip,
    order_is_kept,
    queue_groups_share,
    request_reply,
    full_queues_drop_and_count,
    unsubscribe_on_drop,
);

/// Memory bus only: the NATS client drops what is in flight to a
/// subscription that ends (so the runtime does not hand over in a queue
/// group there).
#[tokio::test]
async fn memory_bus_a_closing_group_member_hands_over() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    assert!(bus.closes_group_members_without_loss());
    a_closing_group_member_hands_over(bus).await;
}

#[tokio::test]
async fn nats_bus_reconnects_after_a_server_restart() {
    let mut server = fednode_testkit::NatsServer::start();
    let bus = nats_bus(&server).await;
    let mut sub = bus
        .subscribe("r", SubscribeOptions::default())
        .await
        .unwrap();
    settle(&bus).await;
    server.kill();
    server.restart();
    // Publishes during the outage are buffered by the client and sent on
    // reconnect; wait until the subscription is re-established.
    let t0 = std::time::Instant::now();
    loop {
        bus.publish(Message::new("r", Bytes::from_static(b"after")))
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            assert_eq!(&m.payload[..], b"after");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no delivery after restart"
        );
    }
    assert!(bus.is_connected());
}

#[tokio::test]
async fn plain_nats_clients_see_plain_json_and_headers() {
    let server = fednode_testkit::NatsServer::start();
    let bus = nats_bus(&server).await;
    let plain = async_nats::connect(server.url()).await.unwrap();
    let mut sub = plain.subscribe("plain").await.unwrap();
    plain.flush().await.unwrap();
    let meta = Meta {
        id: Some("abc".into()),
        timestamp: Some(42),
        node: Some("n1".into()),
        replay: false,
        origin: None,
    };
    // Publish until the plain client sees it: the first message can race the
    // server's registration of the other connection's interest under load.
    use futures::StreamExt;
    let t0 = std::time::Instant::now();
    let m = loop {
        let msg = Message::new("plain", Bytes::from_static(b"{\"x\":1}")).with_meta(meta.clone());
        bus.publish(msg).await.unwrap();
        bus.flush().await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            break m;
        }
        assert!(
            t0.elapsed() < T * 3,
            "the plain client never received the message"
        );
    };
    assert_eq!(&m.payload[..], b"{\"x\":1}");
    let h = m.headers.unwrap();
    assert_eq!(h.get("Fednode-Id").unwrap().as_str(), "abc");
    assert_eq!(h.get("Fednode-Timestamp").unwrap().as_str(), "42");
    assert_eq!(h.get("Fednode-Node").unwrap().as_str(), "n1");
}

#[tokio::test]
async fn a_flush_a_frozen_server_does_not_answer_gives_up_after_flush_timeout() {
    let server = fednode_testkit::NatsServer::start();
    let cfg = BusConfig {
        kind: BusKind::Nats,
        url: Some(server.url()),
        flush_timeout: Duration::from_millis(300),
        ..BusConfig::default()
    };
    let bus = NatsBus::connect(&cfg, &Metrics::new())
        .await
        .expect("connect to the test nats-server");
    bus.flush().await.expect("a running server answers");
    server.signal("STOP");
    let started = std::time::Instant::now();
    let result = bus.flush().await;
    let waited = started.elapsed();
    server.signal("CONT");
    let err = result.expect_err("a frozen server confirms nothing");
    assert!(err.to_string().contains("bus.flush_timeout"), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(4),
        "gave up after {waited:?}, not the 300 ms of flush_timeout (the default is 5 s)"
    );
    bus.flush().await.expect("thawed, the server answers again");
}
