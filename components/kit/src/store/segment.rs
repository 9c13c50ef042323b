//! One segment file: its name, the record framing, the recovery scan, and
//! reads by position.
//!
//! A record is an 8-byte header, the body's length (u32 LE) then the CRC-32
//! of the body (u32 LE), followed by the body. A body is never empty, so a
//! zero-filled region (what a file system can leave after a power failure
//! when the size reached the disk but the data did not) never reads as a
//! valid record.

use super::{io_error, Cut, StoreError};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes of framing in front of every body.
pub const HEADER_BYTES: u64 = 8;

/// One index entry per this many records: a read seeks to the entry at or
/// before the record it wants and skips at most this many minus one.
const INDEX_EVERY: u64 = 64;

/// Digits of a segment's name (`u64::MAX` has 20).
const NAME_DIGITS: usize = 20;
const NAME_SUFFIX: &str = ".seg";

/// The header of a body.
pub fn header(body: &[u8]) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    h
}

/// The file of the segment whose first record is `first`.
pub fn path_of(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:0NAME_DIGITS$}{NAME_SUFFIX}"))
}

/// The first sequence number a segment file name stands for, if it is one
/// (at most [`MAX_SEQ`](super::MAX_SEQ)).
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(NAME_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&first| first <= super::MAX_SEQ)
}

/// What the log knows about one segment file.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    /// Sequence number of its first record (also its name).
    pub first: u64,
    /// Records in it, buffered ones included.
    pub count: u64,
    /// Bytes in it, buffered ones included.
    pub len: u64,
    /// Byte offset of record `i * INDEX_EVERY`.
    index: Vec<u64>,
    /// Opened on the first read and kept.
    reader: Option<File>,
}

impl Segment {
    /// A new, empty segment (its file is created by the caller).
    pub fn empty(path: PathBuf, first: u64) -> Self {
        Segment {
            path,
            first,
            count: 0,
            len: 0,
            index: Vec::new(),
            reader: None,
        }
    }

    /// One past the sequence number of its last record.
    pub fn end(&self) -> u64 {
        self.first + self.count
    }

    /// Account for a record of `body_len` bytes written at its end.
    pub fn note_append(&mut self, body_len: u64) {
        if self.count.is_multiple_of(INDEX_EVERY) {
            self.index.push(self.len);
        }
        self.count += 1;
        self.len += HEADER_BYTES + body_len;
    }

    /// Scans the file, validating every record, and keeps at most
    /// `max_records`. Whatever follows the last good record (a torn or
    /// corrupt tail, or records beyond `max_records`) is cut off the file;
    /// the cut is returned.
    pub fn recover(
        path: PathBuf,
        first: u64,
        max_records: u64,
    ) -> Result<(Self, Option<Cut>), StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open store segment", &path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| io_error("read store segment", &path, e))?
            .len();
        let mut seg = Segment::empty(path, first);
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut body = Vec::new();
        let problem = loop {
            if seg.count == max_records {
                break (seg.len < file_len).then_some("overlaps the next segment");
            }
            let remaining = file_len - seg.len;
            if remaining == 0 {
                break None;
            }
            if remaining < HEADER_BYTES {
                break Some("short header");
            }
            let mut h = [0u8; HEADER_BYTES as usize];
            reader
                .read_exact(&mut h)
                .map_err(|e| io_error("read store segment", &seg.path, e))?;
            let (len, crc) = split_header(&h);
            if len == 0 {
                break Some("zero length");
            }
            if u64::from(len) > remaining - HEADER_BYTES {
                break Some("short body");
            }
            body.resize(len as usize, 0);
            reader
                .read_exact(&mut body)
                .map_err(|e| io_error("read store segment", &seg.path, e))?;
            if crc32fast::hash(&body) != crc {
                break Some("checksum mismatch");
            }
            seg.note_append(u64::from(len));
        };
        drop(reader);
        let cut = match problem {
            None => None,
            Some(reason) => {
                file.set_len(seg.len)
                    .map_err(|e| io_error("truncate store segment", &seg.path, e))?;
                file.sync_all()
                    .map_err(|e| io_error("sync store segment", &seg.path, e))?;
                Some(Cut {
                    path: seg.path.clone(),
                    offset: seg.len,
                    bytes: file_len - seg.len,
                    reason,
                })
            }
        };
        Ok((seg, cut))
    }

    /// Appends to `out` the records from sequence number `from` (inside
    /// this segment) on, until `max_records` are in `out` or the next body
    /// would take `*budget` below zero (the first record of `out` is
    /// always taken). Returns whether it stopped for one of these limits
    /// rather than at the end of the segment. Only the first `self.len`
    /// bytes are read: the caller has flushed them to the file.
    pub fn read(
        &mut self,
        from: u64,
        max_records: usize,
        budget: &mut u64,
        out: &mut Vec<(u64, Bytes)>,
    ) -> Result<bool, StoreError> {
        debug_assert!(from >= self.first && from < self.end());
        let idx = from - self.first;
        let slot = (idx / INDEX_EVERY) as usize;
        let mut offset = self.index[slot];
        let mut at = slot as u64 * INDEX_EVERY;
        if self.reader.is_none() {
            let f = File::open(&self.path)
                .map_err(|e| io_error("open store segment", &self.path, e))?;
            self.reader = Some(f);
        }
        let path = &self.path;
        let mut file = self.reader.as_ref().expect("opened above");
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error("read store segment", path, e))?;
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let mut h = [0u8; HEADER_BYTES as usize];
        while at < self.count {
            if out.len() >= max_records {
                return Ok(true);
            }
            reader
                .read_exact(&mut h)
                .map_err(|e| io_error("read store segment", path, e))?;
            let (len, crc) = split_header(&h);
            if at < idx {
                reader
                    .seek_relative(i64::from(len))
                    .map_err(|e| io_error("read store segment", path, e))?;
            } else {
                if !out.is_empty() && u64::from(len) > *budget {
                    return Ok(true);
                }
                let mut body = vec![0u8; len as usize];
                reader
                    .read_exact(&mut body)
                    .map_err(|e| io_error("read store segment", path, e))?;
                if crc32fast::hash(&body) != crc {
                    return Err(StoreError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: "checksum mismatch",
                    });
                }
                *budget = budget.saturating_sub(u64::from(len));
                out.push((self.first + at, Bytes::from(body)));
            }
            offset += HEADER_BYTES + u64::from(len);
            at += 1;
        }
        Ok(false)
    }
}

fn split_header(h: &[u8; HEADER_BYTES as usize]) -> (u32, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_strangers() {
        let p = path_of(Path::new("/s"), 42);
        assert_eq!(p, Path::new("/s/00000000000000000042.seg"));
        assert_eq!(parse_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_name("00000000000000000042.seg.tmp"), None);
        assert_eq!(parse_name("cursor"), None);
        // Beyond MAX_SEQ: counting on from it could overflow.
        assert_eq!(
            parse_name("09223372036854775807.seg"),
            Some(super::super::MAX_SEQ)
        );
        assert_eq!(parse_name("09223372036854775808.seg"), None);
        assert_eq!(parse_name("18446744073709551615.seg"), None);
        assert_eq!(parse_name("99999999999999999999.seg"), None);
    }

    #[test]
    fn header_is_length_then_crc_little_endian() {
        let h = header(b"abc");
        assert_eq!(&h[..4], &3u32.to_le_bytes());
        assert_eq!(&h[4..], &crc32fast::hash(b"abc").to_le_bytes());
    }
}
