//! Limits a peer cannot push past, against a real `fednode` process:
//!
//! - an unauthenticated (or too large) POST to `http_input` is refused
//!   before its body is read, so 300 MB sent at the node, with a declared
//!   length or chunked, barely moves its peak RSS;
//! - a connection that does not finish its request head within
//!   `handshake_timeout` is closed (slowloris), and so is every socket
//!   answered 401 or 503, right after the answer;
//! - with `http.auth` set, every admin path but the two health probes
//!   needs the credential.

mod common;
use common::{http_with, Node};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite;

const READY: Duration = Duration::from_secs(30);
const TOKEN: &str = "limits-test-token";
const MIB: u64 = 1024 * 1024;

/// A memory figure of a process from `/proc/PID/status` (`VmHWM`, the
/// peak resident set, or `VmRSS`, the current one), in bytes.
fn proc_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kb * 1024
}

fn peak_rss(pid: u32) -> u64 {
    proc_bytes(pid, "VmHWM")
}

fn rss(pid: u32) -> u64 {
    proc_bytes(pid, "VmRSS")
}

fn http_node() -> Node {
    let config = r#"{
        "node": {"id": "limits"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
          "http_in": {"type": "input", "name": "http_input", "config": {
            "http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
            "auth": {"type": "bearer", "bearer_token_env": "LIMITS_TOKEN"},
            "ports": {"outputs": [{"name": "out", "subject": "in.data"}]}
          }}
        }
      }"#;
    let mut node = Node::start_with(config, &[("LIMITS_TOKEN", TOKEN)]);
    node.wait_ready(READY);
    node
}

/// What pushing a large body at the server came to.
struct Pushed {
    status: u16,
    /// Body bytes the socket took before the server closed it.
    written: u64,
}

/// POST `total` bytes (declared with `Content-Length`, or chunked) and
/// read the answer; keeps writing until the server closes the socket or
/// everything is written. Panics if the connection is still open 10 s
/// after the answer.
fn push(addr: SocketAddr, auth: Option<&str>, total: u64, chunked: bool) -> Pushed {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n".to_string()
    } else {
        format!("Content-Length: {total}\r\n")
    };
    write!(
        s,
        "POST /ingest HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n{framing}\r\n"
    )
    .unwrap();
    let mut reader = s.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let answer = std::thread::spawn(move || {
        let mut raw = Vec::new();
        // The answer, then EOF (or a reset) once the server closes.
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading the answer: {e} (so far: {raw:?})"),
            }
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
    });
    let block = vec![b' '; 64 * 1024];
    let mut written = 0u64;
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    while written < total {
        let n = block.len().min((total - written) as usize);
        let ok = if chunked {
            write!(s, "{n:x}\r\n")
                .and_then(|_| s.write_all(&block[..n]))
                .and_then(|_| s.write_all(b"\r\n"))
        } else {
            s.write_all(&block[..n])
        };
        if ok.is_err() {
            break;
        }
        written += n as u64;
    }
    if chunked && written == total {
        let _ = s.write_all(b"0\r\n\r\n");
    }
    let status = answer.join().expect("the answer and the socket's close");
    Pushed { status, written }
}

#[test]
fn a_huge_post_is_refused_before_its_body_is_read() {
    let node = http_node();
    let addr = node.addr_of("http_in");
    let pid = node.child.id();
    let before = peak_rss(pid);
    let total = 300 * MIB;
    let bearer = format!("Bearer {TOKEN}");
    for (auth, chunked, expect) in [
        (None, false, 401),
        (None, true, 401),
        (Some(bearer.as_str()), false, 413),
        (Some(bearer.as_str()), true, 413),
    ] {
        let t0 = Instant::now();
        let p = push(addr, auth, total, chunked);
        assert_eq!(
            p.status,
            expect,
            "auth {auth:?}, chunked {chunked}: {}",
            node.and_log("the refusal")
        );
        assert!(
            p.written < total,
            "auth {auth:?}, chunked {chunked}: the server read all {total} bytes before closing"
        );
        eprintln!(
            "auth {auth:?}, chunked {chunked}: {} after {} KiB, closed in {:?}",
            p.status,
            p.written / 1024,
            t0.elapsed()
        );
    }
    let grew = peak_rss(pid).saturating_sub(before);
    assert!(
        grew < 64 * MIB,
        "peak RSS grew by {} MiB for refused bodies",
        grew / MIB
    );
    // The node still takes a well-formed request.
    let (code, body) = http_with(
        "POST",
        &addr.to_string(),
        "/ingest",
        &[("Authorization", &bearer)],
        Some(r#"{"ok": true}"#),
    )
    .expect("an answer");
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        node.metric("http_input_errors_total{component=\"http_in\",type=\"unauthorized\"}"),
        2.0
    );
    assert_eq!(
        node.metric("http_input_errors_total{component=\"http_in\",type=\"too_large\"}"),
        2.0
    );
}

