//! Writing envelopes as JSON, straight from their parts.

use super::{Kind, NULL};
use crate::meta::Origin;

/// [`Envelope::encode_json`] from borrowed parts, for a holder of the parts
/// (the websocket output's buffered messages) that would otherwise build an
/// `Envelope` (two allocations) only to encode it.
///
/// The vector is allocated at its final length (exactly, unless a string
/// needs escapes, which is rare), so it is never grown on the way and
/// becomes a `Bytes` frame without another allocation.
pub fn encode_json_parts(
    kind: Kind,
    id: &str,
    timestamp: Option<i64>,
    replay: bool,
    origin: Option<&Origin>,
    payload: &[u8],
) -> Vec<u8> {
    let mut digits = itoa::Buffer::new();
    let timestamp = timestamp.map(|t| digits.format(t));
    let with_payload = !(matches!(kind, Kind::Ack) && payload == NULL);
    let len = r#"{"type":""#.len()
        + kind.as_str().len()
        + r#"","id":"#.len()
        + json_str_len(id)
        + timestamp.map_or(0, |t| r#","timestamp":"#.len() + t.len())
        + if replay { r#","replay":true"#.len() } else { 0 }
        + origin.map_or(0, |o| {
            r#","origin":{"node":"#.len()
                + json_str_len(&o.node)
                + o.region
                    .as_ref()
                    .map_or(0, |r| r#","region":"#.len() + json_str_len(r))
                + "}".len()
        })
        + if with_payload {
            r#","payload":"#.len() + payload.len()
        } else {
            0
        }
        + "}".len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    push_json_str(&mut out, id);
    if let Some(ts) = timestamp {
        out.extend_from_slice(b",\"timestamp\":");
        out.extend_from_slice(ts.as_bytes());
    }
    if replay {
        out.extend_from_slice(b",\"replay\":true");
    }
    if let Some(origin) = origin {
        // As serde writes `WireOrigin`, without its machinery per message.
        out.extend_from_slice(b",\"origin\":{\"node\":");
        push_json_str(&mut out, &origin.node);
        if let Some(region) = &origin.region {
            out.extend_from_slice(b",\"region\":");
            push_json_str(&mut out, region);
        }
        out.push(b'}');
    }
    if with_payload {
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(payload);
    }
    out.push(b'}');
    if out.len() != out.capacity() {
        // A string was escaped: its length was only bounded.
        out.shrink_to_fit();
    }
    out
}

/// The length of `text` as a JSON string: exact when nothing needs an
/// escape, otherwise a bound (an escape is at most six bytes, `\u001f`).
fn json_str_len(text: &str) -> usize {
    if needs_no_escape(text) {
        text.len() + 2
    } else {
        text.len() * 6 + 2
    }
}

/// Whether `text` goes into a JSON string as it is (no quote, backslash or
/// control character). Written without an early exit, so the compiler
/// checks many bytes at once: ids are short and nearly always plain.
pub(super) fn needs_no_escape(text: &str) -> bool {
    !text.bytes().fold(false, |odd, b| {
        odd | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// `text` as a JSON string.
pub(super) fn push_json_str(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text) {
        // Nothing to escape (ids are usually UUIDs or similar).
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, text).expect("string serialises");
    }
}
