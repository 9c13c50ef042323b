//! The one map from factory name to builder (an explicit registry, no discovery).
//! Adding a component means adding its crate's `registration()` here.

use fednode_kit::Registration;

/// Every factory this binary knows.
pub fn all() -> Vec<Registration> {
    vec![
        fednode_udp::registration(),
        fednode_eeg_simulator::registration(),
        fednode_http_input::registration(),
        fednode_websocket_input::registration(),
        fednode_json_filter::registration(),
        fednode_eeg_features::registration(),
        fednode_websocket_output::registration(),
        fednode_timescale::registration(),
    ]
}

/// The registration for a factory name or alias.
pub fn find(name: &str) -> Option<Registration> {
    all()
        .into_iter()
        .find(|r| r.name == name || r.aliases.contains(&name))
}

/// Every factory name (for error messages).
pub fn names() -> Vec<&'static str> {
    all().iter().map(|r| r.name).collect()
}
