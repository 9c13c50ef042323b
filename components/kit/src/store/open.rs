//! [`Log::open`]: the recovery scan of every segment, and what it found.

use super::cursor;
use super::error::{io_error, sync_dir};
use super::segment::{self, path_of, Segment};
use super::{create_segment, remove_segment, Log, LogOptions, Stats, StoreError, WRITE_BUFFER};
use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// What [`Log::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records kept.
    pub records: u64,
    /// Bytes cut off segment files (torn or corrupt tails).
    pub truncated_bytes: u64,
    /// Segment files kept.
    pub segments: usize,
    /// Each cut, in file order.
    pub cuts: Vec<Cut>,
}

/// A segment file cut short at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub path: PathBuf,
    /// Where the file now ends: just after its last good record.
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// What was wrong at `offset`: `short header`, `short body`,
    /// `checksum mismatch`, `zero length`, or `overlaps the next segment`.
    pub reason: &'static str,
}

impl Log {
    /// Opens the log in `dir`, creating the directory if needed, and
    /// recovers it: every record is checked, and a segment is cut at its
    /// first bad record (logged and reported, never an error).
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<(Log, Recovery), StoreError> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_error("create store directory", &dir, e))?;
        let mut firsts = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| io_error("list store directory", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list store directory", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first) = segment::parse_name(name) {
                firsts.push(first);
            } else if name == cursor::TMP_NAME {
                let _ = fs::remove_file(entry.path());
            }
        }
        firsts.sort_unstable();
        let persisted = cursor::load(&dir)?.unwrap_or_default();

        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        for (i, &first) in firsts.iter().enumerate() {
            let last = i + 1 == firsts.len();
            let limit = firsts.get(i + 1).map_or(u64::MAX, |next| next - first);
            let (seg, cut) = Segment::recover(path_of(&dir, first), first, limit)?;
            if let Some(cut) = cut {
                tracing::warn!(
                    path = %cut.path.display(), offset = cut.offset, bytes = cut.bytes,
                    reason = cut.reason, last_segment = last,
                    "store segment cut at its last good record"
                );
                recovery.truncated_bytes += cut.bytes;
                recovery.cuts.push(cut);
            }
            if seg.count == 0 && !last {
                remove_segment(&seg.path)?;
            } else {
                segments.push_back(seg);
            }
        }

        let mut next_seq = segments.back().map_or(1, Segment::end);
        next_seq = next_seq
            .max(persisted.next)
            .max(persisted.acked.saturating_add(1));
        let mut stats = Stats::default();
        if segments.back().is_none_or(|s| s.end() != next_seq) {
            // Numbering continues past the last segment (its records
            // were lost, or it is gone): write from here in a new one.
            if let Some(s) = segments.back().filter(|s| s.count == 0) {
                remove_segment(&s.path)?;
                segments.pop_back();
            }
            let path = path_of(&dir, next_seq);
            create_segment(&path)?;
            stats.fsyncs += sync_dir(&dir)?;
            segments.push_back(Segment::empty(path, next_seq));
        }
        let active = segments.back().expect("pushed above");
        let file = OpenOptions::new()
            .append(true)
            .open(&active.path)
            .map_err(|e| io_error("open store segment", &active.path, e))?;

        recovery.records = segments.iter().map(|s| s.count).sum();
        recovery.segments = segments.len();
        let mut log = Log {
            bytes: segments.iter().map(|s| s.len).sum(),
            dir,
            opts,
            segments,
            writer: BufWriter::with_capacity(WRITE_BUFFER, file),
            unsynced: false,
            synced_through: next_seq - 1,
            next_seq,
            acked: persisted.acked.min(next_seq - 1),
            persisted,
            stats,
            failed: false,
        };
        log.release_acked()?;
        tracing::debug!(
            path = %log.dir.display(), records = recovery.records, segments = recovery.segments,
            next_seq = log.next_seq, acked = log.acked, "store opened"
        );
        Ok((log, recovery))
    }
}
