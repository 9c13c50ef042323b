//! The serde reader of raw messages: a `DeserializeSeed` that writes the
//! samples straight into the [`Scratch`]. It reads every shape the format
//! allows (named channel maps, escapes, `timestamps`, duplicate members) and
//! reports invalid JSON with serde_json's message.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

use crate::sample::{
    is_raw_type, number, timestamp, Body, Header, Layout, MessageKind, Num, Reason, SampleOutcome,
    Scratch,
};

/// Read `text` with serde.
pub(crate) fn parse<'a>(
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
