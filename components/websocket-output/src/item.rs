//! One data message on its way to the peers, shared by every connection and
//! the replay buffer.
//!
//! The payload bytes are never re-serialised: the data frame is built around
//! them (kit `Envelope::encode_json`) once per message and encoding, and
//! every connection sends the same shared bytes. With a single connection
//! there is nobody to share with: the frame is built for it alone and not
//! kept (the replay buffer then holds the message, not its frame too, and
//! the writer frees the frame once it is sent). The payload is parsed to a
//! `serde_json::Value` only when some connection needs to look inside
//! (filters or `message_types` routing), and then once for all of them.

use bytes::Bytes;
use fednode_kit::envelope::{encode_json_parts, new_id, now_millis, MAX_ID_BYTES};
use fednode_kit::{Encoding, Envelope, Kind, Message, Origin};
use fednode_ws::frame::{text, WsMessage};
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A data message as the output holds it.
pub(crate) struct Item {
    /// Arrival order at this output; replay cuts and merges by it.
    pub seq: u64,
    pub id: Arc<str>,
    /// The envelope timestamp, or the time it was buffered when it had none.
    pub timestamp: i64,
    /// Where the data first entered a fednode bus (sent on as `origin`).
    pub origin: Option<Origin>,
    pub payload: Bytes,
    value: OnceLock<Option<Value>>,
    /// Whether live frames are kept for the next connection that sends
    /// them (see the module doc).
    share_frames: bool,
    json: OnceLock<Utf8Bytes>,
    msgpack: OnceLock<Bytes>,
}

impl Item {
    /// Wrap a bus message. An id no peer would take (over
    /// [`MAX_ID_BYTES`], say from a NATS header) is replaced by a new one.
    pub fn from_message(seq: u64, msg: Message) -> Self {
        Item {
            seq,
            id: msg
                .meta
                .id
                .filter(|id| id.len() <= MAX_ID_BYTES)
                .unwrap_or_else(new_id),
            timestamp: msg.meta.timestamp.unwrap_or_else(now_millis),
            origin: msg.meta.origin,
            payload: msg.payload,
            value: OnceLock::new(),
            share_frames: true,
            json: OnceLock::new(),
            msgpack: OnceLock::new(),
        }
    }

    /// A message read back from the store: `record` is its data envelope as
    /// JSON ([`Item::record`]); `seq` its place in the store.
    pub fn from_record(seq: u64, record: &[u8]) -> Option<Self> {
        let env = Envelope::decode_json(record).ok()?;
        Some(Item {
            seq,
            id: if env.id.is_empty() { new_id() } else { env.id },
            timestamp: env.timestamp.unwrap_or_else(now_millis),
            origin: env.origin,
            payload: env.payload,
            value: OnceLock::new(),
            share_frames: false,
            json: OnceLock::new(),
            msgpack: OnceLock::new(),
        })
    }

    /// The message as the store keeps it: its data envelope as JSON.
    pub fn record(&self) -> Vec<u8> {
        encode_json_parts(
            Kind::Data,
            &self.id,
            Some(self.timestamp),
            false,
            self.origin.as_ref(),
            &self.payload,
        )
    }

    /// Whether more than one connection may send this message: when not,
    /// its frames are built per call and not kept.
    pub fn share_frames(mut self, share: bool) -> Self {
        self.share_frames = share;
        self
    }

    /// The payload parsed once (`None` when it is not JSON).
    pub fn value(&self) -> Option<&Value> {
        self.value
            .get_or_init(|| serde_json::from_slice(&self.payload).ok())
            .as_ref()
    }

    /// The envelope this message travels in.
    pub fn envelope(&self, replay: bool) -> Envelope {
        Envelope {
            kind: Kind::Data,
            id: self.id.clone(),
            timestamp: Some(self.timestamp),
            replay,
            origin: self.origin.clone(),
            payload: self.payload.clone(),
        }
    }

