//! Flow control under load: the rate limit, a stalled consumer beside a
//! fast one, and the replay cut under concurrent live traffic.

mod common;

use common::{publish, server, Peer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Publish data message `n` (id `m{n}`), padded to about 2 KB.
async fn publish_2kb(bus: &fednode_kit::memory::MemoryBus, n: i64) {
    let filler = "x".repeat(2000);
    publish(
        bus,
        "data.x",
        json!({"n": n, "f": filler}),
        &format!("m{n}"),
    )
    .await;
}

#[tokio::test]
async fn rate_limit_paces_a_burst_and_lifting_it_drains_at_full_speed() {
    let node = server(json!({})).await;
    let mut p = Peer::ready(&node.url).await;
    let r = p
        .call("backpressure", json!({"rate_limit": 20, "unit": "msg/sec"}))
        .await;
    assert_eq!(r["result"]["adjusted_to"], 20.0);
    for n in 0..200 {
        publish(&node.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    // Measure ~2 s of delivery.
    let mut stamps = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2100) {
        let f = p.data().await;
        assert_eq!(
            f["payload"]["n"],
            stamps.len() as i64,
            "in order, nothing lost"
        );
        stamps.push(Instant::now());
    }
    let n = stamps.len();
    let rate = (n - 1) as f64 / stamps[n - 1].duration_since(stamps[0]).as_secs_f64();
    assert!(
        (16.0..=24.0).contains(&rate),
        "measured {rate:.1} msg/s over {n} messages"
    );
    assert!(node.metric("websocket_output_rate_limited_total", &[]) >= (n - 2) as f64);
    // The peer sees its measured rate and its backlog.
    let s = p.call("status", json!({})).await;
    let depth = s["result"]["queue_depth"].as_u64().unwrap() as usize;
    assert!(
        depth <= 200 - n && depth + 3 >= 200 - n,
        "depth {depth} after {n} received"
    );
    let r = p.call("backpressure", json!({"rate_limit": 0})).await;
    let current = r["result"]["current_rate"].as_f64().unwrap();
    assert!((14.0..=26.0).contains(&current), "current_rate {current}");
    assert_eq!(r["result"]["adjusted_to"], Value::Null);
    // Lifted: the rest arrives at once.
    let t = Instant::now();
    for expect in n..200 {
        assert_eq!(p.data().await["payload"]["n"], expect as i64);
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "drained in {:?}",
        t.elapsed()
    );
    node.stop().await;
}

#[tokio::test]
async fn block_loses_nothing_behind_a_slow_peer() {
    let node = server(json!({"backpressure": {"queue_size": 5, "on_full": "block"}})).await;
    let mut p = Peer::ready(&node.url).await;
    p.call("backpressure", json!({"rate_limit": 300})).await;
    for n in 0..60 {
        publish(&node.bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
    }
    for n in 0..60 {
        assert_eq!(p.data().await["payload"]["n"], n);
    }
    assert_eq!(
        node.metric(
            "websocket_output_messages_dropped_total",
            &[("reason", "queue_full")]
        ),
        0.0
    );
    assert_eq!(node.metric("bus_messages_dropped_total", &[]), 0.0);
    node.stop().await;
}

/// Under `block` a peer that stops reading holds the fan-out back (that is
/// the policy: nothing lost), but the other peers still get everything up
/// to the message it waits with: the fan-out hands every connection its
/// share of a batch before it waits for any, and then waits for them side
/// by side.
#[tokio::test]
async fn under_block_a_stalled_peer_holds_back_only_what_comes_after() {
    const N: i64 = 12_000;
    let node = server(json!({"backpressure": {"queue_size": 5, "on_full": "block"}})).await;
    let stalled = Peer::ready(&node.url).await;
    let mut reader = Peer::ready(&node.url).await;
    // 24 MB: far more than the stalled peer's socket buffers hold.
    let bus = node.bus.clone();
    let publisher = tokio::spawn(async move {
        for n in 0..N {
            publish_2kb(&bus, n).await;
        }
    });
    // The newest message the fan-out has taken from the bus.
    let newest_taken = || async {
        let b = fednode_kit::Component::buffer(&*node.out, Some(1), None)
            .await
            .unwrap();
        b["messages"][0]["payload"]["n"].as_i64().unwrap()
    };
    let mut next = 0;
    let quiet = Duration::from_millis(700);
    let read = |frames: Vec<Value>, next: &mut i64| {
        for v in frames {
            assert_eq!(v["payload"]["n"], *next, "in order, nothing lost");
            *next += 1;
        }
    };
    // Read until nothing more comes for a while: by then the fan-out is
    // waiting for room for the stalled peer.
    let mut waiting_with = None;
    for _ in 0..20 {
        let frames = reader.data_within(quiet).await;
        let idle = frames.is_empty();
        read(frames, &mut next);
        if !idle {
            continue;
        }
        // Nothing for a while: the fan-out should be waiting for room for
        // the stalled peer. The newest message it took is the last of the
        // batch it waits in, and the reading peer gets all of that batch
        // (`data()` fails the test if it does not come)...
        let newest = newest_taken().await;
        while next <= newest {
            assert_eq!(reader.data().await["payload"]["n"], next);
            next += 1;
        }
        // ...and nothing after it, unless the fan-out was not waiting
        // after all (a pause on a loaded machine): then look again.
        let more = reader.data_within(quiet).await;
        if more.is_empty() && newest_taken().await == newest {
            waiting_with = Some(newest);
            break;
        }
        read(more, &mut next);
    }
    let waiting_with = waiting_with.expect("the fan-out came to wait");
    assert!(waiting_with < N - 1, "the fan-out never had to wait");
    // The stalled peer leaves: the rest flows again, all of it.
    drop(stalled);
    while next < N {
        assert_eq!(reader.data().await["payload"]["n"], next);
        next += 1;
    }
    publisher.await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn a_stalled_consumer_never_slows_the_others() {
    const N: usize = 12_000;
    let node = server(json!({"backpressure": {"queue_size": 1000}})).await;
    // `stalled` connects and then never reads again.
    let stalled = Peer::ready(&node.url).await;
    let mut fast = Peer::ready(&node.url).await;

    // Publish N messages of ~2 KB at ~10,000 msg/s: 24 MB, far more than
    // the socket buffers of the stalled peer hold.
    let bus = node.bus.clone();
    let publisher = tokio::spawn(async move {
        let start = Instant::now();
        for n in 0..N {
            publish_2kb(&bus, n as i64).await;
            if n % 100 == 99 {
                // Pacing, not waiting: about 10,000 msg/s.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        start.elapsed()
    });
    let start = Instant::now();
    for expect in 0..N {
        let f = fast.data().await;
        assert_eq!(
            f["payload"]["n"], expect as i64,
            "the fast peer gets everything, in order"
        );
    }
    let fast_took = start.elapsed();
    let publish_took = publisher.await.unwrap();
    assert!(
        fast_took < publish_took + Duration::from_secs(1),
        "fast peer took {fast_took:?}, publishing took {publish_took:?}"
    );
    // The stalled peer's own queue overflowed (oldest dropped), bounded.
    assert!(
        node.metric(
            "websocket_output_messages_dropped_total",
            &[("reason", "queue_full")]
        ) > 0.0
    );
    let d = fednode_kit::Component::describe(&*node.out);
    let depths: Vec<u64> = d["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["queue_depth"].as_u64().unwrap())
        .collect();
    assert!(
        depths.iter().any(|&q| q >= 900) && depths.iter().all(|&q| q <= 1000),
        "{depths:?}"
    );
    drop(stalled);
    node.stop().await;
}

#[tokio::test]
async fn replay_under_live_traffic_has_no_gap_and_no_duplicate() {
    const N: i64 = 3000;
    let node =
        server(json!({"replay": {"buffer_size": 10000}, "backpressure": {"queue_size": 10000}}))
            .await;
    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel();
    let bus = node.bus.clone();
    let publisher = tokio::spawn(async move {
        let mut halfway = Some(halfway_tx);
        for n in 0..N {
            publish(&bus, "data.x", json!({"n": n}), &format!("m{n}")).await;
            if n % 10 == 9 {
                // Pacing, not waiting: live traffic around the replay.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if n == N / 3 {
                let _ = halfway.take().unwrap().send(());
            }
        }
    });
    halfway_rx.await.unwrap();
    // Connect mid-stream and ask for everything buffered at once.
    let mut p = Peer::connect(&node.url).await;
    let id = p.request("replay", json!({})).await;
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut replied = false;
    loop {
        let f = p.next().await;
        match f["type"].as_str() {
            Some("reply") => {
                assert_eq!(f["id"], id.as_str());
                assert!(
                    f["payload"]["result"]["messages_available"]
                        .as_u64()
                        .unwrap()
                        > 0
                );
                replied = true;
            }
            Some("data") if !replied => before.push(f),
            Some("data") => {
                let last = f["payload"]["n"].as_i64() == Some(N - 1);
                after.push(f);
                if last {
                    break;
                }
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    publisher.await.unwrap();

    // After the reply: replayed data first, then live, never mixed.
    let replayed = after.iter().take_while(|f| f["replay"] == true).count();
    eprintln!(
        "live before the reply: {}, replayed: {replayed}, live after: {}",
        before.len(),
        after.len() - replayed
    );
    assert!(replayed > 0, "something was replayed");
    assert!(
        after[replayed..].iter().all(|f| f.get("replay").is_none()),
        "live data is not marked"
    );
    assert!(
        after.len() > replayed,
        "live data followed the replay (the cut fell mid-stream)"
    );
    // Replayed + live = the exact sequence, no gap, no duplicate.
    let seq: Vec<i64> = after
        .iter()
        .map(|f| f["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(seq, (0..N).collect::<Vec<_>>());
    // Live data written before the reply (while the request travelled) is
    // also in the replay: the replay supersedes it.
    let replayed_ns: HashSet<i64> = seq[..replayed].iter().copied().collect();
    for f in &before {
        assert!(replayed_ns.contains(&f["payload"]["n"].as_i64().unwrap()));
    }
    node.stop().await;
}
