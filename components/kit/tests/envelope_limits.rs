//! An envelope `id` longer than 256 bytes is `invalid_envelope`, in both
//! codecs and on every decoding path; other decode errors stay `parse_error`.

use bytes::Bytes;
use fednode_kit::envelope::{DecodeError, Encoding, Envelope, Kind, MAX_ID_BYTES};

fn data_with_id(id: &str) -> Envelope {
    let mut env = Envelope::data(Bytes::from_static(br#"{"a":1}"#));
    env.id = id.into();
    env
}

fn assert_invalid(result: Result<Envelope, DecodeError>, what: &str) {
    match result {
        Err(e @ DecodeError::InvalidEnvelope(_)) => {
            assert_eq!(e.error_type(), "invalid_envelope", "{what}");
            assert!(e.to_string().contains("more than 256"), "{what}: {e}");
        }
        other => panic!("{what}: expected an invalid envelope, got {other:?}"),
    }
}

#[test]
fn ids_up_to_256_bytes_decode_and_longer_ones_are_invalid() {
    assert_eq!(MAX_ID_BYTES, 256);
    for encoding in [Encoding::Json, Encoding::Msgpack] {
        let ok = data_with_id(&"i".repeat(256));
        assert_eq!(
            &*Envelope::decode(&ok.encode(encoding), encoding).unwrap().id,
            &*ok.id
        );
        let long = data_with_id(&"i".repeat(257));
        assert_invalid(
            Envelope::decode(&long.encode(encoding), encoding),
            &format!("{encoding:?}"),
        );
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        let wide = data_with_id(&"é".repeat(129));
        assert_invalid(
            Envelope::decode(&wide.encode(encoding), encoding),
            &format!("{encoding:?} wide"),
        );
        assert!(
            Envelope::decode(&data_with_id(&"é".repeat(128)).encode(encoding), encoding).is_ok()
        );
    }
}

#[test]
fn every_json_path_and_kind_checks_the_id() {
    let id = "x".repeat(300);
    let frames = [
        // The canonical ack (decoded without a scan).
        format!(r#"{{"type":"ack","id":"{id}"}}"#),
        // An ack as anyone may write it (the scanner).
        format!(r#"{{ "type": "ack", "id": "{id}" }}"#),
        format!(r#"{{"type":"nack","id":"{id}","payload":{{"reason":"x"}}}}"#),
        format!(r#"{{"type":"request","id":"{id}","payload":{{"method":"m"}}}}"#),
        format!(r#"{{"type":"reply","id":"{id}","payload":null}}"#),
        // `replay` not a literal: decoded by serde.
        format!(r#"{{"type":"data","id":"{id}","replay":[1],"payload":1}}"#),
        // An escape in the id: still its decoded length.
        format!(r#"{{"type":"data","id":"\u0041{}","payload":1}}"#, &id[1..]),
    ];
    for frame in &frames {
        assert_invalid(Envelope::decode_json(frame.as_bytes()), frame);
        assert_invalid(Envelope::decode_json_str(frame), frame);
    }
}

#[test]
fn an_object_that_is_not_an_envelope_is_data_whatever_its_id() {
    let id = "x".repeat(300);
    for frame in [
        format!(r#"{{"type":"raw","id":"{id}"}}"#),
        // A known type without payload is not an envelope either.
        format!(r#"{{"type":"data","id":"{id}"}}"#),
    ] {
        let env = Envelope::decode_json(frame.as_bytes()).unwrap();
        assert_eq!(env.kind, Kind::Data);
        assert!(env.id.is_empty());
    }
}

#[test]
fn other_decode_errors_are_parse_errors() {
    let json = Envelope::decode_json(b"{not json").unwrap_err();
    assert_eq!(json.error_type(), "parse_error");
    let msgpack = Envelope::decode_msgpack(&[0xc1]).unwrap_err();
    assert_eq!(msgpack.error_type(), "parse_error");
}
