//! A window of recently seen data ids (`at_least_once` duplicate dropping).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Per-table random seeds (no fixed hash a peer could aim ids at), and far
/// cheaper than SipHash for the ids of every acknowledged message.
type Seeded = foldhash::fast::RandomState;

/// Remembers the last `capacity` ids; older ones are forgotten in order.
pub struct RecentIds {
    capacity: usize,
    seq: u64,
    order: VecDeque<(Arc<str>, u64)>,
    seen: HashMap<Arc<str>, u64, Seeded>,
}

impl RecentIds {
    /// A window of `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        RecentIds {
            capacity,
            seq: 0,
            order: VecDeque::with_capacity(capacity.min(4096)),
            seen: HashMap::with_capacity_and_hasher(capacity.min(4096), Seeded::default()),
        }
    }

    /// Record `id`; false when it is already in the window.
    pub fn insert(&mut self, id: &Arc<str>) -> bool {
        if self.seen.contains_key(id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            if let Some((old, seq)) = self.order.pop_front() {
                if self.seen.get(&old) == Some(&seq) {
                    self.seen.remove(&old);
                }
            }
        }
        self.seq += 1;
        self.order.push_back((id.clone(), self.seq));
        self.seen.insert(id.clone(), self.seq);
        true
    }

    /// Forget `id` (its message was not delivered, so a resend must pass).
    pub fn forget(&mut self, id: &str) {
        self.seen.remove(id);
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
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
}
