//! The embedded bus: in-process, with the subject semantics of NATS
//! (`.`-separated tokens, `*` one token, `>` the rest, queue groups,
//! request/reply with no-responders), bounded per-subscriber queues and
//! counted drops.
//!
//! Publishing looks the subject up in a route cache (subject → matching
//! subscribers), so the per-message cost is one hash lookup plus one channel
//! send per subscriber; the payload is a shared [`Bytes`], never copied.

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
    Bus, BusError, Message, Meta, Overflow, SubscribeOptions, Subscription, TryPublish,
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
}

#[derive(Default)]
struct State {
    subs: Vec<Arc<Sub>>,
    /// foldhash, not SipHash: subjects come from this node's own config
    /// and templates, and the lookup is on every publish.
    cache: HashMap<Arc<str>, Arc<Route>, foldhash::fast::RandomState>,
}

/// Bound on cached routes; templated subjects can produce many distinct
/// subjects, and a miss only costs one scan of the subscriptions.
const ROUTE_CACHE_LIMIT: usize = 8192;

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
    /// A new, empty bus.
    pub fn new() -> Self {
        MemoryBus {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                dropped_total: AtomicU64::new(0),
            }),
        }
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
        if st.cache.len() >= ROUTE_CACHE_LIMIT {
            st.cache.clear();
        }
        st.cache.insert(subject.into(), route.clone());
        route
    }

    /// Deliver to one subscriber that never blocks.
    fn deliver_now(&self, sub: &Sub, msg: Message) {
        match sub.tx.try_send(msg) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.count_drop(sub),
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
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => TryPublish::Sent,
                    Err(mpsc::error::TrySendError::Full(msg)) => TryPublish::WouldWait(msg),
                },
                _ => TryPublish::WouldWait(msg),
            };
        }
        let mut targets = Targets::new();
        Self::targets(route, &mut targets);
        for (s, m) in copies(&targets, msg) {
            self.deliver_now(s, m);
        }
        TryPublish::Sent
    }

    async fn deliver(&self, sub: &Sub, msg: Message) {
        match sub.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => match sub.overflow {
                Overflow::Block => {
                    let _ = sub.tx.send(msg).await;
                }
                Overflow::Drop => self.count_drop(sub),
            },
            // The subscription is being dropped; its guard removes it.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
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

/// Removes a subscription from the bus when the [`Subscription`] is dropped.
struct Unsubscribe {
    bus: Weak<Inner>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(inner) = self.bus.upgrade() {
            let mut st = inner.state.write();
            st.subs.retain(|s| s.id != self.id);
            st.cache.clear();
        }
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
            if let Some(route) = st.cache.get(&*msg.subject) {
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
