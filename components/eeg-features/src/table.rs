//! The stream table: the live streams, found by key, kept in
//! least-recently-used order, bounded in count (`max_streams`) and in
//! bytes.
//!
//! Entries live in a slab (a `Vec` of slots plus a free list), found by
//! key through a hash map. A doubly linked list threaded through the slots
//! by index keeps them in order of use: the head is the stream used last,
//! the tail the one used longest ago. Every operation a message makes is
//! O(1): find, touch (move to the head), open, evict (drop the tail).
//! The idle sweep walks from the tail and stops at the first stream that
//! is not idle, so it costs what it frees.
//!
//! Bytes: a stream is charged its sample buffers (one window, allocated
//! in full when it opens), the bytes of its key in every form it is kept
//! (the key, its JSON text, its rendered subject) and a fixed
//! [`ENTRY_OVERHEAD`]. Opening a stream evicts from the tail until both
//! bounds hold with the new stream counted; a single stream is always
//! admitted, so a new key is never refused.

use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::key::KeyRef;
use crate::stream::Stream;

/// "No slot" in the recency list.
const NIL: usize = usize::MAX;

/// Key bytes each stream may use on average before the byte bound is
/// reached ahead of `max_streams`: room for a 128-byte key, its JSON text
/// and a subject rendered from it. Only keys that escape heavily in JSON
/// (control characters) or long subject templates cost more.
pub const KEY_ALLOWANCE: usize = 512;

/// What a stream costs besides its samples and key bytes: its slot, its
/// hash-map entry and the allocation headers of its key and subject.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Option<Slot>>()
    + std::mem::size_of::<(Arc<str>, usize)>()
    + 2 * 2 * std::mem::size_of::<usize>()
    + 16;

/// The table's byte bound for `max_streams` streams whose sample buffers
/// take `sample_bytes` each: `max_streams × (sample_bytes + ENTRY_OVERHEAD
/// + KEY_ALLOWANCE)`.
pub fn byte_limit(max_streams: usize, sample_bytes: usize) -> usize {
    max_streams.saturating_mul(
        sample_bytes
            .saturating_add(ENTRY_OVERHEAD)
            .saturating_add(KEY_ALLOWANCE),
    )
}

/// How full the table is, and how full it has been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTableUsage {
    /// Streams alive now.
    pub streams: usize,
    /// Most streams alive at once so far.
    pub streams_peak: usize,
    /// `max_streams`.
    pub streams_limit: usize,
    /// Bytes charged to the live streams now.
    pub bytes: usize,
    /// Most bytes charged at once so far.
    pub bytes_peak: usize,
    /// The byte bound ([`byte_limit`]).
    pub bytes_limit: usize,
    /// Streams evicted so far to respect either bound.
    pub evicted: u64,
}

/// A stream's key, owned; shared with the index that finds it.
enum OwnedKey {
    Missing,
    Str(Arc<str>),
    Json(Arc<str>),
}

impl OwnedKey {
    fn of(key: &KeyRef<'_>) -> Self {
        match key {
            KeyRef::Missing => OwnedKey::Missing,
            KeyRef::Str(s) => OwnedKey::Str(Arc::from(s.as_ref())),
            KeyRef::Json(t) => OwnedKey::Json(Arc::from(t.as_ref())),
        }
    }

    fn len(&self) -> usize {
        match self {
            OwnedKey::Missing => 0,
            OwnedKey::Str(s) | OwnedKey::Json(s) => s.len(),
        }
    }
}

/// One live stream, as the processor uses it.
pub(crate) struct Entry {
    /// The key as it appears in the output (`"u17"`, `17`, `null`).
    pub(crate) key_json: Box<RawValue>,
    /// The rendered output subject, when it depends only on the key.
    pub(crate) subject: Option<Arc<str>>,
    pub(crate) stream: Stream,
    pub(crate) last_seen: Instant,
}

impl Entry {
    /// Bytes charged for this entry under `key`.
    fn bytes(&self, key: &OwnedKey) -> usize {
        self.stream.heap_bytes()
            + key.len()
            + self.key_json.get().len()
            + self.subject.as_ref().map_or(0, |s| s.len())
            + ENTRY_OVERHEAD
    }
}

pub(crate) struct Slot {
    key: OwnedKey,
    entry: Entry,
    bytes: usize,
    /// Toward the head (used more recently).
    prev: usize,
    /// Toward the tail (used less recently).
    next: usize,
}

