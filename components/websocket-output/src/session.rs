//! One WebSocket session with a peer, the same in both modes.
//!
//! The transport's `fednode_ws::frame::drive` runs the socket: it reads frames into
//! our [`Handler`] (requests, replies, acks, upstream data) and its writer
//! batches whatever is queued on the session's `Outbound` with `feed()` and
//! one `flush()`. Beside it runs the [`pump`]: it moves this connection's
//! data — script first, then queue — through the rate limiter into the
//! `Outbound` (without a limit, a batch at a time, under one lock).
//! Replies to requests go straight to the `Outbound`, so they never wait
//! for the rate limit. While nothing waits for the connection
//! and no limit applies, the fan-out itself hands live data to the
//! `Outbound` a batch at a time (see `Conn::hand_over`), saving the
//! pump's hop.
//!
//! With `at_least_once` delivery every data frame written is tracked until
//! the peer acks it, and the [`resend`] task puts what falls due (no ack
//! within `ack_timeout`, a retryable nack) back in front of the queue. A
//! peer that is not a fednode node and acks nothing within `ack_timeout`
//! is reported once, and the connection falls back to at-most-once rather
//! than stalling at `max_in_flight`.
//!
//! Data the peer sends is published on `ws_upstream` ([`upstream`]), with
//! the members a bound connection's URL path holds; what is not published
//! (no `ws_upstream`, another value for a bound member) is answered with
//! an error reply or a nack, without ever making the connection wait.
//!
//! On shutdown the pump drains the connection's queue for a short while,
//! then asks `drive` to close with 1001.

use bytes::Bytes;
use fednode_kit::envelope::{new_id, now_millis};
use fednode_kit::json::{bind_member, Bound};
use fednode_kit::{Encoding, Envelope, ErrorCode, Kind, Meta, ReplyPayload};
use fednode_ws::frame::{
    drive, outbound, ConnectionEnd, DriveOptions, FrameHandler, Outbound, WsMessage, OUTBOUND_BYTES,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::conn::{Conn, Out};
use crate::inflight::Nacked;
use crate::methods;
use crate::metrics::{error_type, reason};
use crate::routing::Binding;
use crate::shared::Shared;
use fednode_ws::config::Delivery;

/// Frames between the pump and the socket writer: enough for the writer to
/// batch (it flushes up to 256 at once; with 128 here, 4 → 4 throughput was
/// about a fifth lower, see BENCHMARKS.md), small enough that a reply never
/// waits behind much data.
const OUTBOUND_CAPACITY: usize = 256;
/// Data frames moved per pump step when no rate limit applies.
const BATCH: usize = 64;
/// How long a shutdown waits for a connection's queue to drain.
const DRAIN_TIME: Duration = Duration::from_millis(500);
/// How long a closing connection waits for the peer's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Run a session on an established stream until the peer leaves or the
/// component stops.
pub(crate) async fn run<S>(
    sh: &Arc<Shared>,
    conn: &Arc<Conn>,
    ws: WebSocketStream<S>,
) -> ConnectionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (out, out_rx) = outbound(OUTBOUND_CAPACITY);
    conn.set_outbound(Some(out.clone()));
    sh.session_opened();
    let close = CancellationToken::new();
    let peer_gone = CancellationToken::new();
    let mut handler = Handler {
        sh: sh.clone(),
        conn: conn.clone(),
    };
    let opts = DriveOptions {
        label: match conn.remote {
            Some(a) => format!("{} {a}", conn.id),
            None => conn.id.clone(),
        },
        close_timeout: CLOSE_TIMEOUT,
        heartbeat: sh.s.heartbeat,
    };
    let driving = async {
        let end = drive(ws, &out, out_rx, &mut handler, &close, &opts).await;
        peer_gone.cancel();
        end
    };
    let (end, (), ()) = tokio::join!(
        driving,
        pump(sh, conn, &out, &peer_gone, &close),
        resend(sh, conn, &peer_gone)
    );
    conn.set_outbound(None);
    conn.pending.fail_all("the connection closed");
    sh.session_closed();
    if matches!(end, ConnectionEnd::Dropped(_)) {
        sh.metrics.error(error_type::CONNECTION).inc();
    }
    if matches!(end, ConnectionEnd::TooLarge(_)) {
        sh.metrics.error(error_type::TOO_LARGE).inc();
    }
    if matches!(end, ConnectionEnd::HeartbeatTimeout(_)) {
        sh.metrics.heartbeat_timeouts.inc();
    }
    end
}