fn ws_node(handshake_timeout: &str) -> Node {
    let config = format!(
        r#"{{
        "node": {{"id": "limits"}},
        "http": {{"listen": "127.0.0.1:0"}},
        "components": {{
          "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
            "mode": "server",
            "server": {{"http_port": 0, "bind": "127.0.0.1", "max_connections": 1,
                        "handshake_timeout": "{handshake_timeout}"}},
            "ports": {{"outputs": [{{"name": "out", "subject": "in.data"}}]}}
          }}}}
        }}
      }}"#
    );
    let mut node = Node::start_with(&config, &[]);
    node.wait_ready(READY);
    node
}

/// Wait for the server to close `s` (EOF or reset); how long it took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return t0.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return t0.elapsed(),
            Err(e) => panic!("socket still open after {limit:?} ({e})"),
        }
    }
}

fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Read an HTTP answer head from `s`.
fn answer_head(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the answer head ended early ({other:?}): {head:?}"),
        }
    }
    String::from_utf8_lossy(&head).to_string()
}

#[test]
fn slow_handshakes_are_closed_within_the_handshake_timeout() {
    let node = ws_node("1s");
    let addr = node.addr_of("ws_in");
    // 100 connections: half send a partial request head, half nothing.
    let mut socks: Vec<(Instant, TcpStream)> = (0..100)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: web")
                    .unwrap();
            }
            (Instant::now(), s)
        })
        .collect();
    for (opened, s) in &mut socks {
        closed_within(s, Duration::from_secs(5));
        let after = opened.elapsed();
        // The timeout, plus scheduling on a busy machine.
        assert!(
            after < Duration::from_millis(2500),
            "a slow handshake was closed only after {after:?}"
        );
        assert!(
            after >= Duration::from_millis(900),
            "closed after {after:?}, before the handshake timeout"
        );
    }
    // A peer that completes its upgrade in time is served.
    let mut ok = TcpStream::connect(addr).unwrap();
    ok.write_all(upgrade_request(addr).as_bytes()).unwrap();
    let head = answer_head(&mut ok);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn a_socket_answered_503_is_closed_at_once() {
    let node = ws_node("10s");
    let addr = node.addr_of("ws_in");
    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(upgrade_request(addr).as_bytes()).unwrap();
    let head = answer_head(&mut first);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // max_connections is 1: the next upgrade is refused, and its socket
    // closed right after the answer.
    let mut refused = TcpStream::connect(addr).unwrap();
    refused.write_all(upgrade_request(addr).as_bytes()).unwrap();
    let head = answer_head(&mut refused);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let took = closed_within(&mut refused, Duration::from_secs(1));
    eprintln!("503 socket closed after {took:?}");
    drop(first);
}

