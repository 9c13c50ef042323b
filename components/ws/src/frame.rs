//! Frames on one WebSocket connection, shared by both modes and by the
//! `websocket` output.
//!
//! - [`classify`] turns a tungstenite [`WsMessage`] into an envelope (text =
//!   JSON, binary = MessagePack) or says why it could not;
//!   [`encode`] does the reverse.
//! - [`Outbound`] is the cloneable handle that queues frames for a
//!   connection's writer (a kit `BoundedQueue`, so that a batch of frames
//!   goes in under one lock and comes out under one); [`write_loop`] is that
//!   writer: it batches with `feed()` and flushes once per batch (about 5× the
//!   throughput of one `send()` per frame), and sends a close frame
//!   ([`Outbound::close`]) after what is already queued.
//! - [`drive`] runs a whole connection: it reads frames and hands decoded
//!   envelopes to a [`FrameHandler`] (frames already read are taken
//!   without waiting; `on_idle` marks the end of each such burst), counts
//!   and rate-limits the logging of undecodable frames ([`LogThrottle`]), answers an oversized frame with close code 1009, and on
//!   cancellation sends 1001 and waits briefly for the peer's close reply.

use bytes::Bytes;
use fednode_kit::envelope::{DecodeError, Encoding, Envelope};
use fednode_kit::log::LogThrottle;
use fednode_kit::queue::{BoundedQueue, OnFull, Pushed};
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::config::HeartbeatConfig;
use crate::written::WriteProgress;

mod woken;
use woken::WokenOnly;

/// A WebSocket message (tungstenite's).
pub type WsMessage = tokio_tungstenite::tungstenite::Message;
/// A WebSocket error (tungstenite's).
pub type WsError = tokio_tungstenite::tungstenite::Error;

