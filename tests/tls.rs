//! TLS with certificates made for the test (the testkit's `TestCa`): a hub whose
//! WebSocket input requires client certificates (mutual TLS) and whose
//! output serves `wss://`; an edge pushing to it with `client.tls`; the
//! CLI peer with `--ca-file`, `--cert-file` and `--key-file`. A client
//! without a certificate, or one that does not trust the hub's CA, is
//! refused.

mod common;
use common::{bin, http_with, Node};
use fednode_testkit::wait_until_blocking;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const READY: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(20);

/// A CA of the test's own (the testkit's, made with openssl) and the
/// certificates it signs, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: fednode_testkit::TestCa,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = fednode_testkit::TestCa::new(dir.path(), name);
        Pki { dir, ca }
    }

    /// The CA certificate (PEM).
    fn ca(&self) -> String {
        text(self.ca.cert())
    }

    /// A server certificate for `localhost` and 127.0.0.1: (cert, key).
    fn server(&self, name: &str) -> (String, String) {
        let (c, k) = self
            .ca
            .issue_server(self.dir.path(), name, &["localhost", "127.0.0.1"]);
        (text(&c), text(&k))
    }

    /// A client certificate with common name `cn`: (cert, key).
    fn client(&self, name: &str, cn: &str) -> (String, String) {
        let (c, k) = self.ca.issue_client(self.dir.path(), name, cn);
        (text(&c), text(&k))
    }

    /// A path in the temp dir (that may not exist).
    fn path(&self, file: &str) -> String {
        text(&self.dir.path().join(file))
    }
}

fn text(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn hub_config(pki: &Pki, cert: &str, key: &str) -> String {
    format!(
        r#"{{
      "node": {{"id": "tls-hub"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/in",
                     "tls": {{"cert_file": "{cert}", "key_file": "{key}",
                             "client_ca_file": "{ca}"}}}},
          "ports": {{"outputs": [{{"name": "ws_data", "subject": "tls.data"}}]}}
        }}}},
        "ws_out": {{"type": "output", "name": "websocket", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/out",
                     "tls": {{"cert_file": "{cert}", "key_file": "{key}"}}}},
          "ports": {{"inputs": [{{"name": "in", "subject": "tls.>"}}]}}
        }}}}
      }}
    }}"#,
        ca = pki.ca()
    )
}

fn edge_config(pki: &Pki, hub_in: &str, cert: &str, key: &str) -> String {
    format!(
        r#"{{
      "node": {{"id": "tls-edge"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "http_in": {{"type": "input", "name": "http_input", "config": {{
          "http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
          "ports": {{"outputs": [{{"name": "out", "subject": "edge.data"}}]}}
        }}}},
        "up": {{"type": "output", "name": "websocket", "config": {{
          "mode": "client",
          "client": {{"url": "{hub_in}",
                     "tls": {{"ca_file": "{ca}", "cert_file": "{cert}", "key_file": "{key}"}}}},
          "ports": {{"inputs": [{{"name": "in", "subject": "edge.>"}}]}}
        }}}}
      }}
    }}"#,
        ca = pki.ca()
    )
}

