//! Reading raw messages: one pass over the payload bytes, no
//! `serde_json::Value`, no allocation in steady state.
//!
//! [`parse`] walks the top-level object once. The sample fields are decoded
//! straight into a caller-owned [`Scratch`] (reused for every message);
//! `type`, `timestamp` and the key member are borrowed from the payload.
//!
//! Two readers give the same answers:
//! * a strict hand-written scanner for the common shape (plain keys, number
//!   lists, no escapes in the fields it reads), which validates the JSON
//!   grammar as it goes and reads each number once (about 5× faster than
//!   going through serde for a one-sample message);
//! * a serde reader (a `DeserializeSeed` over the same scratch) for
//!   everything else: named maps, non-numeric values, escapes, duplicate
//!   members, and anything the scanner does not accept, including invalid
//!   JSON, whose error it reports.
//!
//! Each channel value is read as JSON number text and converted with Rust's
//! float parser, so that:
//! * a string (`"NaN"`), `null`, `true`, an array or an object is
//!   `not_numeric`;
//! * a number too large for `f64` (`1e400`) becomes ±∞ and is `non_finite`
//!   (serde_json's own float parser would reject the whole message).
//!
//! Accepted samples are stored back to back in [`Scratch::values`]
//! (`channels` values each, in `channel_names` order); a rejected sample
//! leaves nothing there and only its [`SampleOutcome`] records why.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Why a sample was refused (`eeg_features_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A `channels` list with a different number of values than
    /// `channel_names`.
    ChannelCount,
    /// A named `channels` map without one of `channel_names`.
    MissingChannel,
    /// A channel value that is not a JSON number (or a sample that is not
    /// a list or map).
    NotNumeric,
    /// A number outside the `f64` range (JSON cannot spell NaN or ∞).
    NonFinite,
    /// The sample would open a stream beyond `max_streams`.
    TooManyStreams,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 5] = [
        Reason::ChannelCount,
        Reason::MissingChannel,
        Reason::NotNumeric,
        Reason::NonFinite,
        Reason::TooManyStreams,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ChannelCount => "channel_count",
            Reason::MissingChannel => "missing_channel",
            Reason::NotNumeric => "not_numeric",
            Reason::NonFinite => "non_finite",
            Reason::TooManyStreams => "too_many_streams",
        }
    }

    /// Index into [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What became of one sample of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOutcome {
    Accepted,
    Rejected(Reason),
}

/// Buffers reused across messages.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Accepted samples, back to back, `channels` values each.
    pub values: Vec<f64>,
    /// One outcome per sample, in message order.
    pub samples: Vec<SampleOutcome>,
    /// The message's `timestamps` list, if it had one.
    pub timestamps: Vec<Option<i64>>,
    /// Which channels a named map has provided so far.
    seen: Vec<bool>,
}

impl Scratch {
    fn clear(&mut self) {
        self.values.clear();
        self.samples.clear();
        self.timestamps.clear();
    }

    /// Samples accepted in the last parsed message.
    pub fn accepted(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| **s == SampleOutcome::Accepted)
            .count()
    }
}

/// What the parser needs to know about the configuration.
#[derive(Debug, Clone)]
pub struct Layout {
    channel_names: Vec<String>,
    /// The top-level member holding the stream key (`user_id`).
    key_member: String,
}

impl Layout {
    pub fn new(channel_names: Vec<String>, key_member: &str) -> Self {
        Layout {
            channel_names,
            key_member: key_member.to_string(),
        }
    }

    /// Channels per sample.
    pub fn channels(&self) -> usize {
        self.channel_names.len()
    }

    /// The index of channel `name`; `hint` (the position in the map) is
    /// tried first, since devices usually send channels in order.
    fn index_of(&self, name: &str, hint: usize) -> Option<usize> {
        if self.channel_names.get(hint).is_some_and(|n| n == name) {
            return Some(hint);
        }
        self.channel_names.iter().position(|n| n == name)
    }
}

/// `type` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `"raw"`, or no `type` at all.
    Raw,
    /// Anything else: not ours.
    Other,
}