#[test]
fn admin_paths_need_http_auth_except_the_health_probes() {
    let config = r#"{
        "node": {"id": "limits"},
        "http": {"listen": "127.0.0.1:0",
                 "auth": {"type": "bearer", "bearer_token_env": "LIMITS_ADMIN_TOKEN"}},
        "components": {
          "ws_in": {"type": "input", "name": "websocket_input", "config": {
            "mode": "server",
            "server": {"http_port": 0, "bind": "127.0.0.1"},
            "ports": {"outputs": [{"name": "out", "subject": "in.data"}]}
          }}
        }
      }"#;
    let mut node = Node::start_with(config, &[("LIMITS_ADMIN_TOKEN", TOKEN)]);
    node.wait_ready(READY);
    let admin = node.admin().to_string();
    let bearer = format!("Bearer {TOKEN}");
    let with = [("Authorization", bearer.as_str())];
    let wrong = [("Authorization", "Bearer not-the-token")];
    for path in ["/health", "/health/ready"] {
        let (code, _) = http_with("GET", &admin, path, &[], None).unwrap();
        assert_eq!(code, 200, "GET {path} is open");
    }
    let request = r#"{"method": "status", "params": {}}"#;
    for (method, path, body) in [
        ("GET", "/metrics", None),
        ("GET", "/components", None),
        ("POST", "/components/ws_in/request", Some(request)),
        ("GET", "/components/ws_in/buffer", None),
    ] {
        for headers in [&[][..], &wrong[..]] {
            let (code, answer) = http_with(method, &admin, path, headers, body).unwrap();
            assert_eq!(code, 401, "{method} {path} with {headers:?}: {answer}");
        }
        let (code, answer) = http_with(method, &admin, path, &with, body).unwrap();
        assert_ne!(code, 401, "{method} {path} with the token: {answer}");
        assert!(
            code < 500,
            "{method} {path} with the token: {code} {answer}"
        );
    }
}

type Peer = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A blocking WebSocket client; a read waits at most 30 s.
fn peer(url: &str) -> Peer {
    let ws = tungstenite::connect(url).expect("connect").0;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    ws
}

/// Send a request and wait for its reply's payload (skipping data).
fn call(ws: &mut Peer, id: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let req = serde_json::json!({"type": "request", "id": id,
        "payload": {"method": method, "params": params}});
    ws.send(tungstenite::Message::text(req.to_string()))
        .expect("send");
    loop {
        let msg = ws.read().expect("read");
        if let tungstenite::Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
            if v["type"] == "reply" && v["id"] == id {
                return v["payload"].clone();
            }
        }
    }
}

fn relay_node() -> Node {
    let config = r#"{
        "node": {"id": "limits"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
          "ws_in": {"type": "input", "name": "websocket_input", "config": {
            "mode": "server",
            "server": {"http_port": 0, "bind": "127.0.0.1"},
            "ports": {"outputs": [{"name": "out", "subject": "in.data"}]}
          }},
          "ws_out": {"type": "output", "name": "websocket", "config": {
            "server": {"http_port": 0, "bind": "127.0.0.1"},
            "ports": {"inputs": [{"name": "in", "subject": "in.data"}]}
          }}
        }
      }"#;
    let mut node = Node::start_with(config, &[]);
    node.wait_ready(READY);
    node
}

