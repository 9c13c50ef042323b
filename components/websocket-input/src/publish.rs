//! The data path: a data frame becomes an item (dedup and ack under
//! `at_least_once`). While nothing is queued, an item without an ack goes
//! onto the bus from the connection's task when the bus takes it at once;
//! any other item is queued (the `on_full` policy when the queue is full),
//! and one publisher task drains the queue onto the `ws_data` subject.

use fednode_kit::bus::{BusError, Message, Meta, Published, TryPublish};
use fednode_kit::envelope::{new_id, now_millis, Encoding, Envelope};
use fednode_kit::queue::{OnFull, Pushed};
use fednode_kit::Origin;
use fednode_ws::config::Mode;
use fednode_ws::frame::{self, Outbound};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{error_type, reason};
use crate::relay::Checked;
use crate::shared::{AckTo, Conn, Item, Running};

/// How long shutdown keeps trying to hand queued data to the bus.
const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// The nack reason a sender retries later (this node is stopping).
const NACK_UNAVAILABLE: &str = "unavailable";
/// Data taken from the queue per publisher round.
const PUBLISH_BATCH: usize = 256;
/// Most ids in one batched ack frame (256 KiB at the longest ids, well
/// within a peer's `max_message_bytes`).
const MAX_ACK_BATCH: usize = 1024;

impl Running {
    /// The payload a relay under `auth_message` sends as data: `None` for
    /// its first message, which authenticates it and is not data (and
    /// takes no place in the burst).
    pub async fn relay_data(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        mut env: Envelope,
        out: &Outbound,
    ) -> Option<Envelope> {
        match self.check_relay_data(conn, env.payload, out).await {
            Checked::Publish(p) => {
                env.payload = p;
                Some(env)
            }
            Checked::Handled => None,
        }
    }

    /// One data frame of a burst: `burst` frames (this one included) are
    /// not counted yet, and the publisher not woken, until the burst ends.
    /// Returns the item when it must wait for room in the queue
    /// ([`enqueue_waiting`](Self::enqueue_waiting)); everything else is
    /// done here without waiting.
    pub fn take_data(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        env: Envelope,
        encoding: Encoding,
        out: &Outbound,
        burst: &mut u64,
    ) -> Option<Item> {
        // A relay's routing key is bound by its auth message instead.
        if self.settings.auth_message.is_none() && self.routes_downstream() {
            if let Some(key) = self.key_of(&env.payload) {
                self.note_key(conn, &key);
            }
        }
        let had_id = !env.id.is_empty();
        let id: Arc<str> = if had_id { env.id } else { new_id() };
        if had_id && self.settings.mode == Mode::Client {
            // Where a replay resumes after a reconnect.
            *self.last_received_id.lock() = Some(id.clone());
        }
        // Data a peer replays was asked for: in server mode by an operator
        // (`replay` through this input), so it is published again although
        // its ids were seen. In client mode this input asks for replays
        // itself, after a reconnect, and wants only what it has not seen.
        let fresh = |id: &Arc<str>| {
            (env.replay && self.settings.mode == Mode::Server) || self.dedup.lock().insert(id)
        };
        let ack = if had_id && conn.acks {
            if !fresh(&id) {
                self.metrics.dropped(reason::DUPLICATE).inc();
                // Published before; the sender missed our ack.
                out.try_send(frame::encode(&Envelope::ack(&id, None), encoding));
                return None;
            }
            Some(AckTo {
                out: out.clone(),
                encoding,
                batch: conn.peer.batch_acks,
            })
        } else {
            None
        };
        let origin = conn.peer.origin_of(env.origin);
        let msg = Message {
            subject: self.subject_of(&env.payload, origin.as_ref()),
            payload: env.payload,
            meta: Meta {
                id: Some(id),
                timestamp: Some(env.timestamp.unwrap_or_else(now_millis)),
                node: None,
                replay: env.replay,
                origin,
            },
            reply: None,
        };
        // Acknowledged data is acked once its publish round is flushed,
        // which the publisher does.
        let item = match ack {
            None if self.backlog.load(Ordering::Acquire) == 0 => Item {
                msg: self.publish_at_once(msg)?,
                ack: None,
            },
            ack => Item { msg, ack },
        };
        self.try_enqueue(item, conn, burst)
    }

    /// Publish when the bus takes the message without waiting (the memory
    /// bus with room in its subscribers' channels): from the connection's
    /// task, one hop less than through the queue and the publisher, and
    /// from the publisher before its waiting path. Hands the message back
    /// when the bus would have to wait.
    fn publish_at_once(&self, msg: Message) -> Option<Message> {
        match self.ctx.bus.try_publish_message(msg) {
            TryPublish::Sent => {
                self.metrics.published.inc();
                None
            }
            TryPublish::WouldWait(msg) => Some(msg),
        }
    }