/// Where the samples were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Neither `channels` nor `samples`.
    None,
    /// `channels`: one sample.
    One,
    /// `samples`: a list of samples.
    Many,
    /// Both `channels` and `samples`: ambiguous.
    Both,
    /// `samples` that is not a list.
    NotAList,
}

/// The top-level fields of one message; sample data is in the [`Scratch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub kind: MessageKind,
    /// The raw JSON text of the key member, if present.
    pub key: Option<&'a str>,
    /// `timestamp` when it is a number (rounded to an integer).
    pub timestamp: Option<i64>,
    /// Whether the message had a `timestamps` list.
    pub has_timestamps: bool,
    pub body: Body,
}

/// Parse one payload. `Err` means it is not JSON or not an object.
pub fn parse<'a>(
    payload: &'a [u8],
    layout: &Layout,
    scratch: &mut Scratch,
) -> Result<Header<'a>, serde_json::Error> {
    // Validate UTF-8 once for the whole payload: both readers then work on
    // a `str` and never check a piece again.
    let text = std::str::from_utf8(payload).map_err(<serde_json::Error as de::Error>::custom)?;
    scratch.clear();
    if let Some(header) = fast::parse(text, layout, scratch) {
        return Ok(header);
    }
    parse_serde(text, layout, scratch)
}

/// The serde reader alone.
fn parse_serde<'a>(
    text: &'a str,
    layout: &Layout,
    scratch: &mut Scratch,
) -> Result<Header<'a>, serde_json::Error> {
    scratch.clear();
    let mut de = serde_json::Deserializer::from_str(text);
    let header = MessageSeed { layout, scratch }.deserialize(&mut de)?;
    de.end()?;
    Ok(header)
}

// ---------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------

enum Num {
    Finite(f64),
    NonFinite,
    NotNumber,
}

/// A channel value from its raw JSON text (no surrounding whitespace).
fn number(text: &str) -> Num {
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Num::Finite(v),
            Ok(_) => Num::NonFinite,
            Err(_) => Num::NotNumber,
        },
        _ => Num::NotNumber,
    }
}

/// A timestamp from its raw JSON text: an integer, or a finite number
/// rounded to one; anything else is no timestamp.
fn timestamp(text: &str) -> Option<i64> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i);
    }
    match number(text) {
        Num::Finite(v) if v.abs() < 9.0e18 => Some(v.round() as i64),
        _ => None,
    }
}

fn is_raw_type(text: &str) -> bool {
    match text {
        "\"raw\"" | "null" => true,
        t if t.starts_with('"') && t.contains('\\') => {
            serde_json::from_str::<String>(t).is_ok_and(|s| s == "raw")
        }
        _ => false,
    }
}

/// An object key, borrowed unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------
// The message object
// ---------------------------------------------------------------------------

struct MessageSeed<'s> {
    layout: &'s Layout,
    scratch: &'s mut Scratch,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Header<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Header<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
        let mut header = Header {
            kind: MessageKind::Raw,
            key: None,
            timestamp: None,
            has_timestamps: false,
            body: Body::None,
        };
        let (mut one, mut many, mut not_list) = (false, false, false);
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "type" => {
                    let raw: &'de RawValue = map.next_value()?;
                    header.kind = if is_raw_type(raw.get()) {
                        MessageKind::Raw
                    } else {
                        MessageKind::Other
                    };
                }
                "timestamp" => {
                    let raw: &'de RawValue = map.next_value()?;
                    header.timestamp = timestamp(raw.get());
                }
                "timestamps" => {
                    self.scratch.timestamps.clear();
                    header.has_timestamps = map.next_value_seed(TimestampsSeed {
                        out: &mut self.scratch.timestamps,
                    })?;
                }
                "channels" => {
                    one = true;
                    map.next_value_seed(SampleSeed {
                        layout: self.layout,
                        scratch: &mut *self.scratch,
                    })?;
                }
                "samples" => {
                    many = true;
                    let is_list = map.next_value_seed(SamplesSeed {
                        layout: self.layout,
                        scratch: &mut *self.scratch,
                    })?;
                    not_list |= !is_list;
                }
                k if k == self.layout.key_member => {
                    let raw: &'de RawValue = map.next_value()?;
                    header.key = Some(raw.get());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        header.body = match (one, many) {
            (true, true) => Body::Both,
            (false, true) if not_list => Body::NotAList,
            (false, true) => Body::Many,
            (true, false) => Body::One,
            (false, false) => Body::None,
        };
        Ok(header)
    }
}

