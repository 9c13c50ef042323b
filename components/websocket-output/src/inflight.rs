//! Acknowledged delivery, one connection's book: data written to the peer
//! and not yet acknowledged, each with the time it is due again.
//!
//! - Written data is due `ack_timeout` later; an ack frees it.
//! - A `nack` the peer may get over (`queue_full`, `unavailable`) makes it
//!   due after a backoff that grows while nacks keep coming and resets on
//!   the next ack. Any other nack frees it as lost.
//! - What is due is resent in its original order, ahead of live data
//!   ([`InFlight::take_due`]); a reconnect resends everything still here.
//!
//! The book also remembers whether the peer acknowledged anything during
//! the current session, which is how a peer that never acks is told apart
//! from one that is only slow.

use fednode_kit::backoff::Backoff;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::NackBackoffConfig;
use crate::item::Item;

/// "Not due": taken for resending, due again once written.
const PARKED: Duration = Duration::from_secs(365 * 24 * 3600);

struct Flight {
    item: Arc<Item>,
    due: Instant,
    /// Due because of a nack (a retry), not because its ack is late.
    nacked: bool,
}

/// Nack reasons after which the same data is sent again.
pub(crate) fn nack_is_retryable(reason: &str) -> bool {
    matches!(reason, "queue_full" | "unavailable")
}

/// Acknowledged delivery on a connection: when unacknowledged data is due
/// again, and how much of it may be in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckLimits {
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Before data nacked `queue_full`/`unavailable` is due again.
    pub nack_backoff: NackBackoffConfig,
}

/// What a nack did to the data it names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Nacked {
    /// Sent again after a backoff.
    Retry,
    /// Dropped: the peer will not take it.
    Lost,
    /// Nothing in flight has that id (a late or repeated nack).
    Unknown,
}

/// What [`InFlight::take_due`] found.
#[derive(Default)]
pub(crate) struct Due {
    /// In the order they were first sent.
    pub items: Vec<Arc<Item>>,
    /// Some of them are due because no ack came within `ack_timeout`
    /// (rather than retries after a nack).
    pub timed_out: bool,
}

pub(crate) struct InFlight {
    /// By sequence number, which is the order first sent: data is written
    /// in that order, so acks (which come in the order the peer published)
    /// nearly always free the front, and a new item goes at the back.
    flights: VecDeque<Flight>,
    /// Any ack or nack during the current session.
    heard: bool,
    nack_backoff: Backoff,
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new(NackBackoffConfig::default())
    }
}

impl InFlight {
    /// An empty book whose nacked data waits as `nack_backoff` says.
    pub fn new(nack_backoff: NackBackoffConfig) -> Self {
        InFlight {
            flights: VecDeque::new(),
            heard: false,
            nack_backoff: Backoff::new(nack_backoff.initial, nack_backoff.max, 2.0),
        }
    }

    pub fn len(&self) -> usize {
        self.flights.len()
    }

    /// `item` was just written: due again at `due` unless acked.
    pub fn track(&mut self, item: &Arc<Item>, due: Instant) {
        let flight = Flight {
            item: item.clone(),
            due,
            nacked: false,
        };
        if self.flights.back().is_none_or(|f| f.item.seq < item.seq) {
            self.flights.push_back(flight);
            return;
        }
        // A resend, or replayed data older than what is in flight.
        match self.flights.binary_search_by_key(&item.seq, |f| f.item.seq) {
            Ok(i) => self.flights[i] = flight,
            Err(i) => self.flights.insert(i, flight),
        }
    }

    /// Where the data with `id` is: the front for an ack in order, else
    /// found by a scan (at most `max_in_flight` entries).
    fn position(&self, id: &str) -> Option<usize> {
        if self.flights.front().is_some_and(|f| &*f.item.id == id) {
            return Some(0);
        }
        self.flights.iter().position(|f| &*f.item.id == id)
    }

    /// An ack: the item it frees (none for an unknown or repeated ack).
    pub fn ack(&mut self, id: &str) -> Option<Arc<Item>> {
        self.heard = true;
        let freed = self.remove(id);
        if freed.is_some() {
            self.nack_backoff.reset();
        }
        freed
    }

    /// A nack worth retrying: `id` is due again after the backoff. False
    /// when `id` is not in flight.
    pub fn retry_later(&mut self, id: &str, now: Instant) -> bool {
        self.heard = true;
        let Some(i) = self.position(id) else {
            return false;
        };
        let delay = self.nack_backoff.next_delay();
        let f = &mut self.flights[i];
        f.due = now + delay;
        f.nacked = true;
        true
    }