    /// The data frame; live frames of a shared message are encoded once
    /// and shared by every connection (cloning one is a reference count).
    pub fn message(&self, encoding: Encoding, replay: bool) -> WsMessage {
        match (encoding, replay) {
            (Encoding::Json, false) if !self.share_frames => {
                WsMessage::Text(self.json_frame(false))
            }
            (Encoding::Msgpack, false) if !self.share_frames => {
                WsMessage::Binary(Bytes::from(self.envelope(false).encode_msgpack()))
            }
            (Encoding::Json, false) => {
                WsMessage::Text(self.json.get_or_init(|| self.json_frame(false)).clone())
            }
            (Encoding::Msgpack, false) => WsMessage::Binary(
                self.msgpack
                    .get_or_init(|| Bytes::from(self.envelope(false).encode_msgpack()))
                    .clone(),
            ),
            (Encoding::Json, true) => WsMessage::Text(self.json_frame(true)),
            (Encoding::Msgpack, true) => {
                WsMessage::Binary(Bytes::from(self.envelope(true).encode_msgpack()))
            }
        }
    }

    /// The JSON data frame, written straight from the parts.
    fn json_frame(&self, replay: bool) -> Utf8Bytes {
        text(encode_json_parts(
            Kind::Data,
            &self.id,
            Some(self.timestamp),
            replay,
            self.origin.as_ref(),
            &self.payload,
        ))
    }

    /// The envelope as JSON, for `GET …/buffer`.
    pub fn to_json(&self) -> Value {
        let payload = self
            .value()
            .cloned()
            .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&self.payload).into_owned()));
        let mut v = serde_json::json!({
            "type": "data",
            "id": &*self.id,
            "timestamp": self.timestamp,
            "payload": payload,
        });
        if let Some(o) = &self.origin {
            v["origin"] = serde_json::json!({"node": &*o.node, "region": o.region.as_deref()});
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fednode_kit::Meta;

    #[test]
    fn frames_wrap_the_payload_bytes_untouched() {
        let msg =
            Message::new("a", Bytes::from_static(br#"{"b": 1,  "type":"x"}"#)).with_meta(Meta {
                id: Some("m1".into()),
                timestamp: Some(7),
                ..Meta::default()
            });
        let item = Item::from_message(1, msg);
        let text = |m: WsMessage| m.into_text().unwrap().as_str().to_string();
        assert_eq!(
            text(item.message(Encoding::Json, false)),
            r#"{"type":"data","id":"m1","timestamp":7,"payload":{"b": 1,  "type":"x"}}"#
        );
        assert_eq!(
            text(item.message(Encoding::Json, true)),
            r#"{"type":"data","id":"m1","timestamp":7,"replay":true,"payload":{"b": 1,  "type":"x"}}"#
        );
        assert_eq!(item.value().unwrap()["type"], "x");
        let back =
            Envelope::decode_msgpack(&item.message(Encoding::Msgpack, false).into_data()).unwrap();
        assert_eq!(&*back.id, "m1");
    }

    #[test]
    fn live_frames_are_kept_only_when_shared() {
        let msg = || {
            Message::new("a", Bytes::from_static(br#"{"b":1}"#)).with_meta(Meta {
                id: Some("m1".into()),
                timestamp: Some(7),
                ..Meta::default()
            })
        };
        let frame = |item: &Item, enc| item.message(enc, false).into_data();
        for enc in [Encoding::Json, Encoding::Msgpack] {
            let shared = Item::from_message(1, msg());
            let alone = Item::from_message(1, msg()).share_frames(false);
            let (a, b) = (frame(&shared, enc), frame(&shared, enc));
            assert_eq!(a.as_ptr(), b.as_ptr(), "{enc:?}: one buffer for everyone");
            let (c, d) = (frame(&alone, enc), frame(&alone, enc));
            assert_ne!(c.as_ptr(), d.as_ptr(), "{enc:?}: built per call, not kept");
            assert_eq!((&a, &a), (&c, &d), "{enc:?}: the same bytes either way");
        }
    }
}
