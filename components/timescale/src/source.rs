//! Where messages come from: bus subscriptions (memory or NATS core) or a
//! JetStream durable consumer per input port. Each source is a task that
//! forwards into the writer's bounded channel; when the writer stops
//! reading, the channel fills and the source stops too (backpressure). On
//! cancel a bus source forwards what its subscription still holds, then
//! exits; the channel closes when every source has exited, which is how the
//! writer knows it has seen everything.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull, stream};
use fednode_kit::bus::{
    Origin, HEADER_ID, HEADER_NODE, HEADER_ORIGIN, HEADER_ORIGIN_REGION, HEADER_REPLAY,
    HEADER_TIMESTAMP,
};
use fednode_kit::{Meta, NatsConnection, Subscription};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::JetStreamConfig;
use crate::metrics::Metrics;
use crate::rows::{now_us, Incoming};

/// Forward a bus subscription until cancelled, then what it still holds.
pub async fn forward_bus(
    mut sub: Subscription,
    tx: mpsc::Sender<Incoming>,
    cancel: CancellationToken,
) {
    let mut buf = Vec::with_capacity(256);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            n = sub.next_many(&mut buf, 256) => {
                if n == 0 {
                    return;
                }
                let now = now_us();
                for m in buf.drain(..) {
                    if tx.send(bus_incoming(m, now)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let now = now_us();
    while let Some(m) = sub.try_next() {
        if tx.send(bus_incoming(m, now)).await.is_err() {
            return;
        }
    }
}

/// What the writer reads: one bus subscription directly (the common case:
/// no extra hop, and no wake-up per message while a batch is being
/// written), or the channel the source tasks feed.
pub enum Input {
    Bus(Subscription, Vec<fednode_kit::Message>),
    Channel(mpsc::Receiver<Incoming>),
}

impl Input {
    /// Up to `limit` messages into `out`; 0 means the input is finished.
    /// When `draining` (after cancel), a subscription is read without
    /// waiting and counts as finished once empty; the channel finishes when
    /// the source tasks, which drain their own subscriptions, have exited.
    pub async fn recv_many(
        &mut self,
        out: &mut Vec<Incoming>,
        limit: usize,
        draining: bool,
    ) -> usize {
        match self {
            Input::Channel(rx) => rx.recv_many(out, limit).await,
            Input::Bus(sub, buf) => {
                if draining {
                    let now = now_us();
                    let mut n = 0;
                    while n < limit {
                        match sub.try_next() {
                            Some(m) => out.push(bus_incoming(m, now)),
                            None => break,
                        }
                        n += 1;
                    }
                    return n;
                }
                let n = sub.next_many(buf, limit).await;
                let now = now_us();
                out.extend(buf.drain(..).map(|m| bus_incoming(m, now)));
                n
            }
        }
    }
}

fn bus_incoming(m: fednode_kit::Message, now: i64) -> Incoming {
    Incoming {
        subject: m.subject,
        payload: m.payload,
        meta: m.meta,
        fallback_time_us: now,
        fallback_id: None,
        ack: None,
    }
}

/// A NATS name made of what JetStream allows (`[A-Za-z0-9_-]`).
pub fn js_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Connect to the NATS server behind the bus.
pub async fn connect_nats(
    c: &NatsConnection,
    instance: &str,
) -> Result<async_nats::Client, String> {
    let opts = c
        .connect_options()
        .await?
        .name(format!("fednode-timescale-{instance}"))
        .connection_timeout(Duration::from_secs(10));
    opts.connect(c.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", c.url))
}

/// Find or create the stream and one durable pull consumer per input
/// subject.
pub async fn durable_consumers(
    client: &async_nats::Client,
    cfg: &JetStreamConfig,
    instance: &str,
    subjects: &[String],
    max_buffered: usize,
) -> Result<Vec<jetstream::consumer::PullConsumer>, String> {
    let js = jetstream::new(client.clone());
    let stream_name = match &cfg.stream {
        Some(name) => name.clone(),
        None => {
            let mut found: Option<String> = None;
            let mut all = true;
            for s in subjects {
                match js.stream_by_subject(s.as_str()).await {
                    Ok(name) if found.as_ref().is_none_or(|f| *f == name) => found = Some(name),
                    _ => all = false,
                }
            }
            match (all, found) {
                (true, Some(name)) => name,
                _ => format!("FEDNODE_{}", js_name(instance).to_uppercase()),
            }
        }
    };
    let stream = js
        .get_or_create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: subjects.to_vec(),
            // Kept until our consumer acks them: the stream is the buffer
            // between the bus and the database, not an archive.
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("JetStream stream {stream_name}: {e}"))?;
    let base = cfg
        .consumer
        .clone()
        .unwrap_or_else(|| format!("fednode_{}", js_name(instance)));
    let mut consumers = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let name = if subjects.len() == 1 {
            base.clone()
        } else {
            format!("{base}_{i}")
        };
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: cfg.ack_wait,
                    filter_subject: subject.clone(),
                    max_ack_pending: max_buffered.min(i64::MAX as usize) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("JetStream consumer {name} on stream {stream_name}: {e}"))?;
        let have = &consumer.cached_info().config.filter_subject;
        if have != subject {
            return Err(format!(
                "JetStream consumer {name} on stream {stream_name} reads {have:?}, not {subject:?}; \
                 delete it or set jetstream.consumer to another name"
            ));
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// Pull from a durable consumer until cancelled. Messages not yet handed to
/// the writer are simply not acked: JetStream delivers them again.
pub async fn forward_jetstream(
    consumer: jetstream::consumer::PullConsumer,
    tx: mpsc::Sender<Incoming>,
    cancel: CancellationToken,
    batch: usize,
    metrics: Metrics,
) {
    let mut backoff =
        fednode_kit::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5), 2.0);
    'outer: loop {
        let stream = consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match stream {
            Ok(s) => s,
            Err(e) => {
                metrics.errors.with(&["jetstream"]).inc();
                tracing::warn!(error = %e, "JetStream pull failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => break 'outer,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue 'outer,
                }
            }
        };
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break 'outer,
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        backoff.reset();
                        if tx.send(js_incoming(m)).await.is_err() {
                            break 'outer;
                        }
                    }
                    Some(Err(e)) => {
                        metrics.errors.with(&["jetstream"]).inc();
                        tracing::debug!(error = %e, "JetStream pull error");
                    }
                    None => continue 'outer,
                }
            }
        }
    }
}