    /// A final nack: the item, lost.
    pub fn refuse(&mut self, id: &str) -> Option<Arc<Item>> {
        self.heard = true;
        self.remove(id)
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Item>> {
        let i = self.position(id)?;
        self.flights.remove(i).map(|f| f.item)
    }

    /// Everything due by `now`, oldest first; each is parked until it is
    /// written again.
    pub fn take_due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        for f in self.flights.iter_mut().filter(|f| f.due <= now) {
            due.timed_out |= !f.nacked;
            due.items.push(f.item.clone());
            f.due = now + PARKED;
        }
        due
    }

    /// When the next item falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.flights.iter().map(|f| f.due).min()
    }

    /// Everything still unacknowledged, oldest first (a reconnect resends
    /// it), parked until written again.
    pub fn take_all(&mut self, now: Instant) -> Vec<Arc<Item>> {
        self.flights
            .iter_mut()
            .map(|f| {
                f.due = now + PARKED;
                f.item.clone()
            })
            .collect()
    }

    /// Forget everything (the peer does not ack); returns their sequence
    /// numbers.
    pub fn clear(&mut self) -> Vec<u64> {
        self.flights.drain(..).map(|f| f.item.seq).collect()
    }

    /// A new session: nothing heard from this peer yet.
    pub fn new_session(&mut self) {
        self.heard = false;
    }

    /// Whether the peer acked or nacked anything this session.
    pub fn heard(&self) -> bool {
        self.heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fednode_kit::{Message, Meta};

    fn item(seq: u64) -> Arc<Item> {
        Arc::new(Item::from_message(
            seq,
            Message::new("s", Bytes::from_static(b"{}")).with_meta(Meta {
                id: Some(format!("m{seq}").into()),
                ..Meta::default()
            }),
        ))
    }

    fn seqs(items: &[Arc<Item>]) -> Vec<u64> {
        items.iter().map(|i| i.seq).collect()
    }

    #[test]
    fn late_acks_fall_due_in_the_order_sent() {
        let (mut f, t0) = (InFlight::default(), Instant::now());
        let timeout = Duration::from_secs(10);
        for s in [3, 1, 2] {
            f.track(&item(s), t0 + timeout);
        }
        assert!(f.ack("m2").is_some());
        assert!(f.ack("m2").is_none(), "a repeated ack frees nothing");
        assert!(f.take_due(t0).items.is_empty());
        let due = f.take_due(t0 + timeout);
        assert_eq!(seqs(&due.items), vec![1, 3]);
        assert!(due.timed_out);
        // Parked until written again.
        assert!(f.take_due(t0 + timeout * 2).items.is_empty());
        f.track(&item(1), t0 + timeout * 3);
        assert_eq!(seqs(&f.take_due(t0 + timeout * 3).items), vec![1]);
    }

    #[test]
    fn retryable_nacks_back_off_and_an_ack_resets_the_backoff() {
        let (mut f, t0) = (InFlight::default(), Instant::now());
        f.track(&item(1), t0 + Duration::from_secs(10));
        assert!(f.retry_later("m1", t0));
        let first = f.next_due().unwrap() - t0;
        let due = f.take_due(t0 + first);
        assert_eq!(seqs(&due.items), vec![1]);
        assert!(!due.timed_out, "a nack retry is not a missing ack");
        f.track(&item(1), t0 + Duration::from_secs(10));
        assert!(f.retry_later("m1", t0));
        let second = f.next_due().unwrap() - t0;
        assert!(second > first, "{second:?} after {first:?}");
        f.ack("m1");
        f.track(&item(2), t0 + Duration::from_secs(10));
        assert!(f.retry_later("m2", t0));
        assert!(f.next_due().unwrap() - t0 <= first * 2);
        assert!(!f.retry_later("nope", t0));
    }

    #[test]
    fn the_nack_backoff_is_the_configured_one() {
        let (mut f, t0) = (
            InFlight::new(NackBackoffConfig {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(3),
            }),
            Instant::now(),
        );
        f.track(&item(1), t0 + Duration::from_secs(60));
        let mut waits = Vec::new();
        for _ in 0..4 {
            assert!(f.retry_later("m1", t0));
            waits.push(f.next_due().unwrap() - t0);
        }
        // 2 s, then doubling up to the 3 s maximum, each with ±20 % jitter
        // and never past the maximum.
        let within = |w: Duration, lo: u64, hi: u64| {
            w >= Duration::from_millis(lo) && w <= Duration::from_millis(hi)
        };
        assert!(within(waits[0], 1600, 2400), "{waits:?}");
        assert!(
            waits[1..].iter().all(|w| within(*w, 2400, 3000)),
            "{waits:?}"
        );
    }

    #[test]
    fn a_final_nack_frees_the_item_and_counts_as_heard() {
        let (mut f, t0) = (InFlight::default(), Instant::now());
        f.track(&item(1), t0);
        assert!(!f.heard());
        assert_eq!(seqs(&[f.refuse("m1").unwrap()]), vec![1]);
        assert!(f.heard() && f.len() == 0);
        f.new_session();
        assert!(!f.heard());
    }
}
