//! Batched acks: one ack frame for many data envelopes, sent only to a
//! peer that announced it takes them (`Fednode-Acks: batch`).
//!
//! `{"type":"ack","id":"<last id>","payload":{"ids":["<id>", …]}}`: the
//! payload lists every id acknowledged, in the order published; `id` is
//! the last of them, so the frame is a well-formed ack on its own.

use super::{Envelope, Kind};
use bytes::Bytes;
use serde::Deserialize;
use std::borrow::Cow;

impl Envelope {
    /// One ack for every id of `ids`, in order (at least one).
    pub fn acks<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut payload = Vec::with_capacity(1024);
        payload.extend_from_slice(b"{\"ids\":[");
        let mut last = None;
        for id in ids {
            if last.is_some() {
                payload.push(b',');
            }
            super::write::push_json_str(&mut payload, id);
            last = Some(id);
        }
        payload.extend_from_slice(b"]}");
        Envelope {
            kind: Kind::Ack,
            id: last.expect("an ack names at least one id").into(),
            timestamp: None,
            replay: false,
            origin: None,
            payload: Bytes::from(payload),
        }
    }

    /// The ids an ack acknowledges: those its payload lists when it is a
    /// batch, else its own `id`. `None` when the payload is neither null
    /// nor `{"ids": [strings]}`.
    pub fn acked_ids(&self) -> Option<Vec<Cow<'_, str>>> {
        #[derive(Deserialize)]
        struct Batch<'a> {
            #[serde(borrow)]
            ids: Vec<Cow<'a, str>>,
        }
        if *self.payload == *super::NULL {
            return Some(vec![Cow::Borrowed(&*self.id)]);
        }
        serde_json::from_slice::<Batch>(&self.payload)
            .ok()
            .map(|b| b.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Encoding;

    #[test]
    fn a_batch_lists_every_id_and_names_the_last() {
        let env = Envelope::acks(["a", "b\"q", "c"]);
        let text = String::from_utf8(env.encode_json()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"ack","id":"c","payload":{"ids":["a","b\"q","c"]}}"#
        );
        for encoding in [Encoding::Json, Encoding::Msgpack] {
            let back = Envelope::decode(&env.encode(encoding), encoding).unwrap();
            assert_eq!(back.kind, Kind::Ack);
            let ids = back.acked_ids().unwrap();
            assert_eq!(ids, ["a", "b\"q", "c"], "{encoding:?}");
        }
    }

    #[test]
    fn a_single_ack_names_its_id_and_odd_payloads_are_refused() {
        let one = Envelope::ack("m1", None);
        assert_eq!(one.acked_ids().unwrap(), ["m1"]);
        for odd in [r#"{"ids":[1]}"#, r#"{"ids":"a"}"#, r#"[]"#, r#"{}"#] {
            let env = Envelope::decode_json(
                format!(r#"{{"type":"ack","id":"x","payload":{odd}}}"#).as_bytes(),
            )
            .unwrap();
            assert_eq!(env.acked_ids(), None, "{odd}");
        }
    }
}
