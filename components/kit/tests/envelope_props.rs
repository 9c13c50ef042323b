//! Property tests: every envelope survives encode → decode in both codecs,
//! and any JSON value that is not an envelope decodes as data carrying it.

use bytes::Bytes;
use fednode_kit::envelope::{DecodeError, Encoding, Envelope, Kind};
use fednode_kit::Origin;
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-zA-Z0-9 éß\\-\"\\\\]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        prop_oneof![Just(Kind::Data), Just(Kind::Request), Just(Kind::Reply)],
        "[a-zA-Z0-9\\-]{1,36}",
        proptest::option::of(0i64..4_000_000_000_000),
        any::<bool>(),
        json_value(),
        proptest::option::of(("[a-z0-9\\-]{1,20}", proptest::option::of("[a-z\\-]{1,12}"))),
    )
        .prop_map(|(kind, id, timestamp, replay, payload, origin)| Envelope {
            kind,
            id: id.into(),
            timestamp,
            replay,
            // Only data carries an origin.
            origin: origin
                .filter(|_| kind == Kind::Data)
                .and_then(|(node, region)| Origin::from_wire(Some(&node), region.as_deref())),
            payload: Bytes::from(serde_json::to_vec(&payload).unwrap()),
        })
}

proptest! {
    #[test]
    fn json_round_trip(env in envelope()) {
        let back = Envelope::decode(&env.encode(Encoding::Json), Encoding::Json).unwrap();
        prop_assert_eq!(back, env);
    }

    #[test]
    fn msgpack_round_trip(env in envelope()) {
        let back = Envelope::decode(&env.encode(Encoding::Msgpack), Encoding::Msgpack).unwrap();
        // Floats may print differently after a binary round trip; compare values.
        prop_assert_eq!(back.kind, env.kind);
        prop_assert_eq!(&back.id, &env.id);
        prop_assert_eq!(back.timestamp, env.timestamp);
        prop_assert_eq!(back.replay, env.replay);
        prop_assert_eq!(&back.origin, &env.origin);
        prop_assert_eq!(back.payload_value(), env.payload_value());
    }

    #[test]
    fn non_envelope_json_is_data(v in json_value()) {
        let is_envelope = v.get("type").and_then(|t| t.as_str()).is_some_and(|t| {
            matches!(t, "data" | "request" | "reply") && v.get("payload").is_some()
                || matches!(t, "ack" | "nack") && v.get("id").and_then(|i| i.as_str()).is_some()
        });
        prop_assume!(!is_envelope);
        let bytes = serde_json::to_vec(&v).unwrap();
        let env = Envelope::decode_json(&bytes).unwrap();
        prop_assert_eq!(env.kind, Kind::Data);
        prop_assert_eq!(env.payload_value(), v.clone());
        let env = Envelope::decode_msgpack(&rmp_serde::to_vec_named(&v).unwrap()).unwrap();
        prop_assert_eq!(env.payload_value(), v);
    }
}

// ---------------------------------------------------------------------------
// Differential tests: `Envelope::decode_json` (one-pass scanner) against the
// serde-only decoder it replaced, kept verbatim in `reference/mod.rs` (the fuzz
// target `envelope_json` uses the same file)
// (a copy rather than the crate's own serde path, which now shares
// `Fields::into_envelope` with the scanner path: the oracle must share no
// code with what it checks). On valid UTF-8 both must give the same
// `Result`, error message included.
// Run with more cases once in a while: PROPTEST_CASES=20000 cargo test -p
// fednode-kit --test envelope_props.

mod reference;

use reference::reference_decode;

/// Both decoders agree on `text` (and `decode_json_str` agrees with
/// `decode_json`).
fn assert_same_decode(text: &str) -> Result<(), TestCaseError> {
    let ours = Envelope::decode_json(text.as_bytes());
    prop_assert_eq!(
        &ours,
        &reference_decode(text.as_bytes()),
        "frame: {:?}",
        text
    );
    prop_assert_eq!(&ours, &Envelope::decode_json_str(text), "frame: {:?}", text);
    Ok(())
}

/// JSON whitespace, mostly none.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => "[ \t\r\n]{1,3}",
    ]
}

/// A key: one of the envelope's members (sometimes spelt with escapes, or
/// nearly right), or another key.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["type", "id", "timestamp", "replay", "payload", "origin"])
            .prop_map(|k| format!("\"{k}\"")),
        1 => prop::sample::select(vec![
            r#""\u0074ype""#,
            r#""ty\u0070e""#,
            r#""\u0069\u0064""#,
            r#""time\u0073tamp""#,
            r#""pay\/load""#,
            r#""payl\u006Fad""#,
            r#""re\u0070lay""#,
            r#""type\u0000""#,
            r#""Type""#,
            r#""id ""#,
            r#""\ud800""#,
            r#""\udc00id""#,
            r#""\ud83c\udf89""#,
            r#""""#,
            r#""x""#,
            r#""channels""#,
        ])
        .prop_map(String::from),
    ]
}