/// Close codes used by fednode.
pub mod close_code {
    /// Normal closure (`fednode send` when stdin ends).
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The peer broke a rule of this endpoint (a relay's missing or wrong
    /// auth message).
    pub const POLICY: u16 = 1008;
    /// A frame larger than `max_message_bytes`.
    pub const TOO_BIG: u16 = 1009;
}

/// What one incoming frame is.
#[derive(Debug)]
pub enum Incoming {
    /// A decoded envelope and the encoding it came in (replies use it too).
    Envelope(Envelope, Encoding),
    /// A data frame that is neither JSON nor MessagePack.
    Undecodable(DecodeError, Encoding),
    /// The peer's close frame.
    Close(Option<CloseFrame>),
    /// Ping, pong (tungstenite answers pings itself).
    Control,
}

/// Decode one message.
pub fn classify(msg: WsMessage) -> Incoming {
    match msg {
        WsMessage::Text(t) => match Envelope::decode_json_str(t.as_str()) {
            Ok(env) => Incoming::Envelope(env, Encoding::Json),
            Err(e) => Incoming::Undecodable(e, Encoding::Json),
        },
        WsMessage::Binary(b) => match Envelope::decode_msgpack(&b) {
            Ok(env) => Incoming::Envelope(env, Encoding::Msgpack),
            Err(e) => Incoming::Undecodable(e, Encoding::Msgpack),
        },
        WsMessage::Close(c) => Incoming::Close(c),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Incoming::Control,
    }
}

/// Encode an envelope as a text (JSON) or binary (MessagePack) message.
pub fn encode(env: &Envelope, encoding: Encoding) -> WsMessage {
    match encoding {
        Encoding::Json => WsMessage::Text(text(env.encode_json())),
        Encoding::Msgpack => WsMessage::Binary(Bytes::from(env.encode_msgpack())),
    }
}

/// Bytes as a text frame body; payloads that came from a non-UTF-8 source
/// (a raw NATS publisher) are repaired rather than refused.
pub fn text(bytes: Vec<u8>) -> Utf8Bytes {
    match String::from_utf8(bytes) {
        Ok(s) => Utf8Bytes::from(s),
        Err(e) => Utf8Bytes::from(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// A close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(reason),
    }
}

/// The cloneable sending side of a connection: queue frames for its writer.
#[derive(Clone)]
pub struct Outbound {
    senders: Arc<Senders>,
}

/// What the clones of one [`Outbound`] share; when the last is dropped the
/// queue closes, and the writer stops once it has written what is left.
struct Senders {
    queue: Arc<BoundedQueue<WsMessage>>,
    close: watch::Sender<Option<CloseFrame>>,
    progress: Arc<WriteProgress>,
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The writer's side of an [`Outbound`]; give it to [`write_loop`] (or
/// [`drive`]). Dropping it (the writer is gone) makes every send fail.
pub struct OutboundRx {
    pub(crate) queue: Arc<BoundedQueue<WsMessage>>,
    close: watch::Receiver<Option<CloseFrame>>,
    stop: CancellationToken,
    progress: Arc<WriteProgress>,
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Frame bytes a connection's outbound queue holds, and the writer takes
/// at once, whatever the frame count: large messages to a peer that does
/// not read pile up in its (byte-bounded) data queue, not here.
pub const OUTBOUND_BYTES: usize = 1 << 20;

/// A connection's outbound queue holding up to `capacity` frames and
/// [`OUTBOUND_BYTES`] (one larger frame is taken when it is empty).
pub fn outbound(capacity: usize) -> (Outbound, OutboundRx) {
    let queue = Arc::new(
        BoundedQueue::new(capacity.max(1), OnFull::Block)
            .with_max_bytes(OUTBOUND_BYTES, |m: &WsMessage| m.len()),
    );
    let (ctx, crx) = watch::channel(None);
    let progress = Arc::new(WriteProgress::default());
    (
        Outbound {
            senders: Arc::new(Senders {
                queue: queue.clone(),
                close: ctx,
                progress: progress.clone(),
            }),
        },
        OutboundRx {
            queue,
            close: crx,
            stop: CancellationToken::new(),
            progress,
        },
    )
}

impl Outbound {
    fn queue(&self) -> &BoundedQueue<WsMessage> {
        &self.senders.queue
    }

    /// Tells connections apart: clones of one `Outbound` share it, and no
    /// two live connections do.
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.senders) as usize
    }

    /// Queue a frame, waiting for room; false once the connection is gone.
    pub async fn send(&self, msg: WsMessage) -> bool {
        matches!(self.queue().push(msg).await, Pushed::Queued)
    }

    /// Queue a frame if there is room now; false when full or gone.
    pub fn try_send(&self, msg: WsMessage) -> bool {
        self.offer(msg).is_ok()
    }

    /// [`try_send`](Self::try_send) that hands the frame back when it was
    /// not queued, for a caller that then waits with [`send`](Self::send).
    #[allow(clippy::result_large_err)]
    pub fn offer(&self, msg: WsMessage) -> Result<(), WsMessage> {
        match self.queue().try_push(msg) {
            Pushed::Queued | Pushed::EvictedOldest(_) => Ok(()),
            Pushed::Rejected(m) => Err(m),
        }
    }

    /// Queue as many of `msgs` as there is room for now, in order, under
    /// one lock; what did not fit stays in `msgs` (send it with
    /// [`send`](Self::send)).
    pub fn offer_many(&self, msgs: &mut VecDeque<WsMessage>) {
        let before = msgs.len();
        // `block` never evicts.
        self.queue().try_push_many_quiet(msgs, &mut Vec::new());
        if msgs.len() < before {
            self.queue().wake();
        }
    }

    /// Queue an envelope in `encoding`, waiting for room.
    pub async fn send_envelope(&self, env: &Envelope, encoding: Encoding) -> bool {
        self.send(encode(env, encoding)).await
    }

    /// Ask the writer to send a close frame after what is already queued and
    /// stop. The first close asked for wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.senders.close.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(close_frame(code, reason));
                true
            } else {
                false
            }
        });
    }

    /// How many frames could be queued now (a hint: another sender may
    /// take the room first).
    pub fn room(&self) -> usize {
        self.queue().capacity().saturating_sub(self.queue().len())
    }

    /// Wait until every frame queued so far is written to the socket, at
    /// most `limit`; false when that took longer, when an earlier wait
    /// is still unanswered (the writer is held up by a peer that does not
    /// read: not waited for again until it catches up), or when the writer
    /// is gone. For an answer that must leave before the next frame is
    /// read: once the peer's close has been read, nothing more may be
    /// written.
    pub async fn written(&self, limit: Duration) -> bool {
        let progress = &self.senders.progress;
        if self.is_closed() || progress.behind() {
            return false;
        }
        let n = progress.ask();
        tokio::time::timeout(limit, progress.answered(n))
            .await
            .is_ok()
    }

    /// Whether the writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.queue().is_closed()
    }

    /// Whether a close has been asked for.
    pub fn is_closing(&self) -> bool {
        self.senders.close.borrow().is_some()
    }
}

