//! The elements of a JSON array that has already been validated (by
//! [`scan`](super::scan())), each as its own JSON text, found without
//! decoding anything.

/// The elements of the array whose JSON text is `raw` (brackets included,
/// already known to be valid JSON), each without surrounding whitespace.
/// Yields nothing when `raw` is not an array.
pub fn elements(raw: &str) -> Elements<'_> {
    Elements {
        text: inside_brackets(raw),
        pos: 0,
    }
}

/// The elements of the array `raw` (already known to be valid JSON) when
/// it is a list of numbers: each number's text, or `None` for an element
/// that is not a number (after which the caller should stop). Faster than
/// [`elements`] for what it is for: a valid number token ends at the first
/// byte that cannot continue it, so nothing else needs looking at.
pub fn numbers(raw: &str) -> Numbers<'_> {
    Numbers {
        text: inside_brackets(raw),
        pos: 0,
    }
}

/// The iterator [`numbers`] returns.
pub struct Numbers<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Numbers<'a> {
    type Item = Option<&'a str>;

    #[inline]
    fn next(&mut self) -> Option<Option<&'a str>> {
        let b = self.text.as_bytes();
        let mut i = self.pos;
        while b
            .get(i)
            .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b','))
        {
            i += 1;
        }
        let start = i;
        match b.get(i) {
            None => {
                self.pos = i;
                return None;
            }
            Some(b'-' | b'0'..=b'9') => {}
            Some(_) => {
                self.pos = b.len();
                return Some(None);
            }
        }
        while b
            .get(i)
            .is_some_and(|&c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            i += 1;
        }
        self.pos = i;
        Some(Some(&self.text[start..i]))
    }
}

/// The iterator [`elements`] returns.
pub struct Elements<'a> {
    text: &'a str,
    pos: usize,
}

/// What lies between an array's brackets ("" when `raw` is not an array).
fn inside_brackets(raw: &str) -> &str {
    raw.trim_matches(is_ws)
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or("")
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.text.as_bytes();
        while b.get(self.pos).is_some_and(|&c| is_ws(c.into())) {
            self.pos += 1;
        }
        let start = self.pos;
        if start >= b.len() {
            return None;
        }
        let mut depth = 0usize;
        let mut i = start;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => {
                    // Skip the string: in valid JSON a quote inside it is
                    // escaped, and an escape is two bytes or more.
                    i += 1;
                    while let Some(&s) = b.get(i) {
                        match s {
                            b'"' => break,
                            b'\\' => i += 2,
                            _ => i += 1,
                        }
                    }
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let end = i.min(b.len());
        self.pos = end + 1;
        Some(self.text[start..end].trim_end_matches(is_ws))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_of_nested_and_spaced_arrays() {
        let all: Vec<&str> = elements(r#" [ 1 , "a,]\"b" ,[2,[3]], {"k":[4,5]},-6e2 ] "#).collect();
        assert_eq!(
            all,
            ["1", r#""a,]\"b""#, "[2,[3]]", r#"{"k":[4,5]}"#, "-6e2"]
        );
        assert_eq!(elements("[]").count(), 0);
        assert_eq!(elements("[ \n ]").count(), 0);
        assert_eq!(elements(r#"{"a":1}"#).count(), 0);
        assert_eq!(elements("[[]]").collect::<Vec<_>>(), ["[]"]);
    }

    #[test]
    fn numbers_says_which_elements_are_not_numbers() {
        let got: Vec<Option<&str>> = numbers(r#"[1.5, -2, 3e-7, 4E+1, 0]"#).collect();
        assert_eq!(got, ["1.5", "-2", "3e-7", "4E+1", "0"].map(Some));
        // The first element that is not a number ends the list.
        let got: Vec<Option<&str>> = numbers(r#"[1.5, -2, "3", null, 4e1]"#).collect();
        assert_eq!(got, [Some("1.5"), Some("-2"), None]);
        assert_eq!(numbers("[ ]").count(), 0);
    }
}