/// Why the pump stopped sending.
enum Stop {
    /// The component is stopping: drain, then close.
    Cancelled,
    /// The socket is gone.
    PeerGone,
}

async fn pump(
    sh: &Arc<Shared>,
    conn: &Arc<Conn>,
    out: &Outbound,
    peer_gone: &CancellationToken,
    close: &CancellationToken,
) {
    let mut batch: Vec<Out> = Vec::with_capacity(BATCH);
    let mut frames = VecDeque::with_capacity(BATCH);
    let mut sent = Sent::default();
    let stop = 'live: loop {
        let acked = tracking(conn);
        let limited = conn.limiter.load().is_some();
        let max = if limited { 1 } else { BATCH };
        if conn.take_script(&mut batch, max) == 0 {
            // At-least-once: never more than max_in_flight unacknowledged.
            let mut room = conn.in_flight_room();
            if room == 0 {
                // Ask the next ack to wake us, then look again: an ack
                // may have come in between.
                conn.want_room();
                room = conn.in_flight_room();
            }
            let max = max.min(room);
            let room = room > 0;
            tokio::select! {
                biased;
                _ = sh.cancel.cancelled() => break 'live Stop::Cancelled,
                _ = peer_gone.cancelled() => break 'live Stop::PeerGone,
                _ = conn.script_ready.notified() => continue,
                _ = conn.in_flight_changed.notified(), if !room => continue,
                n = conn.queue.pop_batch(&mut batch, max, OUTBOUND_BYTES), if room => {
                    if n == 0 {
                        // Closed: the fan-out has stopped.
                        break 'live Stop::Cancelled;
                    }
                    // A limit set while we waited: hold one at a time, so
                    // the rest stays visible (queue depth) and in order.
                    if n > 1 && conn.limiter.load().is_some() {
                        conn.unshift_script(batch.split_off(1));
                    }
                }
            }
        }
        if conn.limiter.load().is_none() {
            // No limit: the batch goes to the writer at once.
            let (mut batch_sent, handed, stopped) =
                forward_batch(conn, out, &batch, &mut frames, acked, peer_gone, &sh.cancel).await;
            batch_sent.record(sh, conn);
            // The rest (a stop, or a limit set meanwhile) goes back in front.
            conn.unshift_script(batch.split_off(handed));
            batch.clear();
            match stopped {
                Some(stop) => break 'live stop,
                None => continue,
            }
        }
        let mut items = std::mem::take(&mut batch).into_iter();
        while let Some(o) = items.next() {
            let interrupted = match &o {
                Out::Frame(_) => None,
                _ => wait_for_rate(sh, conn, peer_gone).await,
            };
            let result = match interrupted {
                Some(s) => Err(s),
                None => forward(conn, out, &o, acked, peer_gone, Some(&sh.cancel)).await,
            };
            match result {
                Ok(n) => sent.add(n),
                Err(s) => {
                    sent.record(sh, conn);
                    let mut rest = vec![o];
                    rest.extend(items);
                    conn.unshift_script(rest);
                    break 'live s;
                }
            }
        }
        sent.record(sh, conn);
    };
    if let Stop::Cancelled = stop {
        let acked = tracking(conn);
        let drained =
            tokio::time::timeout(DRAIN_TIME, drain(sh, conn, out, acked, peer_gone)).await;
        if drained.is_err() || peer_gone.is_cancelled() {
            let left = conn.depth();
            if left > 0 {
                sh.metrics.dropped(reason::SHUTDOWN).inc_by(left as u64);
            }
        }
        close.cancel();
    }
}

