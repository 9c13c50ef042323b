//! [`scan`]: one pass that validates a JSON text and notes where the
//! members asked for lie in its top-level object.

use super::lexer::Cursor;
use super::span::{Invalid, Shape, Span};

/// The members of the top-level object whose keys were asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Members<const N: usize> {
    /// `values[i]` is the value of member `keys[i]`, if there was one (the
    /// first one when a key appeared twice).
    pub values: [Option<Span>; N],
    /// One of the keys asked for appeared twice.
    pub duplicate: bool,
    /// A key (any key of the top-level object) holds escapes that do not
    /// decode to text, such as a lone surrogate `\ud800`: serde_json accepts
    /// it when skipping a value but not as a field name.
    pub undecodable_key: bool,
}

impl<const N: usize> Default for Members<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Members<N> {
    pub fn new() -> Self {
        Members {
            values: [None; N],
            duplicate: false,
            undecodable_key: false,
        }
    }

    /// A key of the top-level object has been read (`key`: its string
    /// token): which of `keys` it is, unless that one has been seen before.
    #[inline(always)]
    fn note_key(&mut self, text: &str, key: Span, keys: &[&str; N]) -> Option<usize> {
        let i = if key.escaped {
            self.find_escaped_key(text, key, keys)?
        } else {
            let key = &text.as_bytes()[key.start + 1..key.end - 1];
            keys.iter().position(|k| k.as_bytes() == key)?
        };
        if self.values[i].is_some() {
            self.duplicate = true;
            return None;
        }
        Some(i)
    }

    #[cold]
    fn find_escaped_key(&mut self, text: &str, key: Span, keys: &[&str; N]) -> Option<usize> {
        match key.string_text(text) {
            Some(key) => keys.iter().position(|k| *k == key),
            None => {
                self.undecodable_key = true;
                None
            }
        }
    }
}

/// Validate `text` as one JSON value with optional surrounding whitespace,
/// and, if it is an object, find the values of its members named in `keys`
/// (compared with the keys' unescaped text): they are written to `members`,
/// which must come [new](Members::new). (An out parameter: returning it
/// copied it twice, which showed in profiles.)
///
/// Iterative: a value that opens a container is followed by the container's
/// first value (or key and value), and every finished value by a `,`, a
/// closing bracket, or, at the top, the end of the input. The cursor's
/// methods are inlined into this one loop, so the position stays in a
/// register.
#[inline]
pub fn scan<const N: usize>(
    text: &str,
    keys: &[&str; N],
    members: &mut Members<N>,
) -> Result<Shape, Invalid> {
    let mut input = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut open = Nesting::default();
    let mut innermost: Option<Container> = None;
    // The index in `keys` of the top-level member whose value is being read,
    // and where that value starts.
    let mut member: Option<usize> = None;
    let mut member_start = 0;
    let top = input.next_token();
    loop {
        // A value is due.
        let byte = input.next_token().ok_or(Invalid)?;
        if open.depth == 1 {
            member_start = input.pos;
        }
        // Whether the value is a string that holds escapes.
        let mut escaped = false;
        match byte {
            b'{' => {
                input.pos += 1;
                if input.next_token() == Some(b'}') {
                    input.pos += 1;
                } else {
                    open.push(Container::Object);
                    innermost = Some(Container::Object);
                    let key = input.key()?;
                    if open.depth == 1 {
                        member = members.note_key(text, key, keys);
                    }
                    continue;
                }
            }
            b'[' => {
                input.pos += 1;
                if input.next_token() == Some(b']') {
                    input.pos += 1;
                } else {
                    open.push(Container::Array);
                    innermost = Some(Container::Array);
                    continue;
                }
            }
            b'"' => {
                input.pos += 1;
                escaped = input.string()?;
            }
            b'-' | b'0'..=b'9' => input.number()?,
            b't' => input.literal(b"true")?,
            b'f' => input.literal(b"false")?,
            b'n' => input.literal(b"null")?,
            _ => return Err(Invalid),
        }
        // A value has ended; it may end its containers too.
        loop {
            if open.depth == 1 {
                // A value of the top-level object (or array) has ended.
                if let Some(i) = member.take() {
                    members.values[i] = Some(Span {
                        start: member_start,
                        end: input.pos,
                        escaped,
                    });
                }
            }
            let Some(container) = innermost else {
                return match input.next_token() {
                    None => Ok(match top {
                        Some(b'{') => Shape::Object,
                        Some(b'[') => Shape::Array,
                        _ => Shape::Scalar,
                    }),
                    Some(_) => Err(Invalid),
                };
            };
            match (input.next_token(), container) {
                (Some(b','), Container::Array) => {
                    input.pos += 1;
                    break;
                }
                (Some(b','), Container::Object) => {
                    input.pos += 1;
                    let key = input.key()?;
                    if open.depth == 1 {
                        member = members.note_key(text, key, keys);
                    }
                    break;
                }
                (Some(b']'), Container::Array) | (Some(b'}'), Container::Object) => {
                    input.pos += 1;
                    innermost = open.pop();
                    // The value that ended is the container.
                    escaped = false;
                }
                _ => return Err(Invalid),
            }
        }
    }
}

