//! `Envelope::decode_msgpack` on arbitrary bytes.
//!
//! Asserts:
//! - it never panics;
//! - a decoded envelope has an id of at most `MAX_ID_BYTES` and a payload
//!   that is JSON text;
//! - round trip: `decode_msgpack(encode_msgpack(env)) == env`, payload
//!   bytes included (the payload came from a value, so it is written the
//!   way serde_json writes that value both times);
//! - it survives the JSON codec too: `decode_json(encode_json(env)) == env`.
#![no_main]

use fednode_kit::envelope::{Envelope, MAX_ID_BYTES};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode_msgpack(data) else {
        return;
    };
    assert!(env.id.len() <= MAX_ID_BYTES);
    assert!(
        serde_json::from_slice::<IgnoredAny>(&env.payload).is_ok(),
        "payload is not JSON: {:?}",
        String::from_utf8_lossy(&env.payload)
    );

    let encoded = env.encode_msgpack();
    let back = Envelope::decode_msgpack(&encoded)
        .unwrap_or_else(|e| panic!("encode_msgpack output does not decode: {e}"));
    assert_eq!(back, env, "MessagePack round trip");

    let encoded = env.encode_json();
    let back = Envelope::decode_json(&encoded).unwrap_or_else(|e| {
        panic!(
            "encode_json output does not decode ({e}): {:?}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(back, env, "JSON round trip");
});
