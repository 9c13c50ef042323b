//! The wire envelope and its two codecs (JSON text frames,
//! MessagePack binary frames).
//!
//! The payload is kept as raw JSON bytes ([`Bytes`]): a data frame is parsed
//! once to find `type`, `id`, `timestamp` and the payload's span, and the
//! payload bytes then travel to the bus untouched. Nothing re-serialises a
//! payload that nobody needs to look into.

use crate::json::{self, Members, Shape};
use crate::meta::Origin;
pub use crate::reply::{ErrorCode, ReplyError, ReplyPayload, RequestPayload};
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

/// What an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A payload to publish.
    Data,
    /// A control request (`payload` = `{method, params}`).
    Request,
    /// The answer to a request (same `id`).
    Reply,
    /// At-least-once delivery: the receiver published data `id`.
    Ack,
    /// At-least-once delivery: the receiver refused data `id`.
    Nack,
}

impl Kind {
    /// The wire name (`"data"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Request => "request",
            Kind::Reply => "reply",
            Kind::Ack => "ack",
            Kind::Nack => "nack",
        }
    }
}

/// Which codec a frame used; a reply goes back in the encoding of its request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Text frames holding JSON.
    #[default]
    Json,
    /// Binary frames holding MessagePack.
    Msgpack,
}

/// One envelope. `payload` is always valid JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub kind: Kind,
    /// Unique per sender. Empty when a plain JSON frame carried none: the
    /// receiver assigns one.
    pub id: Arc<str>,
    /// Milliseconds since the Unix epoch, when the sender gave one.
    pub timestamp: Option<i64>,
    /// Data replayed from a buffer.
    pub replay: bool,
    /// Data: the node (and region) where it first entered a fednode bus,
    /// `"origin": {"node", "region"}` on the wire.
    pub origin: Option<Origin>,
    /// The payload as JSON bytes (`null` for an ack without payload).
    pub payload: Bytes,
}

/// Why a frame could not be decoded. The connection stays open; the frame is
/// dropped and counted under [`DecodeError::error_type`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid MessagePack: {0}")]
    Msgpack(String),
    /// Well-formed, but not a valid envelope (an `id` over [`MAX_ID_BYTES`]).
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
}

impl DecodeError {
    /// The `type` label it is counted under: `parse_error` (not JSON or
    /// MessagePack) or `invalid_envelope`.
    pub fn error_type(&self) -> &'static str {
        match self {
            DecodeError::Json(_) | DecodeError::Msgpack(_) => "parse_error",
            DecodeError::InvalidEnvelope(_) => "invalid_envelope",
        }
    }
}

/// The longest envelope `id`, in bytes; a longer one makes the frame
/// [`DecodeError::InvalidEnvelope`] (ids are kept in windows and books).
pub const MAX_ID_BYTES: usize = 256;

/// Refuses an envelope whose id is longer than [`MAX_ID_BYTES`].
fn check_id(env: Envelope) -> Result<Envelope, DecodeError> {
    if env.id.len() > MAX_ID_BYTES {
        return Err(DecodeError::InvalidEnvelope(format!(
            "id is {} bytes, more than {MAX_ID_BYTES}",
            env.id.len()
        )));
    }
    Ok(env)
}

/// The most arrays and maps a MessagePack frame may nest, the envelope's
/// own map included; its payload may nest one less. A deeper frame is a
/// [`DecodeError::Msgpack`]. [`Envelope::encode_msgpack`] reads the payload
/// back as a `serde_json::Value`, which holds at most 127 levels, and then
/// writes it inside the envelope's map: with rmp_serde's own limit (1024)
/// a deeper frame decoded, and its payload went out as `null` when
/// re-encoded.
pub const MAX_MSGPACK_DEPTH: usize = 127;

const NULL: &[u8] = b"null";

/// Current time in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh envelope id: a v4 UUID from the thread-local RNG (no system
/// call per message, unlike `Uuid::new_v4`'s OS randomness), written
/// straight into its one allocation (no formatter, no `String` on the way).
pub fn new_id() -> Arc<str> {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    Arc::from(&*uuid.hyphenated().encode_lower(&mut text))
}

