//! `Envelope::decode_json` as it was before `json::scan` (serde only),
//! with the helpers it used, verbatim but for one deliberate change
//! marked "Changed since".

use bytes::Bytes;
use fednode_kit::envelope::{DecodeError, Envelope, Kind};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

const NULL: &[u8] = b"null";

pub fn reference_decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    // Fast path: an object whose known fields we pick out while the
    // payload stays a borrowed raw slice.
    if let Ok(probe) = serde_json::from_slice::<Probe<'_>>(bytes) {
        if let Some(env) = probe.into_envelope() {
            return Ok(env);
        }
        // An object that is not an envelope: the whole object is data.
        // (Changed since: without the whitespace around it, as every
        // other value. Found by the `envelope_json` fuzz target.)
        return Ok(plain(Bytes::copy_from_slice(trim(bytes))));
    }
    // Not an object (or an object with odd field types): any valid JSON
    // value is still data.
    match serde_json::from_slice::<IgnoredAny>(bytes) {
        Ok(_) => Ok(plain(Bytes::copy_from_slice(trim(bytes)))),
        Err(e) => Err(DecodeError::Json(e.to_string())),
    }
}

fn plain(payload: Bytes) -> Envelope {
    Envelope {
        kind: Kind::Data,
        id: "".into(),
        timestamp: None,
        replay: false,
        origin: None,
        payload,
    }
}

/// The fields of an object frame that decide whether it is an envelope.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(default)]
    replay: Option<serde_json::Value>,
    /// `Some` even for `"payload": null` (plain `Option` would read null as
    /// absent, and a null payload is still a payload).
    #[serde(borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    origin: Option<&'a RawValue>,
}

/// `origin` is kept when it is an object whose `node` (and `region`)
/// are strings or null; anything else is as if absent.
#[derive(Deserialize)]
struct OriginProbe {
    node: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

fn origin_of(raw: &RawValue) -> Option<fednode_kit::Origin> {
    let o: OriginProbe = serde_json::from_str(raw.get()).ok()?;
    fednode_kit::Origin::from_wire(o.node.as_deref(), o.region.as_deref())
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

impl Probe<'_> {
    fn into_envelope(self) -> Option<Envelope> {
        let kind = parse_kind(self.kind.as_deref()?)?;
        let timestamp = self
            .timestamp
            .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
            .as_ref()
            .and_then(as_millis);
        let replay = matches!(self.replay, Some(serde_json::Value::Bool(true)));
        match kind {
            Kind::Data | Kind::Request | Kind::Reply => {
                let payload = self.payload?;
                Some(Envelope {
                    kind,
                    id: self.id.map(Cow::into_owned).unwrap_or_default().into(),
                    timestamp,
                    replay,
                    origin: match kind {
                        Kind::Data => self.origin.and_then(origin_of),
                        _ => None,
                    },
                    payload: Bytes::copy_from_slice(payload.get().as_bytes()),
                })
            }
            Kind::Ack | Kind::Nack => Some(Envelope {
                kind,
                id: self.id?.into_owned().into(),
                timestamp,
                replay: false,
                origin: None,
                payload: self
                    .payload
                    .map(|p| Bytes::copy_from_slice(p.get().as_bytes()))
                    .unwrap_or_else(|| Bytes::from_static(NULL)),
            }),
        }
    }
}

fn parse_kind(s: &str) -> Option<Kind> {
    Some(match s {
        "data" => Kind::Data,
        "request" => Kind::Request,
        "reply" => Kind::Reply,
        "ack" => Kind::Ack,
        "nack" => Kind::Nack,
        _ => return None,
    })
}

fn as_millis(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| u as i64))
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}