impl OutboundRx {
    /// A token that makes [`write_loop`] stop without draining (the
    /// connection is gone).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Write queued frames to `sink` until a close frame was sent, every
/// [`Outbound`] is dropped, or the stop token fires; then close the sink.
pub async fn write_loop<S>(mut sink: S, mut rx: OutboundRx) -> Result<(), WsError>
where
    S: Sink<WsMessage, Error = WsError> + Unpin,
{
    // Frames per flush (one socket write, at most). At 128 the relay
    // benchmark made half again as many writes and context switches as at
    // 256; see BENCHMARKS.md.
    const BATCH: usize = 256;
    let mut buf: Vec<WsMessage> = Vec::with_capacity(BATCH);
    // Until every sender is gone (then no close can be asked for, and the
    // queue ends after what is left in it).
    let mut close_open = true;
    let result = loop {
        tokio::select! {
            biased;
            _ = rx.stop.cancelled() => break Ok(()),
            changed = rx.close.changed(), if close_open => {
                let frame = match changed {
                    Ok(()) => rx.close.borrow_and_update().clone(),
                    Err(_) => {
                        close_open = false;
                        None
                    }
                };
                let Some(frame) = frame else { continue };
                // What was queued before the close goes first.
                rx.queue.drain(&mut buf, usize::MAX);
                for m in buf.drain(..) {
                    sink.feed(m).await?;
                }
                break sink.send(WsMessage::Close(Some(frame))).await;
            }
            n = rx.queue.pop_batch(&mut buf, BATCH, OUTBOUND_BYTES) => {
                if n == 0 {
                    // Closed: every sender is gone and nothing is left.
                    break Ok(());
                }
                for m in buf.drain(..) {
                    sink.feed(m).await?;
                }
                sink.flush().await?;
                if rx.queue.is_empty() {
                    rx.progress.caught_up();
                }
            }
            _ = rx.progress.asked() => {
                // Idle when woken: all is written. Else the batch that
                // empties the queue answers.
                if rx.queue.is_empty() {
                    rx.progress.caught_up();
                }
            }
        }
    };
    // Flushes a pending close reply, or sends a plain close frame.
    let _ = sink.close().await;
    result
}

/// What a connection does with what it reads. Called from the connection's
/// task, one frame at a time, in order.
pub trait FrameHandler: Send {
    /// A decoded envelope. May wait (e.g. for room in a `block` queue, which
    /// stops reading the socket so TCP pushes back); must not wait past the
    /// cancellation of the connection for long.
    fn on_envelope(
        &mut self,
        env: Envelope,
        encoding: Encoding,
        out: &Outbound,
    ) -> impl Future<Output = ()> + Send;

    /// A frame that could not be decoded; [`drive`] has already logged it
    /// (at most once per second). Count it here.
    fn on_undecodable(&mut self, _error: &DecodeError, _encoding: Encoding) {}

    /// The frames that had arrived together are handled: [`drive`] is about
    /// to wait for the socket (and calls this once more when the
    /// connection ends). A handler that defers work per frame (waking a
    /// consumer, updating shared counters) does it here, once per burst.
    fn on_idle(&mut self) {}
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionEnd {
    /// The peer closed (with its close frame, if it sent one).
    PeerClosed(Option<(u16, String)>),
    /// The socket failed or was reset without a close frame.
    Dropped(String),
    /// A frame over the size limit; closed with 1009.
    TooLarge(String),
    /// A text frame that is not UTF-8; closed with 1007.
    InvalidPayload(String),
    /// The cancellation token fired; closed with 1001.
    Cancelled,
    /// Nothing at all arrived for the heartbeat timeout: the peer is gone or
    /// frozen, or the path to it is broken.
    HeartbeatTimeout(Duration),
}

impl std::fmt::Display for ConnectionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionEnd::PeerClosed(Some((code, reason))) => {
                write!(f, "closed by peer ({code} {reason})")
            }
            ConnectionEnd::PeerClosed(None) => write!(f, "closed by peer"),
            ConnectionEnd::Dropped(e) => write!(f, "dropped: {e}"),
            ConnectionEnd::TooLarge(e) => write!(f, "frame too large: {e}"),
            ConnectionEnd::InvalidPayload(e) => write!(f, "text frame not UTF-8: {e}"),
            ConnectionEnd::Cancelled => write!(f, "closed: shutting down"),
            ConnectionEnd::HeartbeatTimeout(t) => {
                write!(f, "nothing heard for {}", humantime::format_duration(*t))
            }
        }
    }
}

