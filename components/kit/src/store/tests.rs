use super::*;

/// Bodies of 10 bytes: records of 18, so a 72-byte segment holds 4.
fn body(seq: u64) -> Vec<u8> {
    format!("rec-{seq:06}").into_bytes()
}

fn opts(segment_bytes: u64, max_bytes: u64) -> LogOptions {
    LogOptions {
        max_bytes,
        segment_bytes,
        retain_acked: false,
    }
}

/// 4 records per segment, room for 1 MiB.
fn small() -> LogOptions {
    opts(72, 1 << 20)
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

fn append_n(log: &mut Log, n: u64) {
    for _ in 0..n {
        let seq = log.next_seq();
        let a = log.append(&body(seq)).unwrap();
        assert_eq!((a.first, a.last, a.dropped), (seq, seq, 0));
    }
}

fn read_all(log: &mut Log, from: u64) -> Vec<(u64, Bytes)> {
    log.read_batch(from, usize::MAX, u64::MAX).unwrap()
}

fn assert_records(got: &[(u64, Bytes)], seqs: std::ops::RangeInclusive<u64>) {
    let want: Vec<(u64, Bytes)> = seqs.map(|s| (s, Bytes::from(body(s)))).collect();
    assert_eq!(got, want.as_slice());
}

#[test]
fn append_read_ack_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert_eq!((rec.records, rec.segments, rec.truncated_bytes), (0, 1, 0));
    assert_eq!(
        (log.next_seq(), log.oldest_seq(), log.first_unacked()),
        (1, 1, 1)
    );
    append_n(&mut log, 10);
    assert_records(&read_all(&mut log, 1), 1..=10);
    assert_records(&read_all(&mut log, 7), 7..=10);
    assert!(read_all(&mut log, 11).is_empty());
    log.ack_through(6).unwrap();
    assert_eq!((log.messages(), log.first_unacked()), (4, 7));
    log.sync().unwrap();
    drop(log);

    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    // Segments 1-4 released; 5-8 and 9-10 kept.
    assert_eq!((rec.records, rec.segments, rec.truncated_bytes), (6, 2, 0));
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(
        (log.acked(), log.first_unacked(), log.oldest_seq()),
        (6, 7, 5)
    );
    assert_eq!((log.next_seq(), log.messages()), (11, 4));
    let from = log.first_unacked();
    assert_records(&read_all(&mut log, from), 7..=10);
    append_n(&mut log, 3);
    assert_records(&read_all(&mut log, 5), 5..=13);
}

#[test]
fn read_batch_honours_its_limits_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    append_n(&mut log, 10);
    assert_records(&log.read_batch(2, 5, u64::MAX).unwrap(), 2..=6);
    // 25 bytes of budget: two 10-byte bodies, not a third.
    assert_records(&log.read_batch(3, 100, 25).unwrap(), 3..=4);
    // The first record comes whatever its size.
    assert_records(&log.read_batch(3, 100, 1).unwrap(), 3..=3);
    assert!(log.read_batch(1, 0, u64::MAX).unwrap().is_empty());
}

#[test]
fn read_batch_sees_unsynced_appends_and_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let base = log.stats().fsyncs;
    append_n(&mut log, 6);
    assert_records(&read_all(&mut log, 1), 1..=6);
    append_n(&mut log, 3);
    assert_records(&read_all(&mut log, 7), 7..=9);
    // Nothing was fsynced but the two segment rolls (file and directory).
    assert_eq!(log.synced_through(), 8);
    assert_eq!(log.stats().fsyncs - base, 2 * 2);
}

