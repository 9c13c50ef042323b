//! [`LogOptions`]: how big a log and its segments may grow.

use super::StoreError;

const MIB: u64 = 1 << 20;

/// Sizes of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// The most bytes the segment files may hold together; beyond it the
    /// oldest segments are deleted.
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it would pass this
    /// size; it is also how much space is freed at a time.
    pub segment_bytes: u64,
    /// Keep acknowledged records until `max_bytes` needs their room (a log
    /// that is also a history to replay from), instead of freeing their
    /// segments as soon as they are acknowledged.
    pub retain_acked: bool,
}

impl LogOptions {
    /// `max_bytes`, and segments of `min(64 MiB, max_bytes / 8)`.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        LogOptions {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1, 64 * MIB),
            retain_acked: false,
        }
    }

    /// The same, keeping acknowledged records while there is room.
    pub fn retaining(self) -> Self {
        LogOptions {
            retain_acked: true,
            ..self
        }
    }

    pub(super) fn validate(&self) -> Result<(), StoreError> {
        if self.segment_bytes == 0 || self.segment_bytes > self.max_bytes {
            return Err(StoreError::Options(format!(
                "segment_bytes ({}) must be between 1 and max_bytes ({})",
                self.segment_bytes, self.max_bytes
            )));
        }
        Ok(())
    }
}

impl Default for LogOptions {
    /// 1 GiB in segments of 64 MiB.
    fn default() -> Self {
        LogOptions::with_max_bytes(1 << 30)
    }
}
