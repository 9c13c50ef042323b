//! The cursor file: how far the consumer has acknowledged, and the next
//! sequence number at the time it was written (so numbering continues even
//! when every segment file is gone).
//!
//! It is two lines of text an operator can read (`acked 41`, `next 57`)
//! after a format line. It is replaced whole: written to `cursor.tmp`,
//! synced, renamed over `cursor`, and the directory synced, so a crash
//! leaves either the old cursor or the new one. An unreadable cursor is
//! logged and treated as absent: the log then resends what it holds, which
//! at-least-once delivery allows.

use super::{io_error, sync_dir, StoreError};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

const NAME: &str = "cursor";
/// The name of the temporary file; a stale one is removed at open.
pub const TMP_NAME: &str = "cursor.tmp";
const FORMAT: &str = "fednode-store-cursor 1";

/// The persisted position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Every record with a sequence number up to this one is released.
    pub acked: u64,
    /// The next sequence number the log would have given out.
    pub next: u64,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{FORMAT}\nacked {}\nnext {}\n", self.acked, self.next)
    }

    fn decode(text: &str) -> Option<Cursor> {
        let mut lines = text.lines();
        if lines.next()? != FORMAT {
            return None;
        }
        let number = |line: Option<&str>, name: &str| {
            line?
                .strip_prefix(name)?
                .parse::<u64>()
                .ok()
                .filter(|&n| n <= super::MAX_SEQ)
        };
        let acked = number(lines.next(), "acked ")?;
        let next = number(lines.next(), "next ")?;
        if lines.next().is_some() {
            return None;
        }
        Some(Cursor { acked, next })
    }
}

/// Reads the cursor of `dir`; `None` when there is none or it cannot be
/// understood (the latter is logged).
pub fn load(dir: &Path) -> Result<Option<Cursor>, StoreError> {
    let path = dir.join(NAME);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read store cursor", &path, e)),
    };
    let cursor = std::str::from_utf8(&text).ok().and_then(Cursor::decode);
    if cursor.is_none() {
        tracing::warn!(
            path = %path.display(),
            "store cursor unreadable; treating every retained record as unacknowledged"
        );
    }
    Ok(cursor)
}

/// Replaces the cursor of `dir` atomically and durably; returns the number
/// of fsyncs it took.
pub fn store(dir: &Path, cursor: Cursor) -> Result<u64, StoreError> {
    let tmp = dir.join(TMP_NAME);
    let mut f = File::create(&tmp).map_err(|e| io_error("write store cursor", &tmp, e))?;
    f.write_all(cursor.encode().as_bytes())
        .map_err(|e| io_error("write store cursor", &tmp, e))?;
    f.sync_data()
        .map_err(|e| io_error("sync store cursor", &tmp, e))?;
    drop(f);
    let path = dir.join(NAME);
    fs::rename(&tmp, &path).map_err(|e| io_error("replace store cursor", &path, e))?;
    Ok(1 + sync_dir(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_anything_else() {
        let c = Cursor {
            acked: 41,
            next: 57,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode(""), None);
        assert_eq!(Cursor::decode("fednode-store-cursor 1\nacked 4"), None);
        assert_eq!(
            Cursor::decode("fednode-store-cursor 1\nacked x\nnext 5\n"),
            None
        );
        assert_eq!(
            Cursor::decode("fednode-store-cursor 2\nacked 1\nnext 5\n"),
            None
        );
        // Beyond MAX_SEQ (the log would count on from it and overflow).
        let max = super::super::MAX_SEQ;
        assert_eq!(
            Cursor::decode(&format!("{FORMAT}\nacked {max}\nnext {max}\n")),
            Some(Cursor {
                acked: max,
                next: max
            })
        );
        for (acked, next) in [(max + 1, 5), (1, max + 1), (u64::MAX, u64::MAX)] {
            let text = format!("{FORMAT}\nacked {acked}\nnext {next}\n");
            assert_eq!(Cursor::decode(&text), None, "{text}");
        }
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let c = Cursor { acked: 7, next: 9 };
        store(dir.path(), c).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(c));
        assert!(!dir.path().join(TMP_NAME).exists());
        fs::write(dir.path().join(NAME), b"\0\0\0").unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
    }
}
