//! Reading raw messages: one pass over the payload bytes, no
//! `serde_json::Value`, no allocation in steady state.
//!
//! [`parse`] walks the top-level object once. The sample fields are decoded
//! straight into a caller-owned [`Scratch`] (reused for every message);
//! `type`, `timestamp` and the key member are borrowed from the payload.
//!
//! Two readers give the same answers:
//! * a strict hand-written scanner for the common shape (plain keys, number
//!   lists, no escapes in the fields it reads), which validates the JSON
//!   grammar as it goes and reads each number once (about 5× faster than
//!   going through serde for a one-sample message);
//! * a serde reader (a `DeserializeSeed` over the same scratch) for
//!   everything else: named maps, non-numeric values, escapes, duplicate
//!   members, and anything the scanner does not accept, including invalid
//!   JSON, whose error it reports.
//!
//! Each channel value is read as JSON number text and converted with Rust's
//! float parser, so that:
//! * a string (`"NaN"`), `null`, `true`, an array or an object is
//!   `not_numeric`;
//! * a number too large for `f64` (`1e400`) becomes ±∞ and is `non_finite`
//!   (serde_json's own float parser would reject the whole message).
//!
//! Accepted samples are stored back to back in [`Scratch::values`]
//! (`channels` values each, in `channel_names` order); a rejected sample
//! leaves nothing there and only its [`SampleOutcome`] records why.

pub use crate::sample::{Body, Header, Layout, MessageKind, Reason, SampleOutcome, Scratch};

use serde::de;

use crate::{read_fast, read_serde};