#[test]
fn wss_with_a_test_ca_and_client_certificates() {
    let pki = Pki::new("hub-ca");
    let (hub_cert, hub_key) = pki.server("hub");
    let (edge_cert, edge_key) = pki.client("edge", "edge-01");
    let mut hub = Node::start_with(&hub_config(&pki, &hub_cert, &hub_key), &[]);
    hub.wait_ready(READY);
    let hub_in = format!("wss://localhost:{}/in", hub.addr_of("ws_in").port());
    let hub_out = format!("wss://localhost:{}/out", hub.addr_of("ws_out").port());
    let ca = pki.ca();

    // A consumer that trusts the test CA reads the hub's output over wss.
    let mut tail = bin()
        .args(["tail", &hub_out, "--ca-file", &ca])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_blocking(WAIT, hub.and_log("the wss consumer to connect"), || {
        hub.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();

    // The CLI with a client certificate gets in; its data arrives.
    let mut send = bin()
        .args([
            "send",
            &hub_in,
            "--ca-file",
            &ca,
            "--cert-file",
            &edge_cert,
            "--key-file",
            &edge_key,
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(send.stdin.take().unwrap(), r#"{{"from":"cli","n":1}}"#).unwrap();
    let out = send.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(got["from"], "cli");

    // Without a client certificate, the input refuses the TLS handshake.
    let mut refused = bin()
        .args(["send", &hub_in, "--ca-file", &ca])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(refused.stdin.take().unwrap(), r#"{{"from":"nobody"}}"#).unwrap();
    let out = refused.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );

    // Without the test CA (the system's roots), the client refuses the hub.
    let out = bin()
        .args(["request", &hub_out, "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // An edge node pushes with `client.tls`; the hub shows who it is.
    let mut edge = Node::start_with(&edge_config(&pki, &hub_in, &edge_cert, &edge_key), &[]);
    edge.wait_ready(READY);
    wait_until_blocking(WAIT, edge.and_log("the edge to connect over wss"), || {
        edge.metric("websocket_output_connection_state{component=\"up\",state=\"connected\"}")
            == 1.0
    });
    let ingest = edge.addr_of("http_in").to_string();
    let (code, body) = http_with(
        "POST",
        &ingest,
        "/ingest",
        &[("Content-Type", "application/json")],
        Some(r#"{"from":"edge","n":2}"#),
    )
    .unwrap();
    assert_eq!(code, 202, "{body}");
    let got: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(got["from"], "edge");
    let conns = hub.described("ws_in")["connections"].clone();
    let subjects: Vec<&str> = conns
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["peer_certificate"].as_str())
        .collect();
    assert_eq!(subjects, ["CN=edge-01"], "{conns}");
    // Nothing from the refused client reached the bus.
    assert_eq!(
        hub.metric("websocket_input_messages_received_total{component=\"ws_in\"}"),
        2.0
    );

    // New certificates, from another CA, replace the files; SIGHUP reads
    // them again without restarting anything: new connections get the new
    // certificate, the consumer's connection stays.
    let pki2 = Pki::new("second-ca");
    let (cert2, key2) = pki2.server("hub");
    std::fs::copy(&cert2, &hub_cert).unwrap();
    std::fs::copy(&key2, &hub_key).unwrap();
    hub.signal("HUP");
    wait_until_blocking(WAIT, hub.and_log("the reload"), || {
        hub.metric("fednode_config_reloads_total{result=\"ok\"}") == 1.0
    });
    let status = |ca: &str| {
        bin()
            .args(["request", &hub_out, "status", "--ca-file", ca])
            .output()
            .unwrap()
    };
    let out = status(&pki2.ca());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !status(&ca).status.success(),
        "the old certificate is still served"
    );
    assert_eq!(
        hub.metric("websocket_output_connections_total{component=\"ws_out\"}"),
        2.0,
        "the consumer and the status request, nothing reconnected"
    );
    assert_eq!(tail.try_wait().unwrap(), None, "the consumer was dropped");

    let _ = tail.kill();
    let _ = tail.wait();
    for node in [&mut edge, &mut hub] {
        node.signal("TERM");
        assert!(node.wait_exit(WAIT).is_some());
    }
}

#[test]
fn a_tls_file_that_cannot_be_read_names_itself_at_start() {
    let pki = Pki::new("ca");
    let config = hub_config(&pki, &pki.path("nope.pem"), &pki.path("ca.key"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.json");
    std::fs::write(&path, config).unwrap();
    let out = common::fednode(&["run", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.server.tls.cert_file")
            && err.contains("nope.pem: I/O error: No such file"),
        "{err}"
    );
}

#[test]
fn the_bus_over_tls_to_nats() {
    let pki = Pki::new("nats-ca");
    let (cert, key) = pki.server("nats");
    let nats = fednode_testkit::NatsServer::start_with_args(&[
        "--tls",
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
    ]);
    let config = |tls: &str| {
        format!(
            r#"{{
      "node": {{"id": "tls-bus"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "bus": {{"kind": "nats", "url": "nats://localhost:{port}", "connect_timeout": "3s"{tls}}},
      "components": {{
        "http_in": {{"type": "input", "name": "http_input", "config": {{
          "http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
          "ports": {{"outputs": [{{"name": "out", "subject": "bus.data"}}]}}
        }}}},
        "ws_out": {{"type": "output", "name": "websocket", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/out"}},
          "ports": {{"inputs": [{{"name": "in", "subject": "bus.>"}}]}}
        }}}}
      }}
    }}"#,
            port = nats.port()
        )
    };

    // Trusting the test CA, the node talks to NATS over TLS end to end.
    let ca = pki.ca();
    let mut node = Node::start_with(&config(&format!(r#", "tls": {{"ca_file": "{ca}"}}"#)), &[]);
    node.wait_ready(READY);
    let mut tail = bin()
        .args(["tail", &format!("ws://{}/out", node.addr_of("ws_out"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_blocking(WAIT, node.and_log("the consumer to connect"), || {
        node.metric("websocket_output_connections_active{component=\"ws_out\"}") == 1.0
    });
    let ingest = node.addr_of("http_in").to_string();
    let (code, body) =
        http_with("POST", &ingest, "/ingest", &[], Some(r#"{"over":"tls"}"#)).unwrap();
    assert_eq!(code, 202, "{body}");
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let got: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(got["over"], "tls");
    let _ = tail.kill();
    let _ = tail.wait();
    node.signal("TERM");
    assert!(node.wait_exit(WAIT).is_some());

    // Without the CA, the connection fails on the certificate, and says so.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.json");
    std::fs::write(&path, config(r#", "tls": {}"#)).unwrap();
    let out = common::fednode(&["run", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to NATS") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

/// One HTTPS request (`request` is the raw HTTP/1.1 text) to `addr`,
/// trusting `ca`; the whole answer.
async fn https(addr: std::net::SocketAddr, ca: &str, request: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = fednode_ws::tls::ClientTls {
        ca_file: Some(ca.into()),
        ..Default::default()
    }
    .config("test")?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

#[tokio::test]
async fn the_admin_server_and_http_input_speak_https() {
    let pki = Pki::new("https-ca");
    let (cert, key) = pki.server("node");
    let config = format!(
        r#"{{
      "node": {{"id": "https"}},
      "http": {{"listen": "127.0.0.1:0",
               "tls": {{"cert_file": "{cert}", "key_file": "{key}"}}}},
      "components": {{
        "http_in": {{"type": "input", "name": "http_input", "config": {{
          "http_port": 0, "bind": "127.0.0.1", "path": "/ingest",
          "tls": {{"cert_file": "{cert}", "key_file": "{key}"}},
          "ports": {{"outputs": [{{"name": "out", "subject": "https.data"}}]}}
        }}}}
      }}
    }}"#
    );
    let node = Node::start_with(&config, &[]);
    let admin: std::net::SocketAddr = node.admin().parse().unwrap();
    let ca = pki.ca();
    let get = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    // The admin server answers 503 until every component has started.
    let answer = std::sync::Mutex::new(String::new());
    fednode_testkit::wait_until_async(
        READY,
        "the admin server to answer 200 over HTTPS",
        || async {
            let got = https(admin, &ca, get).await.unwrap_or_else(|e| e);
            let ok = got.starts_with("HTTP/1.1 200");
            *answer.lock().unwrap() = got;
            ok
        },
    )
    .await;
    let answer = answer.into_inner().unwrap();
    assert!(answer.contains("\"config_generation\":1"), "{answer}");
    // Plain HTTP to the HTTPS port gets no answer.
    assert!(common::http("GET", &admin.to_string(), "/health", None).is_none_or(|(c, _)| c != 200));

    let body = r#"{"over":"https"}"#;
    let post = format!(
        "POST /ingest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = https(node.addr_of("http_in"), &ca, &post).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // A client that does not trust the CA is refused in the handshake.
    let other = Pki::new("other-ca");
    let e = https(node.addr_of("http_in"), &other.ca(), &post)
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}
