//! The operator's walk through a hub's edges, over the hub's admin HTTP API
//! only (the edges may sit behind NAT; the hub reaches them over the links
//! they opened):
//!
//! 1. `GET <admin>/components`: every `websocket_input` in server mode and
//!    its connections (`peer_node`, `peer_region`, `connected_at`,
//!    `messages_received`, …);
//! 2. for each connection, `POST <admin>/components/<input>/request` with
//!    `{"method":"status","params":{},"connection":"<peer node id>"}`: the
//!    edge's output answers `status` for its link to the hub;
//! 3. one line per edge on stdout:
//!
//! `edge-01 (eu-west) on ws_in conn-1 from 127.0.0.1:40512, connected since 2026-01-01T10:00:00Z (83 s), 1234 messages received; status ok: up 85 s, 1.0 msg/s, queue 0, store 0 messages, no rate limit, 0 filters`
//!
//! A peer that is not a fednode node (no node id announced, such as
//! `fednode send`) is listed but not asked. The same request from the
//! command line: `fednode request http://127.0.0.1:9090/components/ws_in
//! status --connection edge-01`; docs/operations.md ("Steering edges
//! through the hub") has the other methods.
//!
//! Run with: fednode run configs/hub.json    (admin on 127.0.0.1:9090)
//! and:      fednode run configs/edge-push.json
//! and:      cargo run --release --example walk_edges
//!
//! Arguments: `[--admin URL] [--token T]`: URL defaults to
//! http://127.0.0.1:9090; `--token` for a hub whose admin server has
//! `http.auth` (bearer). Exit 0 when every edge asked answered `ok`, 1
//! otherwise or when the admin server cannot be reached.

use fednode::admin_client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: walk_edges [--admin URL] [--token T]";
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9090";
/// The hub waits `bidirectional.request_timeout` (5 s by default) for an
/// edge; this leaves it room.
const TIMEOUT: Duration = Duration::from_secs(15);

struct Options {
    admin: String,
    token: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        admin: DEFAULT_ADMIN.to_string(),
        token: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--admin" => opts.admin = args.next().ok_or("--admin needs a URL")?,
            "--token" => opts.token = Some(args.next().ok_or("--token needs a token")?),
            "-h" | "--help" => return Err("".into()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if !opts.admin.contains("://") {
        opts.admin = format!("http://{}", opts.admin);
    }
    opts.admin = opts.admin.trim_end_matches('/').to_string();
    Ok(opts)
}

/// The `Authorization` header for `--token`.
fn authorization(opts: &Options) -> Option<String> {
    opts.token.as_ref().map(|t| format!("Bearer {t}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-01-01T10:00:00Z (83 s)` for a time in ms since the epoch.
fn since(ms: Option<i64>) -> String {
    let Some(ms) = ms.filter(|&m| m > 0) else {
        return "an unknown time".into();
    };
    let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
    let ago = (now_ms() - ms).max(0) / 1000;
    format!("{} ({ago} s)", humantime::format_rfc3339_seconds(at))
}

/// The short form of an edge's `status` reply payload.
fn status_summary(reply: &Value) -> (bool, String) {
    if reply["status"] != "ok" {
        let e = &reply["error"];
        let why = match (e["code"].as_str(), e["message"].as_str()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => reply.to_string(),
        };
        return (false, format!("status error: {why}"));
    }
    let r = &reply["result"];
    let mut parts = vec![
        format!("up {} s", r["uptime_seconds"]),
        format!(
            "{:.1} msg/s",
            r["throughput"]["current"].as_f64().unwrap_or(0.0)
        ),
        format!("queue {}", r["queue_depth"]),
    ];
    if let Some(store) = r.get("store") {
        parts.push(format!("store {} messages", store["messages"]));
    }
    let link = &r["connection"];
    if link.is_object() {
        parts.push(match link["effective_rate_limit"].as_f64() {
            Some(l) => format!("rate limit {l} msg/s"),
            None => "no rate limit".into(),
        });
        let filters = link["filters"].as_array().map_or(0, Vec::len);
        parts.push(format!("{filters} filters"));
    }
    (true, format!("status ok: {}", parts.join(", ")))
}

async fn walk(opts: &Options) -> Result<bool, String> {
    let auth = authorization(opts);
    let answer = admin_client::get(
        &format!("{}/components", opts.admin),
        auth.as_deref(),
        None,
        TIMEOUT,
    )
    .await?;
    let (code, all) = (answer.status, answer.body);
    if code != 200 {
        return Err(format!(
            "GET {}/components answered {code}: {all}",
            opts.admin
        ));
    }
    let all = all.as_object().ok_or("GET /components is not an object")?;
    let inputs: Vec<(&String, &Value)> = all
        .iter()
        .filter(|(_, c)| c["factory"] == "websocket_input" && c["mode"] == "server")
        .collect();
    if inputs.is_empty() {
        return Err(format!(
            "{} has no websocket_input in server mode: no edge can connect to it",
            opts.admin
        ));
    }
    let (mut edges, mut all_ok) = (0, true);
    for (name, input) in inputs {
        let conns = input["connections"].as_array().cloned().unwrap_or_default();
        // A node id that names one connection only; else the connection id.
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for c in &conns {
            if let Some(n) = c["peer_node"].as_str() {
                *per_node.entry(n).or_default() += 1;
            }
        }
        for c in &conns {
            edges += 1;
            let id = c["id"].as_str().unwrap_or("?");
            let node = c["peer_node"].as_str();
            let mut line = format!(
                "{} ({}) on {name} {id} from {}, connected since {}, {} messages received",
                node.unwrap_or("-"),
                c["peer_region"].as_str().unwrap_or("no region"),
                c["remote"].as_str().unwrap_or("?"),
                since(c["connected_at"].as_i64()),
                c["messages_received"],
            );
            if let Some(down) = c["downstream_sent"].as_u64().filter(|&d| d > 0) {
                line += &format!(", {down} sent down");
            }
            let Some(node) = node else {
                println!("{line}; not a fednode node, not asked");
                continue;
            };
            let target = if per_node[node] == 1 { node } else { id };
            let asked = admin_client::request(
                &format!("{}/components/{name}", opts.admin),
                "status",
                json!({}),
                Some(target),
                auth.as_deref(),
                None,
                TIMEOUT,
            )
            .await;
            let (ok, summary) = match asked {
                Ok(a) if a.status == 200 => status_summary(&a.body),
                Ok(a) => (
                    false,
                    format!("status not asked: HTTP {} {}", a.status, a.body),
                ),
                Err(e) => (false, format!("status not asked: {e}")),
            };
            all_ok &= ok;
            println!("{line}; {summary}");
        }
    }
    if edges == 0 {
        println!("no edge is connected to {}", opts.admin);
    }
    Ok(all_ok)
}

#[tokio::main]
async fn main() {
    let opts = parse_args().unwrap_or_else(|e| {
        if !e.is_empty() {
            eprintln!("walk_edges: {e}");
        }
        eprintln!("{USAGE}");
        std::process::exit(if e.is_empty() { 0 } else { 2 });
    });
    match walk(&opts).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("walk_edges: {e}");
            std::process::exit(1);
        }
    }
}