impl Envelope {
    /// A data envelope with a fresh id and the current time.
    pub fn data(payload: Bytes) -> Self {
        Envelope {
            kind: Kind::Data,
            id: new_id(),
            timestamp: Some(now_millis()),
            replay: false,
            origin: None,
            payload,
        }
    }

    /// Data that came as a plain JSON value, not wrapped in an envelope
    /// (no id, timestamp or origin).
    pub fn is_plain(&self) -> bool {
        self.kind == Kind::Data
            && self.id.is_empty()
            && self.timestamp.is_none()
            && self.origin.is_none()
            && !self.replay
    }

    /// A request envelope with a fresh id.
    pub fn request(method: &str, params: &serde_json::Value) -> Self {
        let payload = serde_json::to_vec(&RequestPayload {
            method: method.to_string(),
            params: params.clone(),
        })
        .expect("request payload serialises");
        Envelope {
            kind: Kind::Request,
            id: new_id(),
            timestamp: Some(now_millis()),
            replay: false,
            origin: None,
            payload: Bytes::from(payload),
        }
    }

    /// The reply to request `id`.
    pub fn reply(id: &str, reply: &ReplyPayload) -> Self {
        Envelope {
            kind: Kind::Reply,
            id: id.into(),
            timestamp: Some(now_millis()),
            replay: false,
            origin: None,
            payload: Bytes::from(serde_json::to_vec(reply).expect("reply serialises")),
        }
    }

    /// An ack (or nack with a reason) for data `id`.
    pub fn ack(id: &str, nack_reason: Option<&str>) -> Self {
        let (kind, payload) = match nack_reason {
            None => (Kind::Ack, Bytes::from_static(NULL)),
            Some(r) => (
                Kind::Nack,
                Bytes::from(serde_json::to_vec(&serde_json::json!({ "reason": r })).unwrap()),
            ),
        };
        Envelope {
            kind,
            id: id.into(),
            timestamp: None,
            replay: false,
            origin: None,
            payload,
        }
    }

