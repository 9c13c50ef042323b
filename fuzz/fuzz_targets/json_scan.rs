//! The kit's JSON scanner (`fednode_kit::json`) against serde_json, on
//! arbitrary bytes (read as UTF-8, invalid sequences replaced).
//!
//! Mirrors and extends the unit tests of `components/kit/src/json/`:
//! - `scan` accepts exactly what `serde_json::from_str::<IgnoredAny>`
//!   accepts, and its `Shape` is the top-level value's;
//! - for the keys asked for (`type`, `id`, `payload` and the first other
//!   key of the object), each value found is the raw text serde_json sees
//!   for the first member of that name, `duplicate` says whether one of
//!   them appears twice, and `undecodable_key` is set exactly when a key of
//!   the top-level object does not decode to text;
//! - `Span::escaped` and `Span::string_text` agree with serde_json's
//!   reading of the string; `small_integer` of a value agrees with
//!   serde_json's `i64` and reads every integer of up to 18 digits;
//! - `elements` and `numbers` of an array give serde_json's elements;
//! - `ValuePath::find("$.<key>")` gives the same value, and fails exactly
//!   when the text is not JSON.
#![no_main]

use fednode_kit::json::{self, Members, Shape, ValuePath};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;
use std::sync::OnceLock;

/// What serde_json sees at the top level: an object's members in order
/// (duplicates kept), an array's elements, or anything else.
enum Top<'a> {
    Object(Vec<(String, &'a RawValue)>),
    Array(Vec<&'a RawValue>),
    Scalar,
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Top::Object(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(Top::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Top<'de>, E> {
                Ok(Top::Scalar)
            }
        }
        d.deserialize_any(V)
    }
}

const FIXED: [&str; 3] = ["type", "id", "payload"];

fn paths() -> &'static [ValuePath; 3] {
    static PATHS: OnceLock<[ValuePath; 3]> = OnceLock::new();
    PATHS.get_or_init(|| FIXED.map(|k| ValuePath::parse(&format!("$.{k}")).unwrap()))
}

/// `-?[0-9]{1,18}`
fn is_small_integer_token(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The checks on one value's raw text (valid JSON, no surrounding space).
fn check_value(raw: &str) {
    if let Some(n) = json::small_integer(raw) {
        // serde_json reads `-0` as the float -0.0, not as an integer.
        let theirs = serde_json::from_str::<i64>(raw)
            .ok()
            .or_else(|| (serde_json::from_str::<f64>(raw).ok() == Some(0.0)).then_some(0));
        assert_eq!(theirs, Some(n), "small_integer({raw:?})");
    } else {
        assert!(
            !is_small_integer_token(raw),
            "small_integer({raw:?}) = None"
        );
    }
    if raw.starts_with('[') {
        check_array(raw);
    }
}

/// `elements` and `numbers` of an array's raw text.
fn check_array(raw: &str) {
    let items: Vec<&RawValue> = serde_json::from_str(raw).expect("a valid array");
    let ours: Vec<&str> = json::elements(raw).collect();
    let theirs: Vec<&str> = items.iter().map(|r| r.get()).collect();
    assert_eq!(ours, theirs, "elements({raw:?})");
    let mut numbers = json::numbers(raw);
    for item in &theirs {
        let is_number = item.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        match numbers.next() {
            Some(Some(n)) => {
                assert!(is_number, "numbers({raw:?}) took {item:?} for {n:?}");
                assert_eq!(n, *item, "numbers({raw:?})");
            }
            Some(None) => {
                assert!(!is_number, "numbers({raw:?}) refused {item:?}");
                return;
            }
            None => panic!("numbers({raw:?}) ended before {item:?}"),
        }
    }
    assert_eq!(numbers.next(), None, "numbers({raw:?}) went on");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let valid = serde_json::from_str::<IgnoredAny>(text).is_ok();
    let top = serde_json::from_str::<Top<'_>>(text);

    // The fourth key: the first member name of the object that is not
    // one of the fixed ones.
    let other = match &top {
        Ok(Top::Object(members)) => members
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| !FIXED.contains(k))
            .unwrap_or("\u{1}")
            .to_string(),
        _ => "\u{1}".to_string(),
    };
    let keys = [FIXED[0], FIXED[1], FIXED[2], other.as_str()];
    let mut members = Members::new();
    let scanned = json::scan(text, &keys, &mut members);
    assert_eq!(scanned.is_ok(), valid, "scan and serde_json disagree");

    for (i, path) in paths().iter().enumerate() {
        let found = path.find(text);
        assert_eq!(found.is_ok(), valid, "ValuePath::find({})", FIXED[i]);
        if let Ok(found) = found {
            assert_eq!(
                found.as_deref(),
                members.values[i]
                    .filter(|_| scanned == Ok(Shape::Object))
                    .map(|s| s.raw(text)),
                "ValuePath::find({}) and scan differ",
                FIXED[i]
            );
        }
    }

    let Ok(shape) = scanned else { return };
    let Ok(top) = top else {
        // serde_json skips what it cannot read as a value: a number out of
        // range at the top, or a key that does not decode.
        assert!(
            shape == Shape::Scalar || members.undecodable_key,
            "serde_json cannot read {shape:?} (members {members:?})"
        );
        return;
    };
    match top {
        Top::Scalar => {
            assert_eq!(shape, Shape::Scalar);
            assert_eq!(members, Members::new());
            check_value(text.trim_matches([' ', '\t', '\n', '\r']));
        }
        Top::Array(items) => {
            assert_eq!(shape, Shape::Array);
            assert_eq!(members, Members::new());
            let raw = text.trim_matches([' ', '\t', '\n', '\r']);
            assert_eq!(json::elements(raw).count(), items.len(), "elements");
            check_array(raw);
        }
        Top::Object(entries) => {
            assert_eq!(shape, Shape::Object);
            assert!(!members.undecodable_key, "every key decodes");
            let duplicate = keys
                .iter()
                .any(|k| entries.iter().filter(|(name, _)| name == k).count() > 1);
            assert_eq!(members.duplicate, duplicate, "duplicate");
            for (i, key) in keys.iter().enumerate() {
                let first = entries.iter().find(|(name, _)| name == key);
                let span = members.values[i];
                assert_eq!(
                    span.map(|s| s.raw(text)),
                    first.map(|(_, raw)| raw.get()),
                    "member {key:?}"
                );
                let Some(span) = span else { continue };
                let raw = span.raw(text);
                if raw.starts_with('"') {
                    assert_eq!(span.escaped, raw.contains('\\'), "escaped of {raw:?}");
                    assert_eq!(
                        span.string_text(text).map(|s| s.into_owned()),
                        serde_json::from_str::<String>(raw).ok(),
                        "string_text of {raw:?}"
                    );
                } else {
                    assert!(!span.escaped, "escaped of {raw:?}");
                }
                check_value(raw);
            }
        }
    }
});