/// Parse one payload. `Err` means it is not JSON or not an object.
pub fn parse<'a>(
    payload: &'a [u8],
    layout: &Layout,
    scratch: &mut Scratch,
) -> Result<Header<'a>, serde_json::Error> {
    // Validate UTF-8 once for the whole payload: both readers then work on
    // a `str` and never check a piece again.
    let text = std::str::from_utf8(payload).map_err(<serde_json::Error as de::Error>::custom)?;
    scratch.clear();
    if let Some(header) = read_fast::parse(text, layout, scratch) {
        return Ok(header);
    }
    read_serde::parse(text, layout, scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(vec!["F3".into(), "F4".into()], "user_id")
    }

    fn outcomes(json: &str) -> (Vec<SampleOutcome>, Vec<f64>, Body) {
        let mut s = Scratch::default();
        let h = parse(json.as_bytes(), &layout(), &mut s).unwrap();
        (s.samples.clone(), s.values.clone(), h.body)
    }

    use SampleOutcome::{Accepted, Rejected};

    #[test]
    fn one_sample_list_and_map() {
        let mut s = Scratch::default();
        let h = parse(
            br#"{"type":"raw","user_id":"u1","timestamp":1000,"channels":[1.5,-2]}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert_eq!(h.kind, MessageKind::Raw);
        assert_eq!(h.key, Some("\"u1\""));
        assert_eq!(h.timestamp, Some(1000));
        assert_eq!(h.body, Body::One);
        assert_eq!(s.values, vec![1.5, -2.0]);
        assert_eq!(
            outcomes(r#"{"channels":{"F4":2,"AUX":"x","F3":1}}"#),
            (vec![Accepted], vec![1.0, 2.0], Body::One)
        );
    }

    #[test]
    fn rejections() {
        let r = |json: &str| outcomes(json).0;
        assert_eq!(
            r(r#"{"channels":[1]}"#),
            vec![Rejected(Reason::ChannelCount)]
        );
        assert_eq!(
            r(r#"{"channels":[1,2,3]}"#),
            vec![Rejected(Reason::ChannelCount)]
        );
        assert_eq!(
            r(r#"{"channels":{"F3":1}}"#),
            vec![Rejected(Reason::MissingChannel)]
        );
        assert_eq!(
            r(r#"{"channels":[1,"NaN"]}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":[1,null]}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":[1,[2]]}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":{"F3":1,"F4":true}}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":"abc"}"#),
            vec![Rejected(Reason::NotNumeric)]
        );
        assert_eq!(
            r(r#"{"channels":[1,1e400]}"#),
            vec![Rejected(Reason::NonFinite)]
        );
        assert_eq!(
            r(r#"{"channels":{"F3":-1e999,"F4":0}}"#),
            vec![Rejected(Reason::NonFinite)]
        );
    }

    #[test]
    fn batches_reject_single_samples() {
        let (o, v, body) = outcomes(r#"{"samples":[[1,2],[3],[5,6],{"F3":7,"F4":8}]}"#);
        assert_eq!(body, Body::Many);
        assert_eq!(
            o,
            vec![Accepted, Rejected(Reason::ChannelCount), Accepted, Accepted]
        );
        assert_eq!(v, vec![1.0, 2.0, 5.0, 6.0, 7.0, 8.0]);
        let mut s = Scratch::default();
        let h = parse(
            br#"{"samples":[[1,2],[3,4]],"timestamps":[10,"x",30],"timestamp":9.6}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert!(h.has_timestamps);
        assert_eq!(s.timestamps, vec![Some(10), None, Some(30)]);
        assert_eq!(h.timestamp, Some(10));
    }

    #[test]
    fn message_level_shapes() {
        assert_eq!(outcomes(r#"{"type":"raw"}"#).2, Body::None);
        assert_eq!(outcomes(r#"{"samples":5}"#).2, Body::NotAList);
        // Every other non-list form is consumed and refused the same way.
        for other in [r#"{"F3":1}"#, r#""x""#, "true", "-3", "2.5", "null"] {
            let json = format!(r#"{{"samples":{other},"user_id":"u"}}"#);
            assert_eq!(outcomes(&json).2, Body::NotAList, "{json}");
            let mut s = Scratch::default();
            let json = format!(r#"{{"samples":[[1,2]],"timestamps":{other},"user_id":"u"}}"#);
            let h = parse(json.as_bytes(), &layout(), &mut s).unwrap();
            assert!(!h.has_timestamps, "{json}");
            assert_eq!(h.body, Body::Many, "{json}");
        }
        assert_eq!(outcomes(r#"{"samples":[],"channels":[1,2]}"#).2, Body::Both);
        let mut s = Scratch::default();
        let h = parse(
            br#"{"type":"features","channels":[1,2]}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert_eq!(h.kind, MessageKind::Other);
        let h = parse(
            br#"{"type":"r\u0061w","channels":[1,2]}"#,
            &layout(),
            &mut s,
        )
        .unwrap();
        assert_eq!(h.kind, MessageKind::Raw);
        assert!(parse(b"not json", &layout(), &mut s).is_err());
        assert!(parse(b"[1,2]", &layout(), &mut s).is_err());
        assert!(parse(br#"{"channels":[1,2]} x"#, &layout(), &mut s).is_err());
    }

    /// What the fast reader accepts, the serde reader reads the same way.
    fn agree(text: &str) {
        let layout = layout();
        let (mut a, mut b) = (Scratch::default(), Scratch::default());
        let fast = read_fast::parse(text, &layout, &mut a);
        let slow = read_serde::parse(text, &layout, &mut b);
        if let Some(h) = fast {
            let slow = slow.unwrap_or_else(|e| panic!("fast accepted invalid JSON {text:?}: {e}"));
            assert_eq!(h, slow, "{text:?}");
            assert_eq!((a.samples, a.values), (b.samples, b.values), "{text:?}");
        }
    }

    #[test]
    fn fast_reader_handles_the_common_shape() {
        let layout = layout();
        let mut s = Scratch::default();
        for text in [
            r#"{"type":"raw","user_id":"u17","timestamp":1704844800000,"channels":[23.044960818746485,-4.4825889951962585]}"#,
            r#" { "channels" : [ 1 , 2e3 ] , "user_id" : 17 , "x" : {"a":[true,false,null,"\u00e9\n"]} } "#,
            r#"{"samples":[[1,2],[3],[1e400,0]],"user_id":null,"type":"raw"}"#,
            r#"{"type":"prediction","data":{"v":[1,2,{"w":-0.5E-3}]}}"#,
        ] {
            assert!(read_fast::parse(text, &layout, &mut s).is_some(), "{text}");
            agree(text);
        }
        for text in [
            r#"{"channels":{"F3":1,"F4":2}}"#,
            r#"{"channels":[1,"NaN"]}"#,
            r#"{"channels":[1,2],"timestamps":[1]}"#,
            r#"{"user_id":"a\"b","channels":[1,2]}"#,
            r#"{"channels":[1,2],"channels":[3,4]}"#,
            r#"{"channels":[01,2]}"#,
            r#"{"channels":[1.,2]}"#,
            r#"{"channels":[1,2]"#,
            r#"{"channels":[1,2]}}"#,
            r#"{"a":tru,"channels":[1,2]}"#,
        ] {
            assert!(read_fast::parse(text, &layout, &mut s).is_none(), "{text}");
            agree(text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any one-byte edit of valid messages: the fast reader never
        /// accepts what serde refuses, and agrees with it otherwise.
        #[test]
        fn fast_and_serde_readers_agree(
            which in 0usize..4,
            pos in 0usize..200,
            byte in proptest::sample::select(b" \t\"\\,:[]{}-+.eE0123456789nultrfasxF3".to_vec()),
            op in 0u8..3,
        ) {
            let base = [
                r#"{"type":"raw","user_id":"u1","timestamp":1704844800000,"channels":[23.04,-4.48e-2]}"#,
                r#"{"samples":[[1,2],[3,4]],"user_id":5,"meta":{"k":[null,true]}}"#,
                r#"{"type":"event","user_id":"x","channels":{"F3":1,"F4":2}}"#,
                r#"{"channels":[0,-0.0],"timestamp":12.5,"user_id":null}"#,
            ][which];
            let mut bytes = base.as_bytes().to_vec();
            let pos = pos % (bytes.len() + 1);
            match op {
                0 if pos < bytes.len() => bytes[pos] = byte,
                1 => bytes.insert(pos, byte),
                _ if pos < bytes.len() => { bytes.remove(pos); }
                _ => {}
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agree(text);
            }
        }
    }
}
