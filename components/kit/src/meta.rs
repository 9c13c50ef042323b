//! What travels beside a payload on the bus ([`Meta`]: id, timestamp,
//! publishing node, replay flag, [`Origin`]) and the NATS header names
//! that carry it.

use std::sync::Arc;

/// Header carrying the envelope id.
pub const HEADER_ID: &str = "Fednode-Id";
/// Header carrying the envelope timestamp (decimal milliseconds).
pub const HEADER_TIMESTAMP: &str = "Fednode-Timestamp";
/// Header carrying the publishing node's id.
pub const HEADER_NODE: &str = "Fednode-Node";
/// Header marking replayed data.
pub const HEADER_REPLAY: &str = "Fednode-Replay";
/// Header carrying the origin node (where the data first entered a bus).
pub const HEADER_ORIGIN: &str = "Fednode-Origin";
/// Header carrying the origin node's region (absent when it has none).
pub const HEADER_ORIGIN_REGION: &str = "Fednode-Origin-Region";

/// The envelope fields that travel beside a payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub id: Option<Arc<str>>,
    pub timestamp: Option<i64>,
    pub node: Option<NodeId>,
    pub replay: bool,
    /// Where the data first entered a fednode bus; kept by every later hop.
    pub origin: Option<Origin>,
}

/// The node (and its region) where data first entered a fednode bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: NodeId,
    pub region: Option<NodeId>,
}

impl Origin {
    /// Longest node id or region taken from a peer; a longer origin is
    /// ignored as if absent.
    pub const MAX_BYTES: usize = 128;

    /// An origin read off the wire (an envelope, bus headers): `None` when
    /// the node is missing, empty or longer than [`Self::MAX_BYTES`]; a
    /// region that is empty or too long is left out.
    pub fn from_wire(node: Option<&str>, region: Option<&str>) -> Option<Origin> {
        // No control characters: the origin becomes a bus header.
        let fits = |s: &&str| {
            !s.is_empty() && s.len() <= Self::MAX_BYTES && !s.bytes().any(|b| b < 0x20 || b == 0x7f)
        };
        let node = node.filter(fits)?;
        Some(Origin {
            node: node.into(),
            region: region.filter(fits).map(NodeId::from),
        })
    }
}

/// A node id as carried in [`Meta`]: this process's own id is interned
/// (cloning it is a copy), any other id is shared.
///
/// Every message a component publishes carries the node id. With an
/// `Arc<str>` the publisher's clone and the subscriber's drop would touch
/// the same reference count from two cores on every message, which costs
/// about a tenth of the memory bus's throughput.
#[derive(Clone, Eq)]
pub enum NodeId {
    /// An interned id (this node's own, from its config).
    Static(&'static str),
    /// An id read off the wire.
    Shared(Arc<str>),
}

impl NodeId {
    /// The interned form of `id`. Each distinct id is leaked once, so use
    /// it for ids from the config, never for ids read off the wire.
    pub fn interned(id: &str) -> NodeId {
        static IDS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
        let s = match ids.iter().find(|s| **s == id) {
            Some(s) => *s,
            None => {
                let s: &'static str = Box::leak(id.to_string().into_boxed_str());
                ids.push(s);
                s
            }
        };
        NodeId::Static(s)
    }
}

impl std::ops::Deref for NodeId {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            NodeId::Static(s) => s,
            NodeId::Shared(s) => s,
        }
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId::Shared(s.into())
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId::Shared(s.into())
    }
}

impl From<Arc<str>> for NodeId {
    fn from(s: Arc<str>) -> Self {
        NodeId::Shared(s)
    }
}
