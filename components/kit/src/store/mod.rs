//! The append-only disk log behind store-and-forward (the WebSocket
//! output's `store`) and timescale's shutdown spill. Synchronous: callers
//! run it on a blocking thread.
//!
//! - `mod.rs`: [`Log`]: appends, reads, acks, gauges and statistics.
//! - `open.rs`: [`Log::open`], the recovery of what is on disk.
//! - `options.rs`: [`LogOptions`].
//! - `segment.rs`: one segment file: record framing, the recovery scan,
//!   reads by position.
//! - `cursor.rs`: the persisted "acked through" position.
//! - `error.rs`: [`StoreError`], which names the path and the operation.
//!
//! A log is a directory of segment files named by the sequence number of
//! their first record (`00000000000000000042.seg`) and a `cursor` file.
//! Records are numbered from 1 and numbering never goes back, not even when
//! every record has been released. Appends are buffered; [`Log::sync`]
//! writes them out and fsyncs once, so a caller batches fsyncs by calling
//! it every N records or every interval. What was synced survives a power
//! failure; a killed process also keeps what had left the buffer (a full
//! buffer or a read writes it out). A caller acknowledges to its sender
//! only what [`Log::synced_through`] covers.
//!
//! Space is given back a whole segment at a time: acknowledging frees the
//! segments whose records are all acknowledged (the segment being written
//! stays; with [`LogOptions::retain_acked`] they stay until their room is
//! needed, so the log is also a history to read again), and an append that would take the log past `max_bytes` deletes
//! the oldest segments, acknowledged or not, and reports how many
//! unacknowledged records went with them. With segments of at most an
//! eighth of `max_bytes` (the default), that is at most an eighth of the
//! log at a time.

mod cursor;
mod error;
mod open;
mod options;
mod segment;
#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use open::{Cut, Recovery};
pub use options::LogOptions;
pub use segment::HEADER_BYTES;

/// The largest sequence number read from disk (`i64::MAX`): a segment file
/// named beyond it is not one of the log's (it is left alone, like any
/// other file), and a cursor holding a larger number is unreadable (treated
/// as absent). With the numbers read back bounded so, counting on from them
/// (`first + count`, the next number to give out) cannot overflow. No log
/// gets there by appending (that takes 2^63 records); only a damaged or
/// hand-edited store holds such numbers.
pub const MAX_SEQ: u64 = i64::MAX as u64;

use cursor::Cursor;
use error::{io_error, sync_dir};
use segment::{header, path_of, Segment};

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Appends are gathered up to this many bytes before a `write`.
const WRITE_BUFFER: usize = 256 << 10;

/// Counters since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records appended.
    pub appended: u64,
    /// fsyncs of segment files, cursor files and the directory.
    pub fsyncs: u64,
    /// Unacknowledged records deleted to stay under `max_bytes`.
    pub dropped_records: u64,
    /// Segment files deleted (released or dropped).
    pub deleted_segments: u64,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the first record appended.
    pub first: u64,
    /// Sequence number of the last one (`first - 1` for an empty batch).
    pub last: u64,
    /// Unacknowledged records deleted to make room for these.
    pub dropped: u64,
}

/// An append-only log of byte records in segment files.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    opts: LogOptions,
    /// Oldest first; the last one is being written and always exists.
    segments: VecDeque<Segment>,
    /// The last segment's file.
    writer: BufWriter<File>,
    /// Whether bytes were written since the last fsync.
    unsynced: bool,
    synced_through: u64,
    next_seq: u64,
    acked: u64,
    /// What the cursor file says.
    persisted: Cursor,
    bytes: u64,
    stats: Stats,
    /// A write or fsync failed: what the file holds is unknown.
    failed: bool,
}

impl Log {
    /// Appends one record (buffered: see [`Log::sync`]).
    pub fn append(&mut self, body: &[u8]) -> Result<Appended, StoreError> {
        self.append_batch(&[body])
    }