    /// Decode a frame in the given encoding. An envelope whose `id` is
    /// longer than [`MAX_ID_BYTES`] is [`DecodeError::InvalidEnvelope`].
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        match encoding {
            Encoding::Json => Self::decode_json(bytes),
            Encoding::Msgpack => Self::decode_msgpack(bytes),
        }
    }

    /// Encode in the given encoding.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Json => self.encode_json(),
            Encoding::Msgpack => self.encode_msgpack(),
        }
    }

    /// Decode a JSON text frame: an envelope, or any other JSON
    /// value, which is then the payload of a data envelope without id.
    ///
    /// The frame must be UTF-8 (JSON text is): bytes that are not are a
    /// [`DecodeError::Json`], even inside a string that nobody reads, since
    /// the payload is always valid JSON text. Use
    /// [`decode_json_str`](Self::decode_json_str) when the text is already
    /// known to be UTF-8 (a WebSocket text frame).
    pub fn decode_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
        Self::decode_json_str(text)
    }

    /// [`decode_json`](Self::decode_json) of text already known to be UTF-8.
    ///
    /// One pass of a hand-written scanner validates the frame and finds the
    /// members `type`, `id`, `timestamp`, `replay` and `payload`; the result
    /// is the one serde_json gives (rare frames are still decoded with serde,
    /// and an invalid frame's error message is serde_json's).
    #[inline]
    pub fn decode_json_str(text: &str) -> Result<Self, DecodeError> {
        Self::decode_json_any_id(text).and_then(check_id)
    }

    #[inline(always)]
    fn decode_json_any_id(text: &str) -> Result<Self, DecodeError> {
        // An ack exactly as fednode writes it (one per message under
        // acknowledged delivery): no scan needed.
        if let Some(id) = canonical_ack_id(text) {
            return Ok(Envelope::ack(id, None));
        }
        let bytes = text.as_bytes();
        let mut members = Members::new();
        match json::scan(text, &MEMBERS, &mut members) {
            Ok(Shape::Object) => {}
            // Any valid JSON value is still data.
            Ok(Shape::Scalar) => return Ok(Self::plain(Bytes::copy_from_slice(trim(bytes)))),
            // serde reads a struct from an array too, by position: rare
            // enough to leave to serde.
            Ok(Shape::Array) => return Self::decode_json_serde(bytes),
            Err(json::Invalid) => {
                let decoded = Self::decode_json_serde(bytes);
                debug_assert!(decoded.is_err(), "json::scan refused valid JSON: {text:?}");
                return decoded;
            }
        }
        match Fields::of_members(text, &members) {
            Ok(fields) => Ok(fields
                .into_envelope()
                // An object that is not an envelope: the whole object is
                // data (without the whitespace around it, like any other
                // value: a payload is a JSON value's text).
                .unwrap_or_else(|| Self::plain(Bytes::copy_from_slice(trim(bytes))))),
            // An object with odd member types: still data.
            Err(NotFields::Odd) => Ok(Self::plain(Bytes::copy_from_slice(trim(bytes)))),
            Err(NotFields::AskSerde) => Self::decode_json_serde(bytes),
        }
    }

    /// The decoder before [`json::scan`], kept for the rare frames: a serde
    /// [`Probe`], and any other valid JSON value is data.
    fn decode_json_serde(bytes: &[u8]) -> Result<Self, DecodeError> {
        // An object whose known fields we pick out while the payload stays a
        // borrowed raw slice.
        if let Ok(probe) = serde_json::from_slice::<Probe<'_>>(bytes) {
            if let Some(env) = Fields::from(probe).into_envelope() {
                return Ok(env);
            }
            // An object that is not an envelope: the whole object is data.
            return Ok(Self::plain(Bytes::copy_from_slice(trim(bytes))));
        }
        // Not an object (or an object with odd field types): any valid JSON
        // value is still data.
        match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => Ok(Self::plain(Bytes::copy_from_slice(trim(bytes)))),
            Err(e) => Err(DecodeError::Json(e.to_string())),
        }
    }

    fn plain(payload: Bytes) -> Self {
        Envelope {
            kind: Kind::Data,
            id: "".into(),
            timestamp: None,
            replay: false,
            origin: None,
            payload,
        }
    }

    /// Encode as a JSON text frame. Fields appear in a fixed order; the
    /// payload bytes are written as they are.
    pub fn encode_json(&self) -> Vec<u8> {
        encode_json_parts(
            self.kind,
            &self.id,
            self.timestamp,
            self.replay,
            self.origin.as_ref(),
            &self.payload,
        )
    }

    /// Decode a MessagePack binary frame, with the same rules as JSON. A
    /// frame nested deeper than [`MAX_MSGPACK_DEPTH`] is a
    /// [`DecodeError::Msgpack`].
    pub fn decode_msgpack(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        // rmp_serde fails when its count reaches 0, so one more.
        de.set_max_depth(MAX_MSGPACK_DEPTH + 1);
        let value = serde_json::Value::deserialize(&mut de)
            .map_err(|e| DecodeError::Msgpack(e.to_string()))?;
        let env = Self::from_value(value);
        // A value that is not an envelope is the payload whole.
        if nesting(&env.payload) >= MAX_MSGPACK_DEPTH {
            return Err(DecodeError::Msgpack(format!(
                "depth limit exceeded (a payload nests at most {} arrays and maps)",
                MAX_MSGPACK_DEPTH - 1
            )));
        }
        check_id(env)
    }

    /// Build an envelope from an already-parsed JSON value (the MessagePack
    /// path and tests).
    pub fn from_value(value: serde_json::Value) -> Self {
        if let serde_json::Value::Object(map) = &value {
            let kind = map
                .get("type")
                .and_then(|t| t.as_str())
                .and_then(parse_kind);
            let id = map.get("id").and_then(|i| i.as_str());
            match (kind, id) {
                (Some(kind @ (Kind::Data | Kind::Request | Kind::Reply)), _)
                    if map.contains_key("payload") =>
                {
                    return Envelope {
                        kind,
                        id: id.unwrap_or_default().into(),
                        timestamp: map.get("timestamp").and_then(as_millis),
                        replay: map.get("replay").and_then(|r| r.as_bool()).unwrap_or(false),
                        origin: map.get("origin").and_then(origin_of_value),
                        payload: Bytes::from(serde_json::to_vec(&map["payload"]).unwrap()),
                    };
                }
                (Some(kind @ (Kind::Ack | Kind::Nack)), Some(id)) => {
                    return Envelope {
                        kind,
                        id: id.into(),
                        timestamp: map.get("timestamp").and_then(as_millis),
                        replay: false,
                        origin: None,
                        payload: map
                            .get("payload")
                            .map(|p| Bytes::from(serde_json::to_vec(p).unwrap()))
                            .unwrap_or_else(|| Bytes::from_static(NULL)),
                    };
                }
                _ => {}
            }
        }
        Self::plain(Bytes::from(serde_json::to_vec(&value).unwrap()))
    }

    /// Encode as a MessagePack binary frame (maps with field names).
    pub fn encode_msgpack(&self) -> Vec<u8> {
        let payload: serde_json::Value =
            serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null);
        let wire = WireOut {
            kind: self.kind.as_str(),
            id: &self.id,
            timestamp: self.timestamp,
            replay: self.replay.then_some(true),
            origin: self.origin.as_ref().map(WireOrigin::of),
            payload,
        };
        rmp_serde::to_vec_named(&wire).expect("msgpack encodes")
    }

    /// The payload parsed as a JSON value.
    pub fn payload_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<WireOrigin<'a>>,
    payload: serde_json::Value,
}