    /// The `ws_data` subject of a payload (the template rendered with the
    /// payload and its origin, this node's when it has none, when it has
    /// placeholders).
    fn subject_of(&self, payload: &[u8], origin: Option<&Origin>) -> Arc<str> {
        match &self.fixed_subject {
            Some(s) => s.clone(),
            None => {
                let origin = origin.unwrap_or(self.ctx.bus.origin());
                Arc::from(
                    self.settings
                        .data_subject
                        .render_bytes(payload, Some(origin)),
                )
            }
        }
    }

    pub fn count_received(&self, conn: &Conn, n: u64) {
        self.metrics.received.inc_by(n);
        self.meter.record(n);
        conn.meter.record(n);
        conn.received.fetch_add(n, Ordering::Relaxed);
        conn.last_seen.store(now_millis(), Ordering::Relaxed);
    }

    /// Queue without waking the publisher (the session does, once per
    /// burst). A `block` queue that is full hands the item back, with the
    /// burst so far counted and the publisher woken: the caller waits for
    /// room ([`enqueue_waiting`](Self::enqueue_waiting)).
    fn try_enqueue(&self, item: Item, conn: &Conn, burst: &mut u64) -> Option<Item> {
        // Counted before the publisher can see it; what is not queued after
        // all is taken off again in `settle`.
        self.backlog.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_push_quiet(item) {
            Pushed::Rejected(item)
                if self.queue.policy() == OnFull::Block && !self.queue.is_closed() =>
            {
                // Full: let the publisher make room (health and the
                // counters see it meanwhile).
                self.count_received(conn, std::mem::take(burst));
                self.note_depth();
                self.queue.wake();
                Some(item)
            }
            pushed => {
                self.settle(pushed);
                None
            }
        }
    }

    /// Wait for room for an item [`try_enqueue`](Self::try_enqueue) handed
    /// back (stopping reading this socket meanwhile, so TCP pushes back on
    /// the peer); on shutdown, wait a grace period at most.
    pub async fn enqueue_waiting(&self, item: Item) {
        // Until the queue has it, the item is lost if this wait ends early:
        // at the grace period's end, or dropped with a failed connection.
        let mut unsettled = Unsettled {
            run: self,
            why: reason::CONNECTION_LOST,
            acked_id: item.acked_id(),
        };
        let push = self.queue.push(item);
        tokio::pin!(push);
        let pushed = tokio::select! {
            biased;
            r = &mut push => r,
            _ = self.ctx.cancel.cancelled() => match tokio::time::timeout(FLUSH_GRACE, &mut push).await {
                Ok(r) => r,
                Err(_) => {
                    unsettled.why = reason::SHUTDOWN;
                    return;
                }
            },
        };
        std::mem::forget(unsettled);
        self.settle(pushed);
    }

    /// What became of a push: evicted and refused items are nacked.
    fn settle(&self, pushed: Pushed<Item>) {
        match pushed {
            Pushed::Queued => {}
            Pushed::EvictedOldest(old) => {
                self.backlog.fetch_sub(old.len(), Ordering::AcqRel);
                for old in old {
                    self.metrics.dropped_queue_full.inc();
                    self.refuse(old, reason::QUEUE_FULL);
                }
            }
            Pushed::Rejected(new) => {
                self.backlog.fetch_sub(1, Ordering::AcqRel);
                if self.queue.is_closed() {
                    self.metrics.dropped(reason::SHUTDOWN).inc();
                    // The sender keeps it and tries again (the next hub).
                    self.refuse(new, NACK_UNAVAILABLE);
                } else {
                    self.metrics.dropped_queue_full.inc();
                    self.refuse(new, reason::QUEUE_FULL);
                }
            }
        }
    }

    /// The queue's depth into the gauges, and when it became full (a burst
    /// ends with this; the publisher updates the gauges as it drains).
    /// Returns the depth.
    pub fn note_depth(&self) -> usize {
        let len = self.queue.len();
        self.set_queue_gauges(len);
        if len >= self.queue.capacity() && !self.full_flag.swap(true, Ordering::AcqRel) {
            *self.full_since.lock() = Some(Instant::now());
        }
        len
    }

    pub fn set_queue_gauges(&self, len: usize) {
        self.metrics.queue_depth.set(len as i64);
        self.metrics
            .queue_utilization
            .set(len as f64 / self.queue.capacity() as f64);
    }

    /// Data that will not reach the bus: nack it (`at_least_once`) and let
    /// a resend of the same id through.
    pub fn refuse(&self, item: Item, why: &str) {
        self.nack(item.ack, item.msg.meta.id, why);
    }

    pub fn nack(&self, ack: Option<AckTo>, id: Option<Arc<str>>, why: &str) {
        if let (Some(ack), Some(id)) = (ack, id) {
            self.dedup.lock().forget(&id);
            ack.out
                .try_send(frame::encode(&Envelope::ack(&id, Some(why)), ack.encoding));
        }
    }

