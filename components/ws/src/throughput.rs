//! Message rates for `status` replies and `/health`: `current` is the count
//! of the last complete second, `average_1m` the mean over the last minute
//! (over the uptime while it is shorter).
//!
//! Recording is one relaxed atomic add; the per-second buckets are rolled
//! lazily by whoever reads or records after a second boundary.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const WINDOW: usize = 60;

/// A rate meter.
pub struct RateMeter {
    start: Instant,
    /// Events since the start of the current second.
    pending: AtomicU64,
    inner: Mutex<Buckets>,
}

struct Buckets {
    /// The second `pending` belongs to (seconds since `start`).
    second: u64,
    /// Counts of the last complete seconds, newest last.
    ring: [u64; WINDOW],
    /// Index of the slot for `second - 1`.
    head: usize,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    /// A meter starting now.
    pub fn new() -> Self {
        RateMeter {
            start: Instant::now(),
            pending: AtomicU64::new(0),
            inner: Mutex::new(Buckets {
                second: 0,
                ring: [0; WINDOW],
                head: WINDOW - 1,
            }),
        }
    }

    /// Count `n` events.
    pub fn record(&self, n: u64) {
        self.roll();
        self.pending.fetch_add(n, Ordering::Relaxed);
    }

    fn now_second(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn roll(&self) {
        let now = self.now_second();
        // Fast path: still in the same second.
        if let Some(b) = self.inner.try_lock() {
            if b.second == now {
                return;
            }
        }
        let mut b = self.inner.lock();
        if b.second == now {
            return;
        }
        let closed = self.pending.swap(0, Ordering::Relaxed);
        let gap = (now - b.second).min(WINDOW as u64 + 1);
        for i in 0..gap {
            b.head = (b.head + 1) % WINDOW;
            let head = b.head;
            b.ring[head] = if i == 0 { closed } else { 0 };
        }
        b.second = now;
    }

    /// Events in the last complete second.
    pub fn current(&self) -> f64 {
        self.roll();
        let b = self.inner.lock();
        if b.second == 0 {
            return self.pending.load(Ordering::Relaxed) as f64;
        }
        b.ring[b.head] as f64
    }

    /// Mean events per second over the last minute (or the uptime).
    pub fn average_1m(&self) -> f64 {
        self.roll();
        let b = self.inner.lock();
        let seconds = (b.second as usize).min(WINDOW);
        if seconds == 0 {
            return self.pending.load(Ordering::Relaxed) as f64;
        }
        let sum: u64 = (0..seconds)
            .map(|i| b.ring[(b.head + WINDOW - i) % WINDOW])
            .sum();
        sum as f64 / seconds as f64
    }

    /// Seconds since the meter was made.
    pub fn uptime_seconds(&self) -> u64 {
        self.now_second()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_the_first_second() {
        let m = RateMeter::new();
        m.record(5);
        assert_eq!(m.current(), 5.0);
        assert_eq!(m.average_1m(), 5.0);
    }
}
