//! What a raw message holds once read: its header, its samples' outcomes
//! and values, and the scalars both readers convert the same way.

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
    /// The message's stream key is longer than
    /// [`MAX_KEY_BYTES`](crate::key::MAX_KEY_BYTES) bytes.
    KeyTooLong,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 5] = [
        Reason::ChannelCount,
        Reason::MissingChannel,
        Reason::NotNumeric,
        Reason::NonFinite,
        Reason::KeyTooLong,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ChannelCount => "channel_count",
            Reason::MissingChannel => "missing_channel",
            Reason::NotNumeric => "not_numeric",
            Reason::NonFinite => "non_finite",
            Reason::KeyTooLong => "key_too_long",
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
    pub(crate) seen: Vec<bool>,
}

impl Scratch {
    pub(crate) fn clear(&mut self) {
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
    pub(crate) key_member: String,
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
    pub(crate) fn index_of(&self, name: &str, hint: usize) -> Option<usize> {
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

pub(crate) enum Num {
    Finite(f64),
    NonFinite,
    NotNumber,
}

/// A channel value from its raw JSON text (no surrounding whitespace).
pub(crate) fn number(text: &str) -> Num {
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
pub(crate) fn timestamp(text: &str) -> Option<i64> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i);
    }
    match number(text) {
        Num::Finite(v) if v.abs() < 9.0e18 => Some(v.round() as i64),
        _ => None,
    }
}

pub(crate) fn is_raw_type(text: &str) -> bool {
    match text {
        "\"raw\"" | "null" => true,
        t if t.starts_with('"') && t.contains('\\') => {
            serde_json::from_str::<String>(t).is_ok_and(|s| s == "raw")
        }
        _ => false,
    }
}