/// Raw JSON values of every kind, with the odd ones the members care
/// about: kinds, escaped and undecodable strings, numbers serde_json cannot
/// hold, nesting around serde_json's `Value` limit (127 open containers).
fn raw_value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "null",
        "true",
        "false",
        r#""data""#,
        r#""request""#,
        r#""reply""#,
        r#""ack""#,
        r#""nack""#,
        r#""raw""#,
        r#""d\u0061ta""#,
        r#""\u0061ck""#,
        r#""data ""#,
        r#""DATA""#,
        r#""""#,
        r#""d1""#,
        r#""id\n\"\\\/\b\f\r\t""#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud83c\udf89""#,
        r#""\u00e9é""#,
        r#"{"node":"edge-01","region":"eu"}"#,
        r#"{"node":"edge-01"}"#,
        r#"{"node":"a","node":"b"}"#,
        r#"{"node":5}"#,
        r#"{"node":"","region":"eu"}"#,
        r#"{"node":"x"}"#,
        r#"{"region":"eu"}"#,
        "0",
        "-0",
        "1",
        "-1",
        "1704844800000",
        "-1704844800000",
        "999999999999999999",
        "1000000000000000000",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1.5",
        "-0.0",
        "1704844800000.9",
        "1e3",
        "1E+3",
        "1e-3",
        "1e308",
        "1e400",
        "-1e400",
        "1e-400",
        "[]",
        "{}",
        "[1,2]",
        r#"{"a":1}"#,
        r#"{"type":"data","payload":1}"#,
        r#"[{"id":"x"},null]"#,
    ])
    .prop_map(String::from);
    let nested = (120usize..135, any::<bool>()).prop_map(|(depth, object)| {
        if object {
            format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
        } else {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        }
    });
    let generated = json_value().prop_map(|v| serde_json::to_string(&v).unwrap());
    prop_oneof![
        8 => fixed,
        1 => nested,
        3 => generated,
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
    ]
}

/// A member's key: its name, sometimes with its first letter escaped.
fn key_spelling(name: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(format!("\"{name}\"")),
        1 => Just(format!("\"\\u{:04x}{}\"", u32::from(name.as_bytes()[0]), &name[1..])),
    ]
}

