//! A bounded queue with the three `on_full` policies, shared by
//! the WebSocket input (between socket readers and the bus publisher), the
//! WebSocket output (one per peer connection), and every WebSocket
//! connection's outbound frames (`block`, feeding its writer).
//!
//! `drop_oldest` keeps the newest data (real-time streams), `drop_newest`
//! keeps what is already queued, `block` makes the producer wait, which for a
//! socket reader means it stops reading and TCP pushes back on the peer.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// What happens when the queue is full.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Evict the oldest queued item to make room (the default).
    #[default]
    DropOldest,
    /// Refuse the new item.
    DropNewest,
    /// Wait for room.
    Block,
}

/// The result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// Queued without loss.
    Queued,
    /// Queued; these older items were evicted to make room (one for the
    /// length bound; more when the new item needed their bytes).
    EvictedOldest(Vec<T>),
    /// Not queued (full under `drop_newest`, or the queue is closed).
    Rejected(T),
}

/// A multi-producer queue bounded in length and, optionally, in bytes.
///
/// The byte bound counts what `weigh` says of each item (a message's
/// payload length, say). An item heavier than the whole bound is still
/// taken when the queue is empty, so one large message cannot wedge it.
pub struct BoundedQueue<T> {
    items: Mutex<Items<T>>,
    capacity: usize,
    max_bytes: usize,
    weigh: fn(&T) -> usize,
    policy: OnFull,
    has_items: Notify,
    has_space: Notify,
    closed: AtomicBool,
}

struct Items<T> {
    q: VecDeque<T>,
    /// The sum of `weigh` over `q`.
    bytes: usize,
}

fn weightless<T>(_: &T) -> usize {
    0
}

impl<T> BoundedQueue<T> {
    /// A queue holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize, policy: OnFull) -> Self {
        let capacity = capacity.max(1);
        BoundedQueue {
            // Grown on demand, never ahead: every connection has queues,
            // and an idle one should hold no memory for them.
            items: Mutex::new(Items {
                q: VecDeque::new(),
                bytes: 0,
            }),
            capacity,
            max_bytes: usize::MAX,
            weigh: weightless,
            policy,
            has_items: Notify::new(),
            has_space: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Also bound the queue to `max_bytes` (at least 1) as `weigh` counts.
    pub fn with_max_bytes(mut self, max_bytes: usize, weigh: fn(&T) -> usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self.weigh = weigh;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> OnFull {
        self.policy
    }

    /// Maximum length.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Maximum bytes (`usize::MAX` when unbounded).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.items.lock().q.len()
    }

    /// Bytes queued now, as `weigh` counts them.
    pub fn bytes(&self) -> usize {
        self.items.lock().bytes
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.lock().q.is_empty()
    }

    /// `len / capacity`.
    pub fn utilization(&self) -> f64 {
        self.len() as f64 / self.capacity as f64
    }

    /// Whether an item weighing `w` fits now.
    fn fits(&self, items: &Items<T>, w: usize) -> bool {
        items.q.len() < self.capacity
            && (items.q.is_empty() || items.bytes.saturating_add(w) <= self.max_bytes)
    }

    fn take_front(&self, items: &mut Items<T>) -> Option<T> {
        let item = items.q.pop_front()?;
        items.bytes -= (self.weigh)(&item);
        Some(item)
    }

    /// Push without waiting; under `block` a full queue rejects (callers
    /// that can wait use [`push`](Self::push)).
    pub fn try_push(&self, item: T) -> Pushed<T> {
        let out = self.try_push_quiet(item);
        if !matches!(out, Pushed::Rejected(_)) {
            self.has_items.notify_one();
        }
        out
    }

    /// [`try_push`](Self::try_push) without waking the consumer, for a
    /// producer that pushes a burst: it calls [`wake`](Self::wake) once at
    /// the end, so a waiting consumer is scheduled once per burst rather
    /// than once per item. A burst that fills the queue is never stranded:
    /// a [`push`](Self::push) that must wait for room wakes the consumer
    /// first.
    pub fn try_push_quiet(&self, item: T) -> Pushed<T> {
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Rejected(item);
        }
        let w = (self.weigh)(&item);
        let mut g = self.items.lock();
        let mut evicted = Vec::new();
        if !self.fits(&g, w) {
            match self.policy {
                OnFull::DropOldest => {
                    while !self.fits(&g, w) {
                        evicted.push(self.take_front(&mut g).expect("a full queue has a front"));
                    }
                }
                OnFull::DropNewest | OnFull::Block => return Pushed::Rejected(item),
            }
        }
        g.q.push_back(item);
        g.bytes += w;
        drop(g);
        if evicted.is_empty() {
            Pushed::Queued
        } else {
            Pushed::EvictedOldest(evicted)
        }
    }