    pub async fn publish_loop(self: Arc<Self>) {
        let mut buf: Vec<Item> = Vec::with_capacity(PUBLISH_BATCH);
        let mut acks = Vec::new();
        loop {
            if self.queue.pop_many(&mut buf, PUBLISH_BATCH).await == 0 {
                break;
            }
            let len = self.queue.len();
            self.set_queue_gauges(len);
            if len < self.queue.capacity() && self.full_flag.swap(false, Ordering::AcqRel) {
                *self.full_since.lock() = None;
            }
            for item in buf.drain(..) {
                let id = item.acked_id();
                let Item { msg, ack } = item;
                // Onto the bus without waiting when it has room (most
                // messages): the waiting path moves each message through
                // two more futures.
                let published = match self.publish_at_once(msg) {
                    None => ack.zip(id),
                    Some(msg) => self.publish_one(Item { msg, ack }).await,
                };
                self.backlog.fetch_sub(1, Ordering::AcqRel);
                if let Some(ack) = published {
                    acks.push(ack);
                }
            }
            self.ack_published(&mut acks).await;
        }
        self.publisher_done.cancel();
    }

    /// Ack what this round published, once the bus holds it: on NATS after
    /// a flush (the server has it, so a crash of this node after the ack
    /// loses nothing the server keeps); a failed flush acks nothing, and
    /// the senders resend after their ack timeout.
    async fn ack_published(&self, acks: &mut Vec<(AckTo, Arc<str>)>) {
        if acks.is_empty() {
            return;
        }
        if let Err(e) = self.ctx.bus.flush().await {
            self.metrics.error(error_type::PUBLISH).inc();
            tracing::warn!(component = %self.ctx.name, error = %e, unacked = acks.len(),
                "bus flush failed: published data not acknowledged (senders will resend)");
            acks.clear();
            return;
        }
        if let (Some(resume), Some((_, last))) = (&self.resume, acks.last()) {
            resume.note(last.clone());
        }
        // One frame per connection for a peer that takes batched acks (its
        // ids in the order published), one per message for any other.
        acks.sort_by_key(|(to, _)| to.out.key());
        let mut rest = &acks[..];
        while let Some((to, id)) = rest.first() {
            let run = if to.batch {
                rest.iter()
                    .take(MAX_ACK_BATCH)
                    .take_while(|(other, _)| other.out.key() == to.out.key())
                    .count()
            } else {
                1
            };
            let env = if run == 1 {
                Envelope::ack(id, None)
            } else {
                Envelope::acks(rest[..run].iter().map(|(_, id)| &**id))
            };
            to.out.try_send(frame::encode(&env, to.encoding));
            rest = &rest[run..];
        }
        acks.clear();
    }

    /// Publish one item the bus could not take at once
    /// ([`publish_at_once`](Self::publish_at_once) handed it back): wait for
    /// room, and retry failures with backoff. Returns where to ack it once
    /// the round is flushed.
    pub async fn publish_one(&self, item: Item) -> Option<(AckTo, Arc<str>)> {
        let id = item.acked_id();
        let Item { msg, ack } = item;
        let result = self.ctx.bus.publish_waiting(msg, &self.flush_abort).await;
        match result {
            Ok(published) => {
                if let Published::AfterFailures(n) = published {
                    self.metrics.error(error_type::PUBLISH).inc_by(u64::from(n));
                }
                self.metrics.published.inc();
                ack.zip(id)
            }
            Err(e) => {
                let why = if matches!(e, BusError::InvalidSubject(_)) {
                    "invalid_subject"
                } else {
                    reason::SHUTDOWN
                };
                self.metrics.dropped(why).inc();
                tracing::error!(component = %self.ctx.name, error = %e, reason = why, "data message lost");
                // A sender retries `unavailable`; an invalid subject is final.
                let nack = if why == reason::SHUTDOWN {
                    NACK_UNAVAILABLE
                } else {
                    why
                };
                self.nack(ack, id, nack);
                None
            }
        }
    }

    /// Shutdown order: connections close (1001) and the client loop ends,
    /// then the queue closes and the publisher flushes it to the bus.
    pub async fn shutdown(self: Arc<Self>) {
        self.ctx.cancel.cancelled().await;
        self.conn_tracker.close();
        self.conn_tracker.wait().await;
        self.queue.close();
        tokio::select! {
            _ = self.publisher_done.cancelled() => {
                if let Some(r) = &self.resume {
                    r.flush();
                }
            }
            _ = tokio::time::sleep(FLUSH_GRACE) => {
                tracing::warn!(component = %self.ctx.name, left = self.queue.len(), "bus did not take the queued data in time");
                self.flush_abort.cancel();
            }
        }
    }
}

/// An item counted in `backlog` by [`Running::try_enqueue`] that never
/// reached the queue: taken off the count (or the input would stop
/// publishing straight from connections for good) and counted as dropped.
/// An acknowledged item's id leaves the duplicate window, so that the
/// sender's resend is taken, not acked as a duplicate of data never
/// published.
struct Unsettled<'a> {
    run: &'a Running,
    why: &'static str,
    acked_id: Option<Arc<str>>,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        self.run.backlog.fetch_sub(1, Ordering::AcqRel);
        self.run.metrics.dropped(self.why).inc();
        if let Some(id) = &self.acked_id {
            self.run.dedup.lock().forget(id);
        }
    }
}