/// With acknowledged delivery, when written data is due again (its ack
/// has not come within `ack_timeout`).
fn tracking(conn: &Conn) -> Option<Duration> {
    conn.tracking().map(|a| a.timeout)
}

/// Acknowledged delivery: put data whose ack is late, or whose nack asked
/// for a retry, back in front of the queue, in the order first sent; and
/// notice a peer that acks nothing at all.
async fn resend(sh: &Arc<Shared>, conn: &Arc<Conn>, peer_gone: &CancellationToken) {
    if !sh.acked() {
        return;
    }
    loop {
        let wake = conn
            .next_due()
            .map_or(Instant::now() + sh.s.ack_timeout, |due| {
                due.max(Instant::now())
            });
        tokio::select! {
            biased;
            _ = peer_gone.cancelled() => return,
            _ = sh.cancel.cancelled() => return,
            _ = conn.resend_soon.notified() => continue,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if conn.ack_fallback() {
            return;
        }
        let now = Instant::now();
        if conn.next_due().is_none_or(|due| due > now) {
            continue;
        }
        let peer = conn.peer();
        if !conn.peer_acked() && !peer.is_fednode() {
            let n = conn.fall_back_to_at_most_once();
            tracing::warn!(component = %sh.name, conn = %conn.id, in_flight = n,
                ack_timeout = ?sh.s.ack_timeout,
                "the peer acknowledged nothing and is not a fednode node: sending at most once on this connection");
            return;
        }
        let due = conn.resend_due(now);
        if !due.items.is_empty() {
            sh.metrics.resent.inc_by(due.items.len() as u64);
            if due.timed_out {
                tracing::debug!(component = %sh.name, conn = %conn.id, n = due.items.len(), "no ack within ack_timeout; resending");
            }
        }
    }
}

/// Shutdown: send what is waiting, ignoring the rate limit, until the
/// fan-out has closed the queue and it is empty.
async fn drain(
    sh: &Arc<Shared>,
    conn: &Arc<Conn>,
    out: &Outbound,
    acked: Option<Duration>,
    peer_gone: &CancellationToken,
) {
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        if conn.take_script(&mut buf, BATCH) == 0 {
            tokio::select! {
                _ = peer_gone.cancelled() => return,
                n = conn.queue.pop_batch(&mut buf, BATCH, OUTBOUND_BYTES) => if n == 0 { return },
            }
        }
        let mut items = std::mem::take(&mut buf).into_iter();
        let mut sent = Sent::default();
        while let Some(o) = items.next() {
            match forward(conn, out, &o, acked, peer_gone, None).await {
                Ok(n) => sent.add(n),
                Err(_) => {
                    sent.record(sh, conn);
                    let mut rest = vec![o];
                    rest.extend(items);
                    conn.unshift_script(rest);
                    return;
                }
            }
        }
        sent.record(sh, conn);
    }
}

/// Wait until the connection's rate limit lets one more data frame go.
async fn wait_for_rate(sh: &Shared, conn: &Conn, peer_gone: &CancellationToken) -> Option<Stop> {
    let mut counted = false;
    loop {
        let limiter = conn.limiter.load_full()?;
        if limiter.check().is_ok() {
            return None;
        }
        if !counted {
            sh.metrics.rate_limited.inc();
            counted = true;
        }
        tokio::select! {
            biased;
            _ = sh.cancel.cancelled() => return Some(Stop::Cancelled),
            _ = peer_gone.cancelled() => return Some(Stop::PeerGone),
            // A new limit (or none): look again.
            _ = conn.limit_changed.notified() => {}
            _ = limiter.until_ready() => return None,
        }
    }
}

/// The frame for one waiting item, tracked as in flight first under
/// at-least-once (a session that dies mid-write resends it); `acked` is
/// the ack timeout then.
fn frame_of(conn: &Conn, o: &Out, acked: Option<Duration>) -> WsMessage {
    if let (Some(timeout), Out::Data(item) | Out::Replay(item)) = (acked, o) {
        conn.track_in_flight(item, Instant::now() + timeout);
    }
    untracked_frame_of(conn, o, acked.is_some())
}

