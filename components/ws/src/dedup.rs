//! A window of recently seen data ids (`at_least_once` duplicate dropping),
//! bounded in count and in bytes.

use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Per-table random seeds (no fixed hash a peer could aim ids at), and far
/// cheaper than SipHash for the ids of every acknowledged message.
type Seeded = foldhash::fast::RandomState;

/// The default bound on the bytes of the ids in a window: 4 MiB, room for
/// the default 10,000 ids even at the longest valid id (256 bytes).
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// One id in the window: its hash (computed once, when it came), the id,
/// and the insertion that put it there.
struct Seen {
    hash: u64,
    id: Arc<str>,
    seq: u64,
}

/// Remembers the last `capacity` ids, as long as their bytes (the sum of
/// their lengths) stay within `max_bytes`; older ones are forgotten in order.
pub struct RecentIds {
    capacity: usize,
    max_bytes: usize,
    /// The sum of the lengths of the ids in `order` (which holds every id
    /// of `seen`, and ids forgotten but not yet out of the window: their
    /// memory is held until they leave it).
    bytes: usize,
    seq: u64,
    order: VecDeque<Seen>,
    /// The ids remembered now, each with the `seq` of its entry in `order`.
    seen: HashTable<(Arc<str>, u64)>,
    hasher: Seeded,
}

impl RecentIds {
    /// A window of `capacity` ids (at least 1) within [`DEFAULT_MAX_BYTES`].
    pub fn new(capacity: usize) -> Self {
        Self::with_max_bytes(capacity, DEFAULT_MAX_BYTES)
    }

    /// A window of `capacity` ids (at least 1) of at most `max_bytes` bytes
    /// together. An id longer than `max_bytes` is never remembered.
    pub fn with_max_bytes(capacity: usize, max_bytes: usize) -> Self {
        let capacity = capacity.max(1);
        RecentIds {
            capacity,
            max_bytes,
            bytes: 0,
            seq: 0,
            order: VecDeque::with_capacity(capacity.min(4096)),
            seen: HashTable::with_capacity(capacity.min(4096)),
            hasher: Seeded::default(),
        }
    }

    /// Record `id`; false when it is already in the window.
    ///
    /// An id longer than the whole byte bound is not remembered (true: a
    /// duplicate of it will pass); room is made for any other by forgetting
    /// the oldest ids. The id is hashed once; forgetting an old one finds
    /// it by its kept hash and the identity of its entry.
    pub fn insert(&mut self, id: &Arc<str>) -> bool {
        let hash = self.hasher.hash_one(&**id);
        if self.seen.find(hash, |(k, _)| **k == **id).is_some() {
            return false;
        }
        if id.len() > self.max_bytes {
            return true;
        }
        while self.order.len() >= self.capacity || self.bytes + id.len() > self.max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.bytes -= old.id.len();
            if let Ok(entry) = self.seen.find_entry(old.hash, |(k, seq)| {
                *seq == old.seq && Arc::ptr_eq(k, &old.id)
            }) {
                entry.remove();
            }
        }
        self.seq += 1;
        self.bytes += id.len();
        self.order.push_back(Seen {
            hash,
            id: id.clone(),
            seq: self.seq,
        });
        let hasher = &self.hasher;
        self.seen
            .insert_unique(hash, (id.clone(), self.seq), |(k, _)| hasher.hash_one(&**k));
        true
    }

    /// Forget `id` (its message was not delivered, so a resend must pass).
    pub fn forget(&mut self, id: &str) {
        let hash = self.hasher.hash_one(id);
        if let Ok(entry) = self.seen.find_entry(hash, |(k, _)| **k == *id) {
            entry.remove();
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The bytes of the ids the window holds (the sum of their lengths),
    /// never more than its `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_and_on_request() {
        let id = |s: &str| -> Arc<str> { s.into() };
        let mut w = RecentIds::new(2);
        assert!(w.insert(&id("a")));
        assert!(!w.insert(&id("a")));
        assert!(w.insert(&id("b")));
        assert!(w.insert(&id("c")));
        assert!(w.insert(&id("a")), "a fell out of the window");
        assert!(!w.insert(&id("c")));
        w.forget("c");
        assert!(w.insert(&id("c")));
        assert!(w.len() <= 2);
    }

    #[test]
    fn large_ids_are_bounded_in_bytes() {
        // 500 KB ids: a window of 10,000 of them would hold 5 GB.
        let big = |i: usize| -> Arc<str> { format!("{i:08}{}", "x".repeat(500_000)).into() };
        let mut w = RecentIds::new(10_000);
        for i in 0..40 {
            assert!(w.insert(&big(i)));
            assert!(w.bytes() <= DEFAULT_MAX_BYTES, "{} bytes", w.bytes());
        }
        // 4 MiB hold 8 of them: the newest are remembered, the oldest not.
        assert_eq!(w.len(), 8);
        assert_eq!(w.bytes(), 8 * 500_008);
        assert!(!w.insert(&big(39)));
        assert!(!w.insert(&big(32)));
        assert!(w.insert(&big(0)));
        assert!(w.bytes() <= DEFAULT_MAX_BYTES);
    }

    #[test]
    fn forgotten_ids_count_until_they_leave_the_window() {
        let id = |s: &str| -> Arc<str> { s.into() };
        let mut w = RecentIds::with_max_bytes(100, 10);
        assert!(w.insert(&id("aaaa")));
        w.forget("aaaa");
        assert_eq!(w.bytes(), 4, "still held by the window's order");
        // Re-inserting after a forget: both entries count, within the bound.
        assert!(w.insert(&id("aaaa")));
        assert_eq!(w.bytes(), 8);
        assert!(w.insert(&id("bbbb")));
        assert!(w.bytes() <= 10);
        assert!(
            !w.insert(&id("aaaa")),
            "the newest aaaa is still remembered"
        );
        assert!(!w.insert(&id("bbbb")));
        // An id longer than the bound passes, unremembered, every time.
        let long = id("0123456789a");
        assert!(w.insert(&long));
        assert!(w.insert(&long));
        assert!(!w.insert(&id("bbbb")), "nothing was evicted for it");
    }
}
