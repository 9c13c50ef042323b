//! The client-mode connection state machine:
//! `INIT → CONNECTING → CONNECTED → RECONNECTING → FAILED`.

use serde::Serialize;
use std::fmt;

/// Where a client-mode connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    /// Built, not started.
    Init,
    /// The first attempt is under way.
    Connecting,
    /// A WebSocket session is open.
    Connected,
    /// Waiting for the next attempt (or making it) after a drop or failure.
    Reconnecting,
    /// Gave up: `max_retries` exhausted, or reconnecting is disabled.
    Failed,
}

impl ConnectionState {
    /// Every state, in the machine's order.
    pub const ALL: [ConnectionState; 5] = [
        ConnectionState::Init,
        ConnectionState::Connecting,
        ConnectionState::Connected,
        ConnectionState::Reconnecting,
        ConnectionState::Failed,
    ];

    /// The lowercase word used in metrics and `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Init => "init",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Failed => "failed",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