/// The frame for one waiting item whose tracking (under at-least-once,
/// `acked`) is done: at most once, a written message is done with.
fn untracked_frame_of(conn: &Conn, o: &Out, acked: bool) -> WsMessage {
    let (msg, data) = match o {
        Out::Data(item) => (item.message(conn.encoding, false), Some(item)),
        Out::Replay(item) => (item.message(conn.encoding, true), Some(item)),
        Out::Frame(m) => (m.clone(), None),
    };
    if let (false, Some(item)) = (acked, data) {
        conn.done_with(item.seq);
    }
    msg
}

/// Hand a batch to the socket writer: what fits in its queue under one
/// lock, the rest one by one as it makes room. Returns what was sent, how
/// many of `batch` were handed over (all of them, unless the pump must
/// stop or a rate limit was set while it waited for room), and the stop.
async fn forward_batch(
    conn: &Conn,
    out: &Outbound,
    batch: &[Out],
    frames: &mut VecDeque<WsMessage>,
    acked: Option<Duration>,
    peer_gone: &CancellationToken,
    cancel: &CancellationToken,
) -> (Sent, usize, Option<Stop>) {
    if let Some(timeout) = acked {
        conn.track_batch(batch, Instant::now() + timeout);
    }
    frames.extend(
        batch
            .iter()
            .map(|o| untracked_frame_of(conn, o, acked.is_some())),
    );
    out.offer_many(frames);
    let mut stopped = None;
    let mut handed = batch.len() - frames.len();
    while let Some(msg) = frames.pop_front() {
        if conn.limiter.load().is_some() {
            break;
        }
        if let Err(stop) = send_waiting(out, msg, peer_gone, Some(cancel)).await {
            stopped = Some(stop);
            break;
        }
        handed += 1;
    }
    frames.clear();
    let mut sent = Sent::default();
    for o in &batch[..handed] {
        sent.add(unit(o));
    }
    (sent, handed, stopped)
}

/// What one item counts as once sent.
fn unit(o: &Out) -> Sent {
    Sent {
        frames: 0,
        data: u64::from(!matches!(o, Out::Frame(_))),
        replayed: u64::from(matches!(o, Out::Replay(_))),
    }
}

/// Hand one frame to the socket writer.
async fn forward(
    conn: &Conn,
    out: &Outbound,
    o: &Out,
    acked: Option<Duration>,
    peer_gone: &CancellationToken,
    cancel: Option<&CancellationToken>,
) -> Result<Sent, Stop> {
    let sent = unit(o);
    let msg = frame_of(conn, o, acked);
    // Room in the writer's queue (the common case): no waiting needed.
    if let Err(msg) = out.offer(msg) {
        send_waiting(out, msg, peer_gone, cancel).await?;
    }
    Ok(sent)
}

/// Queue one frame for the writer, waiting for room, unless the peer goes
/// or `cancel` fires first.
async fn send_waiting(
    out: &Outbound,
    msg: WsMessage,
    peer_gone: &CancellationToken,
    cancel: Option<&CancellationToken>,
) -> Result<(), Stop> {
    let cancelled = async {
        match cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        ok = out.send(msg) => if ok { Ok(()) } else { Err(Stop::PeerGone) },
        _ = peer_gone.cancelled() => Err(Stop::PeerGone),
        // A stalled peer must not hold up the shutdown: go and drain.
        _ = cancelled => Err(Stop::Cancelled),
    }
}

/// Data frames handed to the writer, counted per batch (the counters are
/// shared atomics; one update per batch keeps them off the hot path).
#[derive(Default, Clone, Copy)]
struct Sent {
    frames: usize,
    data: u64,
    replayed: u64,
}

impl Sent {
    fn add(&mut self, o: Sent) {
        self.frames += 1;
        self.data += o.data;
        self.replayed += o.replayed;
    }

