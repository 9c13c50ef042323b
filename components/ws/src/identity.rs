//! Who is on the other end of a link, and what it promised: the headers a
//! fednode node puts on its WebSocket handshake (request headers in client
//! mode, headers of the 101 response in server mode).
//!
//! - `Fednode-Node` / `Fednode-Region`: the node's `node.id` and region.
//! - `Fednode-Delivery: at_least_once`: the side that sends data wants an
//!   ack for each data envelope. A fednode receiver acks that connection's
//!   data whatever its own `delivery` says, so one side is enough.
//! - `Fednode-Acks: batch`: the side that sends data also takes one ack
//!   frame for many data envelopes (`{"type":"ack","id":"<last>",
//!   "payload":{"ids":[…]}}`). A receiver sends those only to a peer that
//!   announced it; any other gets one ack frame per envelope.
//!
//! A peer that sends no `Fednode-Node` is not a fednode node (a device, a
//! browser, a script): its data gets the receiving node as origin.

use fednode_kit::bus::{NodeId, Origin};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// The node id header.
pub const NODE: HeaderName = HeaderName::from_static("fednode-node");
/// The region header (absent when the node has none).
pub const REGION: HeaderName = HeaderName::from_static("fednode-region");
/// The delivery header; its one value is [`AT_LEAST_ONCE`].
pub const DELIVERY: HeaderName = HeaderName::from_static("fednode-delivery");
/// The value of [`DELIVERY`] asking for acks.
pub const AT_LEAST_ONCE: &str = "at_least_once";
/// The header announcing that batched acks are understood; its one value
/// is [`BATCH`].
pub const ACKS: HeaderName = HeaderName::from_static("fednode-acks");
/// The value of [`ACKS`].
pub const BATCH: &str = "batch";
/// Longest node id or region accepted from a peer; a longer one is ignored
/// (the peer is then treated as anonymous).
pub const MAX_NAME_BYTES: usize = 128;

/// What this side announces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub node: Option<Arc<str>>,
    pub region: Option<Arc<str>>,
    /// This side sends data and wants each data envelope acked.
    pub wants_acks: bool,
    /// This side takes batched acks (announced with `wants_acks` only).
    pub batch_acks: bool,
}

impl Identity {
    /// Put the headers on a handshake. A value that is not a valid header
    /// (a control character in a node id) is left out.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        if let Some(node) = &self.node {
            put(NODE, node);
        }
        if let Some(region) = &self.region {
            put(REGION, region);
        }
        if self.wants_acks {
            put(DELIVERY, AT_LEAST_ONCE);
            if self.batch_acks {
                put(ACKS, BATCH);
            }
        }
    }
}

/// What the peer announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id, when it is a fednode node (interned once here,
    /// so that the origin of each message it sends is a copy).
    pub node: Option<NodeId>,
    pub region: Option<NodeId>,
    /// The peer sends data and wants every data envelope acked.
    pub wants_acks: bool,
    /// The peer takes one ack frame for many data envelopes.
    pub batch_acks: bool,
    /// The subject of the client certificate the peer presented (servers
    /// with `tls.client_ca_file`), e.g. `CN=edge-01,O=acme`.
    pub certificate: Option<Arc<str>>,
}

impl PeerInfo {
    /// Read a handshake's headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let name = |h: HeaderName| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= MAX_NAME_BYTES)
                .map(NodeId::from_wire)
        };
        let node = name(NODE);
        // A region means nothing without the node it belongs to.
        let region = node.as_ref().and_then(|_| name(REGION));
        let wants_acks = headers
            .get(DELIVERY)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(AT_LEAST_ONCE));
        let batch_acks = wants_acks
            && headers
                .get(ACKS)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(BATCH));
        PeerInfo {
            node,
            region,
            wants_acks,
            batch_acks,
            certificate: None,
        }
    }

    /// Whether the peer is a fednode node.
    pub fn is_fednode(&self) -> bool {
        self.node.is_some()
    }

    /// The origin of data this peer sent: the envelope's own when it has
    /// one (set where the data first entered a bus, kept by every hop),
    /// else this peer when it is a fednode node, else `None`: the data
    /// enters a bus here, and the bus stamps this node.
    pub fn origin_of(&self, carried: Option<Origin>) -> Option<Origin> {
        carried.or_else(|| {
            self.node.clone().map(|node| Origin {
                node,
                region: self.region.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_side_applies_the_other_reads() {
        let me = Identity {
            node: Some("edge-01".into()),
            region: Some("eu-west".into()),
            wants_acks: true,
            batch_acks: true,
        };
        let mut h = HeaderMap::new();
        me.apply(&mut h);
        assert_eq!(h.get("Fednode-Node").unwrap(), "edge-01");
        assert_eq!(h.get("Fednode-Region").unwrap(), "eu-west");
        assert_eq!(h.get("Fednode-Delivery").unwrap(), "at_least_once");
        assert_eq!(h.get("Fednode-Acks").unwrap(), "batch");
        let peer = PeerInfo::from_headers(&h);
        assert_eq!(peer.node.as_deref(), Some("edge-01"));
        assert_eq!(peer.region.as_deref(), Some("eu-west"));
        assert!(peer.wants_acks && peer.batch_acks && peer.is_fednode());
    }

    #[test]
    fn batched_acks_go_only_with_acknowledged_delivery() {
        let mut h = HeaderMap::new();
        h.insert(ACKS, HeaderValue::from_static(BATCH));
        assert!(
            !PeerInfo::from_headers(&h).batch_acks,
            "no Fednode-Delivery"
        );
        let mut h = HeaderMap::new();
        Identity {
            wants_acks: true,
            ..Identity::default()
        }
        .apply(&mut h);
        let peer = PeerInfo::from_headers(&h);
        assert!(peer.wants_acks && !peer.batch_acks, "not announced");
    }

    #[test]
    fn data_keeps_its_origin_else_takes_the_peer_node() {
        let edge = PeerInfo {
            node: Some("edge-01".into()),
            region: Some("eu".into()),
            ..PeerInfo::default()
        };
        let far = Origin::from_wire(Some("sensor-9"), None);
        assert_eq!(edge.origin_of(far.clone()), far);
        let own = edge.origin_of(None).unwrap();
        assert_eq!((&*own.node, own.region.as_deref()), ("edge-01", Some("eu")));
        assert_eq!(PeerInfo::default().origin_of(None), None);
    }

    #[test]
    fn a_plain_client_is_anonymous_and_unacked() {
        let peer = PeerInfo::from_headers(&HeaderMap::new());
        assert_eq!(peer, PeerInfo::default());
        let mut h = HeaderMap::new();
        Identity {
            node: Some("x".repeat(MAX_NAME_BYTES + 1).into()),
            region: Some("r".into()),
            ..Identity::default()
        }
        .apply(&mut h);
        let peer = PeerInfo::from_headers(&h);
        assert!(peer.node.is_none() && peer.region.is_none() && !peer.wants_acks);
    }
}
