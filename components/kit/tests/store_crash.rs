//! The disk log after a crash: a torn or corrupt tail is cut at the last
//! whole record (at every byte offset of the last record), corruption in
//! an older segment keeps what precedes it, and a writer killed with
//! SIGKILL loses nothing it reported synced.

use bytes::Bytes;
use fednode_kit::store::{Log, LogOptions, HEADER_BYTES};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// 200 bytes that say which record they are.
fn body(seq: u64) -> Vec<u8> {
    format!("{seq:019}|").repeat(10).into_bytes()
}

const RECORD: u64 = HEADER_BYTES + 200;

fn one_segment() -> LogOptions {
    LogOptions::with_max_bytes(1 << 30)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// `n` records appended and synced, the log closed.
fn write_log(dir: &Path, opts: LogOptions, n: u64) {
    let (mut log, _) = Log::open(dir, opts).unwrap();
    for seq in 1..=n {
        assert_eq!(log.append(&body(seq)).unwrap().first, seq);
    }
    log.sync().unwrap();
}

fn read_all(log: &mut Log) -> Vec<(u64, Bytes)> {
    log.read_batch(1, usize::MAX, u64::MAX).unwrap()
}

fn expected(seqs: impl IntoIterator<Item = u64>) -> Vec<(u64, Bytes)> {
    seqs.into_iter()
        .map(|s| (s, Bytes::from(body(s))))
        .collect()
}

/// Reopens a log whose last record (number `n`) was damaged: exactly the
/// records before it are kept, `cut` bytes are reported cut, and the log
/// takes the record again and reads it back.
fn assert_recovers_before_last(dir: &Path, n: u64, cut: u64, reasons: &[&str]) {
    let (mut log, rec) = Log::open(dir, one_segment()).unwrap();
    assert_eq!(rec.records, n - 1, "cut {cut}");
    assert_eq!(rec.truncated_bytes, cut);
    assert_eq!(rec.cuts.len(), usize::from(cut > 0));
    if let Some(c) = rec.cuts.first() {
        assert!(reasons.contains(&c.reason), "cut {cut}: {}", c.reason);
        assert_eq!(c.offset, (n - 1) * RECORD);
    }
    let seg = &segment_files(dir)[0];
    assert_eq!(fs::metadata(seg).unwrap().len(), (n - 1) * RECORD);
    assert_eq!(log.next_seq(), n);
    assert_eq!(log.append(&body(n)).unwrap().first, n);
    assert_eq!(read_all(&mut log), expected(1..=n));
    log.sync().unwrap();
    drop(log);
    let (_, rec) = Log::open(dir, one_segment()).unwrap();
    assert_eq!((rec.records, rec.truncated_bytes), (n, 0));
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_offset() {
    const N: u64 = 8;
    for cut in 0..RECORD {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), one_segment(), N);
        let seg = &segment_files(dir.path())[0];
        let f = OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len((N - 1) * RECORD + cut).unwrap();
        drop(f);
        assert_recovers_before_last(dir.path(), N, cut, &["short header", "short body"]);
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_cut() {
    const N: u64 = 8;
    // Length (low and high byte), checksum, first, middle and last body byte.
    for at in [0, 3, 4, 7, 8, 100, RECORD - 1] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), one_segment(), N);
        let seg = &segment_files(dir.path())[0];
        flip_byte(seg, (N - 1) * RECORD + at);
        assert_recovers_before_last(dir.path(), N, RECORD, &["short body", "checksum mismatch"]);
    }
}

fn flip_byte(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x40]).unwrap();
}

#[test]
fn corruption_inside_an_older_segment_keeps_what_precedes_it() {
    let dir = tempfile::tempdir().unwrap();
    // Ten records per segment: 1-10, 11-20, 21-30, 31-35.
    let opts = LogOptions {
        max_bytes: 1 << 30,
        segment_bytes: 10 * RECORD,
        retain_acked: false,
    };
    write_log(dir.path(), opts, 35);
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 4);
    // The body of record 14.
    flip_byte(&segs[1], 3 * RECORD + 50);

    let (mut log, rec) = Log::open(dir.path(), opts).unwrap();
    assert_eq!((rec.records, rec.segments), (10 + 3 + 10 + 5, 4));
    assert_eq!(rec.truncated_bytes, 7 * RECORD);
    assert_eq!(rec.cuts.len(), 1);
    assert_eq!(
        (rec.cuts[0].path.as_path(), rec.cuts[0].offset),
        (segs[1].as_path(), 3 * RECORD)
    );
    assert_eq!(rec.cuts[0].reason, "checksum mismatch");
    assert_eq!(read_all(&mut log), expected((1..=13).chain(21..=35)));
    assert_eq!((log.messages(), log.next_seq()), (28, 36));
    assert_eq!(log.append(&body(36)).unwrap().first, 36);
}

/// Set on the child process of `kill_9_keeps_every_synced_record`.
const CHILD_DIR: &str = "FEDNODE_STORE_CRASH_CHILD_DIR";

/// Not a test of its own: when the variable is set, this is the writer
/// that `kill_9_keeps_every_synced_record` runs and kills. It appends
/// batches of 1 to 3,000 records, says on stdout how far its last sync
/// went, then syncs the batch: the parent kills it on reading a line, so
/// the kill lands while a batch is being written out or fsynced.
#[test]
fn child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    // Small segments: rolls happen while it is killed too.
    let opts = LogOptions {
        max_bytes: 1 << 30,
        segment_bytes: 256 << 10,
        retain_acked: false,
    };
    let (mut log, _) = Log::open(dir, opts).unwrap();
    let mut out = std::io::stdout().lock();
    for _ in 0..1_000_000 {
        for _ in 0..=log.next_seq() * 7919 % 3000 {
            let seq = log.next_seq();
            log.append(&body(seq)).unwrap();
        }
        if writeln!(out, "synced {}", log.synced_through())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
        log.sync().unwrap();
    }
}

#[test]
fn kill_9_keeps_every_synced_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut synced = 0;
    // Three lives: each writer resumes the log the last one left.
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_appends_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < 30 {
            let line = lines.next().expect("the writer ended before it was killed");
            if let Some(n) = synced_seq(&line.unwrap()) {
                synced = n;
                seen += 1;
            }
        }
        // SIGKILL, mid-write or mid-fsync.
        child.kill().unwrap();
        for line in lines {
            synced = synced_seq(&line.unwrap()).unwrap_or(synced);
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: {status}");

        let (mut log, rec) = Log::open(dir.path(), LogOptions::with_max_bytes(1 << 30)).unwrap();
        assert!(
            rec.records >= synced,
            "round {round}: {} < {synced}",
            rec.records
        );
        // Every record kept is whole and in place, none is missing.
        let all = read_all(&mut log);
        assert_eq!(all.len() as u64, rec.records);
        assert_eq!(all, expected(1..=rec.records), "round {round}");
        assert_eq!(log.next_seq(), rec.records + 1);
    }
    assert!(synced >= 3 * 30);
}

fn synced_seq(line: &str) -> Option<u64> {
    line.strip_prefix("synced ").map(|n| n.parse().unwrap())
}
