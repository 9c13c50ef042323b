//! The embedded bus: in-process, with the subject semantics of NATS
//! (`.`-separated tokens, `*` one token, `>` the rest, queue groups,
//! request/reply with no-responders), bounded per-subscriber queues and
//! counted drops.
//!
//! Publishing looks the subject up in a route cache (subject → matching
//! subscribers), so the per-message cost is one hash lookup plus one channel
//! send per subscriber; the payload is a shared [`Bytes`], never copied.
//! The cache is bounded in entries and in bytes of subjects (a peer that
//! publishes on many huge subjects cannot make it hold them).

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use prometheus::IntCounter;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::bus::{
    Bus, BusError, Closing, Message, Meta, Overflow, SubscribeOptions, Subscription,
    SubscriptionGuard, TryPublish,
};
use crate::subject;

struct Sub {
    id: u64,
    pattern: String,
    queue_group: Option<String>,
    tx: mpsc::Sender<Message>,
    overflow: Overflow,
    dropped: Arc<AtomicU64>,
    drop_counter: Option<IntCounter>,
}

/// Who receives a given subject: plain subscribers, and one member of each
/// queue group (round robin).
#[derive(Default)]
struct Route {
    plain: Vec<Arc<Sub>>,
    groups: Vec<(Vec<Arc<Sub>>, AtomicUsize)>,
    /// Some receiver uses `Overflow::Block`: publishing may have to wait.
    has_blocking: bool,
}

impl Route {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    /// Another member of `sub`'s queue group whose channel is open.
    fn open_sibling(&self, sub: &Sub) -> Option<&Sub> {
        let group = sub.queue_group.as_deref()?;
        self.groups
            .iter()
            .find(|(members, _)| members[0].queue_group.as_deref() == Some(group))?
            .0
            .iter()
            .map(|m| &**m)
            .find(|m| m.id != sub.id && !m.tx.is_closed())
    }
}

struct State {
    subs: Vec<Arc<Sub>>,
    cache: RouteCache,
}

/// The default bound on cached routes; templated subjects can produce many
/// distinct subjects, and a miss only costs one scan of the subscriptions.
pub const ROUTE_CACHE_ENTRIES: usize = 8192;
/// The default bound on the bytes of cached subjects (the sum of their
/// lengths): subjects filled from peer data can be long.
pub const ROUTE_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// A subject longer than this fraction of the byte bound is not cached: it
/// would evict the whole cache for one entry. Its route is computed for
/// each publish instead (a scan of the subscriptions).
const UNCACHED_FRACTION: usize = 64;

