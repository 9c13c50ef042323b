//! The spill: where rows still held at shutdown go when PostgreSQL cannot
//! take them in time, so that stopping the node loses nothing it acked.
//! It is the kit's append-only disk log ([`fednode_kit::store::Log`]), one
//! [`Record`] per row, run on blocking threads.
//!
//! - At shutdown the writer appends every row it holds that exists only in
//!   memory (and, while it drains, each message it still takes from its
//!   subscription) and fsyncs them, before it tries the database again:
//!   the spill never waits for PostgreSQL, so the runtime's shutdown
//!   deadline cannot cut it short.
//! - At the next start the records left in it are loaded before the input
//!   is read, so they are written first, and released once committed.
//! - Records are released in order: the log is acknowledged through the
//!   last record before the oldest one not yet committed, and whole
//!   segments are deleted as that moves. A record committed but not yet
//!   released (a crash in between) is written again at the next start,
//!   where its `msg_id` is found in the table and it is skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fednode_kit::store::{Log, LogOptions};

use crate::record::Record;

/// The most bytes the spill holds on disk. Rows beyond it stay in memory
/// (and are lost if the database does not take them before the deadline).
pub const MAX_BYTES: u64 = 1 << 30;
/// Bytes read from the spill per load.
const READ_BYTES: u64 = 16 << 20;

/// A record read back: its sequence number and the record, or why it
/// could not be decoded.
pub type Loaded = (u64, Result<Record, String>);

/// The spill of one component.
pub struct Spill {
    log: Arc<Mutex<Log>>,
    path: PathBuf,
    /// Records from before this start not yet loaded: `next_read..end`.
    next_read: u64,
    end: u64,
    /// The sequence number the next append gets.
    next: u64,
    /// Every record through here is committed (or given up) and released.
    acked: u64,
    /// Records done above `acked`.
    done: BTreeSet<u64>,
    /// An append failed, or the spill is full: it takes nothing more.
    broken: bool,
}

impl Spill {
    /// Open (creating the directory) and recover the spill at `path`.
    pub async fn open(path: PathBuf) -> Result<Spill, String> {
        let at = path.clone();
        let (log, recovery) = blocking(move || {
            Log::open(&at, LogOptions::with_max_bytes(MAX_BYTES)).map_err(|e| e.to_string())
        })
        .await?;
        for cut in &recovery.cuts {
            tracing::warn!(path = %cut.path.display(), offset = cut.offset, bytes = cut.bytes,
                reason = cut.reason, "spill: cut a damaged tail at its last whole record");
        }
        let first = log.first_unacked();
        let end = log.next_seq();
        Ok(Spill {
            log: Arc::new(Mutex::new(log)),
            path,
            next_read: first,
            end,
            next: end,
            acked: first - 1,
            done: BTreeSet::new(),
            broken: false,
        })
    }

    /// The spill's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records from before this start not loaded yet.
    pub fn waiting(&self) -> u64 {
        self.end - self.next_read
    }

    /// Whether record `seq` was there at start (it may have been committed
    /// already: check before writing it).
    pub fn older_than_start(&self, seq: u64) -> bool {
        seq < self.end
    }

    /// Rows in the spill not yet committed.
    pub fn rows(&self) -> u64 {
        (self.next - 1 - self.acked).saturating_sub(self.done.len() as u64)
    }

    /// The spill takes nothing more (full, or a write failed).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Up to `max` records from before this start, oldest first. After an
    /// error the rest is left for the next start.
    pub async fn load(&mut self, max: usize) -> Result<Vec<Loaded>, String> {
        let (from, end, log) = (self.next_read, self.end, self.log.clone());
        let read = blocking(move || {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.read_batch(from, max, READ_BYTES)
                .map_err(|e| e.to_string())
        })
        .await;
        let records = match read {
            Ok(r) => r,
            Err(e) => {
                self.next_read = end;
                return Err(e);
            }
        };
        let out: Vec<Loaded> = records
            .into_iter()
            .filter(|(seq, _)| *seq < end)
            .map(|(seq, bytes): (u64, Bytes)| (seq, Record::decode(bytes)))
            .collect();
        // Numbering may skip (never here: nothing is dropped), so move on
        // from what was read; nothing read means nothing is left.
        self.next_read = out.last().map_or(end, |(seq, _)| seq + 1);
        Ok(out)
    }