/// `"origin": {"node": "…", "region": "…"}` as written and read.
#[derive(Serialize, Deserialize)]
struct WireOrigin<'a> {
    #[serde(borrow)]
    node: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    region: Option<Cow<'a, str>>,
}

impl<'a> WireOrigin<'a> {
    fn of(origin: &'a Origin) -> Self {
        WireOrigin {
            node: Some(Cow::Borrowed(&origin.node)),
            region: origin.region.as_deref().map(Cow::Borrowed),
        }
    }

    fn origin(&self) -> Option<Origin> {
        Origin::from_wire(self.node.as_deref(), self.region.as_deref())
    }
}

/// The origin of a data envelope from its raw JSON; anything but an object
/// with a usable `node` is as if there were none.
fn origin_of_raw(raw: &str) -> Option<Origin> {
    if let Some((node, region)) = canonical_origin(raw) {
        return Origin::from_wire(Some(node), region);
    }
    serde_json::from_str::<WireOrigin<'_>>(raw)
        .ok()
        .and_then(|w| w.origin())
}

/// The node and region of an origin written exactly as
/// [`encode_json_parts`] writes one (no spaces, no escapes), as every
/// fednode hop sends it; anything else is for serde.
fn canonical_origin(raw: &str) -> Option<(&str, Option<&str>)> {
    let (node, rest) = raw.strip_prefix(r#"{"node":""#)?.split_once('"')?;
    if node.contains('\\') {
        return None;
    }
    if rest == "}" {
        return Some((node, None));
    }
    let (region, rest) = rest.strip_prefix(r#","region":""#)?.split_once('"')?;
    (rest == "}" && !region.contains('\\')).then_some((node, Some(region)))
}

fn origin_of_value(v: &serde_json::Value) -> Option<Origin> {
    Origin::from_wire(
        v.get("node").and_then(|n| n.as_str()),
        v.get("region").and_then(|r| r.as_str()),
    )
}

/// The members of an object frame that decide whether it is an envelope,
/// in the order of the `*_MEMBER` indices.
const MEMBERS: [&str; 6] = ["type", "id", "timestamp", "replay", "payload", "origin"];
const TYPE_MEMBER: usize = 0;
const ID_MEMBER: usize = 1;
const TIMESTAMP_MEMBER: usize = 2;
const REPLAY_MEMBER: usize = 3;
const PAYLOAD_MEMBER: usize = 4;
const ORIGIN_MEMBER: usize = 5;

/// The fields of an object frame that decide whether it is an envelope, as
/// serde reads them (the serde path of `decode_json`).
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

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// What both paths of `decode_json` read from an object frame: a [`Probe`],
/// or the members [`json::scan`] found.
struct Fields<'a> {
    kind: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    /// Raw JSON.
    timestamp: Option<&'a str>,
    replay: bool,
    /// Raw JSON, `Some("null")` for `"payload": null`.
    payload: Option<&'a str>,
    /// Raw JSON.
    origin: Option<&'a str>,
}

/// Why the members of an object frame do not make [`Fields`].
enum NotFields {
    /// serde would not read them as a [`Probe`] (a member twice, a `type` or
    /// `id` that is neither a string nor null, a key or string whose escapes
    /// do not decode): the frame is data.
    Odd,
    /// `replay` is not a literal: whether serde can read it as a
    /// `serde_json::Value` (a number out of range, a string with a lone
    /// surrogate, nesting too deep) is left to serde.
    AskSerde,
}

impl<'a> From<Probe<'a>> for Fields<'a> {
    fn from(probe: Probe<'a>) -> Self {
        Fields {
            kind: probe.kind,
            id: probe.id,
            timestamp: probe.timestamp.map(RawValue::get),
            replay: matches!(probe.replay, Some(serde_json::Value::Bool(true))),
            payload: probe.payload.map(RawValue::get),
            origin: probe.origin.map(RawValue::get),
        }
    }
}

