//! Inputs the fuzz targets in `fuzz/` (see docs/architecture.md,
//! "Fuzzing") found, each fed to the API it broke, as plain tests so that
//! `scripts/test` keeps them fixed without a fuzzer.

use fednode_kit::envelope::{DecodeError, Encoding, Envelope, Kind, MAX_MSGPACK_DEPTH};

/// `envelope_json`: a plain object with whitespace around it kept the
/// whitespace in its payload (a scalar or an array did not), so the JSON
/// round trip changed the payload: `" {}"` → payload `" {}"` → encoded
/// `…"payload": {}}` → payload `"{}"`.
#[test]
fn a_plain_object_payload_has_no_surrounding_whitespace() {
    for frame in [
        " {}",
        "{}\n",
        "\t{\"a\":1} \r\n",
        " {\"type\":\"raw\",\"channels\":[1,2]} ",
        " {\"type\":\"data\",\"id\":\"x\"} ",
        // Read by serde from an array, not an envelope either.
        " [\"raw\"] ",
        " [1] ",
        " 42 ",
    ] {
        let env = Envelope::decode_json(frame.as_bytes()).unwrap();
        assert_eq!(env.kind, Kind::Data, "{frame:?}");
        assert_eq!(
            std::str::from_utf8(&env.payload).unwrap(),
            frame.trim(),
            "{frame:?}"
        );
        let back = Envelope::decode(&env.encode(Encoding::Json), Encoding::Json).unwrap();
        assert_eq!(back, env, "{frame:?}");
    }
}

/// `depth` arrays, each holding the next, the innermost `[1]`, as
/// MessagePack (`0x91`: an array of one element).
fn nested_msgpack(depth: usize) -> Vec<u8> {
    let mut bytes = vec![0x91; depth];
    bytes.push(0x01);
    bytes
}

/// `envelope_msgpack`: a frame nested deeper than serde_json's `Value`
/// reads (127 levels) decoded, since rmp_serde allows 1024, and
/// re-encoding it sent the payload as `null`. Now a frame nests at most
/// `MAX_MSGPACK_DEPTH` (127) arrays and maps and its payload one less, so
/// that the payload fits a `Value` and, re-encoded inside the envelope's
/// map, the frame still decodes.
#[test]
fn msgpack_nesting_beyond_what_encode_can_carry_is_refused() {
    // The fuzzer's input, minimised: 128 arrays deep.
    let mut found = vec![0x92];
    found.extend_from_slice(&[0x91; 54]);
    found.extend_from_slice(&[0x92, 0x92, 0x95, 0x54, 0x5d]);
    found.extend_from_slice(&[0x91; 70]);
    found.extend_from_slice(&[0x6b, 0x00, 0x00, 0x54, 0x5d, 0x54]);
    assert!(matches!(
        Envelope::decode_msgpack(&found),
        Err(DecodeError::Msgpack(_))
    ));

    assert_eq!(MAX_MSGPACK_DEPTH, 127);
    let round_trips = |frame: &[u8]| {
        let env = Envelope::decode_msgpack(frame).unwrap();
        let back = Envelope::decode_msgpack(&env.encode_msgpack()).unwrap();
        assert_eq!(back, env);
        env
    };

    // A plain value is the payload whole: 126 levels at most.
    let env = round_trips(&nested_msgpack(126));
    let text = String::from_utf8(env.payload.to_vec()).unwrap();
    assert_eq!(text, format!("{}1{}", "[".repeat(126), "]".repeat(126)));
    let err = Envelope::decode_msgpack(&nested_msgpack(127)).unwrap_err();
    assert!(matches!(err, DecodeError::Msgpack(_)), "{err:?}");
    assert_eq!(err.error_type(), "parse_error");
    assert!(Envelope::decode_msgpack(&nested_msgpack(128)).is_err());

    // In an envelope, its map is one of the 127 levels.
    let framed = |depth: usize| {
        let mut bytes = vec![0x83]; // a map of three
        bytes.extend_from_slice(b"\xa4type\xa4data\xa2id\xa1x\xa7payload");
        bytes.extend_from_slice(&nested_msgpack(depth));
        bytes
    };
    let env = round_trips(&framed(126));
    assert_eq!(env.kind, Kind::Data);
    assert_eq!(&*env.id, "x");
    assert!(Envelope::decode_msgpack(&framed(127)).is_err());
}

/// `store_record`: a segment file named `18446744073709551615.seg`
/// (`u64::MAX`) or a cursor saying `next 18446744073709551615` made
/// numbering continue from `u64::MAX`, and the first append overflowed
/// (a panic with overflow checks, numbering wrapping to 0 without).
/// Numbers beyond `MAX_SEQ` are not read from disk now: such a file is not
/// a segment of the log, such a cursor is unreadable (treated as absent).
#[test]
fn sequence_numbers_near_u64_max_on_disk_do_not_overflow() {
    use fednode_kit::store::{Log, LogOptions, MAX_SEQ};

    let cursor =
        |acked: u64, next: u64| format!("fednode-store-cursor 1\nacked {acked}\nnext {next}\n");
    /// Files to write into the store's directory: name, content.
    type Files = Vec<(String, Vec<u8>)>;
    let cases: [(&str, Files); 4] = [
        // The fuzzer's input, minimised: two empty segment files, the
        // first named 0, the last u64::MAX, and an unreadable cursor.
        (
            "segment u64::MAX",
            vec![
                ("00000000000000000000.seg".into(), vec![]),
                ("18446744073709551615.seg".into(), vec![]),
                ("cursor".into(), b"fednode-store-cursor 1\n".to_vec()),
            ],
        ),
        (
            "segment beyond MAX_SEQ",
            vec![(format!("{:020}.seg", MAX_SEQ + 1), vec![])],
        ),
        (
            "cursor next u64::MAX",
            vec![("cursor".into(), cursor(0, u64::MAX).into_bytes())],
        ),
        (
            "cursor acked u64::MAX",
            vec![("cursor".into(), cursor(u64::MAX, 1).into_bytes())],
        ),
    ];
    for (case, files) in cases {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let (mut log, _) = Log::open(dir.path(), LogOptions::with_max_bytes(1 << 20)).unwrap();
        assert_eq!(log.next_seq(), 1, "{case}");
        let appended = log.append(b"after").unwrap();
        assert_eq!(appended.first, 1, "{case}");
        let read = log.read_batch(1, 10, u64::MAX).unwrap();
        assert_eq!(read.len(), 1, "{case}");
        assert_eq!(&read[0].1[..], b"after", "{case}");
    }

    // MAX_SEQ itself is still a number the log reads and counts on from.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cursor"),
        cursor(MAX_SEQ - 1, MAX_SEQ).into_bytes(),
    )
    .unwrap();
    let (mut log, _) = Log::open(dir.path(), LogOptions::with_max_bytes(1 << 20)).unwrap();
    assert_eq!(log.next_seq(), MAX_SEQ);
    assert_eq!(log.append(b"a").unwrap().first, MAX_SEQ);
    assert_eq!(log.append(b"b").unwrap().first, MAX_SEQ + 1);
    drop(log);
    let (mut log, recovery) = Log::open(dir.path(), LogOptions::with_max_bytes(1 << 20)).unwrap();
    assert!(recovery.cuts.is_empty());
    let read = log.read_batch(0, 10, u64::MAX).unwrap();
    assert_eq!(
        read.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [MAX_SEQ, MAX_SEQ + 1]
    );
}
