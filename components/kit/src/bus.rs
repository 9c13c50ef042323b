//! The bus: the only way components talk to each other.
//!
//! [`Bus`] is the transport (the in-process [`crate::memory::MemoryBus`] or
//! NATS, in the `fednode` crate); [`BusHandle`] is what a component holds: the
//! same bus, plus its `bus_*` metrics labelled with the component's name and
//! the node id stamped on what it publishes.
//!
//! On the bus a message is the bare payload (JSON bytes); the envelope's id,
//! timestamp and sending node travel as headers.

use crate::backoff::Backoff;
use async_trait::async_trait;
use bytes::Bytes;
use prometheus::IntCounter;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::metrics::ComponentMetrics;

pub use crate::meta::{
    Meta, NodeId, Origin, HEADER_ID, HEADER_NODE, HEADER_ORIGIN, HEADER_ORIGIN_REGION,
    HEADER_REPLAY, HEADER_TIMESTAMP,
};

/// One bus message.
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: Arc<str>,
    pub payload: Bytes,
    pub meta: Meta,
    /// Where a request wants its reply.
    pub reply: Option<Arc<str>>,
}

impl Message {
    /// A message with no headers.
    pub fn new(subject: impl Into<Arc<str>>, payload: impl Into<Bytes>) -> Self {
        Message {
            subject: subject.into(),
            payload: payload.into(),
            meta: Meta::default(),
            reply: None,
        }
    }

    /// The same message with these envelope fields.
    pub fn with_meta(mut self, meta: Meta) -> Self {
        self.meta = meta;
        self
    }
}

/// Bus failures.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// A request found nobody subscribed to its subject.
    #[error("no responders on {0}")]
    NoResponders(String),
    /// A request got no reply in time.
    #[error("request on {0} timed out")]
    Timeout(String),
    /// The bus is shut down or the connection is gone for good.
    #[error("bus closed")]
    Closed,
    /// A transport error (NATS).
    #[error("bus error: {0}")]
    Transport(String),
    /// An invalid subject.
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
}

/// What a subscriber does when its queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the new message and count it (NATS core semantics: a slow
    /// consumer never slows the publisher).
    #[default]
    Drop,
    /// Make the publisher wait (memory bus only: storage that must lose
    /// nothing pushes back on the component that publishes).
    Block,
}

/// Subscription options.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Members of one queue group share the messages (each goes to one).
    pub queue_group: Option<String>,
    /// Messages held for this subscriber before overflow applies.
    pub capacity: usize,
    pub overflow: Overflow,
    /// Incremented by the transport for each message this subscriber loses
    /// (set by [`BusHandle::subscribe`] to the component's metric).
    pub drop_counter: Option<IntCounter>,
    /// Receive requests (messages with a reply subject) and replies (on
    /// `_INBOX.` subjects) too. Off for data subscriptions made through
    /// [`BusHandle::subscribe`]: control traffic is never data, whatever
    /// the pattern (a consumer of `>` included).
    pub requests: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            queue_group: None,
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Drop,
            drop_counter: None,
            requests: false,
        }
    }
}

/// Where replies to bus requests are sent.
pub const INBOX_PREFIX: &str = "_INBOX.";

/// Whether a message is control traffic: a request, or a reply to one.
pub fn is_control(m: &Message) -> bool {
    m.reply.is_some() || m.subject.starts_with(INBOX_PREFIX)
}

/// Default per-subscriber queue.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// A live subscription: messages arrive in publish order per publisher.
/// Dropping it unsubscribes (what is still queued is lost); [`close`]
/// unsubscribes and keeps what is queued for reading.
///
/// [`close`]: Subscription::close
pub struct Subscription {
    rx: mpsc::Receiver<Message>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    received: Option<IntCounter>,
    /// Skip control traffic ([`is_control`]).
    data_only: bool,
    /// The transport side (a registry entry, a NATS forwarding task).
    guard: Option<Box<dyn SubscriptionGuard>>,
}

/// The transport's side of a [`Subscription`]: dropping it unsubscribes at
/// once; `close` stops new messages but lets the ones already on their way
/// arrive.
pub trait SubscriptionGuard: Send + Sync {
    /// Stop taking new messages.
    fn close(&mut self) -> Closing;
}

/// How a closing subscription ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Nothing more is on its way: close the receiver now (it still yields
    /// what is queued).
    Now,
    /// The transport still forwards what was in flight and drops its
    /// sender when done.
    WhenDrained,
}

