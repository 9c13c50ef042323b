//! The replay buffer: the newest `replay.buffer_size` data messages, and at
//! most `replay.max_bytes` of their payloads, in arrival order. Only the fan-out task appends, so a snapshot taken by the
//! fan-out task holds exactly what was fanned out before it.

use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::item::Item;

/// `replay` params.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    /// At most the newest this many.
    #[serde(default)]
    pub count: Option<usize>,
    /// Only messages with `timestamp >= start_time` (ms since the epoch).
    #[serde(default)]
    pub start_time: Option<i64>,
    /// Only messages after the one with this id.
    #[serde(default)]
    pub after_id: Option<String>,
}

/// What a selection found.
pub(crate) struct Selection {
    pub items: Vec<Arc<Item>>,
    /// `after_id` was given but is no longer (or never was) buffered: the
    /// selection then starts at the oldest buffered message.
    pub after_id_missing: bool,
}

pub(crate) struct ReplayBuffer {
    capacity: usize,
    max_bytes: usize,
    items: Mutex<Held>,
}

struct Held {
    q: VecDeque<Arc<Item>>,
    /// Payload bytes in `q`.
    bytes: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        ReplayBuffer {
            capacity,
            max_bytes,
            items: Mutex::new(Held {
                q: VecDeque::with_capacity(capacity.min(4096)),
                bytes: 0,
            }),
        }
    }

    /// Keep `items` (in order), dropping the oldest for room (the newest
    /// is always kept, however large): one lock for a batch. What falls
    /// out is freed after the lock is released.
    pub fn push_all(&self, items: &[Arc<Item>]) {
        if self.capacity == 0 || items.is_empty() {
            return;
        }
        // Once full, a batch pushes out about as many as it brings.
        let mut evicted = Vec::with_capacity(items.len());
        let mut h = self.items.lock();
        for item in items {
            let w = item.payload.len();
            while !h.q.is_empty()
                && (h.q.len() == self.capacity || h.bytes.saturating_add(w) > self.max_bytes)
            {
                let old = h.q.pop_front().expect("not empty");
                h.bytes -= old.payload.len();
                evicted.push(old);
            }
            h.q.push_back(item.clone());
            h.bytes += w;
        }
        drop(h);
        drop(evicted);
    }

    pub fn len(&self) -> usize {
        self.items.lock().q.len()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.items.lock().bytes
    }

    /// The timestamp of the oldest message held.
    pub fn oldest_timestamp(&self) -> Option<i64> {
        self.items.lock().q.front().map(|i| i.timestamp)
    }

    /// Messages after `after_id` with `timestamp >= start_time`, oldest
    /// first (`count` is applied by the caller, after the connection's
    /// filters).
    pub fn select(&self, p: &ReplayParams) -> Selection {
        let h = self.items.lock();
        let q = &h.q;
        let mut from = 0;
        let mut after_id_missing = false;
        if let Some(after) = &p.after_id {
            match q.iter().rposition(|i| &*i.id == after.as_str()) {
                Some(pos) => from = pos + 1,
                None => after_id_missing = true,
            }
        }
        let items = q
            .range(from..)
            .filter(|i| p.start_time.is_none_or(|t| i.timestamp >= t))
            .cloned()
            .collect();
        Selection {
            items,
            after_id_missing,
        }
    }

    /// `GET …/buffer`: the newest `count` with `timestamp >= start_time`,
    /// newest last.
    pub fn snapshot(&self, count: Option<usize>, start_time: Option<i64>) -> Vec<Arc<Item>> {
        let mut items = self
            .select(&ReplayParams {
                count: None,
                start_time,
                after_id: None,
            })
            .items;
        if let Some(c) = count {
            let skip = items.len().saturating_sub(c);
            items.drain(..skip);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fednode_kit::{Message, Meta};

    fn item(seq: u64, ts: i64) -> Arc<Item> {
        Arc::new(Item::from_message(
            seq,
            Message::new("s", Bytes::from(vec![b' '; 4])).with_meta(Meta {
                id: Some(format!("m{seq}").into()),
                timestamp: Some(ts),
                ..Meta::default()
            }),
        ))
    }

    #[test]
    fn keeps_the_newest_and_selects_by_id_and_time() {
        let b = ReplayBuffer::new(3, usize::MAX);
        b.push_all(&[item(1, 10), item(2, 20)]);
        for s in 3..=5 {
            b.push_all(&[item(s, s as i64 * 10)]);
        }
        let seqs = |v: Vec<Arc<Item>>| v.iter().map(|i| i.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(b.select(&ReplayParams::default()).items),
            vec![3, 4, 5]
        );
        let p = ReplayParams {
            after_id: Some("m3".into()),
            ..Default::default()
        };
        assert_eq!(seqs(b.select(&p).items), vec![4, 5]);
        let p = ReplayParams {
            after_id: Some("m1".into()),
            ..Default::default()
        };
        let s = b.select(&p);
        assert!(s.after_id_missing);
        assert_eq!(seqs(s.items), vec![3, 4, 5]);
        let p = ReplayParams {
            start_time: Some(45),
            ..Default::default()
        };
        assert_eq!(seqs(b.select(&p).items), vec![5]);
        assert_eq!(seqs(b.snapshot(Some(2), None)), vec![4, 5]);
        assert!(ReplayBuffer::new(0, usize::MAX)
            .select(&ReplayParams::default())
            .items
            .is_empty());
    }

    #[test]
    fn a_batch_larger_than_the_buffer_leaves_its_newest() {
        let b = ReplayBuffer::new(3, usize::MAX);
        b.push_all(&[item(1, 0), item(2, 0)]);
        b.push_all(&(3..=7).map(|s| item(s, 0)).collect::<Vec<_>>());
        let seqs: Vec<u64> = b.snapshot(None, None).iter().map(|i| i.seq).collect();
        assert_eq!(seqs, vec![5, 6, 7]);
        assert_eq!(b.bytes(), 12);
    }

    #[test]
    fn the_byte_bound_keeps_the_newest_that_fit() {
        let b = ReplayBuffer::new(100, 10);
        b.push_all(&(1..=5).map(|s| item(s, 0)).collect::<Vec<_>>());
        // 4 bytes each: two fit in 10.
        let seqs: Vec<u64> = b.snapshot(None, None).iter().map(|i| i.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert_eq!(b.bytes(), 8);
    }
}
