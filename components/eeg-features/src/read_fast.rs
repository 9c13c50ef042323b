//! The fast reader of raw messages, for the common shape: plain keys and
//! number lists. The kit's JSON scanner validates the whole payload and
//! finds the members in one pass; the sample lists are then read number by
//! number. It returns `None` (and the serde reader takes over) on anything
//! it does not handle itself: a named channel map, a channel value that is
//! not a number, `timestamps`, a duplicate member, an escaped key or type,
//! a key that is not a string, number or null, or invalid JSON. What it
//! accepts it reads exactly as the serde reader would.

use fednode_kit::json::{self, Members, Shape};

use crate::sample::{
    number, timestamp, Body, Header, Layout, MessageKind, Num, Reason, SampleOutcome, Scratch,
};

/// The members read, in this order; the last is the layout's key member.
const TYPE: usize = 0;
const TIMESTAMP: usize = 1;
const CHANNELS: usize = 2;
const SAMPLES: usize = 3;
const TIMESTAMPS: usize = 4;
const KEY: usize = 5;

/// Read `text` if it has the common shape.
pub(crate) fn parse<'a>(
    text: &'a str,
    layout: &Layout,
    scratch: &mut Scratch,
) -> Option<Header<'a>> {
    let keys = [
        "type",
        "timestamp",
        "channels",
        "samples",
        "timestamps",
        layout.key_member.as_str(),
    ];
    let mut found = Members::new();
    if json::scan(text, &keys, &mut found) != Ok(Shape::Object)
        || found.duplicate
        || found.undecodable_key
        || found.values[TIMESTAMPS].is_some()
    {
        return None;
    }
    let value = |i: usize| found.values[i].map(|span| (span.raw(text), span.escaped));

    let kind = match value(TYPE) {
        None | Some(("null", _)) => MessageKind::Raw,
        Some((_, true)) => return None,
        Some(("\"raw\"", false)) => MessageKind::Raw,
        Some(_) => MessageKind::Other,
    };
    let timestamp = value(TIMESTAMP).and_then(|(raw, _)| {
        raw.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            .then(|| timestamp(raw))
            .flatten()
    });
    let key = match value(KEY) {
        None => None,
        Some((_, true)) => return None,
        Some((raw, false))
            if raw.starts_with(['"', 'n', '-'])
                || raw.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            Some(raw)
        }
        Some(_) => return None,
    };
    if let Some((raw, _)) = value(CHANNELS) {
        sample(raw, layout, scratch)?;
    }
    if let Some((raw, _)) = value(SAMPLES) {
        if !raw.starts_with('[') {
            return None;
        }
        for one in json::elements(raw) {
            sample(one, layout, scratch)?;
        }
    }
    let body = match (value(CHANNELS).is_some(), value(SAMPLES).is_some()) {
        (true, true) => Body::Both,
        (true, false) => Body::One,
        (false, true) => Body::Many,
        (false, false) => Body::None,
    };
    Some(Header {
        kind,
        key,
        timestamp,
        has_timestamps: false,
        body,
    })
}

/// One sample written as a list of numbers.
fn sample(raw: &str, layout: &Layout, scratch: &mut Scratch) -> Option<()> {
    if !raw.starts_with('[') {
        return None;
    }
    let n = layout.channels();
    let start = scratch.values.len();
    let (mut count, mut non_finite) = (0usize, false);
    for text in json::numbers(raw) {
        let text = text?;
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