#[test]
fn sync_fsyncs_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), opts(1 << 20, 1 << 20)).unwrap();
    let base = log.stats().fsyncs;
    append_n(&mut log, 3);
    log.sync().unwrap();
    // Written out, not just fsynced.
    let seg = dir.path().join(&segment_files(dir.path())[0]);
    assert_eq!(fs::metadata(seg).unwrap().len(), 3 * 18);
    log.sync().unwrap();
    assert_eq!(log.stats().fsyncs - base, 1);
    assert_eq!(log.synced_through(), 3);
    log.ack_through(2).unwrap();
    log.sync().unwrap();
    // The cursor file and the directory.
    assert_eq!(log.stats().fsyncs - base, 3);
    log.sync().unwrap();
    assert_eq!(log.stats().fsyncs - base, 3);
}

#[test]
fn numbering_continues_after_every_segment_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    append_n(&mut log, 10);
    log.ack_through(10).unwrap();
    // Only the segment being written stays.
    assert_eq!(segment_files(dir.path()), ["00000000000000000009.seg"]);
    assert_eq!(log.messages(), 0);
    log.sync().unwrap();
    drop(log);

    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(
        (log.next_seq(), log.first_unacked(), log.messages()),
        (11, 11, 0)
    );
    drop(log);

    for f in segment_files(dir.path()) {
        fs::remove_file(dir.path().join(f)).unwrap();
    }
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(rec.records, 0);
    assert_eq!(
        (log.next_seq(), log.first_unacked(), log.oldest_seq()),
        (11, 11, 11)
    );
    assert_eq!(log.append(b"again").unwrap().first, 11);
    assert_eq!(segment_files(dir.path()), ["00000000000000000011.seg"]);
}

#[test]
fn numbering_continues_from_the_cursor_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    append_n(&mut log, 10);
    log.ack_through(5).unwrap();
    log.sync().unwrap();
    drop(log);
    for f in segment_files(dir.path()) {
        fs::remove_file(dir.path().join(f)).unwrap();
    }
    // The cursor was written when 11 was next: unacked records may be
    // lost with their files, their numbers are not reused.
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(
        (log.next_seq(), log.first_unacked(), log.acked()),
        (11, 11, 5)
    );
}

#[test]
fn ack_deletes_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    append_n(&mut log, 12);
    assert_eq!(segment_files(dir.path()).len(), 3);
    log.ack_through(6).unwrap();
    assert_eq!(
        segment_files(dir.path()),
        ["00000000000000000005.seg", "00000000000000000009.seg"]
    );
    assert_eq!(
        (log.oldest_seq(), log.messages(), log.bytes()),
        (5, 6, 8 * 18)
    );
    // Acked records of a kept segment are still readable (replay).
    assert_records(&read_all(&mut log, 1), 5..=12);
    log.ack_through(8).unwrap();
    assert_eq!(segment_files(dir.path()), ["00000000000000000009.seg"]);
    log.ack_through(12).unwrap();
    assert_eq!(segment_files(dir.path()), ["00000000000000000009.seg"]);
    assert_eq!(log.stats().dropped_records, 0);
    // Acking ahead of the log is capped.
    log.ack_through(99).unwrap();
    assert_eq!(log.acked(), 12);
}

#[test]
fn a_full_log_drops_the_oldest_segment_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    // Three segments of four records.
    let (mut log, _) = Log::open(dir.path(), opts(72, 216)).unwrap();
    append_n(&mut log, 12);
    assert!(log.is_full() && log.would_exceed(10));
    log.ack_through(2).unwrap();
    let a = log.append(&body(13)).unwrap();
    // Records 3 and 4 were unacked; 1 and 2 were released already.
    assert_eq!((a.first, a.dropped), (13, 2));
    assert_eq!(log.stats().dropped_records, 2);
    assert_eq!(
        (log.oldest_seq(), log.first_unacked(), log.bytes()),
        (5, 5, 9 * 18)
    );
    assert_eq!(segment_files(dir.path()).len(), 3);
    append_n(&mut log, 3);
    let a = log.append_batch(&[body(17), body(18)]).unwrap();
    assert_eq!((a.first, a.last, a.dropped), (17, 18, 4));
    assert_eq!(log.stats().dropped_records, 6);
    assert_records(&read_all(&mut log, 1), 9..=18);
    assert!(log.bytes() <= 216);
}