/// A value for the member `name`: mostly a usual one, sometimes anything.
fn member_value(name: &'static str) -> BoxedStrategy<String> {
    let usual = match name {
        "type" => vec![
            r#""data""#,
            r#""request""#,
            r#""reply""#,
            r#""ack""#,
            r#""nack""#,
        ],
        "id" => vec![r#""d1""#, r#""p0-000000001""#, r#""\u00e9\n""#, "null"],
        "timestamp" => vec!["1704844800000", "0", "-5", "-0", "1.5e3", "null"],
        "replay" => vec!["true", "false", "null"],
        _ => vec!["null", "{}", r#"{"a":[1,2]}"#, "[]", "1", r#""x""#],
    };
    prop_oneof![
        4 => prop::sample::select(usual).prop_map(String::from),
        1 => raw_value(),
    ]
    .boxed()
}

/// An object close to an envelope: each member present most of the time,
/// with a usual value most of the time, other members, shuffled, sometimes
/// one of them twice.
fn envelope_like() -> impl Strategy<Value = String> {
    let member =
        |name: &'static str| prop::option::weighted(0.85, (key_spelling(name), member_value(name)));
    let other_key = prop_oneof![
        3 => prop::sample::select(vec![r#""x""#, r#""channels""#, r#""types""#, r#""\u0078""#])
            .prop_map(String::from),
        1 => key(),
    ];
    let extra = (other_key, raw_value());
    (
        (
            member("type"),
            member("id"),
            member("timestamp"),
            member("replay"),
            member("payload"),
        ),
        prop::collection::vec(extra, 0..3),
        prop::option::weighted(0.15, any::<prop::sample::Index>()),
        any::<u64>(),
        prop::collection::vec(ws(), 8),
    )
        .prop_map(|((t, i, ts, r, p), extra, duplicate, seed, spaces)| {
            let mut members: Vec<(String, String)> = [t, i, ts, r, p]
                .into_iter()
                .flatten()
                .chain(extra)
                .collect();
            if let (Some(index), false) = (duplicate, members.is_empty()) {
                members.push(index.get(&members).clone());
            }
            // A cheap deterministic shuffle.
            let len = members.len();
            for k in (1..len).rev() {
                let j = (seed.rotate_left(k as u32 * 7) % (k as u64 + 1)) as usize;
                members.swap(k, j);
            }
            let body: Vec<String> = members
                .into_iter()
                .enumerate()
                .map(|(n, (k, v))| {
                    let sp = |m: usize| spaces[(n + m) % spaces.len()].as_str();
                    format!("{}{k}{}:{}{v}{}", sp(0), sp(1), sp(2), sp(3))
                })
                .collect();
            format!("{}{{{}}}{}", spaces[0], body.join(","), spaces[7])
        })
}

/// An object (or, rarely, an array: serde reads a struct from one too) of
/// keys and values as above, with odd whitespace and duplicates.
fn odd_frame() -> impl Strategy<Value = String> {
    let member = (ws(), key(), ws(), ws(), raw_value(), ws())
        .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
    let element = (ws(), raw_value(), ws()).prop_map(|(a, v, b)| format!("{a}{v}{b}"));
    prop_oneof![
        8 => envelope_like(),
        4 => (ws(), prop::collection::vec(member, 0..7), ws()).prop_map(|(a, members, b)| {
            let body = if members.is_empty() { " ".into() } else { members.join(",") };
            format!("{a}{{{body}}}{b}")
        }),
        1 => (ws(), prop::collection::vec(element, 0..7), ws())
            .prop_map(|(a, elements, b)| format!("{a}[{}]{b}", elements.join(","))),
        1 => (ws(), raw_value(), ws()).prop_map(|(a, v, b)| format!("{a}{v}{b}")),
    ]
}

/// JSON-ish tokens, to be thrown together.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\\",
            r#"\""#,
            r#"\u"#,
            r#"\u00e9"#,
            r#"\ud800"#,
            r#"\x"#,
            "\"type\"",
            "\"id\"",
            "\"payload\"",
            "\"data\"",
            "\"ack\"",
            "0",
            "-",
            "1",
            "01",
            ".",
            "5",
            "e",
            "E",
            "+",
            "1e400",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            " ",
            "\t",
            "\n",
            "\r",
            "\u{c}",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "x",
        ])
        .prop_map(String::from),
        raw_value(),
    ]
}

/// `text` with one edit at `at` (a fraction of its length), on a char
/// boundary: a deletion, an insertion, or a replacement.
fn mutate(text: &str, at: f64, edit: u8, with: char) -> String {
    let mut i = ((text.len() as f64) * at) as usize;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    let (head, tail) = text.split_at(i);
    let mut rest = tail.chars();
    match edit % 3 {
        0 => {
            rest.next();
            format!("{head}{}", rest.as_str())
        }
        1 => format!("{head}{with}{tail}"),
        _ => {
            rest.next();
            format!("{head}{with}{}", rest.as_str())
        }
    }
}

proptest! {
    #[test]
    fn same_as_reference_on_envelopes(env in envelope(), ack in any::<bool>()) {
        let mut env = env;
        if ack {
            env.kind = Kind::Ack;
            env.replay = false;
        }
        assert_same_decode(std::str::from_utf8(&env.encode_json()).unwrap())?;
    }

    #[test]
    fn same_as_reference_on_json_values(v in json_value()) {
        assert_same_decode(&serde_json::to_string(&v).unwrap())?;
        assert_same_decode(&serde_json::to_string_pretty(&v).unwrap())?;
    }

    #[test]
    fn same_as_reference_on_odd_frames(frame in odd_frame()) {
        assert_same_decode(&frame)?;
    }

    #[test]
    fn same_as_reference_on_mutated_frames(
        frame in odd_frame(),
        edits in prop::collection::vec((0.0..1.0f64, any::<u8>(), prop::sample::select(
            vec!['{', '}', '[', ']', ',', ':', '"', '\\', '0', 'e', '-', ' ', '\n', '\u{1}', 'é']
        )), 1..3),
    ) {
        let frame = edits
            .into_iter()
            .fold(frame, |frame, (at, edit, with)| mutate(&frame, at, edit, with));
        assert_same_decode(&frame)?;
    }

    #[test]
    fn same_as_reference_on_token_soup(tokens in prop::collection::vec(token(), 0..12)) {
        assert_same_decode(&tokens.concat())?;
    }

    #[test]
    fn same_as_reference_on_arbitrary_text(text in any::<String>()) {
        assert_same_decode(&text)?;
    }

    #[test]
    fn same_as_reference_on_arbitrary_utf8_bytes(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        // Mostly not UTF-8: keep what is.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            assert_same_decode(text)?;
        }
    }

    /// The one deliberate change: bytes that are not UTF-8 are an error, even
    /// where the serde decoder passed them through inside a string.
    #[test]
    fn invalid_utf8_is_an_error(
        frame in odd_frame(),
        at in 0.0..1.0f64,
        bad in prop::sample::select(vec![
            vec![0xff], vec![0xc3], vec![0xed, 0xa0, 0x80], vec![0x80], vec![0xf8, 0x88, 0x80, 0x80, 0x80]
        ]),
    ) {
        let mut i = ((frame.len() as f64) * at) as usize;
        while !frame.is_char_boundary(i) {
            i -= 1;
        }
        let mut bytes = frame.as_bytes()[..i].to_vec();
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&frame.as_bytes()[i..]);
        prop_assert!(std::str::from_utf8(&bytes).is_err());
        prop_assert!(
            matches!(Envelope::decode_json(&bytes), Err(DecodeError::Json(_))),
            "frame: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn invalid_utf8_inside_a_payload_string_is_now_an_error() {
    let frame = b"{\"type\":\"data\",\"id\":\"a\",\"payload\":\"\xff\"}";
    // serde passed it through (the payload string is skipped, not read)...
    assert!(reference_decode(frame).is_ok());
    // ...the payload must be JSON text now.
    assert!(matches!(
        Envelope::decode_json(frame),
        Err(DecodeError::Json(_))
    ));
}