#[test]
fn subscriptions_and_peer_queues_are_bounded() {
    let node = relay_node();
    let pid = node.child.id();
    let out_url = format!("ws://{}/", node.addr_of("ws_out"));
    let in_url = format!("ws://{}/", node.addr_of("ws_in"));
    let start = rss(pid);

    // 200 subscribes with large regexes on one connection: the first 32
    // (max_subscriptions) are taken, every one after is refused.
    let mut greedy = peer(&out_url);
    let mut refused = 0;
    for i in 0..200 {
        let pattern = format!("^x{i}-[a-z0-9]{{1,200}}-(alpha|beta|gamma|delta)+$");
        let reply = call(
            &mut greedy,
            &format!("s{i}"),
            "subscribe",
            serde_json::json!({"filter": {"path": "$.tag", "operator": "matches", "value": pattern}}),
        );
        if i < 32 {
            assert_eq!(reply["status"], "ok", "subscribe #{i}: {reply}");
        } else {
            assert_eq!(reply["status"], "error", "subscribe #{i}: {reply}");
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("max_subscriptions"), "{reply}");
            refused += 1;
        }
    }
    assert_eq!(refused, 168);
    // A filter over max_filter_bytes is refused for its size.
    let reply = call(
        &mut greedy,
        "big",
        "unsubscribe",
        serde_json::json!({"subscription_id": "sub-1"}),
    );
    assert_eq!(reply["status"], "ok", "{reply}");
    let reply = call(
        &mut greedy,
        "huge",
        "subscribe",
        serde_json::json!({"filter": {"path": "$.tag", "operator": "==", "value": "x".repeat(5000)}}),
    );
    assert_eq!(reply["error"]["code"], "invalid_filter", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_filter_bytes")),
        "{reply}"
    );
    drop(greedy);

    // Four peers that subscribe to everything and then never read.
    let mut stalled: Vec<Peer> = (0..4).map(|_| peer(&out_url)).collect();
    for (i, p) in stalled.iter_mut().enumerate() {
        let reply = call(
            p,
            &format!("all{i}"),
            "subscribe",
            serde_json::json!({"filter": {"path": "$.n", "operator": ">=", "value": 0}}),
        );
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    // 1 GB of 512 KB messages.
    let mut producer = peer(&in_url);
    let pad = "x".repeat(512 * 1024 - 32);
    for n in 0..2000 {
        let msg = format!(r#"{{"n":{n},"pad":"{pad}"}}"#);
        producer
            .send(tungstenite::Message::text(msg))
            .expect("send");
    }
    producer.flush().expect("flush");
    // Wait until the input has read all of it and the output has, for
    // every peer, sent each message, queued it, or dropped it from a full
    // queue (a few frames per peer sit between its queue and its socket,
    // counted as none of these).
    fednode_testkit::wait_until_blocking(
        Duration::from_secs(120),
        node.and_log("the output to take all 2,000 messages"),
        || {
            let received =
                node.metric("websocket_input_messages_received_total{component=\"ws_in\"}");
            let published =
                node.metric("websocket_input_messages_published_total{component=\"ws_in\"}");
            let sent = node.metric("websocket_output_messages_sent_total{component=\"ws_out\"}");
            let dropped = node.metric(
                "websocket_output_messages_dropped_total{component=\"ws_out\",reason=\"queue_full\"}",
            );
            let queued: f64 = node.described("ws_out")["connections"]
                .as_array()
                .map_or(0.0, |c| {
                    c.iter().filter_map(|c| c["queue_depth"].as_f64()).sum()
                });
            received >= 2000.0 && sent + dropped + queued + 4.0 * 6.0 >= 4.0 * published
        },
    );
    let described = node.described("ws_out");
    let conns = described["connections"].as_array().expect("connections");
    assert_eq!(conns.len(), 4, "{described}");
    for c in conns {
        let bytes = c["queue_bytes"].as_u64().expect("queue_bytes");
        let max = c["queue_max_bytes"].as_u64().expect("queue_max_bytes");
        assert_eq!(max, 16 * MIB);
        assert!(bytes <= max, "a queue holds {bytes} bytes: {c}");
    }
    let grew = peak_rss(pid).saturating_sub(start);
    eprintln!("peak RSS grew by {} MiB", grew / MIB);
    assert!(grew < 256 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    drop(stalled);
}

/// A message nested `depth` levels deep under `a`.
fn nested(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// Send `marker` through the producer and time its arrival at `reader`.
fn marker_latency(producer: &mut Peer, reader: &mut Peer, n: usize) -> Duration {
    let t0 = Instant::now();
    producer
        .send(tungstenite::Message::text(format!(r#"{{"marker":{n}}}"#)))
        .expect("send");
    loop {
        if let tungstenite::Message::Text(t) = reader.read().expect("read") {
            if t.contains(&format!(r#""marker":{n}}}"#)) {
                return t0.elapsed();
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_descendant_path_bomb_neither_stalls_the_node_nor_delays_others() {
    let node = relay_node();
    let out_url = format!("ws://{}/", node.addr_of("ws_out"));
    let in_url = format!("ws://{}/", node.addr_of("ws_in"));
    let mut producer = peer(&in_url);
    let mut bystander = peer(&out_url);
    // Baseline: a marker's trip with nobody asking anything hard.
    let before: Vec<Duration> = (0..10)
        .map(|n| marker_latency(&mut producer, &mut bystander, n))
        .collect();
    let mut attacker = peer(&out_url);
    let reply = call(
        &mut attacker,
        "bomb",
        "subscribe",
        serde_json::json!({"filter": {"path": "$..a..a..a..a..a..a..a..a", "operator": "exists"}}),
    );
    assert_eq!(reply["status"], "ok", "{reply}");
    let bomb = nested(28);
    assert!(bomb.len() <= 200, "{} bytes", bomb.len());
    let mut after = Vec::new();
    for n in 10..20 {
        producer
            .send(tungstenite::Message::text(bomb.clone()))
            .expect("send");
        let t0 = Instant::now();
        let (code, _) =
            http_with("GET", node.admin(), "/health/ready", &[], None).expect("readiness answers");
        assert_eq!(code, 200);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "readiness took {:?}",
            t0.elapsed()
        );
        after.push(marker_latency(&mut producer, &mut bystander, n));
    }
    let (before, after) = (median(before), median(after));
    eprintln!("marker latency: {before:?} before the bomb, {after:?} with it");
    assert!(
        after.saturating_sub(before) < Duration::from_millis(100),
        "the bomb delayed another consumer: {before:?} → {after:?}"
    );
    // The bomb's filter matched nothing (it ran out of budget), and that
    // is counted.
    assert!(
        node.metric("websocket_output_filter_over_budget_total{component=\"ws_out\"}") >= 10.0,
        "{}",
        node.get("/metrics").map(|(_, m)| m).unwrap_or_default()
    );
}

#[test]
fn huge_ids_and_template_values_leave_nothing_behind() {
    let config = r#"{
        "node": {"id": "limits"},
        "http": {"listen": "127.0.0.1:0"},
        "components": {
          "ws_in": {"type": "input", "name": "websocket_input", "config": {
            "mode": "server",
            "server": {"http_port": 0, "bind": "127.0.0.1"},
            "delivery": "at_least_once",
            "ports": {"outputs": [{"name": "out", "subject": "users.{user}.data"}]}
          }},
          "ws_out": {"type": "output", "name": "websocket", "config": {
            "server": {"http_port": 0, "bind": "127.0.0.1"},
            "backpressure": {"on_full": "block"},
            "ports": {"inputs": [{"name": "in", "subject": "users.>"}]}
          }}
        }
      }"#;
    let mut node = Node::start_with(config, &[]);
    node.wait_ready(READY);
    let pid = node.child.id();
    let mut consumer = peer(&format!("ws://{}/", node.addr_of("ws_out")));
    let mut producer = peer(&format!("ws://{}/", node.addr_of("ws_in")));
    let start = rss(pid);
    // The consumer reads as the data comes: the 300 valid messages, on
    // subjects whose template token was cut.
    let consumed = std::thread::spawn(move || {
        let mut got = 0;
        while got < 300 {
            match consumer.read() {
                Ok(tungstenite::Message::Text(_)) => got += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("{got} of 300 arrived ({e})")),
            }
        }
        Ok(got)
    });
    let big = "x".repeat(200 * 1024);
    for i in 0..300 {
        // A 200 KB id: not an envelope the node keeps (invalid, counted).
        let env = format!(r#"{{"type":"data","id":"{i:06}{big}","payload":{{"user":"u{i}"}}}}"#);
        producer
            .send(tungstenite::Message::text(env))
            .expect("send");
        // A 200 KB template value: the subject token is cut to 128 bytes.
        let env = format!(r#"{{"type":"data","id":"v{i}","payload":{{"user":"{i:06}{big}"}}}}"#);
        producer
            .send(tungstenite::Message::text(env))
            .expect("send");
    }
    producer.flush().expect("flush");
    if let Err(e) = consumed.join().expect("the consumer") {
        panic!("{e}; {}", node.and_log("the rest"));
    }
    let invalid =
        node.metric("websocket_input_errors_total{component=\"ws_in\",type=\"invalid_envelope\"}");
    assert_eq!(invalid, 300.0, "{}", node.and_log("300 invalid envelopes"));
    let grew = peak_rss(pid).saturating_sub(start);
    eprintln!("peak RSS grew by {} MiB", grew / MIB);
    assert!(grew < 128 * MIB, "peak RSS grew by {} MiB", grew / MIB);
}
