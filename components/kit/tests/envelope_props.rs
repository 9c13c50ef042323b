//! Property tests: every envelope survives encode → decode in both codecs,
//! and any JSON value that is not an envelope decodes as data carrying it.

use bytes::Bytes;
use fednode_kit::envelope::{Encoding, Envelope, Kind};
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
    )
        .prop_map(|(kind, id, timestamp, replay, payload)| Envelope {
            kind,
            id,
            timestamp,
            replay,
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
