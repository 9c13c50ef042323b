use super::*;
use fednode_kit::envelope::Kind;

#[test]
fn text_is_json_and_binary_is_msgpack() {
    let env = Envelope::data(Bytes::from_static(br#"{"a":1}"#));
    let Incoming::Envelope(back, Encoding::Json) = classify(encode(&env, Encoding::Json)) else {
        panic!("text frame");
    };
    assert_eq!(back, env);
    let Incoming::Envelope(back, Encoding::Msgpack) = classify(encode(&env, Encoding::Msgpack))
    else {
        panic!("binary frame");
    };
    assert_eq!(back.kind, Kind::Data);
    assert_eq!(back.payload_value(), serde_json::json!({"a": 1}));
    assert!(matches!(
        classify(WsMessage::Text("{nope".into())),
        Incoming::Undecodable(_, Encoding::Json)
    ));
}

fn text_of(m: WsMessage) -> String {
    m.into_text().unwrap().as_str().to_string()
}

#[tokio::test]
async fn outbound_takes_a_batch_as_far_as_there_is_room_in_order() {
    let (out, rx) = outbound(3);
    assert!(out.try_send(WsMessage::Text("a".into())));
    let mut batch: VecDeque<WsMessage> = ["b", "c", "d"].map(|t| WsMessage::Text(t.into())).into();
    out.offer_many(&mut batch);
    assert_eq!(batch.len(), 1, "one left over");
    assert_eq!(out.room(), 0);
    let mut got = Vec::new();
    assert_eq!(rx.queue.pop_many(&mut got, 10).await, 3);
    assert!(out.send(batch.pop_front().unwrap()).await);
    assert_eq!(rx.queue.pop_many(&mut got, 10).await, 1);
    let got: Vec<String> = got.into_iter().map(text_of).collect();
    assert_eq!(got, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn outbound_sends_fail_once_the_writer_is_gone() {
    let (out, rx) = outbound(1);
    assert!(out.try_send(WsMessage::Text("a".into())));
    // Full: a send waits, and fails when the writer goes away.
    let waiting = {
        let out = out.clone();
        tokio::spawn(async move { out.send(WsMessage::Text("b".into())).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished());
    drop(rx);
    assert!(!waiting.await.unwrap());
    assert!(out.is_closed());
    assert!(!out.try_send(WsMessage::Text("c".into())));
}

#[tokio::test]
async fn the_writer_ends_after_what_is_queued_when_every_sender_is_gone() {
    let (out, rx) = outbound(8);
    let copy = out.clone();
    assert!(out.try_send(WsMessage::Text("a".into())));
    assert!(copy.try_send(WsMessage::Text("b".into())));
    drop(out);
    assert!(!copy.is_closed(), "one sender is left");
    drop(copy);
    let (sink, mut written) = futures::channel::mpsc::unbounded::<WsMessage>();
    let sink = sink.sink_map_err(|_| WsError::ConnectionClosed);
    tokio::time::timeout(Duration::from_secs(5), write_loop(sink, rx))
        .await
        .expect("the writer ends")
        .unwrap();
    let mut got = Vec::new();
    while let Ok(m) = written.try_recv() {
        got.push(m);
    }
    assert_eq!(got.len(), 2, "both frames written before it ended");
    assert_eq!(text_of(got[0].clone()), "a");
    assert_eq!(text_of(got[1].clone()), "b");
}

struct Quiet;

impl FrameHandler for Quiet {
    async fn on_envelope(&mut self, _env: Envelope, _encoding: Encoding, _out: &Outbound) {}
}

/// Both ends of a WebSocket over an in-memory pipe.
async fn pair() -> (
    WebSocketStream<tokio::io::DuplexStream>,
    WebSocketStream<tokio::io::DuplexStream>,
) {
    use tokio_tungstenite::tungstenite::protocol::Role;
    let (a, b) = tokio::io::duplex(1 << 16);
    let ours = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let theirs = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    (ours, theirs)
}

fn beating(interval_ms: u64, timeout_ms: u64) -> DriveOptions {
    DriveOptions {
        label: "test".into(),
        close_timeout: Duration::from_millis(100),
        heartbeat: Some(HeartbeatConfig {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
        }),
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_closed_after_the_heartbeat_timeout() {
    let (ours, _frozen) = pair().await;
    let (out, rx) = outbound(16);
    let cancel = CancellationToken::new();
    let t0 = tokio::time::Instant::now();
    let mut handler = Quiet;
    let opts = beating(100, 1000);
    let driving = drive(ours, &out, rx, &mut handler, &cancel, &opts);
    let end = tokio::time::timeout(Duration::from_secs(10), driving)
        .await
        .expect("the silent connection was closed");
    assert!(matches!(end, ConnectionEnd::HeartbeatTimeout(t) if t == Duration::from_secs(1)));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1300),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_answers_pings_stays_connected() {
    let (ours, mut theirs) = pair().await;
    // The peer reads (tungstenite answers each Ping with a Pong) and
    // counts the Pings it saw.
    let peer = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(m)) = theirs.next().await {
            if m.is_ping() {
                pings += 1;
            }
        }
        pings
    });
    let (out, rx) = outbound(16);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.cancel();
    });
    let end = drive(ours, &out, rx, &mut Quiet, &cancel, &beating(100, 1000)).await;
    assert!(matches!(end, ConnectionEnd::Cancelled), "{end}");
    let pings = peer.await.unwrap();
    assert!(pings >= 40, "a ping every 100 ms for 5 s: {pings}");
}

#[tokio::test(start_paused = true)]
async fn without_a_heartbeat_a_silent_peer_is_kept() {
    let (ours, _frozen) = pair().await;
    let (out, rx) = outbound(16);
    let cancel = CancellationToken::new();
    let mut opts = beating(100, 1000);
    opts.heartbeat = None;
    let mut handler = Quiet;
    let driving = drive(ours, &out, rx, &mut handler, &cancel, &opts);
    assert!(
        tokio::time::timeout(Duration::from_secs(60), driving)
            .await
            .is_err(),
        "still open after a minute of silence"
    );
}
