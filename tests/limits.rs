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

const READY: Duration = Duration::from_secs(30);
const TOKEN: &str = "limits-test-token";
const MIB: u64 = 1024 * 1024;

/// The peak resident set (`VmHWM`) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
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