fn header<'a>(h: Option<&'a async_nats::HeaderMap>, name: &str) -> Option<&'a str> {
    h.and_then(|h| h.get(name)).map(|v| v.as_str())
}

fn js_incoming(m: jetstream::Message) -> Incoming {
    let (stable_id, published_us) = match m.info() {
        Ok(info) => {
            let published: SystemTime = info.published.into();
            let us = published
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or_else(|_| now_us());
            (
                Some(format!("{}:{}", info.stream, info.stream_sequence)),
                us,
            )
        }
        Err(_) => (None, now_us()),
    };
    let (msg, acker) = m.split();
    let h = msg.headers.as_ref();
    let meta = Meta {
        id: header(h, HEADER_ID).map(Arc::from),
        timestamp: header(h, HEADER_TIMESTAMP).and_then(|t| t.trim().parse().ok()),
        node: header(h, HEADER_NODE).map(fednode_kit::NodeId::from),
        replay: header(h, HEADER_REPLAY).is_some_and(|v| v == "true"),
        origin: Origin::from_wire(header(h, HEADER_ORIGIN), header(h, HEADER_ORIGIN_REGION)),
    };
    Incoming {
        subject: Arc::from(msg.subject.as_str()),
        payload: msg.payload,
        meta,
        fallback_time_us: published_us,
        fallback_id: stable_id,
        ack: Some(Box::new(acker)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::js_name("ts.store 1"), "ts_store_1");
    }
}