/// The live streams.
pub(crate) struct Streams {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_str: HashMap<Arc<str>, usize>,
    by_json: HashMap<Arc<str>, usize>,
    default: Option<usize>,
    /// Used last.
    head: usize,
    /// Used longest ago: the next to evict.
    tail: usize,
    len: usize,
    bytes: usize,
    max: usize,
    max_bytes: usize,
    peak_len: usize,
    peak_bytes: usize,
    evicted: u64,
}

impl Streams {
    /// An empty table holding at most `max` streams (at least 1) and
    /// `max_bytes` bytes.
    pub(crate) fn new(max: usize, max_bytes: usize) -> Self {
        Streams {
            slots: Vec::new(),
            free: Vec::new(),
            by_str: HashMap::new(),
            by_json: HashMap::new(),
            default: None,
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
            max: max.max(1),
            max_bytes,
            peak_len: 0,
            peak_bytes: 0,
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn usage(&self) -> StreamTableUsage {
        StreamTableUsage {
            streams: self.len,
            streams_peak: self.peak_len,
            streams_limit: self.max,
            bytes: self.bytes,
            bytes_peak: self.peak_bytes,
            bytes_limit: self.max_bytes,
            evicted: self.evicted,
        }
    }

    /// The stream of `key`, marked as just used at `now`.
    pub(crate) fn find_and_touch(&mut self, key: &KeyRef<'_>, now: Instant) -> Option<usize> {
        let i = match key {
            KeyRef::Missing => self.default,
            KeyRef::Str(s) => self.by_str.get(s.as_ref()).copied(),
            KeyRef::Json(t) => self.by_json.get(t.as_ref()).copied(),
        }?;
        self.unlink(i);
        self.push_head(i);
        self.slot_mut(i).entry.last_seen = now;
        Some(i)
    }

    /// Open the stream of `key` (not present) with the entry `make`
    /// builds, evicting the least recently used streams until it fits
    /// both bounds. Returns its index and how many streams were evicted.
    pub(crate) fn open(&mut self, key: &KeyRef<'_>, make: impl FnOnce() -> Entry) -> (usize, u64) {
        let key = OwnedKey::of(key);
        let entry = make();
        let bytes = entry.bytes(&key);
        let mut evicted = 0;
        while self.len > 0
            && (self.len >= self.max || self.bytes.saturating_add(bytes) > self.max_bytes)
        {
            self.remove(self.tail);
            evicted += 1;
        }
        self.evicted += evicted;
        let slot = Slot {
            key,
            entry,
            bytes,
            prev: NIL,
            next: NIL,
        };
        let index_key = match &slot.key {
            OwnedKey::Missing => None,
            OwnedKey::Str(s) | OwnedKey::Json(s) => Some(s.clone()),
        };
        let is_str = matches!(slot.key, OwnedKey::Str(_));
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        match index_key {
            None => self.default = Some(i),
            Some(k) if is_str => {
                self.by_str.insert(k, i);
            }
            Some(k) => {
                self.by_json.insert(k, i);
            }
        }
        self.push_head(i);
        self.len += 1;
        self.bytes += bytes;
        self.peak_len = self.peak_len.max(self.len);
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        (i, evicted)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.slot_mut(i).entry
    }

    /// Free streams not used for `timeout`; returns how many. The list is
    /// in `last_seen` order (every use stamps the time, taken under the
    /// one lock, and moves the stream to the head), so the idle streams
    /// are exactly those at the tail.
    pub(crate) fn sweep(&mut self, now: Instant, timeout: Duration) -> usize {
        let mut freed = 0;
        while self.tail != NIL {
            let last_seen = self.slot_mut(self.tail).entry.last_seen;
            if now.saturating_duration_since(last_seen) < timeout {
                break;
            }
            self.remove(self.tail);
            freed += 1;
        }
        // Give memory back after a burst of streams has gone.
        if freed > 0 && self.len == 0 {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.by_str.shrink_to_fit();
            self.by_json.shrink_to_fit();
        }
        freed
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        self.slots[i].as_mut().expect("a live stream slot")
    }

    /// Drop the stream in slot `i` (live).
    fn remove(&mut self, i: usize) {
        self.unlink(i);
        let slot = self.slots[i].take().expect("a live stream slot");
        match &slot.key {
            OwnedKey::Missing => self.default = None,
            OwnedKey::Str(s) => {
                self.by_str.remove(s);
            }
            OwnedKey::Json(t) => {
                self.by_json.remove(t);
            }
        }
        self.free.push(i);
        self.len -= 1;
        self.bytes -= slot.bytes;
    }

    /// Take slot `i` out of the recency list.
    fn unlink(&mut self, i: usize) {
        let (prev, next) = {
            let s = self.slot_mut(i);
            let links = (s.prev, s.next);
            (s.prev, s.next) = (NIL, NIL);
            links
        };
        match prev {
            NIL => self.head = next,
            p => self.slot_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slot_mut(n).prev = prev,
        }
    }

    /// Put slot `i` (unlinked) at the head of the recency list.
    fn push_head(&mut self, i: usize) {
        let old = self.head;
        {
            let s = self.slot_mut(i);
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = i,
            h => self.slot_mut(h).prev = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::WindowSpec;
    use std::borrow::Cow;

    fn entry(now: Instant) -> Entry {
        Entry {
            key_json: RawValue::from_string("null".into()).unwrap(),
            subject: None,
            stream: Stream::new(1, WindowSpec::from_samples(4, 2)),
            last_seen: now,
        }
    }

    fn key(s: &str) -> KeyRef<'_> {
        KeyRef::Str(Cow::Borrowed(s))
    }

    /// Keys from least to most recently used, by walking the list.
    fn order(t: &Streams) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = t.tail;
        while i != NIL {
            let s = t.slots[i].as_ref().unwrap();
            out.push(match &s.key {
                OwnedKey::Missing => "_".to_string(),
                OwnedKey::Str(k) | OwnedKey::Json(k) => k.to_string(),
            });
            i = s.prev;
        }
        out
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let now = Instant::now();
        let mut t = Streams::new(3, usize::MAX);
        for k in ["a", "b", "c"] {
            assert_eq!(t.open(&key(k), || entry(now)).1, 0);
        }
        assert!(t.find_and_touch(&key("a"), now).is_some());
        assert_eq!(order(&t), ["b", "c", "a"]);
        assert_eq!(t.open(&key("d"), || entry(now)).1, 1);
        assert_eq!(order(&t), ["c", "a", "d"]);
        assert!(t.find_and_touch(&key("b"), now).is_none());
        assert!(t.find_and_touch(&KeyRef::Missing, now).is_none());
        t.open(&KeyRef::Missing, || entry(now));
        assert_eq!(order(&t), ["a", "d", "_"]);
        assert!(t.find_and_touch(&KeyRef::Missing, now).is_some());
        assert_eq!(t.usage().evicted, 2);
        assert_eq!(t.usage().streams_peak, 3);
    }

    #[test]
    fn bounded_in_bytes_and_sweeps_from_the_tail() {
        let t0 = Instant::now();
        let one = entry(t0).bytes(&OwnedKey::Str("a".into()));
        // Room for two one-letter streams in bytes, five in count.
        let mut t = Streams::new(5, 2 * one);
        t.open(&key("a"), || entry(t0));
        t.open(&key("b"), || entry(t0));
        assert_eq!(t.open(&key("c"), || entry(t0)).1, 1);
        assert_eq!(order(&t), ["b", "c"]);
        assert_eq!(t.usage().bytes, 2 * one);
        // A key too large for the bound alone is still admitted.
        let (_, evicted) = t.open(&key(&"x".repeat(3 * one)), || entry(t0));
        assert_eq!((evicted, t.len()), (2, 1));
        let later = t0 + Duration::from_secs(10);
        t.open(&key("d"), || entry(later));
        assert_eq!(t.len(), 1, "the big one went");
        t.open(&key("e"), || entry(later + Duration::from_secs(5)));
        assert_eq!(
            t.sweep(later + Duration::from_secs(6), Duration::from_secs(3)),
            1
        );
        assert_eq!(order(&t), ["e"]);
        assert_eq!(
            t.sweep(later + Duration::from_secs(9), Duration::from_secs(3)),
            1
        );
        assert_eq!((t.len(), t.usage().bytes, t.head, t.tail), (0, 0, NIL, NIL));
        assert_eq!(t.usage().bytes_peak, 4 * one - 1);
    }
}