/// The rest of a list seed's visitor: any value that is not a list is
/// consumed and answered `false` (the caller then rejects the message).
macro_rules! not_a_list {
    ($de:lifetime) => {
        fn visit_map<A: MapAccess<$de>>(self, mut map: A) -> Result<bool, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(false)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    };
}

/// `timestamps: [...]`; returns whether it was a list.
struct TimestampsSeed<'s> {
    out: &'s mut Vec<Option<i64>>,
}

impl<'de> DeserializeSeed<'de> for TimestampsSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TimestampsSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of timestamps")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            self.out.push(timestamp(raw.get()));
        }
        Ok(true)
    }
    not_a_list!('de);
}

/// `samples: [sample, ...]`; returns whether it was a list.
struct SamplesSeed<'s> {
    layout: &'s Layout,
    scratch: &'s mut Scratch,
}

impl<'de> DeserializeSeed<'de> for SamplesSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SamplesSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of samples")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq
            .next_element_seed(SampleSeed {
                layout: self.layout,
                scratch: &mut *self.scratch,
            })?
            .is_some()
        {}
        Ok(true)
    }
    not_a_list!('de);
}

/// One sample: a list of values in channel order, or a map by channel
/// name. Records its outcome in the scratch.
struct SampleSeed<'s> {
    layout: &'s Layout,
    scratch: &'s mut Scratch,
}

impl SampleSeed<'_> {
    /// A sample that is neither a list nor a map.
    fn not_numeric(self) {
        self.scratch
            .samples
            .push(SampleOutcome::Rejected(Reason::NotNumeric));
    }
}

