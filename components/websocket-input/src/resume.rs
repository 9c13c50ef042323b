//! Where a pull resumes after this node restarts. In client mode under
//! acknowledged delivery the input asks its peer, after every reconnect,
//! to `replay` what came after the last message it received. With a
//! top-level `data_dir` that id also survives a restart: the id of the
//! last message published (and flushed to the bus) is kept in
//! `<data_dir>/<instance>/resume_id`, written at most every 250 ms and at
//! shutdown, and read back at start. A crash between two writes only makes
//! the peer send a few messages again.

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two writes.
const EVERY: Duration = Duration::from_millis(250);

pub struct ResumePoint {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    written_at: Option<Instant>,
    /// Noted and not yet written.
    pending: Option<Arc<str>>,
}

impl ResumePoint {
    /// `None` without a `data_dir`.
    pub fn new(data_dir: Option<&std::path::Path>, instance: &str) -> Option<Self> {
        Some(ResumePoint {
            path: data_dir?.join(instance).join("resume_id"),
            state: Mutex::new(State {
                written_at: None,
                pending: None,
            }),
        })
    }

    /// The id kept by an earlier run.
    pub fn load(&self) -> Option<Arc<str>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let id = text.trim();
        (!id.is_empty() && id.len() <= fednode_kit::envelope::MAX_ID_BYTES).then(|| Arc::from(id))
    }

    /// `id` and everything before it are on the bus.
    pub fn note(&self, id: Arc<str>) {
        let due = {
            let mut s = self.state.lock();
            s.pending = Some(id);
            s.written_at.is_none_or(|t| t.elapsed() >= EVERY)
        };
        if due {
            self.flush();
        }
    }

    /// Write what was noted (at shutdown, and when due).
    pub fn flush(&self) {
        let id = {
            let mut s = self.state.lock();
            s.written_at = Some(Instant::now());
            s.pending.take()
        };
        let Some(id) = id else { return };
        if let Err(e) = self.write(&id) {
            tracing::warn!(path = %self.path.display(), error = %e,
                "cannot keep where to resume: after a restart the peer is not asked to replay");
        }
    }

    fn write(&self, id: &str) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, id)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_noted_id_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ResumePoint::new(None, "ws_in").is_none());
        let r = ResumePoint::new(Some(dir.path()), "ws_in").unwrap();
        assert_eq!(r.load(), None);
        r.note(Arc::from("m1"));
        assert_eq!(
            r.load().as_deref(),
            Some("m1"),
            "the first note is written at once"
        );
        r.note(Arc::from("m2"));
        r.flush();
        let again = ResumePoint::new(Some(dir.path()), "ws_in").unwrap();
        assert_eq!(again.load().as_deref(), Some("m2"));
    }
}
