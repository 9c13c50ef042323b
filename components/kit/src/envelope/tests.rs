use super::*;
use serde_json::json;

#[test]
fn decodes_a_data_envelope_keeping_payload_bytes() {
    let frame = br#"{"type":"data","id":"d1","timestamp":1704844800000,"payload":{"a": 1}}"#;
    let env = Envelope::decode_json(frame).unwrap();
    assert_eq!(env.kind, Kind::Data);
    assert_eq!(&*env.id, "d1");
    assert_eq!(env.timestamp, Some(1704844800000));
    assert_eq!(&env.payload[..], br#"{"a": 1}"#);
}

#[test]
fn a_plain_object_is_data() {
    let frame = br#"{"type":"raw","channels":[1,2]}"#;
    let env = Envelope::decode_json(frame).unwrap();
    assert_eq!(env.kind, Kind::Data);
    assert!(env.id.is_empty());
    assert_eq!(&env.payload[..], &frame[..]);
    // A known type without payload is data too.
    let env = Envelope::decode_json(br#"{"type":"data","id":"x"}"#).unwrap();
    assert_eq!(env.payload_value(), json!({"type":"data","id":"x"}));
}

#[test]
fn non_objects_are_data_and_garbage_is_an_error() {
    assert_eq!(&Envelope::decode_json(b" 42 ").unwrap().payload[..], b"42");
    assert_eq!(
        &Envelope::decode_json(b"[1,2]").unwrap().payload[..],
        b"[1,2]"
    );
    assert!(Envelope::decode_json(b"{not json").is_err());
    assert!(Envelope::decode_msgpack(&[0xc1]).is_err());
}

#[test]
fn ids_are_escaped_only_when_they_need_it() {
    for id in ["d1", "a\"b", "back\\slash", "tab\there", "é-ß"] {
        let mut env = Envelope::data(Bytes::from_static(b"[1]"));
        env.id = id.into();
        env.timestamp = Some(-5);
        let text = env.encode_json();
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value["id"], id, "{}", String::from_utf8_lossy(&text));
        assert_eq!(value["timestamp"], -5);
        assert_eq!(Envelope::decode_json(&text).unwrap(), env);
    }
}

#[test]
fn a_canonical_ack_decodes_as_the_scanner_would() {
    for text in [
        r#"{"type":"ack","id":"m1"}"#,
        r#"{"type":"ack","id":""}"#,
        r#"{"type":"ack","id":"é-ü"}"#,
    ] {
        assert!(canonical_ack_id(text).is_some(), "{text}");
        let fast = Envelope::decode_json_str(text).unwrap();
        assert_eq!(
            fast,
            Envelope::decode_json_serde(text.as_bytes()).unwrap(),
            "{text}"
        );
        assert_eq!(String::from_utf8(fast.encode_json()).unwrap(), text);
    }
    for text in [
        r#"{"type":"ack","id":"a\"b"}"#,
        r#"{"type":"ack","id":"a"b"}"#,
        r#"{"type":"ack", "id":"m1"}"#,
        r#"{"type":"ack","id":"m1","payload":null}"#,
    ] {
        assert!(canonical_ack_id(text).is_none(), "{text}");
    }
}

#[test]
fn ack_needs_only_an_id() {
    let env = Envelope::decode_json(br#"{"type":"ack","id":"d1"}"#).unwrap();
    assert_eq!(env.kind, Kind::Ack);
    assert_eq!(env.encode_json(), br#"{"type":"ack","id":"d1"}"#.to_vec());
}

#[test]
fn replay_flag_round_trips() {
    let mut env = Envelope::data(Bytes::from_static(b"{}"));
    env.replay = true;
    let text = env.encode_json();
    assert!(String::from_utf8_lossy(&text).contains("\"replay\":true"));
    assert_eq!(Envelope::decode_json(&text).unwrap(), env);
    assert_eq!(
        Envelope::decode_msgpack(&env.encode_msgpack()).unwrap(),
        env
    );
}

#[test]
fn reply_payload_shapes() {
    let ok = ReplyPayload::ok(json!({"x": 1}));
    assert_eq!(ok.to_value(), json!({"status":"ok","result":{"x":1}}));
    let err = ReplyPayload::error(ErrorCode::UnknownMethod, "no such method: foo");
    assert_eq!(
        err.to_value(),
        json!({"status":"error","error":{"code":"unknown_method","message":"no such method: foo"}})
    );
}

#[test]
fn origins_are_written_as_serde_would_and_read_back_whatever_their_text() {
    let origins = [
        ("edge-01", None),
        ("edge-01", Some("eu-west")),
        ("a\"b\\c", Some("r\"")),
        ("é-ü", Some("北")),
        ("n}", Some("\",\"region\":\"x")),
    ];
    for (node, region) in origins {
        let origin = Origin::from_wire(Some(node), region).unwrap();
        let frame = encode_json_parts(Kind::Data, "d1", None, false, Some(&origin), b"{}");
        let text = String::from_utf8(frame.clone()).unwrap();
        let by_serde = serde_json::to_string(&WireOrigin::of(&origin)).unwrap();
        assert!(text.contains(&format!("\"origin\":{by_serde},")), "{text}");
        let back = Envelope::decode_json(&frame).unwrap();
        assert_eq!(back.origin.as_ref(), Some(&origin), "{text}");
    }
    // Spaced out (another writer): read by serde all the same.
    let spaced = br#"{"type":"data","id":"d","origin": {"region": "r", "node": "n"},"payload":1}"#;
    let origin = Envelope::decode_json(spaced).unwrap().origin.unwrap();
    assert_eq!((&*origin.node, origin.region.as_deref()), ("n", Some("r")));
}

#[test]
fn frames_are_allocated_at_their_length() {
    let plain = Origin::from_wire(Some("edge-01"), Some("eu-west")).unwrap();
    let odd = Origin::from_wire(Some("a\"b\\c"), Some("r\u{1}")).unwrap();
    for (kind, id, ts, replay, origin, payload) in [
        (
            Kind::Data,
            "d1",
            Some(1704844800000),
            false,
            None,
            &b"{\"a\":1}"[..],
        ),
        (Kind::Data, "d1", Some(-5), true, Some(&plain), b"[1, 2]"),
        (Kind::Data, "d\"1\n", None, false, Some(&odd), b"7"),
        (Kind::Ack, "a1", None, false, None, NULL),
        (Kind::Nack, "a1", None, false, None, b"{\"reason\":\"x\"}"),
    ] {
        let frame = encode_json_parts(kind, id, ts, replay, origin, payload);
        // A `Bytes` made from a vector with spare room allocates again.
        assert_eq!(frame.len(), frame.capacity(), "{frame:?}");
        let back = Envelope::decode_json(&frame).unwrap();
        assert_eq!((back.kind, &*back.id, back.timestamp), (kind, id, ts));
        assert_eq!(back.origin.as_ref(), origin);
    }
}

#[test]
fn fresh_ids_are_distinct_lowercase_v4_uuids() {
    let (a, b) = (new_id(), new_id());
    assert_ne!(a, b);
    let parsed = uuid::Uuid::parse_str(&a).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(&*a, parsed.hyphenated().to_string());
    assert_eq!(a.len(), 36);
    assert!(!a.bytes().any(|c| c.is_ascii_uppercase()));
}
