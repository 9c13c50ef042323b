//! The NATS bus (async-nats): the same [`Bus`] contract as the memory bus,
//! with envelope fields as NATS headers so plain NATS clients read and
//! publish plain JSON.

use async_nats::header::HeaderMap;
use async_nats::{Client, Event};
use async_trait::async_trait;
use bytes::Bytes;
use fednode_kit::bus::{Closing, SubscriptionGuard};
use fednode_kit::bus::{
    Origin, HEADER_ID, HEADER_NODE, HEADER_ORIGIN, HEADER_ORIGIN_REGION, HEADER_REPLAY,
    HEADER_TIMESTAMP,
};
use fednode_kit::metrics::Metrics;
use fednode_kit::{
    Bus, BusError, Message, Meta, NatsConnection, Overflow, SubscribeOptions, Subscription,
};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::config::BusConfig;

/// A connected NATS bus.
pub struct NatsBus {
    client: Client,
    conn: NatsConnection,
    dropped_total: Arc<AtomicU64>,
    /// [`Bus::flush`]'s round trip: a subscription to a subject of this
    /// connection's own, where each flush sends itself a token.
    echo: tokio::sync::Mutex<async_nats::Subscriber>,
    echo_subject: String,
    next_token: AtomicU64,
    /// Since when, and why, the connection is down (set on a disconnect,
    /// cleared on a connect).
    down: Arc<parking_lot::Mutex<Option<(std::time::Instant, String)>>>,
    /// How long a flush waits for the server's echo (`bus.flush_timeout`).
    flush_timeout: Duration,
}

/// Per-client buffer inside async-nats for each subscription. Its default
/// (65,536) drops silently under a fast publisher; slow-consumer events are
/// counted in `bus_connection_events_total{event="slow_consumer"}`.
const NATS_SUBSCRIPTION_CAPACITY: usize = 1 << 18;