    /// Append `bodies` in order and fsync them. Returns the sequence number
    /// of the first and how many were taken: fewer than given when the
    /// spill is full (it then takes nothing more).
    pub async fn append(&mut self, bodies: Vec<Vec<u8>>) -> Result<(u64, usize), String> {
        if self.broken {
            return Ok((self.next, 0));
        }
        let log = self.log.clone();
        let given = bodies.len();
        let result = blocking(move || {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            let first = log.next_seq();
            let mut len = 0u64;
            let fit = bodies
                .iter()
                .take_while(|b| {
                    len += b.len() as u64 + fednode_kit::store::HEADER_BYTES;
                    !log.would_exceed(len as usize)
                })
                .count();
            log.append_batch(&bodies[..fit])
                .and_then(|_| log.sync())
                .map(|()| (first, fit))
                .map_err(|e| e.to_string())
        })
        .await;
        match result {
            Ok((first, fit)) => {
                self.next = first + fit as u64;
                if fit < given {
                    self.broken = true;
                }
                Ok((first, fit))
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// These records are committed, or given up for good: release them
    /// once every record before them is too.
    pub async fn done(&mut self, seqs: impl IntoIterator<Item = u64>) -> Result<(), String> {
        let acked = self.acked;
        self.done.extend(seqs.into_iter().filter(|s| *s > acked));
        while self.done.first() == Some(&(self.acked + 1)) {
            self.done.pop_first();
            self.acked += 1;
        }
        if self.acked == acked {
            return Ok(());
        }
        let (log, through) = (self.log.clone(), self.acked);
        blocking(move || {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.ack_through(through)
                .and_then(|()| log.sync())
                .map_err(|e| e.to_string())
        })
        .await
    }
}

/// Run `f` on a blocking thread (the log does file I/O and fsyncs).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("spill task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Vec<u8> {
        Record {
            subject: "s".into(),
            time_us: i as i64,
            msg_id: format!("m{i}").into(),
            node: "n".into(),
            region: None,
            payload: Bytes::from(format!("{{\"i\":{i}}}")),
        }
        .encode()
    }

    fn ids(loaded: &[Loaded]) -> Vec<String> {
        loaded
            .iter()
            .map(|(_, r)| r.as_ref().unwrap().msg_id.to_string())
            .collect()
    }

    #[tokio::test]
    async fn appended_rows_come_back_at_the_next_open_until_released_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill");
        let mut s = Spill::open(path.clone()).await.unwrap();
        assert_eq!((s.waiting(), s.rows()), (0, 0));
        let (first, n) = s.append((1..=5).map(record).collect()).await.unwrap();
        assert_eq!((first, n, s.rows()), (1, 5, 5));
        // Released out of order: only the prefix goes.
        s.done([2, 1, 4]).await.unwrap();
        assert_eq!(s.rows(), 2);
        drop(s);

        let mut s = Spill::open(path.clone()).await.unwrap();
        assert_eq!((s.waiting(), s.rows()), (3, 3));
        assert!(s.older_than_start(3) && s.older_than_start(5) && !s.older_than_start(6));
        let loaded = s.load(2).await.unwrap();
        assert_eq!(ids(&loaded), ["m3", "m4"]);
        let loaded2 = s.load(10).await.unwrap();
        assert_eq!(ids(&loaded2), ["m5"]);
        assert_eq!(s.waiting(), 0);
        assert!(s.load(10).await.unwrap().is_empty());
        // New rows after the old ones.
        let (first, _) = s.append(vec![record(6)]).await.unwrap();
        assert_eq!(first, 6);
        s.done([3, 4, 5, 6]).await.unwrap();
        assert_eq!(s.rows(), 0);
        drop(s);
        let s = Spill::open(path).await.unwrap();
        assert_eq!((s.waiting(), s.rows()), (0, 0));
    }

    #[tokio::test]
    async fn an_unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = Spill::open(file.join("spill")).await.err().unwrap();
        assert!(e.contains("a-file"), "{e}");
    }
}