/// Options of [`drive`].
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// A name for log lines (`conn-3 127.0.0.1:53211`).
    pub label: String,
    /// How long to wait for the peer's close reply and for the writer to
    /// finish once the connection is ending.
    pub close_timeout: Duration,
    /// Ping the peer while it is quiet, and end the connection when nothing
    /// at all arrived for the timeout.
    pub heartbeat: Option<HeartbeatConfig>,
}

/// Run one connection until it ends: read frames into `handler`, write what
/// is queued on `out` (whose receiving side is `out_rx`). On `cancel` a
/// close frame with 1001 is sent; an oversized frame is answered with 1009,
/// a text frame that is not UTF-8 with 1007.
pub async fn drive<S, H>(
    ws: WebSocketStream<S>,
    out: &Outbound,
    out_rx: OutboundRx,
    handler: &mut H,
    cancel: &CancellationToken,
    opts: &DriveOptions,
) -> ConnectionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: FrameHandler,
{
    let (sink, mut stream) = ws.split();
    let stop = out_rx.stop_token();
    // Each side is polled only when its own waker fired (see `woken`).
    let writer = write_loop(sink, out_rx);
    tokio::pin!(writer);
    let mut writer = WokenOnly::new(writer);
    let mut writer_done = false;
    let end = {
        let reader = read_loop(&mut stream, &mut *handler, out, cancel, opts);
        tokio::pin!(reader);
        let mut reader = WokenOnly::new(reader);
        loop {
            tokio::select! {
                end = &mut reader => break end,
                r = &mut writer, if !writer_done => {
                    writer_done = true;
                    if let Err(e) = r {
                        tracing::debug!(conn = %opts.label, error = %e, "websocket write failed");
                        break ConnectionEnd::Dropped(format!("write failed: {e}"));
                    }
                    // A close frame went out; the reader waits for the reply.
                }
            }
        }
    };
    // However the connection ended, the last burst is finished.
    handler.on_idle();
    if !writer_done {
        // A close this side asked for is written first; otherwise the
        // writer stops at once.
        if !matches!(
            end,
            ConnectionEnd::Cancelled
                | ConnectionEnd::TooLarge(_)
                | ConnectionEnd::InvalidPayload(_)
        ) {
            stop.cancel();
        }
        if tokio::time::timeout(opts.close_timeout, &mut writer)
            .await
            .is_err()
        {
            tracing::debug!(conn = %opts.label, "writer did not finish in time; dropping the socket");
        }
    }
    end
}

/// How many frames read without waiting go between two shutdown checks.
const CANCEL_CHECK_EVERY: u32 = 64;

