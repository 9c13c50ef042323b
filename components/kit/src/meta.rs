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
            node: NodeId::from_wire(node),
            region: region.filter(fits).map(NodeId::from_wire),
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
#[derive(Clone)]
pub enum NodeId {
    /// An interned id (this node's own, from its config, or one of the
    /// first ids read off the wire).
    Static(&'static Interned),
    /// Any other id read off the wire.
    Shared(Arc<String>),
}

/// The one copy of an interned id. A [`NodeId`] points to it with one
/// word (a `&'static str` takes two), so that an id takes 16 bytes, an
/// [`Origin`] 32 and a bus message 24 fewer than with `&'static str` and
/// `Arc<str>`: every queue and channel on the way moves the message.
#[derive(Debug)]
pub struct Interned(&'static str);

impl NodeId {
    /// The interned form of `id`. Each distinct id is leaked once, so use
    /// it for ids from the config, never for ids read off the wire (that is
    /// [`from_wire`](Self::from_wire)).
    pub fn interned(id: &str) -> NodeId {
        NodeId::Static(intern(id, usize::MAX).expect("no bound"))
    }

    /// An id read off the wire (an envelope's or a header's `origin`). A
    /// node hears the same few nodes and regions on every message, so the
    /// first [`MAX_WIRE_IDS`] distinct ids are interned: a message then
    /// carries them with neither an allocation nor a reference count that
    /// two cores would share. Any id after those is shared, so a peer that
    /// sends endless new ids costs at most that many kept.
    pub fn from_wire(id: &str) -> NodeId {
        let hit = RECENT.with(|r| r.borrow().iter().copied().find(|s| s.0 == id));
        if let Some(s) = hit {
            return NodeId::Static(s);
        }
        let Some(s) = intern(id, MAX_WIRE_IDS) else {
            return NodeId::Shared(Arc::new(id.to_string()));
        };
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            if r.len() == RECENT_WIRE_IDS {
                r.remove(0);
            }
            r.push(s);
        });
        NodeId::Static(s)
    }
}

/// How many distinct ids read off the wire [`NodeId::from_wire`] interns
/// per process (at most 128 bytes each); later ones are shared instead.
pub const MAX_WIRE_IDS: usize = 4096;

/// Ids interned by [`NodeId::from_wire`] that this thread used last.
const RECENT_WIRE_IDS: usize = 8;

thread_local! {
    static RECENT: std::cell::RefCell<Vec<&'static Interned>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The one copy of `id`, leaked the first time, unless the process
/// already holds `bound` ids or more.
fn intern(id: &str, bound: usize) -> Option<&'static Interned> {
    type Ids = std::collections::HashMap<&'static str, &'static Interned>;
    static IDS: std::sync::LazyLock<std::sync::Mutex<Ids>> =
        std::sync::LazyLock::new(Default::default);
    let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = ids.get(id) {
        return Some(*s);
    }
    if ids.len() >= bound {
        return None;
    }
    let text: &'static str = Box::leak(id.to_string().into_boxed_str());
    let s: &'static Interned = Box::leak(Box::new(Interned(text)));
    ids.insert(text, s);
    Some(s)
}

impl std::ops::Deref for NodeId {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            NodeId::Static(s) => s.0,
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

impl Eq for NodeId {}

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

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId::Shared(Arc::new(s.to_string()))
    }
}

impl From<String> for NodeId {
    fn from(s: String) -> Self {
        NodeId::Shared(Arc::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interned(id: &NodeId) -> Option<&'static Interned> {
        match id {
            NodeId::Static(s) => Some(*s),
            NodeId::Shared(_) => None,
        }
    }

    #[test]
    fn ids_and_origins_take_one_pointer_and_a_tag_each() {
        use std::mem::size_of;
        assert_eq!(size_of::<NodeId>(), 16);
        assert_eq!(size_of::<Option<NodeId>>(), 16);
        assert_eq!(size_of::<Option<Origin>>(), 32);
    }

    #[test]
    fn wire_ids_are_interned_up_to_a_bound_then_shared() {
        let a = NodeId::from_wire("wire-edge-a");
        let again = NodeId::from_wire("wire-edge-a");
        let (a_s, again_s) = (interned(&a).unwrap(), interned(&again).unwrap());
        assert!(std::ptr::eq(a_s, again_s), "one copy of each id");
        // From another thread too (its recent ids start empty).
        let there = std::thread::spawn(|| interned(&NodeId::from_wire("wire-edge-a")).unwrap())
            .join()
            .unwrap();
        assert!(std::ptr::eq(a_s, there));

        // A peer sending endless new ids: at most MAX_WIRE_IDS are kept.
        let mut shared_after = None;
        for i in 0..=MAX_WIRE_IDS {
            let id = NodeId::from_wire(&format!("wire-flood-{i}"));
            assert_eq!(&*id, format!("wire-flood-{i}"));
            if interned(&id).is_none() {
                shared_after = Some(i);
                break;
            }
        }
        assert!(shared_after.is_some(), "the bound holds");
        // Ids interned before the table filled still come back interned.
        assert!(interned(&NodeId::from_wire("wire-edge-a")).is_some());
        // Either form compares by its text.
        assert_eq!(NodeId::from_wire("wire-late"), NodeId::from("wire-late"));
    }
}