impl<'a> Fields<'a> {
    /// The fields, as serde would read them, from what [`json::scan`]
    /// found in `text`.
    #[inline]
    fn of_members(text: &'a str, members: &Members<6>) -> Result<Self, NotFields> {
        if members.duplicate || members.undecodable_key {
            return Err(NotFields::Odd);
        }
        let raw = |i: usize| members.values[i].map(|value| value.raw(text));
        let replay = match raw(REPLAY_MEMBER) {
            Some("true") => true,
            None | Some("false" | "null") => false,
            Some(_) => return Err(NotFields::AskSerde),
        };
        Ok(Fields {
            kind: string_or_null(text, members.values[TYPE_MEMBER])?,
            id: string_or_null(text, members.values[ID_MEMBER])?,
            // An `Option<&RawValue>`: null is `None`.
            timestamp: raw(TIMESTAMP_MEMBER).filter(|t| *t != "null"),
            replay,
            payload: raw(PAYLOAD_MEMBER),
            origin: raw(ORIGIN_MEMBER),
        })
    }

    #[inline(always)]
    fn into_envelope(self) -> Option<Envelope> {
        let kind = parse_kind(self.kind.as_deref()?)?;
        let timestamp = self.timestamp.and_then(timestamp_millis);
        match kind {
            Kind::Data | Kind::Request | Kind::Reply => {
                let payload = self.payload?;
                Some(Envelope {
                    kind,
                    id: self.id.map_or_else(|| "".into(), Arc::from),
                    timestamp,
                    replay: self.replay,
                    origin: match kind {
                        Kind::Data => self.origin.and_then(origin_of_raw),
                        _ => None,
                    },
                    payload: Bytes::copy_from_slice(payload.as_bytes()),
                })
            }
            Kind::Ack | Kind::Nack => Some(Envelope {
                kind,
                id: Arc::from(self.id?),
                timestamp,
                replay: false,
                origin: None,
                payload: self
                    .payload
                    .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                    .unwrap_or_else(|| Bytes::from_static(NULL)),
            }),
        }
    }
}

/// The id of `{"type":"ack","id":"…"}` written exactly so (no spaces, an
/// id without escapes or control characters), as [`Envelope::encode_json`]
/// writes an ack.
fn canonical_ack_id(text: &str) -> Option<&str> {
    let id = text
        .strip_prefix(r#"{"type":"ack","id":""#)?
        .strip_suffix(r#""}"#)?;
    needs_no_escape(id).then_some(id)
}

/// A member that serde reads as an `Option<Cow<str>>`: absent or null is
/// `None`, a string its text; anything else makes the frame [`NotFields::Odd`].
#[inline]
fn string_or_null(
    text: &str,
    value: Option<json::Span>,
) -> Result<Option<Cow<'_, str>>, NotFields> {
    let Some(value) = value else {
        return Ok(None);
    };
    match text.as_bytes()[value.start] {
        b'"' => value.string_text(text).map(Some).ok_or(NotFields::Odd),
        b'n' => Ok(None),
        _ => Err(NotFields::Odd),
    }
}

/// The `timestamp` of a frame from its raw JSON: what [`as_millis`] makes of
/// it as a `serde_json::Value`, `None` for anything but a number.
fn timestamp_millis(raw: &str) -> Option<i64> {
    // Fast path: an integer of up to 18 digits is its own value.
    json::small_integer(raw).or_else(|| {
        serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .as_ref()
            .and_then(as_millis)
    })
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

/// The most arrays and objects open at once in `json` (valid JSON text).
pub fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    deepest
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

mod acks;
mod write;
pub use write::encode_json_parts;
use write::needs_no_escape;
#[cfg(test)]
mod tests;