impl Subscription {
    /// Build from a receiver the transport feeds.
    pub fn new(
        rx: mpsc::Receiver<Message>,
        dropped: Arc<std::sync::atomic::AtomicU64>,
        guard: Option<Box<dyn SubscriptionGuard>>,
    ) -> Self {
        Subscription {
            rx,
            dropped,
            received: None,
            data_only: false,
            guard,
        }
    }

    /// Unsubscribe without losing what is queued: nothing new arrives (a
    /// queue group's messages go to its other members), and [`next`] and
    /// [`next_many`] give what was already on its way, then `None` / 0.
    /// A component stopping, or handing over to its reloaded successor,
    /// closes and then reads to the end.
    ///
    /// [`next`]: Subscription::next
    /// [`next_many`]: Subscription::next_many
    pub fn close(&mut self) {
        let how = match &mut self.guard {
            Some(g) => g.close(),
            None => Closing::Now,
        };
        if how == Closing::Now {
            self.rx.close();
        }
    }

    /// The next message; `None` when the bus closed the subscription.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            let m = self.rx.recv().await?;
            if self.data_only && is_control(&m) {
                continue;
            }
            if let Some(c) = &self.received {
                c.inc();
            }
            return Some(m);
        }
    }

    /// Receive up to `limit` messages at once (at least one unless closed).
    pub async fn next_many(&mut self, buf: &mut Vec<Message>, limit: usize) -> usize {
        loop {
            let start = buf.len();
            let got = self.rx.recv_many(buf, limit).await;
            if got == 0 {
                return 0;
            }
            if self.data_only {
                let mut i = start;
                while i < buf.len() {
                    if is_control(&buf[i]) {
                        buf.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            let n = buf.len() - start;
            if n > 0 {
                if let Some(c) = &self.received {
                    c.inc_by(n as u64);
                }
                return n;
            }
        }
    }

    /// A message if one is queued now.
    pub fn try_next(&mut self) -> Option<Message> {
        loop {
            let m = self.rx.try_recv().ok()?;
            if self.data_only && is_control(&m) {
                continue;
            }
            if let Some(c) = &self.received {
                c.inc();
            }
            return Some(m);
        }
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Messages this subscriber lost because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What [`Bus::try_publish`] did with a message.
#[derive(Debug)]
pub enum TryPublish {
    /// The bus took it without waiting.
    Sent,
    /// The bus cannot take it without waiting (a full blocking subscriber,
    /// a closed or remote bus): here it is back, for an awaited publish.
    WouldWait(Message),
}

/// How [`BusHandle::publish_retrying`] got a message onto the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// At the first attempt.
    AtOnce,
    /// After this many failed attempts (each logged and counted in
    /// `bus_publish_errors_total`).
    AfterFailures(u32),
}

/// A transport.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publish one message. Never blocks on a slow subscriber unless that
    /// subscriber asked for [`Overflow::Block`].
    async fn publish(&self, msg: Message) -> Result<(), BusError>;

    /// Publish without awaiting when the transport can do so at once (the
    /// memory bus can, unless a blocking subscriber's channel is full).
    /// This saves a boxed future per message on the hot path; handing the
    /// message back by value (not boxed) keeps it free of allocation.
    fn try_publish(&self, msg: Message) -> TryPublish {
        TryPublish::WouldWait(msg)
    }

    /// Subscribe to a subject pattern (`*`, `>`).
    async fn subscribe(
        &self,
        pattern: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription, BusError>;

    /// Send a request and wait for one reply: `NoResponders` at once when
    /// nobody listens, `Timeout` after `timeout`.
    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        meta: Meta,
        timeout: Duration,
    ) -> Result<Message, BusError>;

    /// Wait until everything published so far has left this process.
    async fn flush(&self) -> Result<(), BusError>;

    /// Whether the transport is connected (always true in memory).
    fn is_connected(&self) -> bool;

    /// Whether a queue group member that closes its subscription
    /// ([`Subscription::close`]) loses nothing: what was routed to it is
    /// still read, and what comes after goes to the other members. True
    /// for the memory bus; the NATS client drops what is in flight to a
    /// subscription that ends.
    fn closes_group_members_without_loss(&self) -> bool {
        false
    }

    /// Why the transport is not connected, for `/health` (`None` when it
    /// is, or when it cannot tell).
    fn problem(&self) -> Option<String> {
        None
    }

    /// `"memory"` or `"nats"`.
    fn kind(&self) -> &'static str;

    /// Messages dropped by full subscriber queues, over all subscribers.
    fn dropped_total(&self) -> u64;

    /// How to reach the NATS server behind this bus, for components that
    /// need JetStream directly (durable storage consumers); `None` for the
    /// memory bus.
    fn nats_connection(&self) -> Option<NatsConnection> {
        None
    }
}

/// Connection settings of a NATS bus (`bus` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConnection {
    pub url: String,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub creds_file: Option<String>,
    /// `bus.tls`: TLS required, with this CA (PEM) instead of the system's
    /// roots and this client certificate and key, when given.
    pub tls: Option<NatsTls>,
}

/// TLS settings of a NATS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTls {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// A component's view of the bus, with its metrics and the node id.
#[derive(Clone)]
pub struct BusHandle {
    bus: Arc<dyn Bus>,
    node: NodeId,
    /// Stamped on data that has no origin yet (it enters the bus here).
    origin: Origin,
    published: IntCounter,
    publish_errors: IntCounter,
    received: IntCounter,
    subscriber_drops: IntCounter,
    requests: crate::metrics::LabelledCounter,
    /// The queue group of subscriptions that name none (see
    /// [`BusHandle::with_handover_group`]).
    handover_group: Option<Arc<str>>,
}

impl BusHandle {
    /// A handle for one component of node `node_id` (in `region`).
    pub fn new(
        bus: Arc<dyn Bus>,
        node_id: &str,
        region: Option<&str>,
        metrics: &ComponentMetrics,
    ) -> Self {
        BusHandle {
            bus,
            node: NodeId::interned(node_id),
            origin: Origin {
                node: NodeId::interned(node_id),
                region: region.map(NodeId::interned),
            },
            published: metrics.counter(
                "bus_messages_published_total",
                "Messages this component published on the bus",
            ),
            publish_errors: metrics.counter(
                "bus_publish_errors_total",
                "Publishes that failed (the component retries or counts a loss)",
            ),
            received: metrics.counter(
                "bus_messages_received_total",
                "Messages this component received from the bus",
            ),
            subscriber_drops: metrics.counter(
                "bus_messages_dropped_total",
                "Messages lost because this component's subscriber queue was full",
            ),
            requests: metrics.counter_vec(
                "bus_requests_total",
                "Bus requests sent by this component, by outcome",
                &["outcome"],
            ),
            handover_group: None,
        }
    }

    /// Subscribe in queue group `group` unless the subscription names its
    /// own: the runtime gives a processor's instances one group per node
    /// process, so that a reloaded processor starts beside the one it
    /// replaces and each message goes to exactly one of them until the old
    /// one has closed its subscriptions. With a single instance the group
    /// changes nothing. Only on a bus that
    /// [closes group members without loss](Bus::closes_group_members_without_loss):
    /// elsewhere (NATS) both instances receive everything while they
    /// overlap, a duplicate rather than a loss.
    pub fn with_handover_group(mut self, group: &str) -> Self {
        self.handover_group = Some(group.into());
        self
    }

    /// This node as the origin of data that enters the bus here.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The underlying transport.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Publish `payload` on `subject` with envelope fields `meta` (the node
    /// id and the origin are filled in when absent).
    pub async fn publish(
        &self,
        subject: &str,
        payload: Bytes,
        mut meta: Meta,
    ) -> Result<(), BusError> {
        self.stamp(&mut meta);
        self.publish_message(Message {
            subject: subject.into(),
            payload,
            meta,
            reply: None,
        })
        .await
    }

    /// Publish a prepared message: one attempt, waiting if the bus asks.
    pub async fn publish_message(&self, msg: Message) -> Result<(), BusError> {
        match self.try_publish_message(msg) {
            TryPublish::Sent => Ok(()),
            TryPublish::WouldWait(msg) => {
                let result = self.bus.publish(msg).await;
                self.count(result)
            }
        }
    }

    /// Publish if the bus can without waiting; otherwise the message comes
    /// back (with this node's id stamped) for
    /// [`publish_message`](Self::publish_message) or
    /// [`publish_retrying`](Self::publish_retrying). A caller that must be
    /// able to retry keeps no copy for the common case this way.
    pub fn try_publish_message(&self, mut msg: Message) -> TryPublish {
        self.stamp(&mut msg.meta);
        let tried = self.bus.try_publish(msg);
        if let TryPublish::Sent = tried {
            self.published.inc();
        }
        tried
    }

    /// This node as the publisher, and as the origin of data that has none.
    fn stamp(&self, meta: &mut Meta) {
        if meta.node.is_none() {
            meta.node = Some(self.node.clone());
        }
        if meta.origin.is_none() {
            meta.origin = Some(self.origin.clone());
        }
    }

    fn count(&self, result: Result<(), BusError>) -> Result<(), BusError> {
        match result {
            Ok(()) => {
                self.published.inc();
                Ok(())
            }
            Err(e) => {
                self.publish_errors.inc();
                Err(e)
            }
        }
    }

    /// The one publish call of components: without waiting when the bus
    /// can take the message at once, else waiting for it, and retrying
    /// failures with the kit's backoff (10 ms doubling to 2 s, with jitter)
    /// until `cancel` fires, so nothing is lost to a passing bus outage. An
    /// invalid subject is final. Returns the last error if cancelled first.
    pub async fn publish_retrying(
        &self,
        msg: Message,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Published, BusError> {
        match self.try_publish_message(msg) {
            TryPublish::Sent => Ok(Published::AtOnce),
            TryPublish::WouldWait(msg) => self.publish_waiting(msg, cancel).await,
        }
    }

    /// The waiting part of [`publish_retrying`](Self::publish_retrying),
    /// for a message [`try_publish_message`](Self::try_publish_message)
    /// has just handed back: not tried again at once.
    pub async fn publish_waiting(
        &self,
        msg: Message,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Published, BusError> {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(2), 2.0);
        loop {
            let e = match self.count(self.bus.publish(msg.clone()).await) {
                Ok(()) if backoff.attempts() == 0 => return Ok(Published::AtOnce),
                Ok(()) => return Ok(Published::AfterFailures(backoff.attempts())),
                Err(e @ BusError::InvalidSubject(_)) => return Err(e),
                Err(e) => e,
            };
            tracing::warn!(error = %e, subject = %msg.subject, "publish failed; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return Err(e),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Subscribe; received messages are counted for this component.
    pub async fn subscribe(
        &self,
        pattern: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        let mut opts = opts;
        opts.drop_counter = Some(self.subscriber_drops.clone());
        if opts.queue_group.is_none() && self.bus.closes_group_members_without_loss() {
            opts.queue_group = self.handover_group.as_deref().map(str::to_string);
        }
        let data_only = !opts.requests;
        let mut sub = self.bus.subscribe(pattern, opts).await?;
        sub.received = Some(self.received.clone());
        sub.data_only = data_only;
        Ok(sub)
    }

    /// Subscribe to each of `subjects` with the same options, all before a
    /// component's `start` returns, so nothing published after it is
    /// missed. The error names the subject that failed.
    pub async fn subscribe_all(
        &self,
        subjects: &[String],
        opts: &SubscribeOptions,
    ) -> Result<Vec<Subscription>, crate::StartError> {
        let mut subs = Vec::new();
        for subject in subjects {
            let sub = self.subscribe(subject, opts.clone()).await.map_err(|e| {
                crate::StartError::new(format!("cannot subscribe to {subject:?}: {e}"))
            })?;
            subs.push(sub);
        }
        Ok(subs)
    }

    /// A request with a timeout, counted by outcome.
    pub async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let meta = Meta {
            id: Some(crate::envelope::new_id()),
            timestamp: Some(crate::envelope::now_millis()),
            node: Some(self.node.clone()),
            replay: false,
            origin: None,
        };
        let r = self.bus.request(subject, payload, meta, timeout).await;
        let outcome = match &r {
            Ok(_) => "ok",
            Err(BusError::NoResponders(_)) => "no_responders",
            Err(BusError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        self.requests.with(&[outcome]).inc();
        r
    }

    /// Answer a request message.
    pub async fn reply(&self, request: &Message, payload: Bytes) -> Result<(), BusError> {
        match &request.reply {
            Some(to) => self.bus.publish(Message::new(to.clone(), payload)).await,
            None => Ok(()),
        }
    }

    /// Wait until what was published has left this process (NATS: the
    /// server has it); nothing to wait for on the memory bus.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.bus.flush().await
    }

    /// Whether the transport is connected.
    pub fn is_connected(&self) -> bool {
        self.bus.is_connected()
    }
}

#[cfg(test)]
mod tests;
