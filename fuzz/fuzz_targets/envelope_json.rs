//! `Envelope::decode_json` on arbitrary bytes.
//!
//! Asserts:
//! - it never panics (the kit's `debug_assert` that the scanner refuses
//!   only what serde_json refuses is armed: cargo fuzz builds with debug
//!   assertions);
//! - bytes that are not UTF-8 are a `DecodeError::Json`;
//! - on UTF-8, `decode_json_str` gives the same result, and so does the
//!   serde-only reference decoder of `tests/envelope_props.rs` (error
//!   message included), except that an id over `MAX_ID_BYTES` is refused;
//! - a decoded envelope has an id of at most `MAX_ID_BYTES` and a payload
//!   that is JSON text;
//! - round trip: `decode_json(encode_json(env)) == env`, and the
//!   MessagePack round trip keeps everything but the payload's spelling
//!   (for a payload that codec can carry).
#![no_main]

use fednode_kit::envelope::nesting;
use fednode_fuzz::reference::reference_decode;
use fednode_kit::envelope::{DecodeError, Envelope, MAX_ID_BYTES, MAX_MSGPACK_DEPTH};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    let decoded = Envelope::decode_json(data);
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(
            matches!(decoded, Err(DecodeError::Json(_))),
            "not UTF-8 but {decoded:?}"
        );
        return;
    };
    assert_eq!(decoded, Envelope::decode_json_str(text), "decode_json_str");

    match reference_decode(data) {
        Ok(env) if env.id.len() > MAX_ID_BYTES => assert!(
            matches!(decoded, Err(DecodeError::InvalidEnvelope(_))),
            "an id of {} bytes gave {decoded:?}",
            env.id.len()
        ),
        reference => assert_eq!(decoded, reference, "scanner and serde decoders differ"),
    }

    let Ok(env) = decoded else { return };
    assert!(env.id.len() <= MAX_ID_BYTES);
    assert!(
        serde_json::from_slice::<IgnoredAny>(&env.payload).is_ok(),
        "payload is not JSON: {:?}",
        String::from_utf8_lossy(&env.payload)
    );

    let encoded = env.encode_json();
    let back = Envelope::decode_json(&encoded).unwrap_or_else(|e| {
        panic!(
            "encode_json output does not decode ({e}): {:?}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(back, env, "JSON round trip");

    // The MessagePack codec carries the payload as a value, so only
    // payloads serde_json reads as a `Value` can survive it, and only those
    // nested less than `MAX_MSGPACK_DEPTH` deep (the envelope's map is one
    // more level) decode again.
    if serde_json::from_slice::<serde_json::Value>(&env.payload).is_ok()
        && nesting(&env.payload) < MAX_MSGPACK_DEPTH
    {
        let back =
            Envelope::decode_msgpack(&env.encode_msgpack()).expect("encode_msgpack output decodes");
        assert_eq!(back.kind, env.kind);
        assert_eq!(back.id, env.id);
        assert_eq!(back.timestamp, env.timestamp);
        assert_eq!(back.replay, env.replay);
        assert_eq!(back.origin, env.origin);
        assert_eq!(back.payload_value(), env.payload_value());
    }
});