#[test]
fn same_as_reference_on_hand_picked_frames() {
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let frames = [
        // Not objects.
        " 42 ",
        "\t\"s\"\n",
        "null",
        "[]",
        " [] ",
        "[null]",
        r#"["data","x",1,true,{"a":1}]"#,
        r#" ["ack","x"] "#,
        r#"["ack",null]"#,
        r#"["data","x",1,true,{},6]"#,
        r#"[1]"#,
        // Members of the wrong type.
        r#"{"type":1,"payload":2}"#,
        r#"{"type":"data","id":5,"payload":2}"#,
        r#"{"type":"data","id":null,"payload":2}"#,
        r#"{"type":null,"payload":2}"#,
        r#"{"type":"data","timestamp":"1","payload":2}"#,
        r#"{"type":"data","timestamp":[1],"payload":2}"#,
        r#"{"type":"data","timestamp":null,"payload":null}"#,
        r#"{"type":"data","replay":1,"payload":2}"#,
        r#"{"type":"data","replay":1e400,"payload":2}"#,
        r#"{"type":"data","replay":"\ud800","payload":2}"#,
        r#"{"type":"data","replay":"yes","payload":2}"#,
        r#"{"type":"data","replay":null,"payload":2}"#,
        r#"{"type":"ack","id":"a","replay":true}"#,
        // Duplicates.
        r#"{"type":"data","type":"data","payload":2}"#,
        r#"{"type":"data","payload":1,"payload":2}"#,
        r#"{"type":"data","payload":1,"\u0070ayload":2}"#,
        r#"{"type":"data","x":1,"x":2,"payload":2}"#,
        // Escapes.
        r#"{"\u0074ype":"d\u0061ta","id":"\ud83c\udf89","payload":2}"#,
        r#"{"type":"data","id":"\ud800","payload":2}"#,
        r#"{"type":"data","\ud800":1,"payload":2}"#,
        r#"{"type":"data","x":{"\ud800":1},"payload":"\udc00"}"#,
        // Whitespace everywhere.
        " \t\r\n{ \"type\" : \"data\" , \"payload\" : [ 1 , 2 ] } \n",
        // Invalid.
        "",
        " ",
        "{",
        r#"{"type":"data","payload":}"#,
        r#"{"type":"data","payload":1,}"#,
        "\u{c}{}",
        "{}\u{c}",
        "{} x",
        "\"\u{1}\"",
    ];
    for frame in frames {
        let text = frame.to_string();
        assert_eq!(
            Envelope::decode_json(text.as_bytes()),
            reference_decode(text.as_bytes()),
            "{text:?}"
        );
    }
    for depth in [126, 127, 128, 129, 1000] {
        for text in [
            deep(depth),
            format!(r#"{{"type":"data","payload":{}}}"#, deep(depth)),
            format!(r#"{{"type":"data","replay":{},"payload":1}}"#, deep(depth)),
            format!(r#"{{"type":"data","x":{},"payload":1}}"#, deep(depth)),
        ] {
            assert_eq!(
                Envelope::decode_json(text.as_bytes()),
                reference_decode(text.as_bytes()),
                "depth {depth}: {text}"
            );
        }
    }
}