async fn read_loop<St, H>(
    stream: &mut St,
    handler: &mut H,
    out: &Outbound,
    cancel: &CancellationToken,
    opts: &DriveOptions,
) -> ConnectionEnd
where
    St: futures::Stream<Item = Result<WsMessage, WsError>> + Unpin,
    H: FrameHandler,
{
    let mut throttle = LogThrottle::default();
    let mut closing_since: Option<tokio::time::Instant> = None;
    // Heartbeat: when something was last heard (updated once per burst,
    // not per frame) and when the next Ping goes out.
    let mut heard = false;
    let mut last_heard = tokio::time::Instant::now();
    let mut next_ping = opts.heartbeat.map(|h| last_heard + h.interval);
    let mut frames = 0u32;
    loop {
        // A frame that is already here (read with the previous ones) is
        // taken at once; only before waiting for the socket does the
        // handler close its burst and the shutdown checks run. A peer that
        // never lets the reader wait is checked for shutdown every
        // `CANCEL_CHECK_EVERY` frames (the check takes a lock that every
        // connection of the component shares).
        frames = frames.wrapping_add(1);
        let check = frames.is_multiple_of(CANCEL_CHECK_EVERY);
        let ready = if closing_since.is_none() && !(check && cancel.is_cancelled()) {
            stream.next().now_or_never()
        } else {
            None
        };
        let next = match ready {
            Some(m) => m,
            None => {
                handler.on_idle();
                if std::mem::take(&mut heard) {
                    last_heard = tokio::time::Instant::now();
                }
                let deadline = closing_since.map(|t| t + opts.close_timeout);
                let beating = opts.heartbeat.filter(|_| closing_since.is_none());
                let silence = beating.map(|h| last_heard + h.timeout);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled(), if closing_since.is_none() => {
                        out.close(close_code::GOING_AWAY, "going away");
                        closing_since = Some(tokio::time::Instant::now());
                        continue;
                    }
                    _ = sleep_until_opt(deadline), if deadline.is_some() => return ConnectionEnd::Cancelled,
                    _ = sleep_until_opt(silence), if silence.is_some() => {
                        let timeout = beating.map(|h| h.timeout).unwrap_or_default();
                        tracing::warn!(conn = %opts.label, timeout = %humantime::format_duration(timeout), "nothing heard from the peer; closing");
                        return ConnectionEnd::HeartbeatTimeout(timeout);
                    }
                    _ = sleep_until_opt(next_ping), if beating.is_some() => {
                        // A full queue already keeps the peer busy; the
                        // silence deadline decides either way.
                        out.try_send(WsMessage::Ping(Bytes::new()));
                        let now = tokio::time::Instant::now();
                        next_ping = beating.map(|h| now + h.interval);
                        continue;
                    }
                    m = stream.next() => m,
                }
            }
        };
        heard = true;
        let closing = closing_since.is_some();
        match next {
            None => {
                return if closing {
                    ConnectionEnd::Cancelled
                } else {
                    ConnectionEnd::Dropped("connection reset".into())
                }
            }
            Some(Err(WsError::Capacity(e))) => {
                tracing::warn!(conn = %opts.label, error = %e, "frame over the size limit; closing with 1009");
                out.close(close_code::TOO_BIG, "message too big");
                return ConnectionEnd::TooLarge(e.to_string());
            }
            Some(Err(WsError::Utf8(e))) => {
                // A text frame that is not UTF-8 breaks the protocol (RFC
                // 6455 8.1): counted as undecodable, then closed with 1007.
                let err = DecodeError::Json(format!("text frame is not UTF-8: {e}"));
                log_undecodable(&mut throttle, &opts.label, &err);
                handler.on_undecodable(&err, Encoding::Json);
                out.close(close_code::INVALID_PAYLOAD, "text frame is not UTF-8");
                return ConnectionEnd::InvalidPayload(e.to_string());
            }
            Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                return if closing {
                    ConnectionEnd::Cancelled
                } else {
                    ConnectionEnd::PeerClosed(None)
                }
            }
            Some(Err(e)) => {
                return if closing {
                    ConnectionEnd::Cancelled
                } else {
                    ConnectionEnd::Dropped(e.to_string())
                }
            }
            Some(Ok(msg)) => match classify(msg) {
                Incoming::Envelope(env, enc) => {
                    if !closing {
                        handler.on_envelope(env, enc, out).await;
                    }
                }
                Incoming::Undecodable(err, enc) => {
                    log_undecodable(&mut throttle, &opts.label, &err);
                    handler.on_undecodable(&err, enc);
                }
                Incoming::Close(frame) => {
                    return if closing {
                        ConnectionEnd::Cancelled
                    } else {
                        ConnectionEnd::PeerClosed(
                            frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())),
                        )
                    };
                }
                Incoming::Control => {}
            },
        }
    }
}

fn log_undecodable(throttle: &mut LogThrottle, label: &str, err: &DecodeError) {
    if let Some(suppressed) = throttle.allow() {
        tracing::warn!(conn = %label, error = %err, suppressed, "undecodable frame dropped");
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