    fn record(&mut self, sh: &Shared, conn: &Conn) {
        conn.forwarded(self.frames);
        if self.data > 0 {
            sh.metrics.sent.inc_by(self.data);
            conn.sent
                .fetch_add(self.data, std::sync::atomic::Ordering::Relaxed);
            conn.meter.record(self.data);
        }
        if self.replayed > 0 {
            sh.metrics.replay_messages.inc_by(self.replayed);
        }
        *self = Sent::default();
    }
}

/// What the session does with frames from the peer.
struct Handler {
    sh: Arc<Shared>,
    conn: Arc<Conn>,
}

impl FrameHandler for Handler {
    async fn on_envelope(&mut self, env: Envelope, encoding: Encoding, out: &Outbound) {
        let (sh, conn) = (&self.sh, &self.conn);
        match env.kind {
            Kind::Request => methods::handle(sh, conn, env, encoding, out).await,
            Kind::Reply => {
                if !conn.pending.resolve(&env.id, &env.payload) {
                    tracing::debug!(conn = %conn.id, id = %env.id, "reply to no pending request; dropped");
                }
            }
            Kind::Ack => match env.acked_ids() {
                Some(ids) => {
                    let freed = conn.ack(ids.iter().map(|id| &**id));
                    sh.metrics.acks.inc_by(freed as u64);
                }
                None => {
                    sh.metrics.error(error_type::INVALID_ENVELOPE).inc();
                    tracing::debug!(conn = %conn.id, id = %env.id, "ack whose payload lists no ids; ignored");
                }
            },
            Kind::Nack => {
                let why = nack_reason(&env.payload);
                match conn.nack(&env.id, &why) {
                    Nacked::Unknown => {}
                    Nacked::Retry => sh.metrics.nacked(&why),
                    Nacked::Lost => {
                        sh.metrics.nacked(&why);
                        sh.metrics.dropped(reason::NACK).inc();
                        if let Some(suppressed) = conn.log_error() {
                            tracing::warn!(conn = %conn.id, id = %env.id, suppressed,
                                reason = %why, "peer refused data (nack); dropped");
                        }
                    }
                }
            }
            Kind::Data => upstream(sh, conn, env, encoding, out).await,
        }
    }

    fn on_undecodable(&mut self, error: &fednode_kit::envelope::DecodeError, _encoding: Encoding) {
        self.sh.metrics.error(error.error_type()).inc();
    }
}

