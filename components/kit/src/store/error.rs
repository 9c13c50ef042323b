//! The store's errors, each naming the file and what was being done to it.

use std::io;
use std::path::{Path, PathBuf};

/// A failure of the disk log. A torn or corrupt tail found at open is not
/// one: it is cut and reported in [`super::Recovery`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed, e.g. "cannot open store segment
    /// /x/00000000000000000001.seg: Permission denied (os error 13)".
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// Records cannot be empty (an empty record is how a zero-filled
    /// region of a file would read).
    #[error("cannot store an empty record")]
    Empty,
    /// A record larger than the log, or than 4 GiB.
    #[error("cannot store a record of {len} bytes in a store of at most {max_bytes} bytes")]
    TooLarge { len: usize, max_bytes: u64 },
    /// A record read back does not match its checksum (the file changed
    /// under the log).
    #[error("corrupt store record in {} at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// `LogOptions` that cannot work.
    #[error("invalid store options: {0}")]
    Options(String),
    /// An earlier write or fsync failed; the log refuses to write more
    /// until it is reopened (which recovers what reached the disk).
    #[error("store {} failed earlier and must be reopened", path.display())]
    Failed { path: PathBuf },
}

pub(super) fn io_error(op: &'static str, path: &Path, error: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// Makes the directory's entries (created, renamed files) durable; returns
/// the number of fsyncs it took.
pub(super) fn sync_dir(dir: &Path) -> Result<u64, StoreError> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync store directory", dir, e))?;
        Ok(1)
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here.
        let _ = dir;
        Ok(0)
    }
}
