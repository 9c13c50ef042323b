//! A one-pass JSON validator that also finds members of the top-level object.
//!
//! Why it exists: speed. [`Envelope::decode_json`] is the hottest function of
//! the WebSocket ingest path, and deserialising a serde struct with
//! serde_json cost about twice as much as merely validating the frame. So
//! [`scan`] does both in one pass: it checks the whole input against the
//! JSON grammar and, on the way, notes where the values of a few named
//! members of the top-level object lie, so that the caller can copy or read
//! them without parsing anything again.
//!
//! serde_json remains the reference. [`scan`] accepts exactly what
//! `serde_json::from_slice::<serde::de::IgnoredAny>` accepts on valid UTF-8:
//! RFC 8259, numbers of any magnitude, `\u` escapes not checked for
//! surrogates, and no nesting limit (`IgnoredAny` has none: it skips with a
//! stack on the heap; here open containers are kept one bit per level, and
//! nothing recurses). What is rare is left to serde_json itself: decoding a
//! string that holds escapes ([`Span::string_text`]), and the error message
//! of an invalid input (the caller asks serde_json for it). The property
//! tests in `tests/envelope_props.rs` compare the decoder built on this with
//! the serde-only one.
//!
//! [`Envelope::decode_json`]: crate::envelope::Envelope::decode_json

use std::borrow::Cow;

/// Where a value lies in the input: `text[start..end]`, without whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    /// The value is a string that holds escapes.
    pub escaped: bool,
}

impl Span {
    /// The value's JSON text.
    #[inline]
    pub(crate) fn raw(self, text: &str) -> &str {
        &text[self.start..self.end]
    }

    /// The text of a string value: borrowed from the input when it has no
    /// escapes, decoded by serde_json when it has (rare). `None` when the
    /// escapes do not decode to text (a lone surrogate such as `\ud800`),
    /// which is also when serde_json refuses to read it as a `str`.
    #[inline]
    pub(crate) fn string_text(self, text: &str) -> Option<Cow<'_, str>> {
        let raw = self.raw(text);
        if self.escaped {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&raw[1..raw.len() - 1]))
        }
    }
}

/// What the input holds, when it is valid JSON.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An object.
    Object,
    /// An array.
    Array,
    /// A string, number, `true`, `false` or `null`.
    Scalar,
}

/// The members of the top-level object whose keys were asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Members<const N: usize> {
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

impl<const N: usize> Members<N> {
    pub(crate) fn new() -> Self {
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

/// The input is not JSON (serde_json says why).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

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
pub(crate) fn scan<const N: usize>(
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

/// The value of an integer token `-?[0-9]{1,18}` (no fraction, no exponent:
/// such an integer always fits an `i64`); `None` for any other JSON text.
#[inline]
pub(crate) fn small_integer(raw: &str) -> Option<i64> {
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(digits) => (true, digits.as_bytes()),
        None => (false, raw.as_bytes()),
    };
    if !(1..=18).contains(&digits.len()) {
        return None;
    }
    // The last eight digits at once, the others one by one: two short chains
    // of multiplications rather than one long one.
    let (head, tail) = digits.split_at(digits.len().saturating_sub(8));
    let tail_value = match tail.len() {
        8 => eight_digits(u64::from_le_bytes(tail.try_into().unwrap()))?,
        _ => some_digits(tail)?,
    };
    let head_value = some_digits(head)?;
    let n = (head_value * 100_000_000 + tail_value) as i64;
    Some(if negative { -n } else { n })
}

/// The value of up to 10 decimal digits; `None` if one is not a digit.
fn some_digits(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(n * 10 + u64::from(digit))
    })
}

/// The value of eight decimal digits (little-endian: the first digit is the
/// lowest byte); `None` if one is not a digit. Adjacent lanes are combined
/// pairwise: two digits per 16 bits, then four per 32, then eight.
fn eight_digits(word: u64) -> Option<u64> {
    if non_digit_bytes(word) != 0 {
        return None;
    }
    let v = word - ONES * u64::from(b'0');
    let v = (v * 10 + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v * 100 + (v >> 16)) & 0x0000_ffff_0000_ffff;
    Some((v * 10_000 + (v >> 32)) & 0xffff_ffff)
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

/// The input and the position of the next byte to read.
struct Cursor<'t> {
    bytes: &'t [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The eight bytes from `pos` on, if there are eight left.
    #[inline(always)]
    fn word(&self) -> Option<u64> {
        let chunk = self.bytes.get(self.pos..self.pos + 8)?;
        Some(u64::from_le_bytes(chunk.try_into().unwrap()))
    }

    /// Skip whitespace (space, tab, LF, CR) and peek at the byte after it.
    #[inline(always)]
    fn next_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
        self.peek()
    }

    /// Read a key and its colon; returns the key's string token.
    #[inline(always)]
    fn key(&mut self) -> Result<Span, Invalid> {
        if self.next_token() != Some(b'"') {
            return Err(Invalid);
        }
        let start = self.pos;
        self.pos += 1;
        let escaped = self.string()?;
        let span = Span {
            start,
            end: self.pos,
            escaped,
        };
        if self.next_token() != Some(b':') {
            return Err(Invalid);
        }
        self.pos += 1;
        Ok(span)
    }

    /// Read the rest of a string whose opening quote has been read; returns
    /// whether it holds escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, Invalid> {
        let mut escaped = false;
        loop {
            // Eight bytes at a time, as serde_json's `skip_to_escape` does,
            // while there are eight left.
            while let Some(word) = self.word() {
                let quote = equal_bytes(word, b'"');
                let found = quote | equal_bytes(word, b'\\') | control_bytes(word);
                if found != 0 {
                    // The lowest bit set in `found` is exact, and so is the
                    // same bit of `quote`: no need to read the byte again.
                    let first = found & found.wrapping_neg();
                    self.pos += first.trailing_zeros() as usize / 8;
                    if quote & first != 0 {
                        self.pos += 1;
                        return Ok(escaped);
                    }
                    break;
                }
                self.pos += 8;
            }
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    self.pos = escape(self.bytes, self.pos + 1)?;
                    escaped = true;
                }
                // A control character, or the end of the input.
                _ => return Err(Invalid),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    #[inline(always)]
    fn number(&mut self) -> Result<(), Invalid> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.pos += 1;
                self.digits();
            }
            _ => return Err(Invalid),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Invalid);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Invalid);
            }
        }
        Ok(())
    }

    /// Skip digits, eight at a time where there are eight bytes left;
    /// returns how many.
    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(word) = self.word() {
            let found = non_digit_bytes(word);
            if found != 0 {
                self.pos += found.trailing_zeros() as usize / 8;
                return self.pos - start;
            }
            self.pos += 8;
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Invalid)
        }
    }
}