impl NatsBus {
    /// Connect, waiting at most `connect_timeout` for the first connection;
    /// later disconnects reconnect forever.
    pub async fn connect(cfg: &BusConfig, metrics: &Arc<Metrics>) -> Result<Self, String> {
        let url = cfg.url.clone().ok_or("bus.url is required for nats")?;
        let events = metrics.component("bus").counter_vec(
            "bus_connection_events_total",
            "NATS connection events (connected, disconnected, slow_consumer, …)",
            &["event"],
        );
        let down: Arc<parking_lot::Mutex<Option<(std::time::Instant, String)>>> = Arc::default();
        let down_events = down.clone();
        let down_url = url.clone();
        let conn = NatsConnection {
            url: url.clone(),
            token: cfg.token.clone(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            creds_file: cfg.creds_file.clone(),
            tls: cfg.tls.as_ref().map(|t| fednode_kit::bus::NatsTls {
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
            }),
        };
        let opts = conn
            .connect_options()
            .await?
            .name("fednode")
            .subscription_capacity(NATS_SUBSCRIPTION_CAPACITY)
            .connection_timeout(cfg.connect_timeout)
            .max_reconnects(None)
            .event_callback(move |event| {
                let events = events.clone();
                let down = down_events.clone();
                let url = down_url.clone();
                async move {
                    {
                        let mut down = down.lock();
                        match &event {
                            Event::Connected => *down = None,
                            Event::Disconnected => {
                                *down = Some((
                                    std::time::Instant::now(),
                                    format!("disconnected from {url}; reconnecting"),
                                ))
                            }
                            // Why the reconnects fail, while they do.
                            Event::ServerError(_) | Event::ClientError(_) => {
                                if let Some((_, why)) = down.as_mut() {
                                    *why =
                                        format!("disconnected from {url}; reconnecting: {event}");
                                }
                            }
                            _ => {}
                        }
                    }
                    let word = match &event {
                        Event::Connected => "connected",
                        Event::Disconnected => "disconnected",
                        Event::SlowConsumer(_) => "slow_consumer",
                        Event::LameDuckMode => "lame_duck",
                        Event::ServerError(_) => "server_error",
                        Event::ClientError(_) => "client_error",
                        _ => "other",
                    };
                    match &event {
                        Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                        Event::Connected => tracing::info!("NATS connected"),
                        Event::SlowConsumer(sid) => {
                            tracing::warn!(sid, "NATS slow consumer: messages dropped")
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                    events.with(&[word]).inc();
                }
            });
        let client = tokio::time::timeout(
            cfg.connect_timeout + Duration::from_secs(1),
            opts.connect(url.as_str()),
        )
        .await
        .map_err(|_| {
            format!(
                "cannot connect to NATS at {url}: timed out after {:?}",
                cfg.connect_timeout
            )
        })?
        .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        let echo_subject = format!("{}.flush", client.new_inbox());
        let echo = client
            .subscribe(echo_subject.clone())
            .await
            .map_err(|e| format!("cannot subscribe on NATS at {url}: {e}"))?;
        Ok(NatsBus {
            flush_timeout: cfg.flush_timeout,
            echo: tokio::sync::Mutex::new(echo),
            echo_subject,
            next_token: AtomicU64::new(0),
            client,
            conn,
            dropped_total: Arc::new(AtomicU64::new(0)),
            down,
        })
    }

    /// The async-nats client (tests).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn headers(meta: &Meta) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(id) = &meta.id {
        h.insert(HEADER_ID, id.as_ref());
    }
    if let Some(ts) = meta.timestamp {
        h.insert(HEADER_TIMESTAMP, ts.to_string().as_str());
    }
    if let Some(node) = &meta.node {
        h.insert(HEADER_NODE, node.as_ref());
    }
    if meta.replay {
        h.insert(HEADER_REPLAY, "true");
    }
    if let Some(origin) = &meta.origin {
        h.insert(HEADER_ORIGIN, origin.node.as_ref());
        if let Some(region) = &origin.region {
            h.insert(HEADER_ORIGIN_REGION, region.as_ref());
        }
    }
    h
}

fn meta_of(h: Option<&HeaderMap>) -> Meta {
    let Some(h) = h else { return Meta::default() };
    Meta {
        id: h.get(HEADER_ID).map(|v| Arc::from(v.as_str())),
        timestamp: h
            .get(HEADER_TIMESTAMP)
            .and_then(|v| v.as_str().parse().ok()),
        node: h.get(HEADER_NODE).map(|v| v.as_str().into()),
        replay: h.get(HEADER_REPLAY).is_some_and(|v| v.as_str() == "true"),
        origin: Origin::from_wire(
            h.get(HEADER_ORIGIN).map(|v| v.as_str()),
            h.get(HEADER_ORIGIN_REGION).map(|v| v.as_str()),
        ),
    }
}

fn from_nats(m: async_nats::Message) -> Message {
    Message {
        subject: Arc::from(m.subject.as_str()),
        meta: meta_of(m.headers.as_ref()),
        reply: m.reply.map(|r| Arc::from(r.as_str())),
        payload: m.payload,
    }
}

fn transport<E: std::fmt::Display>(e: E) -> BusError {
    BusError::Transport(e.to_string())
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, msg: Message) -> Result<(), BusError> {
        let h = headers(&msg.meta);
        let subject = msg.subject.to_string();
        match msg.reply {
            Some(reply) => self
                .client
                .publish_with_reply_and_headers(subject, reply.to_string(), h, msg.payload)
                .await
                .map_err(transport),
            None => self
                .client
                .publish_with_headers(subject, h, msg.payload)
                .await
                .map_err(transport),
        }
    }

    async fn subscribe(
        &self,
        pattern: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        fednode_kit::subject::validate_pattern(pattern)
            .map_err(|_| BusError::InvalidSubject(pattern.to_string()))?;
        let mut sub = match &opts.queue_group {
            Some(g) => self
                .client
                .queue_subscribe(pattern.to_string(), g.clone())
                .await
                .map_err(transport)?,
            None => self
                .client
                .subscribe(pattern.to_string())
                .await
                .map_err(transport)?,
        };
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let total = self.dropped_total.clone();
        let task_dropped = dropped.clone();
        let overflow = opts.overflow;
        let counter = opts.drop_counter.clone();
        let (drain_tx, mut drain_rx) = tokio::sync::oneshot::channel::<()>();
        // Move messages from the NATS subscriber into the bounded queue the
        // component reads, applying its overflow policy. On `close`, ask
        // the server to stop (`drain`) and forward what it had already sent
        // until the stream ends.
        let task = tokio::spawn(async move {
            let mut draining = false;
            loop {
                let next = tokio::select! {
                    m = sub.next() => m,
                    asked = &mut drain_rx, if !draining => {
                        draining = true;
                        if asked.is_ok() && sub.drain().await.is_ok() {
                            continue;
                        }
                        break;
                    }
                };
                let Some(m) = next else { break };
                let m = from_nats(m);
                match overflow {
                    Overflow::Block => {
                        if tx.send(m).await.is_err() {
                            break;
                        }
                    }
                    Overflow::Drop => match tx.try_send(m) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            task_dropped.fetch_add(1, Ordering::Relaxed);
                            total.fetch_add(1, Ordering::Relaxed);
                            if let Some(c) = &counter {
                                c.inc();
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                }
            }
            // Dropping `sub` unsubscribes; dropping `tx` ends the stream.
        });
        Ok(Subscription::new(
            rx,
            dropped,
            Some(Box::new(Forwarder {
                task,
                drain: Some(drain_tx),
            })),
        ))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        meta: Meta,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let req = async_nats::Request::new()
            .payload(payload)
            .headers(headers(&meta))
            .timeout(Some(timeout));
        match self.client.send_request(subject.to_string(), req).await {
            Ok(m) => Ok(from_nats(m)),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    BusError::NoResponders(subject.to_string())
                }
                async_nats::RequestErrorKind::TimedOut => BusError::Timeout(subject.to_string()),
                _ => transport(e),
            }),
        }
    }

    /// Returns once the server has everything published before: a token
    /// sent to this connection's own subject after it has come back (the
    /// server handles one connection's messages in order). A client-side
    /// flush alone only empties the client's buffer.
    async fn flush(&self) -> Result<(), BusError> {
        let mut echo = self.echo.lock().await;
        let token = (self.next_token.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        self.client
            .publish(self.echo_subject.clone(), Bytes::from(token.clone()))
            .await
            .map_err(transport)?;
        self.client.flush().await.map_err(transport)?;
        let back = async {
            // Tokens of earlier flushes that gave up may come first.
            while let Some(m) = echo.next().await {
                if m.payload == token.as_bytes() {
                    return Ok(());
                }
            }
            Err(BusError::Closed)
        };
        tokio::time::timeout(self.flush_timeout, back)
            .await
            .map_err(|_| {
                BusError::Timeout(format!(
                    "flush (no echo from the NATS server within bus.flush_timeout, {:?})",
                    self.flush_timeout
                ))
            })?
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn problem(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        Some(match &*self.down.lock() {
            Some((since, why)) => format!("{why} (down for {}s)", since.elapsed().as_secs()),
            None => format!("not connected to {}", self.conn.url),
        })
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    fn nats_connection(&self) -> Option<NatsConnection> {
        Some(self.conn.clone())
    }
}

/// The task moving one subscription's messages from NATS into its queue.
struct Forwarder {
    task: tokio::task::JoinHandle<()>,
    drain: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SubscriptionGuard for Forwarder {
    fn close(&mut self) -> Closing {
        match self.drain.take().map(|tx| tx.send(())) {
            Some(Ok(())) => Closing::WhenDrained,
            // The task has ended: nothing more is on its way.
            _ => Closing::Now,
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