/// The `reason` of a nack's payload `{"reason": "…"}` (`unknown` when
/// there is none).
fn nack_reason(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct NackPayload {
        reason: String,
    }
    serde_json::from_slice::<NackPayload>(payload)
        .map(|p| p.reason)
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Data a peer sent (predictions, commands flowing back): published on
/// `ws_upstream` when there is one, and from a connection bound by its URL
/// path, with each bound member added where it is missing. What is not
/// published is counted and answered ([`refuse`]): without `ws_upstream`,
/// and when the data carries another value for a bound member (or is not
/// an object the member could be added to).
async fn upstream(sh: &Shared, conn: &Conn, mut env: Envelope, encoding: Encoding, out: &Outbound) {
    let ack =
        (sh.s.delivery == Delivery::AtLeastOnce || conn.peer().wants_acks) && !env.id.is_empty();
    let Some(subject) = &sh.upstream else {
        sh.metrics.dropped(reason::NO_UPSTREAM).inc();
        let refusal = Refusal {
            reason: reason::NO_UPSTREAM,
            code: ErrorCode::Unavailable,
            message: NO_UPSTREAM_MESSAGE.to_string(),
        };
        refuse(out, &env.id, ack, encoding, refusal).await;
        return;
    };
    if let Some(bound) = conn.binding() {
        match bind(&env.payload, &bound) {
            Ok(payload) => env.payload = payload,
            Err(message) => {
                sh.metrics.dropped(reason::BOUND_MISMATCH).inc();
                if let Some(suppressed) = conn.log_error() {
                    tracing::warn!(conn = %conn.id, id = %env.id, suppressed, %message, "upstream data refused");
                }
                let refusal = Refusal {
                    reason: reason::BOUND_MISMATCH,
                    code: ErrorCode::InvalidParams,
                    message,
                };
                refuse(out, &env.id, ack, encoding, refusal).await;
                return;
            }
        }
    }
    let origin = conn.peer().origin_of(env.origin.clone());
    let subject = subject.render_bytes(
        &env.payload,
        Some(origin.as_ref().unwrap_or(sh.bus.origin())),
    );
    let meta = Meta {
        id: Some(if env.id.is_empty() {
            new_id()
        } else {
            env.id.clone()
        }),
        timestamp: Some(env.timestamp.unwrap_or_else(now_millis)),
        node: None,
        replay: env.replay,
        origin,
    };
    let msg = fednode_kit::Message::new(subject, Bytes::clone(&env.payload)).with_meta(meta);
    match sh.bus.publish_retrying(msg, &sh.cancel).await {
        Ok(_) => {
            sh.metrics.upstream.inc();
            if ack {
                out.send_envelope(&Envelope::ack(&env.id, None), encoding)
                    .await;
            }
        }
        Err(e) => {
            sh.metrics.error(error_type::PUBLISH).inc();
            sh.metrics.dropped(reason::PUBLISH_FAILED).inc();
            if let Some(suppressed) = conn.log_error() {
                tracing::warn!(conn = %conn.id, error = %e, suppressed, "upstream data not published");
            }
            if ack {
                out.send_envelope(&Envelope::ack(&env.id, Some(&e.to_string())), encoding)
                    .await;
            }
        }
    }
}

/// The error a peer gets for data sent to an output without `ws_upstream`.
const NO_UPSTREAM_MESSAGE: &str =
    "this output has no ws_upstream port; data sent to it is not published";

/// Why data from a peer was not published.
struct Refusal {
    /// The nack reason (and the `messages_dropped_total` reason).
    reason: &'static str,
    /// The error reply's code.
    code: ErrorCode,
    message: String,
}

/// Answer data that was not published: a nack with the reason when the
/// peer wants acks (and the data has an id), else an error reply whose id
/// is the data's id — empty when the data had none: no id is made up,
/// since it would name nothing the sender knows. The reply is queued only
/// if there is room now, so a peer flooding refused data never makes the
/// connection wait for room; what finds no room goes unanswered (it is
/// counted either way).
async fn refuse(out: &Outbound, id: &str, ack: bool, encoding: Encoding, why: Refusal) {
    if ack {
        out.send_envelope(&Envelope::ack(id, Some(why.reason)), encoding)
            .await;
    } else {
        let reply = Envelope::reply(id, &ReplyPayload::error(why.code, why.message));
        if !out.try_send(fednode_ws::frame::encode(&reply, encoding)) {
            return;
        }
    }
    // A peer may close right after the data it sent: the answer leaves
    // before its next frame (a close) is read.
    out.written(ANSWER_WAIT).await;
}

/// How long a refusal waits for its answer to be written before the
/// connection reads on (a peer that does not read is not waited for long).
const ANSWER_WAIT: Duration = Duration::from_millis(100);

/// `payload` with every member `bound` holds, added where missing; an
/// error message when it holds another value for one, or is not a JSON
/// object.
fn bind(payload: &Bytes, bound: &Binding) -> Result<Bytes, String> {
    let mut payload = payload.clone();
    for (name, value) in bound.pairs() {
        match bind_member(&payload, name, value) {
            Bound::Added(with) => payload = with,
            Bound::Present(v) if v == *value => {}
            Bound::Present(v) => {
                return Err(format!(
                    "this connection is bound to {name} = {value:?} by its URL path; \
                     data with {name} = {v:?} is not published"
                ))
            }
            Bound::NotAnObject => {
                return Err(format!(
                    "this connection is bound to {name} = {value:?} by its URL path; \
                     data sent on it must be a JSON object (it gets {name} when missing)"
                ))
            }
        }
    }
    Ok(payload)
}