    /// [`try_push_quiet`](Self::try_push_quiet) for a batch, in order,
    /// under one lock. `items` keeps what was not queued (full under
    /// `drop_newest` or `block`, or closed), in order; under `drop_oldest`
    /// the items evicted to make room are appended to `evicted`.
    pub fn try_push_many_quiet(&self, items: &mut VecDeque<T>, evicted: &mut Vec<T>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut g = self.items.lock();
        while let Some(next) = items.front() {
            let w = (self.weigh)(next);
            if !self.fits(&g, w) {
                if self.policy != OnFull::DropOldest {
                    break;
                }
                while !self.fits(&g, w) {
                    evicted.push(self.take_front(&mut g).expect("a full queue has a front"));
                }
            }
            let item = items.pop_front().expect("peeked");
            g.q.push_back(item);
            g.bytes += w;
        }
    }

    /// Wake the consumer for items pushed with
    /// [`try_push_quiet`](Self::try_push_quiet).
    pub fn wake(&self) {
        self.has_items.notify_one();
    }

    /// Push, waiting for room under `block`.
    pub async fn push(&self, mut item: T) -> Pushed<T> {
        loop {
            match self.try_push(item) {
                Pushed::Rejected(back)
                    if self.policy == OnFull::Block && !self.closed.load(Ordering::Acquire) =>
                {
                    item = back;
                    // Items pushed quietly may not have woken the consumer
                    // yet: a producer about to wait for room always does.
                    self.has_items.notify_one();
                    let space = self.has_space.notified();
                    tokio::pin!(space);
                    space.as_mut().enable();
                    // Re-check after registering so a pop in between is seen.
                    let w = (self.weigh)(&item);
                    if self.fits(&self.items.lock(), w) || self.closed.load(Ordering::Acquire) {
                        continue;
                    }
                    space.await;
                }
                other => return other,
            }
        }
    }

    /// Take up to `max` items into `buf`, waiting for at least one. Returns 0
    /// once the queue is closed and empty.
    pub async fn pop_many(&self, buf: &mut Vec<T>, max: usize) -> usize {
        self.pop_batch(buf, max, usize::MAX).await
    }

    /// [`pop_many`](Self::pop_many) that also stops before `max_bytes` (as
    /// `weigh` counts; the first item is taken whatever it weighs), so a
    /// consumer never holds more than that out of the queue at once.
    pub async fn pop_batch(&self, buf: &mut Vec<T>, max: usize, max_bytes: usize) -> usize {
        loop {
            let wait = self.has_items.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            let n = self.drain_batch(buf, max, max_bytes);
            if n > 0 {
                return n;
            }
            if self.closed.load(Ordering::Acquire) {
                return 0;
            }
            wait.await;
        }
    }

