//! The kit store's recovery and record reader (`fednode_kit::store::Log`)
//! over arbitrary segment files.
//!
//! Input layout (short inputs are padded with zeros):
//! - byte 0, flags: bit 0 a second segment file, bit 1 a cursor file,
//!   bit 2 sequence numbers from the whole `u64` range;
//! - bytes 1..9 and 9..17 (u64 LE): where the two segments start (taken
//!   modulo 16 and 32 without bit 2);
//! - with bit 1: one byte `n`, then `n` bytes appended to the cursor's
//!   format line `fednode-store-cursor 1\n` (e.g. `acked 3\nnext 9\n`);
//! - with bit 0: a u16 LE length, the first segment's bytes, and the rest
//!   is the second segment; without, the rest is the only segment.
//!
//! The files are written to a fresh temporary directory (in /dev/shm when
//! there is one: fsyncs are free there) and the log is opened with
//! `Log::open`. Asserts:
//! - no panic (an `Err` is allowed);
//! - every record `read_batch` returns is one that the segment file holds
//!   whole, with a matching CRC, at that sequence number, and within what
//!   the next segment's name leaves it (an independent scan of the input
//!   is the oracle; a file named beyond `MAX_SEQ` is not a segment);
//!   sequence numbers increase;
//! - nothing valid and unacknowledged is lost: every such record of the
//!   oracle is returned;
//! - the log works after recovery: a record appended is read back, and
//!   reopening finds nothing to cut and the same records.
#![no_main]

use fednode_kit::store::{Log, LogOptions, MAX_SEQ};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;

const HEADER: usize = 8;

/// The records of one segment file that recovery must keep: the longest
/// prefix of whole records with a nonzero length and a matching CRC, at
/// most `limit` of them. Sequence numbers as u128 (no overflow here).
fn oracle(bytes: &[u8], first: u64, limit: u128, out: &mut BTreeMap<u128, Vec<u8>>) -> u128 {
    let mut at = 0usize;
    let mut count = 0u128;
    while count < limit && bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        if len == 0 || len > bytes.len() - at - HEADER {
            break;
        }
        let body = &bytes[at + HEADER..at + HEADER + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        out.insert(u128::from(first) + count, body.to_vec());
        count += 1;
        at += HEADER + len;
    }
    count
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

fn read_all(log: &mut Log) -> Vec<(u64, Vec<u8>)> {
    log.read_batch(0, usize::MAX, u64::MAX)
        .expect("read_batch after open")
        .into_iter()
        .map(|(seq, body)| (seq, body.to_vec()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut head = [0u8; 17];
    let n = data.len().min(head.len());
    head[..n].copy_from_slice(&data[..n]);
    let mut rest = &data[n..];
    let flags = head[0];
    let a = u64::from_le_bytes(head[1..9].try_into().unwrap());
    let b = u64::from_le_bytes(head[9..17].try_into().unwrap());
    let (first_a, first_b) = if flags & 4 != 0 {
        (a, b)
    } else {
        let first_a = 1 + a % 16;
        (first_a, first_a + b % 32)
    };

    let mut cursor = None;
    if flags & 2 != 0 {
        let len = rest.first().copied().unwrap_or(0) as usize;
        rest = rest.get(1..).unwrap_or(&[]);
        let len = len.min(rest.len());
        let mut text = b"fednode-store-cursor 1\n".to_vec();
        text.extend_from_slice(&rest[..len]);
        cursor = Some(text);
        rest = &rest[len..];
    }
    let mut segments: Vec<(u64, &[u8])> = if flags & 1 != 0 && first_a != first_b {
        let len = match rest {
            [x, y, ..] => u16::from_le_bytes([*x, *y]) as usize,
            _ => 0,
        };
        rest = rest.get(2..).unwrap_or(&[]);
        let len = len.min(rest.len());
        vec![(first_a, &rest[..len]), (first_b, &rest[len..])]
    } else {
        vec![(first_a, rest)]
    };
    segments.sort_by_key(|(first, _)| *first);

    let dir = temp_dir();
    for (first, bytes) in &segments {
        std::fs::write(dir.path().join(segment_name(*first)), bytes).unwrap();
    }
    if let Some(text) = &cursor {
        std::fs::write(dir.path().join("cursor"), text).unwrap();
    }

    // What recovery must keep, by sequence number. A segment's records may
    // not reach the next segment's first number; a file named beyond
    // MAX_SEQ is not a segment.
    segments.retain(|(first, _)| *first <= MAX_SEQ);
    let mut expected = BTreeMap::new();
    for (i, (first, bytes)) in segments.iter().enumerate() {
        let limit = segments
            .get(i + 1)
            .map_or(u128::MAX, |(next, _)| u128::from(next - first));
        oracle(bytes, *first, limit, &mut expected);
    }

    let opts = LogOptions::with_max_bytes(1 << 20);
    let Ok((mut log, _recovery)) = Log::open(dir.path(), opts) else {
        return;
    };
    let records = read_all(&mut log);
    let mut last = None;
    for (seq, body) in &records {
        assert!(last < Some(*seq), "sequence numbers go back at {seq}");
        last = Some(*seq);
        assert_eq!(
            expected.get(&u128::from(*seq)),
            Some(body),
            "record {seq} is not the one the file holds"
        );
    }
    let acked = u128::from(log.acked());
    for (seq, body) in expected.range(acked + 1..) {
        assert!(
            records
                .iter()
                .any(|(s, b)| u128::from(*s) == *seq && b == body),
            "record {seq} lost (acked {acked})"
        );
    }

    // The log works after recovery.
    let Ok(appended) = log.append(b"appended after recovery") else {
        return;
    };
    let back = log
        .read_batch(appended.first, 1, u64::MAX)
        .expect("read the appended record");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, appended.first);
    assert_eq!(&back[0].1[..], b"appended after recovery");
    let before = read_all(&mut log);
    drop(log);

    let (mut log, recovery) = Log::open(dir.path(), opts).expect("reopen");
    assert!(recovery.cuts.is_empty(), "cut again: {:?}", recovery.cuts);
    let after = read_all(&mut log);
    let acked = log.acked();
    let unacked = |r: &&(u64, Vec<u8>)| r.0 > acked;
    assert_eq!(
        after.iter().filter(unacked).collect::<Vec<_>>(),
        before.iter().filter(unacked).collect::<Vec<_>>(),
        "reopening changed the records"
    );
});