/// Subject → route, bounded in entries and in bytes of subjects. When
/// either bound would be passed the cache is emptied and refills with the
/// subjects in use (a miss is only one scan of the subscriptions).
struct RouteCache {
    /// foldhash, not SipHash: the lookup is on every publish (and the
    /// seed is random).
    map: HashMap<Arc<str>, Arc<Route>, foldhash::fast::RandomState>,
    /// The sum of the lengths of the subjects in `map`.
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl RouteCache {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        RouteCache {
            map: HashMap::default(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn get(&self, subject: &str) -> Option<&Arc<Route>> {
        self.map.get(subject)
    }

    fn insert(&mut self, subject: &str, route: Arc<Route>) {
        if self.max_entries == 0 || subject.len() > self.max_bytes / UNCACHED_FRACTION {
            return;
        }
        if let Some(cached) = self.map.get_mut(subject) {
            // Another publisher computed it meanwhile: same subject, same bytes.
            *cached = route;
            return;
        }
        if self.map.len() >= self.max_entries || self.bytes + subject.len() > self.max_bytes {
            self.clear();
        }
        self.bytes += subject.len();
        self.map.insert(subject.into(), route);
    }

    fn clear(&mut self) {
        // The table keeps its capacity (at most `max_entries` slots); the
        // subjects themselves are freed here.
        self.map.clear();
        self.bytes = 0;
    }
}

struct Inner {
    state: RwLock<State>,
    next_id: AtomicU64,
    closed: AtomicBool,
    dropped_total: AtomicU64,
}

/// The in-process bus. Cheap to clone; all clones are the same bus.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// A new, empty bus, its route cache bounded by [`ROUTE_CACHE_ENTRIES`]
    /// and [`ROUTE_CACHE_BYTES`].
    pub fn new() -> Self {
        Self::with_route_cache(ROUTE_CACHE_ENTRIES, ROUTE_CACHE_BYTES)
    }

    /// A new, empty bus whose route cache holds at most `max_entries`
    /// subjects of at most `max_bytes` bytes together; a subject longer
    /// than `max_bytes / 64` is never cached.
    pub fn with_route_cache(max_entries: usize, max_bytes: usize) -> Self {
        MemoryBus {
            inner: Arc::new(Inner {
                state: RwLock::new(State {
                    subs: Vec::new(),
                    cache: RouteCache::new(max_entries, max_bytes),
                }),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                dropped_total: AtomicU64::new(0),
            }),
        }
    }

    /// The number of subjects in the route cache.
    pub fn route_cache_len(&self) -> usize {
        self.inner.state.read().cache.map.len()
    }

    /// The bytes of the subjects in the route cache (the sum of their lengths).
    pub fn route_cache_bytes(&self) -> usize {
        self.inner.state.read().cache.bytes
    }

    /// Stop delivering: every subscription ends once drained.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let mut st = self.inner.state.write();
        st.subs.clear();
        st.cache.clear();
    }

    fn route(&self, subject: &str) -> Arc<Route> {
        if let Some(r) = self.inner.state.read().cache.get(subject) {
            return r.clone();
        }
        let mut st = self.inner.state.write();
        let mut route = Route::default();
        let mut groups: Vec<(String, Vec<Arc<Sub>>)> = Vec::new();
        for s in st.subs.iter() {
            if !subject::matches(&s.pattern, subject) {
                continue;
            }
            match &s.queue_group {
                None => route.plain.push(s.clone()),
                Some(g) => match groups.iter_mut().find(|(name, _)| name == g) {
                    Some((_, members)) => members.push(s.clone()),
                    None => groups.push((g.clone(), vec![s.clone()])),
                },
            }
        }
        route.has_blocking = route
            .plain
            .iter()
            .chain(groups.iter().flat_map(|(_, m)| m.iter()))
            .any(|s| s.overflow == Overflow::Block);
        route.groups = groups
            .into_iter()
            .map(|(_, m)| (m, AtomicUsize::new(0)))
            .collect();
        let route = Arc::new(route);
        st.cache.insert(subject, route.clone());
        route
    }

    /// Deliver to one subscriber that never blocks.
    fn deliver_now(&self, route: &Route, sub: &Sub, msg: Message) {
        match sub.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.count_drop(sub),
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                // A queue group member closing (a component handing over
                // to its reloaded successor): another member takes it.
                if let Some(other) = route.open_sibling(sub) {
                    self.deliver_now(route, other, msg);
                }
            }
        }
    }

    fn count_drop(&self, sub: &Sub) {
        sub.dropped.fetch_add(1, Ordering::Relaxed);
        self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &sub.drop_counter {
            c.inc();
        }
    }

    /// Which subscribers get a message on this route (one per queue group).
    fn targets<'r>(route: &'r Route, out: &mut Targets<'r>) {
        for s in &route.plain {
            out.push(s);
        }
        for (members, next) in &route.groups {
            let i = next.fetch_add(1, Ordering::Relaxed) % members.len();
            out.push(&members[i]);
        }
    }

    /// Deliver to every target of `route` without waiting; hands the
    /// message back when some receiver blocks (the async path takes it).
    fn deliver_all_now(&self, route: &Route, msg: Message) -> TryPublish {
        if route.has_blocking {
            // One blocking receiver and room in its channel: deliver now.
            // Full (or a wider route) takes the async path, which waits.
            return match (&route.plain[..], route.groups.is_empty()) {
                ([only], true) => match only.tx.try_send(msg) {
                    // Closed: a plain subscriber leaving; nobody else wants it.
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => TryPublish::Sent,
                    Err(mpsc::error::TrySendError::Full(msg)) => TryPublish::WouldWait(msg),
                },
                _ => TryPublish::WouldWait(msg),
            };
        }
        let mut targets = Targets::new();
        Self::targets(route, &mut targets);
        for (s, m) in copies(&targets, msg) {
            self.deliver_now(route, s, m);
        }
        TryPublish::Sent
    }

    async fn deliver(&self, sub: &Sub, msg: Message) {
        let closed = match sub.tx.try_send(msg) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(msg)) => match sub.overflow {
                Overflow::Block => match sub.tx.send(msg).await {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(msg)) => msg,
                },
                Overflow::Drop => return self.count_drop(sub),
            },
            Err(mpsc::error::TrySendError::Closed(msg)) => msg,
        };
        // Closed: a plain subscription is being dropped (its guard removes
        // it), and its message goes nowhere, as on NATS. A queue group's
        // message goes to another member, on the current route.
        if sub.queue_group.is_some() {
            let route = self.route(&closed.subject);
            if let Some(other) = route.open_sibling(sub) {
                Box::pin(self.deliver(other, closed)).await;
            }
        }
    }
}