    /// One item, waiting; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        let mut buf = Vec::with_capacity(1);
        if self.pop_many(&mut buf, 1).await == 0 {
            return None;
        }
        buf.pop()
    }

    /// Take up to `max` items now without waiting.
    pub fn drain(&self, buf: &mut Vec<T>, max: usize) -> usize {
        self.drain_batch(buf, max, usize::MAX)
    }

    fn drain_batch(&self, buf: &mut Vec<T>, max: usize, max_bytes: usize) -> usize {
        let mut g = self.items.lock();
        let mut n = g.q.len().min(max);
        let mut bytes = 0usize;
        if self.max_bytes != usize::MAX || max_bytes != usize::MAX {
            // Weighed queue: count what leaves, and stop at the budget.
            let mut taken = 0;
            for item in g.q.iter().take(n) {
                let w = (self.weigh)(item);
                if taken > 0 && bytes.saturating_add(w) > max_bytes {
                    break;
                }
                bytes += w;
                taken += 1;
            }
            n = taken;
        }
        buf.extend(g.q.drain(..n));
        g.bytes -= bytes;
        drop(g);
        if n > 0 {
            // Wake every blocked producer: each re-checks for room.
            self.has_space.notify_waiters();
        }
        n
    }

    /// Remove and return everything queued.
    pub fn take_all(&self) -> Vec<T> {
        let mut buf = Vec::new();
        self.drain(&mut buf, usize::MAX);
        buf
    }

    /// No more pushes; consumers drain what is left, then see the end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.has_items.notify_waiters();
        self.has_items.notify_one();
        self.has_space.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let q = BoundedQueue::new(3, OnFull::DropOldest);
        for i in 0..5 {
            q.try_push(i);
        }
        assert_eq!(q.take_all(), vec![2, 3, 4]);
    }

    #[test]
    fn the_byte_bound_evicts_as_many_oldest_as_a_heavy_item_needs() {
        let q = BoundedQueue::new(100, OnFull::DropOldest).with_max_bytes(10, String::len);
        for s in ["aaa", "bbb", "ccc"] {
            assert_eq!(q.try_push(s.to_string()), Pushed::Queued);
        }
        assert_eq!(q.bytes(), 9);
        // 8 bytes need the room of the three before it.
        assert_eq!(
            q.try_push("dddddddd".to_string()),
            Pushed::EvictedOldest(vec!["aaa".into(), "bbb".into(), "ccc".into()])
        );
        assert_eq!(q.bytes(), 8);
        // Heavier than the whole bound: taken only by an empty queue.
        assert_eq!(
            q.try_push("x".repeat(20)),
            Pushed::EvictedOldest(vec!["dddddddd".into()])
        );
        assert_eq!(q.bytes(), 20);
        assert_eq!(q.take_all(), vec!["x".repeat(20)]);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn the_byte_bound_refuses_under_drop_newest_and_in_batches() {
        let q = BoundedQueue::new(100, OnFull::DropNewest).with_max_bytes(6, String::len);
        assert_eq!(q.try_push("aaaa".to_string()), Pushed::Queued);
        assert_eq!(
            q.try_push("bbb".to_string()),
            Pushed::Rejected("bbb".to_string())
        );
        let mut batch: VecDeque<String> = ["cc", "d", "eeee"].map(String::from).into();
        let mut evicted = Vec::new();
        q.try_push_many_quiet(&mut batch, &mut evicted);
        assert_eq!(batch, VecDeque::from(vec!["d".to_string(), "eeee".into()]));
        assert!(evicted.is_empty());
        assert_eq!(q.bytes(), 6);
        let q = BoundedQueue::new(100, OnFull::DropOldest).with_max_bytes(6, String::len);
        let mut batch: VecDeque<String> = ["aaaa", "bb", "ccc", "d"].map(String::from).into();
        q.try_push_many_quiet(&mut batch, &mut evicted);
        assert!(batch.is_empty());
        assert_eq!(evicted, vec!["aaaa".to_string()]);
        assert_eq!(
            q.take_all(),
            vec!["bb".to_string(), "ccc".into(), "d".into()]
        );
    }

    #[tokio::test]
    async fn block_waits_for_bytes_as_for_length() {
        let q = Arc::new(BoundedQueue::new(100, OnFull::Block).with_max_bytes(8, String::len));
        assert_eq!(q.push("aaaaaa".to_string()).await, Pushed::Queued);
        let producer = {
            let q = q.clone();
            tokio::spawn(async move { q.push("bbbbbb".to_string()).await })
        };
        tokio::task::yield_now().await;
        assert!(!producer.is_finished());
        assert_eq!(q.pop().await.as_deref(), Some("aaaaaa"));
        assert_eq!(producer.await.unwrap(), Pushed::Queued);
        assert_eq!(q.bytes(), 6);
    }

    #[test]
    fn drop_newest_keeps_the_first() {
        let q = BoundedQueue::new(3, OnFull::DropNewest);
        let rejected: Vec<_> = (0..5)
            .filter(|i| matches!(q.try_push(*i), Pushed::Rejected(_)))
            .collect();
        assert_eq!(rejected, vec![3, 4]);
        assert_eq!(q.take_all(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let q = Arc::new(BoundedQueue::new(2, OnFull::Block));
        let producer = {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    assert_eq!(q.push(i).await, Pushed::Queued);
                }
                q.close();
            })
        };
        let mut got = Vec::new();
        while let Some(x) = q.pop().await {
            got.push(x);
            if got.len() % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        producer.await.unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn quiet_pushes_reach_the_consumer_at_the_wake() {
        let q: Arc<BoundedQueue<u8>> = Arc::new(BoundedQueue::new(8, OnFull::Block));
        let c = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                q.pop_many(&mut buf, 8).await;
                buf
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 0..3 {
            assert_eq!(q.try_push_quiet(i), Pushed::Queued);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!c.is_finished(), "a quiet push does not wake the consumer");
        q.wake();
        assert_eq!(c.await.unwrap(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn a_producer_that_must_wait_wakes_the_consumer_first() {
        // Quiet pushes fill the queue without a wake; a push that then has
        // to wait for room must wake the consumer, or both would wait.
        let q: Arc<BoundedQueue<u8>> = Arc::new(BoundedQueue::new(2, OnFull::Block));
        let c = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                while all.len() < 3 {
                    q.pop_many(&mut all, 8).await;
                }
                all
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 0..2 {
            assert_eq!(q.try_push_quiet(i), Pushed::Queued);
        }
        let pushed = tokio::time::timeout(Duration::from_secs(5), q.push(2)).await;
        assert_eq!(
            pushed,
            Ok(Pushed::Queued),
            "the waiting push never got room"
        );
        assert_eq!(c.await.unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_batch_push_follows_each_policy() {
        let batch = |r: std::ops::Range<i32>| r.collect::<VecDeque<_>>();
        for (policy, cap, pre, push, queued, left, evicted) in [
            (
                OnFull::Block,
                4,
                0..2,
                2..5,
                vec![0, 1, 2, 3],
                vec![4],
                vec![],
            ),
            (
                OnFull::DropNewest,
                4,
                0..2,
                2..5,
                vec![0, 1, 2, 3],
                vec![4],
                vec![],
            ),
            (
                OnFull::DropOldest,
                4,
                0..2,
                2..5,
                vec![1, 2, 3, 4],
                vec![],
                vec![0],
            ),
            // More than the whole queue: only the newest `cap` stay.
            (
                OnFull::DropOldest,
                3,
                0..2,
                2..8,
                vec![5, 6, 7],
                vec![],
                vec![0, 1, 2, 3, 4],
            ),
            (OnFull::Block, 4, 0..0, 0..3, vec![0, 1, 2], vec![], vec![]),
        ] {
            let q = BoundedQueue::new(cap, policy);
            for i in pre {
                q.try_push(i);
            }
            let (mut items, mut out) = (batch(push), Vec::new());
            q.try_push_many_quiet(&mut items, &mut out);
            assert_eq!(q.take_all(), queued, "{policy:?} queued");
            assert_eq!(Vec::from(items), left, "{policy:?} left");
            assert_eq!(out, evicted, "{policy:?} evicted");
        }
        let q = BoundedQueue::new(4, OnFull::DropOldest);
        q.close();
        let mut items = batch(0..2);
        q.try_push_many_quiet(&mut items, &mut Vec::new());
        assert_eq!(items.len(), 2, "a closed queue takes nothing");
    }

    #[tokio::test]
    async fn close_wakes_a_waiting_consumer() {
        let q: Arc<BoundedQueue<u8>> = Arc::new(BoundedQueue::new(2, OnFull::Block));
        let c = {
            let q = q.clone();
            tokio::spawn(async move { q.pop().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.close();
        assert_eq!(c.await.unwrap(), None);
    }
}