#[test]
fn acked_data_makes_room_before_anything_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // One segment as big as the log.
    let (mut log, _) = Log::open(dir.path(), opts(72, 72)).unwrap();
    append_n(&mut log, 4);
    assert!(log.would_exceed(10));
    log.ack_through(4).unwrap();
    assert!(!log.would_exceed(10) && !log.is_full());
    let a = log.append(&body(5)).unwrap();
    assert_eq!((a.first, a.dropped), (5, 0));
    assert_eq!(segment_files(dir.path()), ["00000000000000000005.seg"]);
    assert_eq!(log.stats().dropped_records, 0);
}

#[test]
fn refuses_what_it_cannot_store_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), opts(72, 100)).unwrap();
    assert!(matches!(log.append(b""), Err(StoreError::Empty)));
    assert!(matches!(
        log.append(&[0u8; 93]),
        Err(StoreError::TooLarge {
            len: 93,
            max_bytes: 100
        })
    ));
    assert!(log.would_exceed(93));
    // A batch with one bad record writes none.
    assert!(log.append_batch(&[&b"ok"[..], b""]).is_err());
    assert_eq!((log.next_seq(), log.bytes()), (1, 0));
    // A record bigger than a segment gets one of its own.
    assert_eq!(log.append(&[7u8; 92]).unwrap().first, 1);
    assert_eq!(log.append(b"x").unwrap().dropped, 1);
    assert!(matches!(
        Log::open(dir.path(), opts(0, 100)),
        Err(StoreError::Options(_))
    ));
}

#[test]
fn errors_name_the_operation_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let err = Log::open(file.join("store"), small()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot create store directory {}: ",
            file.join("store").display()
        )),
        "{msg}"
    );
}

#[test]
fn drop_syncs_what_was_appended() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    append_n(&mut log, 5);
    log.ack_through(1).unwrap();
    drop(log);
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert_eq!((rec.records, log.acked()), (5, 1));
    assert_records(&read_all(&mut log, 2), 2..=5);
}

#[test]
fn a_log_moves_to_a_blocking_thread() {
    fn send<T: Send + 'static>() {}
    send::<Log>();
}

#[test]
fn retained_acked_records_stay_readable_until_their_room_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    // 4 records per segment (18 bytes each), room for 11 records.
    let opts = LogOptions {
        retain_acked: true,
        ..opts(72, 200)
    };
    let (mut log, _) = Log::open(dir.path(), opts).unwrap();
    for seq in 1..=8 {
        log.append(&body(seq)).unwrap();
    }
    log.ack_through(8).unwrap();
    // Acknowledged, yet kept and readable.
    assert_eq!(log.messages(), 0);
    assert_eq!(log.oldest_seq(), 1);
    let all = log.read_batch(1, 100, u64::MAX).unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(&all[0].1[..], &body(1)[..]);
    for seq in 9..=11 {
        assert_eq!(log.append(&body(seq)).unwrap().dropped, 0);
    }
    // Full, but the acknowledged records' room counts as free: appending
    // loses nothing unacknowledged.
    assert!(!log.would_exceed(10));
    // The append takes the oldest acknowledged segment.
    assert_eq!(log.append(&body(12)).unwrap().dropped, 0);
    assert_eq!(log.oldest_seq(), 5);
    assert_eq!(log.messages(), 4);
    // After a reopen the retained history is still there.
    log.sync().unwrap();
    drop(log);
    let (mut log, _) = Log::open(dir.path(), opts).unwrap();
    assert_eq!(log.oldest_seq(), 5);
    assert_eq!(log.first_unacked(), 9);
    assert_eq!(log.read_batch(5, 100, u64::MAX).unwrap().len(), 8);
}