/// Read an escape whose backslash is just before `pos`; returns the position
/// after it.
fn escape(bytes: &[u8], pos: usize) -> Result<usize, Invalid> {
    match bytes.get(pos) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(pos + 1),
        Some(b'u') => match bytes.get(pos + 1..pos + 5) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(pos + 5),
            _ => Err(Invalid),
        },
        _ => Err(Invalid),
    }
}

const ONES: u64 = u64::MAX / 255; // 0x0101_0101_0101_0101

// The two functions below set the high bit of each byte of `word` that
// matches, and perhaps of bytes after the first match too (a borrow can carry
// into them), but never of bytes before it: the lowest set bit is exact.
// (Mycroft's "has a zero byte" test, little-endian.)

/// The bytes of `word` equal to `byte`.
#[inline(always)]
fn equal_bytes(word: u64, byte: u8) -> u64 {
    let zero_where_equal = word ^ (ONES * u64::from(byte));
    zero_where_equal.wrapping_sub(ONES) & !zero_where_equal & (ONES << 7)
}

/// The bytes of `word` below 0x20 (control characters).
#[inline(always)]
fn control_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES * 0x20) & !word & (ONES << 7)
}

/// Nonzero in exactly the bytes of `word` that are not ASCII digits (no
/// carries cross bytes). `b ^ 0x30` maps the digits to 0..=9: a byte is not
/// a digit when its high nibble is set or its low nibble plus 6 reaches 16.
#[inline(always)]
fn non_digit_bytes(word: u64) -> u64 {
    let x = word ^ (ONES * u64::from(b'0'));
    (((x & (ONES * 0x0f)) + ONES * 6) | x) & (ONES * 0xf0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

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

    #[test]
    fn small_integers() {
        for (raw, n) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("7", Some(7)),
            ("-42", Some(-42)),
            ("12345678", Some(12_345_678)),
            ("123456789", Some(123_456_789)),
            ("1704844800000", Some(1_704_844_800_000)),
            ("-1704844800000", Some(-1_704_844_800_000)),
            ("999999999999999999", Some(999_999_999_999_999_999)),
            ("-999999999999999999", Some(-999_999_999_999_999_999)),
            ("1000000000000000000", None),
            ("1.5", None),
            ("1e3", None),
            ("12345678.5", None),
            ("1234567e", None),
            ("\"12\"", None),
            ("true", None),
            ("-", None),
            ("", None),
        ] {
            assert_eq!(small_integer(raw), n, "{raw}");
        }
    }

    #[test]
    fn eight_digits_at_once() {
        let word = |s: &[u8; 8]| u64::from_le_bytes(*s);
        assert_eq!(eight_digits(word(b"12345678")), Some(12_345_678));
        assert_eq!(eight_digits(word(b"00000000")), Some(0));
        assert_eq!(eight_digits(word(b"99999999")), Some(99_999_999));
        for bad in [b"1234567:", b"/2345678", b"1234 678", b"123456\xff8"] {
            assert_eq!(eight_digits(word(bad)), None, "{bad:?}");
        }
        for b in 0..=255u8 {
            let found = non_digit_bytes(word(&[b'5', b'5', b'5', b, b'5', b'5', b'5', b'5']));
            assert_eq!(found != 0, !b.is_ascii_digit(), "{b}");
            if found != 0 {
                assert_eq!(found.trailing_zeros() / 8, 3, "{b}");
            }
        }
    }

    #[test]
    fn special_bytes_finds_the_first_one() {
        let special_bytes =
            |w: u64| equal_bytes(w, b'"') | equal_bytes(w, b'\\') | control_bytes(w);
        let at = |s: &[u8; 8]| special_bytes(u64::from_le_bytes(*s)).trailing_zeros() / 8;
        assert_eq!(at(b"abcdefgh"), 8);
        assert_eq!(at(b"abc\"efgh"), 3);
        assert_eq!(at(b"\\bcdefgh"), 0);
        assert_eq!(at(b"abcdefg\x1f"), 7);
        assert_eq!(at(b"\x00\"\\\x01\x02\x03\x04\x05"), 0);
        assert_eq!(at(b"ab\x00\"efgh"), 2);
        assert_eq!(at(b"\xff\xfe\x80\x7f !#["), 8);
    }
}