/// The kind of an open container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Object,
}

/// The open containers, outermost first, one bit each (set: an object).
/// The first 64 levels live in `low`, deeper ones in `high`, which does not
/// allocate until a frame is nested more than 64 deep.
#[derive(Default)]
struct Nesting {
    depth: usize,
    low: u64,
    high: Vec<u64>,
}

impl Nesting {
    #[inline(always)]
    fn push(&mut self, container: Container) {
        let bit = u64::from(container == Container::Object);
        if self.depth < 64 {
            self.low = self.low & !(1 << self.depth) | bit << self.depth;
        } else {
            set_deep_bit(&mut self.high, self.depth - 64, bit);
        }
        self.depth += 1;
    }

    /// Close the innermost container (its bit is overwritten by the next
    /// push); returns the one that is innermost now.
    #[inline(always)]
    fn pop(&mut self) -> Option<Container> {
        self.depth -= 1;
        let level = self.depth.checked_sub(1)?;
        let bits = match level.checked_sub(64) {
            None => self.low >> level,
            Some(deep) => self.high[deep / 64] >> (deep % 64),
        };
        Some(if bits & 1 == 1 {
            Container::Object
        } else {
            Container::Array
        })
    }
}

/// [`Nesting::push`] beyond 64 levels (apart from the rest, so that the
/// depth and the first 64 bits can stay in registers).
#[cold]
#[inline(never)]
fn set_deep_bit(high: &mut Vec<u64>, deep: usize, bit: u64) {
    let (i, shift) = (deep / 64, deep % 64);
    if i == high.len() {
        high.push(0);
    }
    high[i] = high[i] & !(1 << shift) | bit << shift;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;
    use std::borrow::Cow;

    const KEYS: [&str; 3] = ["type", "id", "payload"];

    fn shape(text: &str) -> Result<Shape, Invalid> {
        scan(text, &KEYS, &mut Members::new())
    }

    fn valid(text: &str) -> bool {
        let ours = shape(text).is_ok();
        let serde = serde_json::from_str::<IgnoredAny>(text).is_ok();
        assert_eq!(ours, serde, "scan and serde_json disagree on {text:?}");
        ours
    }

    fn members(text: &str) -> Members<3> {
        let mut members = Members::new();
        assert_eq!(
            scan(text, &KEYS, &mut members),
            Ok(Shape::Object),
            "{text:?}"
        );
        members
    }

    /// The text of each member asked for.
    fn values(text: &str) -> [Option<&str>; 3] {
        members(text)
            .values
            .map(|span| span.map(|s| &text[s.start..s.end]))
    }

    #[test]
    fn literals() {
        for text in ["true", "false", "null", " null ", "[true,false,null]"] {
            assert!(valid(text), "{text}");
        }
        for text in ["tru", "nul", "True", "NULL", "truex", "nulll", "t", "[tru]"] {
            assert!(!valid(text), "{text}");
        }
    }

    #[test]
    fn numbers() {
        for text in [
            "0",
            "-0",
            "7",
            "-12",
            "1.5",
            "-0.0",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "2.5E-3",
            "123456789012345678901234567890",
            "1e400",
            "-1e-400",
            "0.000000000000000000000000000001",
        ] {
            assert!(valid(text), "{text}");
        }
        for text in [
            "01",
            "-01",
            "00",
            "+1",
            "-",
            ".5",
            "1.",
            "1.e5",
            "1e",
            "1e+",
            "1E-",
            "--1",
            "0x10",
            "1.5.5",
            "NaN",
            "Infinity",
            "-Infinity",
            "1 2",
            "[01]",
            "[1.]",
        ] {
            assert!(!valid(text), "{text}");
        }
    }

    #[test]
    fn strings_and_escapes() {
        for text in [
            r#""""#,
            r#""abc""#,
            r#""é ß 日本 🎉""#,
            r#""\" \\ \/ \b \f \n \r \t""#,
            r#""\u0041\u00e9\uABCD\uabcd""#,
            // Surrogates are not checked when merely skipping.
            r#""\ud800""#,
            r#""\udc00\ud800x""#,
            r#""a string longer than eight bytes with \" in the middle and at the end\"""#,
            "\"\u{7f}\"",
        ] {
            assert!(valid(text), "{text}");
        }
        for text in [
            r#"""#,
            r#""abc"#,
            r#""\""#,
            r#""\a""#,
            r#""\x41""#,
            r#""\'""#,
            r#""\u41""#,
            r#""\u004g""#,
            r#""\U0041""#,
            r#""\u""#,
            "'single'",
        ] {
            assert!(!valid(text), "{text}");
        }
    }

    #[test]
    fn control_characters_are_refused_in_strings_at_every_offset() {
        for c in (0u8..0x20).map(char::from) {
            for offset in 0..20 {
                let text = format!("\"{}{c}{}\"", "a".repeat(offset), "b".repeat(offset));
                assert!(!valid(&text), "{text:?}");
            }
        }
        // DEL and everything above are fine.
        assert!(valid("\"\u{7f}\u{80}\u{ff}\""));
    }

    #[test]
    fn whitespace() {
        for text in [
            " 1",
            "1 ",
            "\t\n\r 1 \t\n\r",
            "[ 1 , 2 ]",
            "{ \"a\" : 1 , \"b\" : [ ] }",
        ] {
            assert!(valid(text), "{text:?}");
        }
        // Form feed, vertical tab and non-ASCII spaces are not JSON whitespace.
        for text in [
            "\x0c1",
            "1\x0c",
            "\x0b1",
            "\u{a0}1",
            "1\u{2028}",
            "[1,\x0c2]",
        ] {
            assert!(!valid(text), "{text:?}");
        }
        for text in ["", " ", "\n"] {
            assert!(!valid(text), "{text:?}");
        }
    }

    #[test]
    fn structure() {
        for text in [
            "[]",
            "{}",
            "[[]]",
            "[{}]",
            r#"{"a":{}}"#,
            r#"{"a":[1,{"b":null}],"c":"d"}"#,
            r#"[1,"2",[3],{"4":4}]"#,
        ] {
            assert!(valid(text), "{text}");
        }
        for text in [
            "[",
            "]",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{,}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{1:1}"#,
            r#"{a:1}"#,
            "[1]]",
            "{}}",
            "[}",
            "{]",
            "[1]x",
            "{} {}",
            r#"{"a":1"#,
            "[1,",
        ] {
            assert!(!valid(text), "{text}");
        }
    }

    /// serde_json's `IgnoredAny` (the reference) has no nesting limit: it
    /// skips values with a stack on the heap. Its `Value` stops at 127 open
    /// containers, but that limit only bites the serde path's `replay` member,
    /// which `Envelope::decode_json` leaves to serde_json. So the scanner has
    /// no limit either, and must not recurse.
    #[test]
    fn depth_is_unlimited_like_serde_json_ignored_any() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<serde_json::Value>(&nested(127)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(128)).is_err());
        for depth in [1, 63, 64, 65, 127, 128, 129, 200, 100_000] {
            assert!(valid(&nested(depth)), "depth {depth}");
            assert!(!valid(&nested(depth)[1..]), "depth {depth} unbalanced");
        }
        // Objects and arrays alternating, across the 64-level word boundary.
        let deep = format!("{}1{}", r#"{"a":["#.repeat(100), "]}".repeat(100));
        assert!(valid(&deep));
        let wrong = format!("{}1{}", r#"{"a":["#.repeat(100), "}]".repeat(100));
        assert!(!valid(&wrong));
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(" [1] "), Ok(Shape::Array));
        assert_eq!(shape("\"x\""), Ok(Shape::Scalar));
        assert_eq!(shape("12"), Ok(Shape::Scalar));
        assert_eq!(shape("null"), Ok(Shape::Scalar));
        assert_eq!(shape("[1"), Err(Invalid));
        assert_eq!(values("{}"), [None, None, None]);
    }

    #[test]
    fn finds_the_members_asked_for() {
        let text = r#" { "type" : "data", "x": {"id": 1}, "id":null,"payload" : {"id":[1, 2]} } "#;
        assert_eq!(
            values(text),
            [Some(r#""data""#), Some("null"), Some(r#"{"id":[1, 2]}"#)]
        );
        // Nested keys of the same name are not members of the top level.
        assert_eq!(values(r#"{"a":{"type":1},"b":[{"id":2}]}"#), [None; 3]);
        // Every kind of value, and the last member before the brace.
        assert_eq!(
            values(r#"{"payload":-1.5e3,"type":true,"id":"x\"y"}"#),
            [Some("true"), Some(r#""x\"y""#), Some("-1.5e3")]
        );
        assert_eq!(values(r#"{"payload":[]}"#), [None, None, Some("[]")]);
        assert_eq!(values(r#"{"payload":{}}"#), [None, None, Some("{}")]);
    }

    #[test]
    fn duplicate_keys() {
        let m = members(r#"{"id":"a","x":1,"id":"b"}"#);
        assert!(m.duplicate);
        assert_eq!(
            m.values[1],
            Some(Span {
                start: 6,
                end: 9,
                escaped: false
            })
        );
        // Unknown keys may repeat, and nested ones do not count.
        assert!(!members(r#"{"x":1,"x":2,"id":{"id":1,"id":2}}"#).duplicate);
        // A duplicate spelt with an escape is still a duplicate.
        assert!(members(r#"{"id":1,"\u0069d":2}"#).duplicate);
    }

    #[test]
    fn escaped_keys() {
        assert_eq!(
            values(r#"{"\u0074ype":"data","i\u0064":"x","pay\u006Coad":1}"#),
            [Some(r#""data""#), Some(r#""x""#), Some("1")]
        );
        // An escape that makes another key.
        assert_eq!(values(r#"{"type\n":1,"\"id":2}"#), [None; 3]);
        let m = members(r#"{"\ud800":1,"id":2}"#);
        assert!(m.undecodable_key);
        assert_eq!(
            m.values[1],
            Some(Span {
                start: 17,
                end: 18,
                escaped: false
            })
        );
        // A surrogate pair is text, and a lone surrogate in a nested key or a
        // value is not the top level's business.
        assert!(!members(r#"{"\ud83c\udf89":1}"#).undecodable_key);
        assert!(!members(r#"{"a":{"\ud800":1},"b":"\udc00"}"#).undecodable_key);
    }

    #[test]
    fn string_text_borrows_unless_escaped() {
        let text =
            r#"{"id":"abc","type":"a\tb\u00e9","x":"\ud83c\udf89","y":"\ud800","z":"\udc00"}"#;
        let of = |key: &str| {
            let mut m = Members::new();
            assert_eq!(scan(text, &[key], &mut m), Ok(Shape::Object));
            m.values[0].unwrap().string_text(text)
        };
        assert!(matches!(of("id"), Some(Cow::Borrowed("abc"))));
        assert_eq!(of("type").as_deref(), Some("a\tbé"));
        assert_eq!(of("x").as_deref(), Some("🎉"));
        assert_eq!(of("y"), None);
        assert_eq!(of("z"), None);
    }

    #[test]
    fn escaped_is_set_for_string_values_with_escapes_only() {
        let text = r#"{"type":"a\"b","id":{"k":"\n"},"payload":["\n"]}"#;
        let escaped = members(text).values.map(|v| v.unwrap().escaped);
        assert_eq!(escaped, [true, false, false]);
        assert!(!members(r#"{"id":"plain"}"#).values[1].unwrap().escaped);
    }
}