/// The delivery targets of one message: almost every subject has one to
/// four receivers, so they stay inline (a heap allocation per publish
/// would dominate).
type Targets<'a> = SmallVec<[&'a Sub; 4]>;

/// One message per target: clones for all but the last, which gets the
/// original (a clone shares the payload; nothing is copied).
fn copies<'t, 'a: 't>(
    targets: &'t Targets<'a>,
    msg: Message,
) -> impl Iterator<Item = (&'a Sub, Message)> + 't {
    let n = targets.len();
    let mut msg = Some(msg);
    targets.iter().copied().enumerate().map(move |(i, s)| {
        let m = if i + 1 == n {
            msg.take().expect("message delivered once")
        } else {
            msg.as_ref().expect("message present").clone()
        };
        (s, m)
    })
}

/// Removes a subscription from the bus when the [`Subscription`] is
/// closed or dropped.
struct Unsubscribe {
    bus: Weak<Inner>,
    id: u64,
}

impl Unsubscribe {
    fn remove(&self) {
        if let Some(inner) = self.bus.upgrade() {
            let mut st = inner.state.write();
            st.subs.retain(|s| s.id != self.id);
            st.cache.clear();
        }
    }
}

impl SubscriptionGuard for Unsubscribe {
    /// Leave every route first, then let the receiver close: a publisher
    /// still holding an older route then finds the channel closed and
    /// gives a queue group's message to another member.
    fn close(&mut self) -> Closing {
        self.remove();
        Closing::Now
    }
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.remove();
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, msg: Message) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(BusError::Closed);
        }
        let route = self.route(&msg.subject);
        let mut targets = Targets::new();
        Self::targets(&route, &mut targets);
        for (s, m) in copies(&targets, msg) {
            self.deliver(s, m).await;
        }
        Ok(())
    }

    fn try_publish(&self, msg: Message) -> TryPublish {
        if self.inner.closed.load(Ordering::Relaxed) {
            // `publish` reports it; a retrying caller keeps the message.
            return TryPublish::WouldWait(msg);
        }
        // The hot path: deliver under the read lock, without cloning the
        // cached route (no reference-count traffic per message).
        {
            let st = self.inner.state.read();
            if let Some(route) = st.cache.get(&msg.subject) {
                return self.deliver_all_now(route, msg);
            }
        }
        let route = self.route(&msg.subject);
        self.deliver_all_now(&route, msg)
    }

    async fn subscribe(
        &self,
        pattern: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(BusError::Closed);
        }
        subject::validate_pattern(pattern)
            .map_err(|_| BusError::InvalidSubject(pattern.to_string()))?;
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        let sub = Arc::new(Sub {
            id,
            pattern: pattern.to_string(),
            queue_group: opts.queue_group,
            tx,
            overflow: opts.overflow,
            dropped: dropped.clone(),
            drop_counter: opts.drop_counter,
        });
        {
            let mut st = self.inner.state.write();
            st.subs.push(sub);
            st.cache.clear();
        }
        let guard = Unsubscribe {
            bus: Arc::downgrade(&self.inner),
            id,
        };
        Ok(Subscription::new(rx, dropped, Some(Box::new(guard))))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        meta: Meta,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        if self.route(subject).is_empty() {
            return Err(BusError::NoResponders(subject.to_string()));
        }
        let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
        let mut sub = self
            .subscribe(
                &inbox,
                SubscribeOptions {
                    capacity: 4,
                    ..Default::default()
                },
            )
            .await?;
        self.publish(Message {
            subject: subject.into(),
            payload,
            meta,
            reply: Some(inbox.into()),
        })
        .await?;
        match tokio::time::timeout(timeout, sub.next()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(BusError::Closed),
            Err(_) => Err(BusError::Timeout(subject.to_string())),
        }
    }

    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn closes_group_members_without_loss(&self) -> bool {
        true
    }

    fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn dropped_total(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bus with one subscriber to `big.>`, and a subject of `len` bytes
    /// below it, distinct for each `i`.
    async fn bus_and_subject(bus: &MemoryBus) -> (Subscription, impl Fn(usize, usize) -> String) {
        let sub = bus
            .subscribe(
                "big.>",
                SubscribeOptions {
                    capacity: 4,
                    overflow: Overflow::Drop,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let subject = |i: usize, len: usize| {
            let mut s = format!("big.{i}.");
            s.extend(std::iter::repeat_n('x', len - s.len()));
            s
        };
        (sub, subject)
    }

    #[tokio::test]
    async fn the_route_cache_stays_under_its_byte_bound() {
        let bus = MemoryBus::new();
        let (mut sub, subject) = bus_and_subject(&bus).await;
        // 100 KiB subjects are cached (under 8 MiB / 64), 200 of them are
        // 20 MiB: the cache empties itself before passing 8 MiB.
        let mut most = 0;
        for i in 0..200 {
            let s = subject(i, 100 * 1024);
            assert!(matches!(
                bus.try_publish(Message::new(s.as_str(), "1")),
                TryPublish::Sent
            ));
            assert!(bus.route_cache_bytes() <= ROUTE_CACHE_BYTES);
            most = most.max(bus.route_cache_bytes());
        }
        assert!(most > ROUTE_CACHE_BYTES / 2, "large subjects were cached");
        // Delivery is unaffected.
        assert_eq!(&*sub.next().await.unwrap().subject, subject(0, 100 * 1024));
    }

    #[tokio::test]
    async fn subjects_over_a_fraction_of_the_bound_are_not_cached() {
        let bus = MemoryBus::new();
        let (mut sub, subject) = bus_and_subject(&bus).await;
        for i in 0..3 {
            let s = subject(i, 500 * 1024);
            bus.publish(Message::new(s.as_str(), "1")).await.unwrap();
            assert_eq!(sub.next().await.unwrap().subject.len(), 500 * 1024);
        }
        assert_eq!(bus.route_cache_len(), 0);
        assert_eq!(bus.route_cache_bytes(), 0);
        bus.publish(Message::new("big.small", "1")).await.unwrap();
        assert_eq!(bus.route_cache_len(), 1);
        assert_eq!(bus.route_cache_bytes(), "big.small".len());
    }

    #[tokio::test]
    async fn the_route_cache_is_bounded_in_entries_and_by_its_constructor() {
        let bus = MemoryBus::with_route_cache(16, 1024);
        let (_sub, subject) = bus_and_subject(&bus).await;
        for i in 0..100 {
            let _ = bus.try_publish(Message::new(subject(i, 12).as_str(), "1"));
            assert!(bus.route_cache_len() <= 16);
            assert!(bus.route_cache_bytes() <= 1024);
        }
        // 1024 / 64: a 17-byte subject is not cached, a 16-byte one is.
        let before = bus.route_cache_bytes();
        let _ = bus.try_publish(Message::new(subject(1000, 17).as_str(), "1"));
        assert_eq!(bus.route_cache_bytes(), before);
        let _ = bus.try_publish(Message::new(subject(1001, 16).as_str(), "1"));
        assert!(bus.route_cache_bytes() == before + 16 || bus.route_cache_bytes() == 16);
        // The same subject again adds nothing.
        let again = bus.route_cache_bytes();
        let _ = bus.try_publish(Message::new(subject(1001, 16).as_str(), "1"));
        assert_eq!(bus.route_cache_bytes(), again);
    }
}
