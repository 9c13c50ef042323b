//! Log lines that a peer can provoke (bad frames, bad datagrams, rejected
//! samples) go through a [`LogThrottle`]: at most one line per interval,
//! each carrying the count of lines held back since the last one, so a
//! flood of bad input never floods the log.

use std::time::{Duration, Instant};

/// Lets a log line through at most once per interval, counting the rest.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for LogThrottle {
    /// One line per second.
    fn default() -> Self {
        LogThrottle::new(Duration::from_secs(1))
    }
}

impl LogThrottle {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        LogThrottle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were held back
    /// since the last one); `None` to stay quiet.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`allow`](Self::allow) at a time the caller already has.
    pub fn allow_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut t = LogThrottle::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(t.allow_at(start), Some(0));
        assert_eq!(t.allow_at(start + Duration::from_secs(1)), None);
        assert_eq!(t.allow_at(start + Duration::from_secs(59)), None);
        assert_eq!(t.allow_at(start + Duration::from_secs(60)), Some(2));
        assert_eq!(t.allow_at(start + Duration::from_secs(61)), None);
    }
}
