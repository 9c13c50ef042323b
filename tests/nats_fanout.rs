//! A websocket_input on the NATS bus fans data out per user through its
//! subject template (`user.{user_id}.{type}`), checked by a plain NATS
//! subscriber on a real nats-server the test starts itself.

mod common;
use common::Node;
use futures::StreamExt;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("message in time")
        .expect("subscription open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_templates_fan_out_per_user_on_nats() {
    let server = fednode_testkit::NatsServer::start();
    let plain = async_nats::connect(server.url()).await.unwrap();
    let mut jamie = plain.subscribe("user.jamie.raw").await.unwrap();
    let mut alex = plain.subscribe("user.alex.>").await.unwrap();
    plain.flush().await.unwrap();

    // The admin server and the input on port 0 (read back from the log).
    let cfg = format!(
        r#"{{
      "node": {{"id": "hub-nats"}},
      "bus": {{"kind": "nats", "url": "{}"}},
      "http": {{"listen": "127.0.0.1:0"}},
      "components": {{
        "ws_in": {{"type": "input", "name": "websocket_input", "config": {{
          "mode": "server",
          "server": {{"http_port": 0, "bind": "127.0.0.1", "path": "/ingest"}},
          "ports": {{"outputs": [{{"name": "ws_data", "subject": "user.{{user_id}}.{{type}}"}}]}}
        }}}}
      }}
    }}"#,
        server.url()
    );
    let node = tokio::task::spawn_blocking(move || {
        let mut node = Node::start_with(&cfg, &[]);
        node.wait_ready(Duration::from_secs(20));
        node
    })
    .await
    .unwrap();

    let url = format!("ws://{}/ingest", node.addr_of("ws_in"));
    let out = tokio::task::spawn_blocking(move || {
        let mut child = common::bin()
            .args(["send", &url])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, r#"{{"type":"raw","user_id":"jamie","v":1}}"#).unwrap();
        writeln!(stdin, r#"{{"type":"raw","user_id":"alex","v":2}}"#).unwrap();
        writeln!(stdin, r#"{{"type":"raw","user_id":"jamie","v":3}}"#).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let m1 = next(&mut jamie).await;
    let m3 = next(&mut jamie).await;
    let m2 = next(&mut alex).await;
    assert_eq!(
        &m1.payload[..],
        br#"{"type":"raw","user_id":"jamie","v":1}"#
    );
    assert_eq!(
        &m3.payload[..],
        br#"{"type":"raw","user_id":"jamie","v":3}"#
    );
    assert_eq!(m2.subject.as_str(), "user.alex.raw");
    let h = m2.headers.expect("envelope fields travel as headers");
    assert_eq!(h.get("Fednode-Node").unwrap().as_str(), "hub-nats");
    assert!(h.get("Fednode-Id").is_some() && h.get("Fednode-Timestamp").is_some());
    drop(node);
}
