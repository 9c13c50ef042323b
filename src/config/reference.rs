//! `docs/config.md` against the config structs: every key a struct accepts
//! has its row in the right section of the reference, and every row names a
//! key that exists. Adding a field without documenting it fails here.

use fednode_kit::config::field_names;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

/// One struct's keys, as they appear in a section: `prefix` + field name.
struct Block {
    section: &'static str,
    prefix: &'static str,
    fields: &'static [&'static str],
}

fn block<T: DeserializeOwned>(section: &'static str, prefix: &'static str) -> Block {
    Block {
        section,
        prefix,
        fields: field_names::<T>(),
    }
}

/// Every config struct, with the section and key prefix it is documented
/// under. A new struct gets a line here; a new field needs nothing but its
/// row in the reference.
fn blocks() -> Vec<Block> {
    use fednode_ws::config as ws;
    vec![
        block::<super::RawConfig>("Node", ""),
        block::<super::NodeSection>("Node", "node."),
        block::<super::BusConfig>("Node", "bus."),
        block::<super::HttpSection>("Node", "http."),
        block::<super::ComponentEntry>("Component entry", ""),
        block::<fednode_kit::config::PortsConfig>("ports", ""),
        block::<fednode_kit::config::PortConfig>("ports", "inputs[]."),
        block::<fednode_kit::config::PortConfig>("ports", "outputs[]."),
        block::<fednode_kit::config::AuthConfig>("auth", ""),
        block::<fednode_kit::config::BasicAuthConfig>("auth", "basic_auth."),
        block::<fednode_kit::backoff::ReconnectConfig>("reconnect", ""),
        block::<fednode_websocket_input::Config>("websocket_input", ""),
        block::<ws::ServerConfig>("websocket_input", "server."),
        block::<ws::ClientConfig>("websocket_input", "client."),
        block::<ws::BidirectionalConfig>("websocket_input", "bidirectional."),
        block::<ws::BackpressureConfig>("websocket_input", "backpressure."),
        block::<ws::HeartbeatConfig>("websocket_input", "heartbeat."),
        block::<fednode_websocket_input::config::AuthMessageConfig>(
            "websocket_input",
            "auth_message.",
        ),
        block::<fednode_websocket_output::Config>("websocket", ""),
        block::<ws::ServerConfig>("websocket", "server."),
        block::<ws::ClientConfig>("websocket", "client."),
        block::<ws::BidirectionalConfig>("websocket", "bidirectional."),
        block::<ws::BackpressureConfig>("websocket", "backpressure."),
        block::<ws::HeartbeatConfig>("websocket", "heartbeat."),
        block::<fednode_websocket_output::config::ReplayConfig>("websocket", "replay."),
        block::<fednode_websocket_output::config::NackBackoffConfig>("websocket", "nack_backoff."),
        block::<fednode_websocket_output::config::StoreConfig>("store", ""),
        block::<fednode_json_filter::Config>("json_filter", ""),
        block::<fednode_kit::filter::Criterion>("json_filter", "criteria[]."),
        block::<fednode_eeg_features::Config>("eeg_features", ""),
        block::<fednode_eeg_features::dsp::Band>("eeg_features", "bands[]."),
        block::<fednode_timescale::Config>("timescale", ""),
        block::<fednode_timescale::config::JetStreamConfig>("timescale", "jetstream."),
        block::<fednode_timescale::config::RetryConfig>("timescale", "retry."),
        block::<fednode_udp::Config>("udp", ""),
        block::<fednode_http_input::Config>("http_input", ""),
        block::<fednode_eeg_simulator::Config>("eeg_simulator", ""),
        block::<fednode_eeg_simulator::SineComponent>("eeg_simulator", "components[]."),
    ]
}

/// The keys documented in each `## ` section: the first cell of every
/// table row, when it is one backticked key.
fn documented(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            current = Some(title.trim().to_string());
            sections.entry(title.trim().to_string()).or_default();
            continue;
        }
        let (Some(section), Some(row)) = (&current, line.strip_prefix('|')) else {
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if let Some(key) = first.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
            if !key.contains('`') {
                sections
                    .get_mut(section)
                    .expect("section exists")
                    .insert(key.to_string());
            }
        }
    }
    sections
}

fn check(text: &str, blocks: &[Block]) -> Vec<String> {
    let docs = documented(text);
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for b in blocks {
        let keys = expected.entry(b.section).or_default();
        keys.extend(b.fields.iter().map(|f| format!("{}{f}", b.prefix)));
    }
    let mut problems = Vec::new();
    for (section, keys) in &expected {
        let Some(rows) = docs.get(*section) else {
            problems.push(format!("docs/config.md has no section \"## {section}\""));
            continue;
        };
        for key in keys.difference(rows) {
            problems.push(format!("## {section}: `{key}` is not documented"));
        }
        for key in rows.difference(keys) {
            problems.push(format!(
                "## {section}: `{key}` is documented but no config struct has it"
            ));
        }
    }
    problems
}

#[test]
fn the_reference_documents_every_key_and_only_real_keys() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md");
    let text = std::fs::read_to_string(path).expect("docs/config.md exists");
    let problems = check(&text, &blocks());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_missing_row_and_a_stale_row_are_both_reported() {
    let text =
        "## websocket\n\n| key | type |\n|---|---|\n| `encoding` | string |\n| `gone` | x |\n";
    let blocks = [Block {
        section: "websocket",
        prefix: "",
        fields: &["encoding", "delivery"],
    }];
    assert_eq!(
        check(text, &blocks),
        vec![
            "## websocket: `delivery` is not documented",
            "## websocket: `gone` is documented but no config struct has it",
        ]
    );
}

#[test]
fn field_names_follow_serde_renames() {
    let fields = field_names::<super::ComponentEntry>();
    assert_eq!(fields, ["type", "name", "enabled", "config"]);
}
