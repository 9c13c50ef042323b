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
    // Each string is checked for escapes once, for its length and its writing.
    let id = JsonStr::new(id);
    let origin = origin.map(|o| (JsonStr::new(&o.node), o.region.as_deref().map(JsonStr::new)));
    let len = r#"{"type":""#.len()
        + kind.as_str().len()
        + r#"","id":"#.len()
        + id.len()
        + timestamp.map_or(0, |t| r#","timestamp":"#.len() + t.len())
        + if replay { r#","replay":true"#.len() } else { 0 }
        + origin.as_ref().map_or(0, |(node, region)| {
            r#","origin":{"node":"#.len()
                + node.len()
                + region
                    .as_ref()
                    .map_or(0, |r| r#","region":"#.len() + r.len())
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
    id.push(&mut out);
    if let Some(ts) = timestamp {
        out.extend_from_slice(b",\"timestamp\":");
        out.extend_from_slice(ts.as_bytes());
    }
    if replay {
        out.extend_from_slice(b",\"replay\":true");
    }
    if let Some((node, region)) = origin {
        // As serde writes `WireOrigin`, without its machinery per message.
        out.extend_from_slice(b",\"origin\":{\"node\":");
        node.push(&mut out);
        if let Some(region) = region {
            out.extend_from_slice(b",\"region\":");
            region.push(&mut out);
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

/// A string to write as a JSON string, checked for escapes.
struct JsonStr<'a> {
    text: &'a str,
    plain: bool,
}

impl<'a> JsonStr<'a> {
    fn new(text: &'a str) -> Self {
        JsonStr {
            text,
            plain: needs_no_escape(text),
        }
    }

    /// Its length written: exact when nothing needs an escape, otherwise a
    /// bound (an escape is at most six bytes, `\u001f`).
    fn len(&self) -> usize {
        match self.plain {
            true => self.text.len() + 2,
            false => self.text.len() * 6 + 2,
        }
    }

    fn push(&self, out: &mut Vec<u8>) {
        if self.plain {
            // Nothing to escape (ids are usually UUIDs or similar).
            out.push(b'"');
            out.extend_from_slice(self.text.as_bytes());
            out.push(b'"');
        } else {
            serde_json::to_writer(out, self.text).expect("string serialises");
        }
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
    JsonStr::new(text).push(out);
}
