//! Where a value lies in a JSON text, and what the text holds.

use std::borrow::Cow;

/// Where a value lies in the input: `text[start..end]`, without whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// The value is a string that holds escapes.
    pub escaped: bool,
}

impl Span {
    /// The value's JSON text.
    #[inline]
    pub fn raw(self, text: &str) -> &str {
        &text[self.start..self.end]
    }

    /// The text of a string value: borrowed from the input when it has no
    /// escapes, decoded by serde_json when it has (rare). `None` when the
    /// value is not a string, or its escapes do not decode to text (a lone
    /// surrogate such as `\ud800`), which is also when serde_json refuses
    /// to read it as a `str`.
    #[inline]
    pub fn string_text(self, text: &str) -> Option<Cow<'_, str>> {
        let raw = self.raw(text);
        if !raw.starts_with('"') {
            return None;
        }
        if self.escaped {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&raw[1..raw.len() - 1]))
        }
    }
}

/// What the input holds, when it is valid JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// An object.
    Object,
    /// An array.
    Array,
    /// A string, number, `true`, `false` or `null`.
    Scalar,
}

/// The input is not JSON (serde_json says why).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;