    /// Appends records in order. A record that can never be stored (empty,
    /// or larger than the log) fails the whole batch before any is
    /// written; an I/O error can leave the records before it appended.
    pub fn append_batch<B: AsRef<[u8]>>(&mut self, bodies: &[B]) -> Result<Appended, StoreError> {
        self.check()?;
        for b in bodies {
            self.check_record(b.as_ref().len())?;
        }
        let first = self.next_seq;
        let mut dropped = 0;
        for b in bodies {
            dropped += self.write_record(b.as_ref())?;
        }
        Ok(Appended {
            first,
            last: self.next_seq - 1,
            dropped,
        })
    }

    /// Writes out what is buffered and fsyncs it, then persists the
    /// acknowledged position if it moved. Everything appended before is
    /// durable once this returns.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.sync_active()?;
        if self.acked != self.persisted.acked {
            let c = Cursor {
                acked: self.acked,
                next: self.next_seq,
            };
            self.stats.fsyncs += cursor::store(&self.dir, c)?;
            self.persisted = c;
        }
        Ok(())
    }

    /// Up to `max_records` records from sequence number `from` on (or from
    /// the oldest one kept, if later), in order, stopping before the body
    /// that would take the total past `max_bytes` (the first record is
    /// returned whatever its size). Sees appends not yet synced.
    pub fn read_batch(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut out = Vec::new();
        if max_records == 0 || from >= self.next_seq {
            return Ok(out);
        }
        if !self.writer.buffer().is_empty() {
            self.flush()?;
        }
        let mut budget = max_bytes;
        let start = self.segments.partition_point(|s| s.end() <= from);
        for seg in self.segments.range_mut(start..) {
            if seg.count == 0 {
                continue;
            }
            let stopped = seg.read(from.max(seg.first), max_records, &mut budget, &mut out)?;
            if stopped {
                break;
            }
        }
        Ok(out)
    }

    /// Releases every record up to `seq`: the segments holding only
    /// released records are deleted (except the one being written). The
    /// position is persisted by the next [`Log::sync`].
    pub fn ack_through(&mut self, seq: u64) -> Result<(), StoreError> {
        let seq = seq.min(self.next_seq - 1);
        if seq > self.acked {
            self.acked = seq;
            self.release_acked()?;
        }
        Ok(())
    }

    /// Whether appending a body of `len` bytes would delete unacknowledged
    /// records (or cannot be done at all): what a caller that must not
    /// drop checks before appending.
    pub fn would_exceed(&self, len: usize) -> bool {
        if self.check_record(len).is_err() {
            return true;
        }
        let active = self.segments.back().expect("always one");
        let reclaimable = if self.segments.len() == 1 && active.end() <= self.acked + 1 {
            active.len
        } else {
            // Retained segments of acknowledged records go first.
            self.segments
                .iter()
                .take(self.segments.len() - 1)
                .take_while(|s| s.end() <= self.acked + 1)
                .map(|s| s.len)
                .sum()
        };
        self.bytes - reclaimable + HEADER_BYTES + len as u64 > self.opts.max_bytes
    }

    /// Whether even a one-byte record would delete unacknowledged ones.
    pub fn is_full(&self) -> bool {
        self.would_exceed(1)
    }

    /// Bytes in the segment files, buffered appends included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records kept and not acknowledged.
    pub fn messages(&self) -> u64 {
        let from = self.acked + 1;
        self.segments
            .iter()
            .map(|s| s.end().saturating_sub(s.first.max(from)))
            .sum()
    }

    /// Sequence number of the oldest record kept (acknowledged or not), or
    /// [`Log::next_seq`] when there is none.
    pub fn oldest_seq(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| s.count > 0)
            .map_or(self.next_seq, |s| s.first)
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last acknowledged sequence number (0 when none).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The first record to send: after the acknowledged ones, and not
    /// before the oldest one kept.
    pub fn first_unacked(&self) -> u64 {
        (self.acked + 1).max(self.oldest_seq())
    }

    /// Every record up to this sequence number has been fsynced.
    pub fn synced_through(&self) -> u64 {
        self.synced_through
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Failed {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn check_record(&self, len: usize) -> Result<(), StoreError> {
        if len == 0 {
            return Err(StoreError::Empty);
        }
        if len > u32::MAX as usize || HEADER_BYTES + len as u64 > self.opts.max_bytes {
            return Err(StoreError::TooLarge {
                len,
                max_bytes: self.opts.max_bytes,
            });
        }
        Ok(())
    }

    /// Writes one checked record; returns the unacknowledged records
    /// deleted to make room.
    fn write_record(&mut self, body: &[u8]) -> Result<u64, StoreError> {
        let size = HEADER_BYTES + body.len() as u64;
        let active = self.segments.back().expect("always one");
        if active.count > 0 && active.len + size > self.opts.segment_bytes {
            self.roll()?;
        }
        let mut dropped = 0;
        while self.bytes + size > self.opts.max_bytes {
            if self.segments.len() == 1 {
                // All the data is in the segment being written: close it
                // so that it can go.
                self.roll()?;
            }
            dropped += self.delete_oldest()?;
        }
        let written = self
            .writer
            .write_all(&header(body))
            .and_then(|()| self.writer.write_all(body));
        written.map_err(|e| self.fail("write store segment", e))?;
        self.segments
            .back_mut()
            .expect("always one")
            .note_append(body.len() as u64);
        self.bytes += size;
        self.next_seq += 1;
        self.unsynced = true;
        self.stats.appended += 1;
        Ok(dropped)
    }

    /// Closes the segment being written (synced, so only the last segment
    /// can ever have a torn tail) and starts the next.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.sync_active()?;
        let path = path_of(&self.dir, self.next_seq);
        let file = create_segment(&path)?;
        self.stats.fsyncs += sync_dir(&self.dir)?;
        self.writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        self.segments.push_back(Segment::empty(path, self.next_seq));
        Ok(())
    }

    /// Deletes the oldest segment; returns its unacknowledged records.
    fn delete_oldest(&mut self) -> Result<u64, StoreError> {
        debug_assert!(self.segments.len() > 1, "the active segment stays");
        remove_segment(&self.segments[0].path)?;
        let seg = self.segments.pop_front().expect("checked");
        self.bytes -= seg.len;
        let lost = seg.end().saturating_sub(seg.first.max(self.acked + 1));
        self.stats.dropped_records += lost;
        self.stats.deleted_segments += 1;
        if lost > 0 {
            tracing::debug!(path = %seg.path.display(), records = lost, "store full: oldest segment dropped");
        }
        Ok(lost)
    }

    /// Deletes the closed segments holding only acknowledged records
    /// (unless they are retained).
    fn release_acked(&mut self) -> Result<(), StoreError> {
        if self.opts.retain_acked {
            return Ok(());
        }
        while self.segments.len() > 1 && self.segments[0].end() <= self.acked + 1 {
            self.delete_oldest()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.check()?;
        let flushed = self.writer.flush();
        flushed.map_err(|e| self.fail("write store segment", e))
    }

    fn sync_active(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.unsynced {
            let synced = self.writer.get_ref().sync_data();
            synced.map_err(|e| self.fail("sync store segment", e))?;
            self.stats.fsyncs += 1;
            self.unsynced = false;
            self.synced_through = self.next_seq - 1;
        }
        Ok(())
    }

    /// After a failed write or fsync the file's contents are unknown:
    /// refuse further writes (reopening recovers what is on disk).
    fn fail(&mut self, op: &'static str, e: std::io::Error) -> StoreError {
        self.failed = true;
        let path = &self.segments.back().expect("always one").path;
        io_error(op, path, e)
    }
}

impl Drop for Log {
    /// Syncs, so that a log dropped on shutdown keeps all it was given.
    fn drop(&mut self) {
        if self.failed {
            return;
        }
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "store not synced on close");
        }
    }
}

fn create_segment(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_error("create store segment", path, e))
}

fn remove_segment(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error("delete store segment", path, e)),
        _ => Ok(()),
    }
}