impl<'de> DeserializeSeed<'de> for SampleSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SampleSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list or map of channel values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let n = self.layout.channels();
        let values = &mut self.scratch.values;
        let start = values.len();
        let (mut count, mut not_numeric, mut non_finite) = (0usize, false, false);
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            count += 1;
            if count > n {
                continue; // rejected for its count; just consume the rest
            }
            values.push(match number(raw.get()) {
                Num::Finite(v) => v,
                Num::NonFinite => {
                    non_finite = true;
                    0.0
                }
                Num::NotNumber => {
                    not_numeric = true;
                    0.0
                }
            });
        }
        let outcome = if count != n {
            SampleOutcome::Rejected(Reason::ChannelCount)
        } else if not_numeric {
            SampleOutcome::Rejected(Reason::NotNumeric)
        } else if non_finite {
            SampleOutcome::Rejected(Reason::NonFinite)
        } else {
            SampleOutcome::Accepted
        };
        if outcome != SampleOutcome::Accepted {
            values.truncate(start);
        }
        self.scratch.samples.push(outcome);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let n = self.layout.channels();
        let Scratch {
            values,
            samples,
            seen,
            ..
        } = self.scratch;
        let start = values.len();
        values.resize(start + n, 0.0);
        seen.clear();
        seen.resize(n, false);
        let (mut position, mut not_numeric, mut non_finite) = (0usize, false, false);
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            // Members that are not configured channels (aux inputs, …)
            // are ignored.
            match self.layout.index_of(&name, position) {
                Some(c) => {
                    let raw: &'de RawValue = map.next_value()?;
                    values[start + c] = match number(raw.get()) {
                        Num::Finite(v) => v,
                        Num::NonFinite => {
                            non_finite = true;
                            0.0
                        }
                        Num::NotNumber => {
                            not_numeric = true;
                            0.0
                        }
                    };
                    seen[c] = true;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            position += 1;
        }
        let outcome = if seen.iter().any(|s| !s) {
            SampleOutcome::Rejected(Reason::MissingChannel)
        } else if not_numeric {
            SampleOutcome::Rejected(Reason::NotNumeric)
        } else if non_finite {
            SampleOutcome::Rejected(Reason::NonFinite)
        } else {
            SampleOutcome::Accepted
        };
        if outcome != SampleOutcome::Accepted {
            values.truncate(start);
        }
        samples.push(outcome);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_numeric();
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_numeric();
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_numeric();
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_numeric();
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_numeric();
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_numeric();
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The fast reader
// ---------------------------------------------------------------------------

mod fast {
    //! A strict scanner for the common message shape. It returns `None`
    //! (and the serde reader takes over) on anything it does not handle
    //! itself: an escape in a key or in a string it reads, a named map, a
    //! channel value that is not a number, `timestamps`, a duplicate member,
    //! a key that is not a string, number or null, deep nesting, or any
    //! JSON error. What it accepts is valid JSON, read exactly as the serde
    //! reader would.

    use super::{
        number, timestamp, Body, Header, Layout, MessageKind, Num, Reason, SampleOutcome, Scratch,
    };

    /// Nesting the scanner skips through before leaving it to serde.
    const MAX_DEPTH: u32 = 32;

    struct Cursor<'a> {
        text: &'a str,
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        fn ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn next(&mut self) -> Option<u8> {
            let c = self.peek()?;
            self.i += 1;
            Some(c)
        }

        fn eat(&mut self, c: u8) -> bool {
            if self.peek() == Some(c) {
                self.i += 1;
                true
            } else {
                false
            }
        }

        fn expect(&mut self, c: u8) -> Option<()> {
            self.eat(c).then_some(())
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                Some(())
            } else {
                None
            }
        }

        /// A string without escapes: its content.
        fn plain_str(&mut self) -> Option<&'a str> {
            self.expect(b'"')?;
            let start = self.i;
            loop {
                match self.next()? {
                    b'"' => return Some(&self.text[start..self.i - 1]),
                    b'\\' => return None,
                    c if c < 0x20 => return None,
                    _ => {}
                }
            }
        }

        /// Any valid string.
        fn skip_str(&mut self) -> Option<()> {
            self.expect(b'"')?;
            loop {
                match self.next()? {
                    b'"' => return Some(()),
                    b'\\' => match self.next()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                if !self.next()?.is_ascii_hexdigit() {
                                    return None;
                                }
                            }
                        }
                        _ => return None,
                    },
                    c if c < 0x20 => return None,
                    _ => {}
                }
            }
        }

        /// A number, by the JSON grammar: its text. (Local indices rather
        /// than `peek`: this loop runs for every channel value.)
        fn number(&mut self) -> Option<&'a str> {
            let b = self.b;
            let start = self.i;
            let mut i = start;
            let digits = |mut i: usize| {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                i
            };
            if b.get(i) == Some(&b'-') {
                i += 1;
            }
            match b.get(i) {
                Some(b'0') => i += 1,
                Some(b'1'..=b'9') => i = digits(i + 1),
                _ => return None,
            }
            if b.get(i) == Some(&b'.') {
                let end = digits(i + 1);
                if end == i + 1 {
                    return None;
                }
                i = end;
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                let end = digits(i);
                if end == i {
                    return None;
                }
                i = end;
            }
            self.i = i;
            Some(&self.text[start..i])
        }

        /// Any valid value.
        fn skip_value(&mut self, depth: u32) -> Option<()> {
            if depth > MAX_DEPTH {
                return None;
            }
            match self.peek()? {
                b'"' => self.skip_str(),
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                b'-' | b'0'..=b'9' => self.number().map(|_| ()),
                b'[' => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b']') {
                        return Some(());
                    }
                    loop {
                        self.ws();
                        self.skip_value(depth + 1)?;
                        self.ws();
                        match self.next()? {
                            b',' => {}
                            b']' => return Some(()),
                            _ => return None,
                        }
                    }
                }
                b'{' => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b'}') {
                        return Some(());
                    }
                    loop {
                        self.ws();
                        self.skip_str()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                        self.skip_value(depth + 1)?;
                        self.ws();
                        match self.next()? {
                            b',' => {}
                            b'}' => return Some(()),
                            _ => return None,
                        }
                    }
                }
                _ => None,
            }
        }

        /// One sample written as a list of numbers.
        fn sample(&mut self, layout: &Layout, scratch: &mut Scratch) -> Option<()> {
            self.expect(b'[')?;
            let n = layout.channels();
            let start = scratch.values.len();
            let (mut count, mut non_finite) = (0usize, false);
            self.ws();
            if !self.eat(b']') {
                loop {
                    self.ws();
                    let text = self.number()?;
                    count += 1;
                    if count <= n {
                        scratch.values.push(match number(text) {
                            Num::Finite(v) => v,
                            Num::NonFinite => {
                                non_finite = true;
                                0.0
                            }
                            Num::NotNumber => return None,
                        });
                    }
                    self.ws();
                    match self.next()? {
                        b',' => {}
                        b']' => break,
                        _ => return None,
                    }
                }
            }
            let outcome = if count != n {
                SampleOutcome::Rejected(Reason::ChannelCount)
            } else if non_finite {
                SampleOutcome::Rejected(Reason::NonFinite)
            } else {
                SampleOutcome::Accepted
            };
            if outcome != SampleOutcome::Accepted {
                scratch.values.truncate(start);
            }
            scratch.samples.push(outcome);
            Some(())
        }
    }

    pub(super) fn parse<'a>(
        text: &'a str,
        layout: &Layout,
        scratch: &mut Scratch,
    ) -> Option<Header<'a>> {
        let mut c = Cursor {
            text,
            b: text.as_bytes(),
            i: 0,
        };
        let mut header = Header {
            kind: MessageKind::Raw,
            key: None,
            timestamp: None,
            has_timestamps: false,
            body: Body::None,
        };
        // Members seen: type, timestamp, channels, samples, key.
        let mut seen = [false; 5];
        let mut first =
            |i: usize| -> Option<()> { (!std::mem::replace(&mut seen[i], true)).then_some(()) };
        c.ws();
        c.expect(b'{')?;
        c.ws();
        if !c.eat(b'}') {
            loop {
                c.ws();
                let key = c.plain_str()?;
                c.ws();
                c.expect(b':')?;
                c.ws();
                match key {
                    "type" => {
                        first(0)?;
                        header.kind = match c.peek()? {
                            b'"' => {
                                if c.plain_str()? == "raw" {
                                    MessageKind::Raw
                                } else {
                                    MessageKind::Other
                                }
                            }
                            b'n' => {
                                c.literal(b"null")?;
                                MessageKind::Raw
                            }
                            _ => {
                                c.skip_value(0)?;
                                MessageKind::Other
                            }
                        };
                    }
                    "timestamp" => {
                        first(1)?;
                        header.timestamp = match c.peek()? {
                            b'-' | b'0'..=b'9' => timestamp(c.number()?),
                            _ => {
                                c.skip_value(0)?;
                                None
                            }
                        };
                    }
                    "channels" => {
                        first(2)?;
                        c.sample(layout, scratch)?;
                    }
                    "samples" => {
                        first(3)?;
                        c.expect(b'[')?;
                        c.ws();
                        if !c.eat(b']') {
                            loop {
                                c.ws();
                                c.sample(layout, scratch)?;
                                c.ws();
                                match c.next()? {
                                    b',' => {}
                                    b']' => break,
                                    _ => return None,
                                }
                            }
                        }
                    }
                    "timestamps" => return None,
                    k if k == layout.key_member => {
                        first(4)?;
                        let start = c.i;
                        match c.peek()? {
                            b'"' => c.plain_str().map(|_| ())?,
                            b'n' => c.literal(b"null")?,
                            b'-' | b'0'..=b'9' => c.number().map(|_| ())?,
                            _ => return None,
                        }
                        header.key = Some(&text[start..c.i]);
                    }
                    _ => c.skip_value(0)?,
                }
                c.ws();
                match c.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        c.ws();
        if c.i != c.b.len() {
            return None;
        }
        header.body = match (seen[2], seen[3]) {
            (true, true) => Body::Both,
            (true, false) => Body::One,
            (false, true) => Body::Many,
            (false, false) => Body::None,
        };
        Some(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(vec!["F3".into(), "F4".into()], "user_id")
    }

    fn outcomes(json: &str) -> (Vec<SampleOutcome>, Vec<f64>, Body) {
        let mut s = Scratch::default();
        let h = parse(json.as_bytes(), &layout(), &mut s).unwrap();
        (s.samples.clone(), s.values.clone(), h.body)
    }

    use SampleOutcome::{Accepted, Rejected};

    #[test]
    fn one_sample_list_and_map() {
        let mut s = Scratch::default();
        let h = parse(
            br#"{"type":"raw","user_id":"u1","timestamp":1000,"channels":[1.5,-2]}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert_eq!(h.kind, MessageKind::Raw);
        assert_eq!(h.key, Some("\"u1\""));
        assert_eq!(h.timestamp, Some(1000));
        assert_eq!(h.body, Body::One);
        assert_eq!(s.values, vec![1.5, -2.0]);
        assert_eq!(
            outcomes(r#"{"channels":{"F4":2,"AUX":"x","F3":1}}"#),
            (vec![Accepted], vec![1.0, 2.0], Body::One)
        );
    }

    #[test]
    fn rejections() {
        let r = |json: &str| outcomes(json).0;
        assert_eq!(
            r(r#"{"channels":[1]}"#),
            vec![Rejected(Reason::ChannelCount)]
        );
        assert_eq!(
            r(r#"{"channels":[1,2,3]}"#),
            vec![Rejected(Reason::ChannelCount)]
        );
        assert_eq!(
            r(r#"{"channels":{"F3":1}}"#),
            vec![Rejected(Reason::MissingChannel)]
        );
        assert_eq!(
            r(r#"{"channels":[1,"NaN"]}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":[1,null]}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":[1,[2]]}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":{"F3":1,"F4":true}}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":"abc"}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":[1,1e400]}"#),
            vec![Rejected(Reason::NonFinite)]
        );
        assert_eq!(
            r(r#"{"channels":{"F3":-1e999,"F4":0}}"#),
            vec![Rejected(Reason::NonFinite)]
        );
    }

    #[test]
    fn batches_reject_single_samples() {
        let (o, v, body) = outcomes(r#"{"samples":[[1,2],[3],[5,6],{"F3":7,"F4":8}]}"#);
        assert_eq!(body, Body::Many);
        assert_eq!(
            o,
            vec![Accepted, Rejected(Reason::ChannelCount), Accepted, Accepted]
        );
        assert_eq!(v, vec![1.0, 2.0, 5.0, 6.0, 7.0, 8.0]);
        let mut s = Scratch::default();
        let h = parse(
            br#"{"samples":[[1,2],[3,4]],"timestamps":[10,"x",30],"timestamp":9.6}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert!(h.has_timestamps);
        assert_eq!(s.timestamps, vec![Some(10), None, Some(30)]);
        assert_eq!(h.timestamp, Some(10));
    }

    #[test]
    fn message_level_shapes() {
        assert_eq!(outcomes(r#"{"type":"raw"}"#).2, Body::None);
        assert_eq!(outcomes(r#"{"samples":5}"#).2, Body::NotAList);
        // Every other non-list form is consumed and refused the same way.
        for other in [r#"{"F3":1}"#, r#""x""#, "true", "-3", "2.5", "null"] {
            let json = format!(r#"{{"samples":{other},"user_id":"u"}}"#);
            assert_eq!(outcomes(&json).2, Body::NotAList, "{json}");
            let mut s = Scratch::default();
            let json = format!(r#"{{"samples":[[1,2]],"timestamps":{other},"user_id":"u"}}"#);
            let h = parse(json.as_bytes(), &layout(), &mut s).unwrap();
            assert!(!h.has_timestamps, "{json}");
            assert_eq!(h.body, Body::Many, "{json}");
        }
        assert_eq!(outcomes(r#"{"samples":[],"channels":[1,2]}"#).2, Body::Both);
        let mut s = Scratch::default();
        let h = parse(
            br#"{"type":"features","channels":[1,2]}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert_eq!(h.kind, MessageKind::Other);
        let h = parse(
            br#"{"type":"r\u0061w","channels":[1,2]}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert_eq!(h.kind, MessageKind::Raw);
        assert!(parse(b"not json", &layout(), &mut s).is_err());
        assert!(parse(b"[1,2]", &layout(), &mut s).is_err());
        assert!(parse(br#"{"channels":[1,2]} x"#, &layout(), &mut s).is_err());
    }

    /// What the fast reader accepts, the serde reader reads the same way.
    fn agree(text: &str) {
        let layout = layout();
        let (mut a, mut b) = (Scratch::default(), Scratch::default());
        let fast = fast::parse(text, &layout, &mut a);
        let slow = parse_serde(text, &layout, &mut b);
        if let Some(h) = fast {
            let slow = slow.unwrap_or_else(|e| panic!("fast accepted invalid JSON {text:?}: {e}"));
            assert_eq!(h, slow, "{text:?}");
            assert_eq!((a.samples, a.values), (b.samples, b.values), "{text:?}");
        }
    }

    #[test]
    fn fast_reader_handles_the_common_shape() {
        let layout = layout();
        let mut s = Scratch::default();
        for text in [
            r#"{"type":"raw","user_id":"u17","timestamp":1704844800000,"channels":[23.044960818746485,-4.4825889951962585]}"#,
            r#" { "channels" : [ 1 , 2e3 ] , "user_id" : 17 , "x" : {"a":[true,false,null,"\u00e9\n"]} } "#,
            r#"{"samples":[[1,2],[3],[1e400,0]],"user_id":null,"type":"raw"}"#,
            r#"{"type":"prediction","data":{"v":[1,2,{"w":-0.5E-3}]}}"#,
        ] {
            assert!(fast::parse(text, &layout, &mut s).is_some(), "{text}");
            agree(text);
        }
        for text in [
            r#"{"channels":{"F3":1,"F4":2}}"#,
            r#"{"channels":[1,"NaN"]}"#,
            r#"{"channels":[1,2],"timestamps":[1]}"#,
            r#"{"user_id":"a\"b","channels":[1,2]}"#,
            r#"{"channels":[1,2],"channels":[3,4]}"#,
            r#"{"channels":[01,2]}"#,
            r#"{"channels":[1.,2]}"#,
            r#"{"channels":[1,2]"#,
            r#"{"channels":[1,2]}}"#,
            r#"{"a":tru,"channels":[1,2]}"#,
        ] {
            assert!(fast::parse(text, &layout, &mut s).is_none(), "{text}");
            agree(text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any one-byte edit of valid messages: the fast reader never
        /// accepts what serde refuses, and agrees with it otherwise.
        #[test]
        fn fast_and_serde_readers_agree(
            which in 0usize..4,
            pos in 0usize..200,
            byte in proptest::sample::select(b" \t\"\\,:[]{}-+.eE0123456789nultrfasxF3".to_vec()),
            op in 0u8..3,
        ) {
            let base = [
                r#"{"type":"raw","user_id":"u1","timestamp":1704844800000,"channels":[23.04,-4.48e-2]}"#,
                r#"{"samples":[[1,2],[3,4]],"user_id":5,"meta":{"k":[null,true]}}"#,
                r#"{"type":"event","user_id":"x","channels":{"F3":1,"F4":2}}"#,
                r#"{"channels":[0,-0.0],"timestamp":12.5,"user_id":null}"#,
            ][which];
            let mut bytes = base.as_bytes().to_vec();
            let pos = pos % (bytes.len() + 1);
            match op {
                0 if pos < bytes.len() => bytes[pos] = byte,
                1 => bytes.insert(pos, byte),
                _ if pos < bytes.len() => { bytes.remove(pos); }
                _ => {}
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agree(text);
            }
        }
    }
}
