//! [`bind_member`]: give an object payload a top-level member it lacks,
//! without parsing it into a tree (a relay bound to a user sends samples
//! without `user_id`; the node adds it so subject templates and storage
//! see it).

use bytes::Bytes;

use super::scan::{scan, Members};
use super::span::Shape;

/// What [`bind_member`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bound {
    /// The member was missing: here is the payload with it first.
    Added(Bytes),
    /// The object already has the member (with this text, decoded when it
    /// is a string; its JSON text otherwise).
    Present(String),
    /// Not a JSON object: nothing to bind to.
    NotAnObject,
}

/// When `payload` is a JSON object without a top-level member `key`,
/// return it with `"key": value` as its first member; the rest of the text
/// is kept byte for byte.
pub fn bind_member(payload: &[u8], key: &str, value: &str) -> Bound {
    let Ok(text) = std::str::from_utf8(payload) else {
        return Bound::NotAnObject;
    };
    let mut members = Members::<1>::new();
    match scan(text, &[key], &mut members) {
        Ok(Shape::Object) => {}
        _ => return Bound::NotAnObject,
    }
    if let Some(span) = members.values[0] {
        let present = span
            .string_text(text)
            .map_or_else(|| span.raw(text).to_string(), |s| s.into_owned());
        return Bound::Present(present);
    }
    let open = text.find('{').expect("an object opens with {");
    let rest = text[open + 1..].trim_start();
    let member = serde_json::to_string(key).expect("a str serialises")
        + ":"
        + &serde_json::to_string(value).expect("a str serialises");
    let mut out = String::with_capacity(text.len() + member.len() + 2);
    out.push('{');
    out.push_str(&member);
    if !rest.starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
    Bound::Added(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn added(payload: &str) -> Value {
        match bind_member(payload.as_bytes(), "user_id", "jamie") {
            Bound::Added(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adds_the_member_first_and_keeps_the_rest() {
        assert_eq!(
            added(r#"{"type":"raw","channels":[1,2]}"#),
            json!({"user_id": "jamie", "type": "raw", "channels": [1, 2]})
        );
        assert_eq!(added("  { } "), json!({"user_id": "jamie"}));
        assert_eq!(
            added("{\n \"a\": {\"user_id\": 1}\n}"),
            json!({"user_id": "jamie", "a": {"user_id": 1}})
        );
    }

    #[test]
    fn leaves_a_present_member_and_non_objects() {
        assert_eq!(
            bind_member(br#"{"user_id":"alex","x":1}"#, "user_id", "jamie"),
            Bound::Present("alex".into())
        );
        assert_eq!(
            bind_member(br#"{"user_id":7}"#, "user_id", "jamie"),
            Bound::Present("7".into())
        );
        assert_eq!(bind_member(b"[1,2]", "user_id", "j"), Bound::NotAnObject);
        assert_eq!(bind_member(b"{\"a\":", "user_id", "j"), Bound::NotAnObject);
        assert_eq!(bind_member(b"\xff", "user_id", "j"), Bound::NotAnObject);
    }

    #[test]
    fn escapes_key_and_value() {
        match bind_member(b"{}", "user id", "a\"b") {
            Bound::Added(b) => assert_eq!(&b[..], br#"{"user id":"a\"b"}"#),
            other => panic!("{other:?}"),
        }
    }
}
