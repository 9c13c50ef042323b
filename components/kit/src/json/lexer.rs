//! The byte-level reading under [`scan`](super::scan()): a cursor over the
//! input, word-at-a-time searches for special bytes, and integer tokens read
//! eight digits at a time.

use super::span::{Invalid, Span};

/// The value of an integer token `-?[0-9]{1,18}` (no fraction, no exponent:
/// such an integer always fits an `i64`); `None` for any other JSON text.
#[inline]
pub fn small_integer(raw: &str) -> Option<i64> {
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

/// The input and the position of the next byte to read.
pub(super) struct Cursor<'t> {
    pub bytes: &'t [u8],
    pub pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The eight bytes from `pos` on, if there are eight left.
    #[inline(always)]
    pub(super) fn word(&self) -> Option<u64> {
        let chunk = self.bytes.get(self.pos..self.pos + 8)?;
        Some(u64::from_le_bytes(chunk.try_into().unwrap()))
    }

    /// Skip whitespace (space, tab, LF, CR) and peek at the byte after it.
    #[inline(always)]
    pub(super) fn next_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
        self.peek()
    }

    /// Read a key and its colon; returns the key's string token.
    #[inline(always)]
    pub(super) fn key(&mut self) -> Result<Span, Invalid> {
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
    pub(super) fn string(&mut self) -> Result<bool, Invalid> {
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
    pub(super) fn number(&mut self) -> Result<(), Invalid> {
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
    pub(super) fn digits(&mut self) -> usize {
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
    pub(super) fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
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
