//! The fan-out task: the only reader of the bus subscriptions and the only
//! writer of the replay buffer. It takes messages a batch at a time; each
//! goes to the buffer and into the share of every connection whose routing
//! accepts it, and at the end of the batch every connection gets its share
//! at once, without waiting — into its own queue or straight to its
//! writer — so one stalled peer costs the others nothing.
//!
//! `replay` requests are served here too, between two batches: the buffer
//! then holds exactly what has been fanned out, so the replayed selection
//! ends where the live data going to that connection begins (no gap, no
//! duplicate).

use fednode_kit::filter::Outcome;
use fednode_kit::{Encoding, Envelope, Message, ReplyPayload, Subscription};
use fednode_ws::frame::{encode, WsMessage};
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::buffer::ReplayParams;
use crate::conn::{Conn, Out};
use crate::item::Item;
use crate::routing::{Keys, Routing};
use crate::shared::{Cmd, Shared};
use fednode_ws::config::Mode;

/// Messages taken from the bus at once.
pub(crate) const BATCH: usize = 256;
/// A replay from the store without `count` sends at most this many (or
/// `replay.buffer_size`, when larger), the oldest first: enough for a hub
/// that pulls to catch up after a restart, bounded in memory.
const STORE_REPLAY_MIN: usize = 100_000;

/// The input subscriptions: one is read directly (the common case), several
/// are merged.
pub(crate) enum Source {
    One(Subscription),
    Many(SelectAll<BoxStream<'static, Message>>),
}

impl Source {
    pub fn new(mut subs: Vec<Subscription>) -> Self {
        if subs.len() == 1 {
            return Source::One(subs.pop().expect("one subscription"));
        }
        Source::Many(futures::stream::select_all(subs.into_iter().map(|s| {
            futures::stream::unfold(s, |mut s| async move { s.next().await.map(|m| (m, s)) })
                .boxed()
        })))
    }

    /// Wait for at least one message; 0 when the bus closed.
    async fn next_batch(&mut self, buf: &mut Vec<Message>) -> usize {
        match self {
            Source::One(s) => s.next_many(buf, BATCH).await,
            Source::Many(s) => match s.next().await {
                None => 0,
                Some(m) => {
                    buf.push(m);
                    self.ready(buf)
                }
            },
        }
    }

    /// What is there now, without waiting.
    fn ready(&mut self, buf: &mut Vec<Message>) -> usize {
        while buf.len() < BATCH {
            let next = match self {
                Source::One(s) => s.try_next(),
                Source::Many(s) => s.next().now_or_never().flatten(),
            };
            match next {
                Some(m) => buf.push(m),
                None => break,
            }
        }
        buf.len()
    }
}

pub(crate) async fn run(sh: Arc<Shared>, mut source: Source, mut cmds: mpsc::Receiver<Cmd>) {
    let mut buf = Vec::with_capacity(BATCH);
    let mut scratch = Scratch::default();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = sh.cancel.cancelled() => break,
            Some(cmd) = cmds.recv() => handle(&sh, cmd),
            n = source.next_batch(&mut buf) => {
                if n == 0 {
                    break;
                }
                dispatch(&sh, &mut buf, &mut seq, &mut scratch).await;
            }
        }
    }
    // Shutdown: hand what the subscriptions still hold to the connections,
    // then close their queues so the writers drain and say goodbye.
    while source.ready(&mut buf) > 0 {
        dispatch(&sh, &mut buf, &mut seq, &mut scratch).await;
    }
    while let Ok(cmd) = cmds.try_recv() {
        handle(&sh, cmd);
    }
    if let Some(spool) = &sh.spool {
        spool.close().await;
    }
    for c in sh.conns().iter() {
        c.queue.close();
    }
}

/// What the fan-out keeps from one batch to the next, so that once these
/// have grown a batch allocates no buffers (a fresh one of this size is
/// often fresh memory, whose first touch costs a page fault).
#[derive(Default)]
struct Scratch {
    /// The batch's messages as items.
    items: Vec<Arc<Item>>,
    /// Each connection's share of the batch.
    shares: Vec<Vec<Arc<Item>>>,
    /// What each connection's queue had no room for, under `block`.
    rests: Vec<VecDeque<Out>>,
    /// Frames on their way to a writer.
    frames: VecDeque<WsMessage>,
}

/// Fan out one batch: each message to the replay buffer and into the share
/// of every connection whose routing accepts it; then each connection gets
/// its share at once (`Conn::hand_over`: one lock and one wake per
/// connection and batch, not per message). Only then, under `block`, does
/// the fan-out wait for the connections whose queues were full, for all of
/// them at once: a stalled peer holds back what comes after the batch, not
/// the others' share of it.
async fn dispatch(sh: &Shared, buf: &mut Vec<Message>, seq: &mut u64, scratch: &mut Scratch) {
    let conns = sh.conns();
    let n = buf.len();
    // Frames are kept for sharing only when more than one peer may send them.
    let share = conns.len() > 1;
    // Routing as it is at the start of the batch: a filter or announce
    // that changes meanwhile applies from the next one.
    let routing: Vec<Arc<Routing>> = conns.iter().map(|c| c.routing.load_full()).collect();
    let Scratch {
        items,
        shares,
        rests,
        frames,
    } = scratch;
    shares.resize_with(conns.len(), Vec::new);
    rests.resize_with(conns.len(), VecDeque::new);
    let names = sh.placeholders();
    for m in buf.drain(..) {
        *seq += 1;
        let item = Arc::new(Item::from_message(*seq, m).share_frames(share));
        // Routing reads the bound members and parses the payload at most
        // once each, for everyone.
        let keys = Keys::new(names, &item);
        for (to, routing) in shares.iter_mut().zip(&routing) {
            match routing.route(&item, &keys) {
                Outcome::Match => to.push(item.clone()),
                Outcome::OverBudget => sh.metrics.filter_over_budget.inc(),
                Outcome::NoMatch => {}
            }
        }
        items.push(item);
    }
    // Before any connection can see the batch: a replay served after this
    // one starts where its live data does.
    sh.buffer.push_all(items);
    if let Some(spool) = sh.feeder() {
        items.clear();
        // Client mode with a store: the one connection is fed from it.
        for share in shares.iter_mut() {
            spool.append(share).await;
        }
        sh.throughput.record(n as u64);
        return;
    }
    match &sh.spool {
        // Server mode with a store: every message goes into the history.
        Some(spool) => spool.append(items).await,
        None => items.clear(),
    }
    for ((c, share), rest) in conns.iter().zip(shares.iter_mut()).zip(rests.iter_mut()) {
        c.hand_over(share, frames, rest, &sh.metrics);
    }
    let full: Vec<_> = conns
        .iter()
        .zip(rests.iter_mut())
        .filter(|(_, rest)| !rest.is_empty())
        .collect();
    if !full.is_empty() {
        // Side by side: a peer that has stopped reading must not hold up
        // the rest of another's share.
        futures::future::join_all(
            full.into_iter()
                .map(|(c, rest)| c.push_waiting(rest, &sh.metrics, &sh.cancel)),
        )
        .await;
    }
    sh.throughput.record(n as u64);
}

fn handle(sh: &Arc<Shared>, cmd: Cmd) {
    match cmd {
        Cmd::Replay {
            conn,
            request_id,
            encoding,
            params,
        } => {
            let selection = sh.buffer.select(&params);
            let reaches_back = selection.after_id_missing
                || params
                    .start_time
                    .is_some_and(|t| sh.buffer.oldest_timestamp().is_none_or(|o| o > t))
                || params.count.is_some_and(|c| selection.items.len() < c);
            match &sh.spool {
                // The buffer does not reach back far enough: the store does.
                Some(spool) if reaches_back => {
                    let (sh, spool) = (sh.clone(), spool.clone());
                    tokio::spawn(async move {
                        let cap = params
                            .count
                            .unwrap_or(sh.s.buffer_size.max(STORE_REPLAY_MIN));
                        let own = sh.s.mode == Mode::Client;
                        let mut read = spool.history(&params, cap, own).await;
                        let found = read.as_ref().is_none_or(|(_, found)| *found);
                        if !found {
                            // As with the buffer: from the oldest kept.
                            let from_oldest = ReplayParams {
                                after_id: None,
                                ..params.clone()
                            };
                            read = spool.history(&from_oldest, cap, own).await;
                        }
                        let items = read.map(|(items, _)| items).unwrap_or_default();
                        start_replay(&sh, &conn, &request_id, encoding, &params, items, !found);
                    });
                }
                _ => start_replay(
                    sh,
                    &conn,
                    &request_id,
                    encoding,
                    &params,
                    selection.items,
                    selection.after_id_missing,
                ),
            }
        }
    }
}

/// Send the reply and then `selected` (what passes the connection's
/// routing, the newest `count`) to `conn`.
fn start_replay(
    sh: &Shared,
    conn: &Arc<Conn>,
    request_id: &str,
    encoding: Encoding,
    params: &ReplayParams,
    selected: Vec<Arc<Item>>,
    after_id_missing: bool,
) {
    let routing = conn.routing.load();
    let mut items: Vec<Arc<Item>> = selected
        .into_iter()
        .filter(
            |i| match routing.route(i, &Keys::new(sh.placeholders(), i)) {
                Outcome::Match => true,
                Outcome::OverBudget => {
                    sh.metrics.filter_over_budget.inc();
                    false
                }
                Outcome::NoMatch => false,
            },
        )
        .collect();
    if let Some(count) = params.count {
        let skip = items.len().saturating_sub(count);
        items.drain(..skip);
    }
    let n = items.len();
    let mut result = json!({"messages_available": n, "replay_started": n > 0});
    if after_id_missing {
        result["after_id_found"] = json!(false);
    }
    let reply = encode(
        &Envelope::reply(request_id, &ReplyPayload::ok(result)),
        encoding,
    );
    conn.install_replay(reply, items);
    conn.replays_pending.fetch_sub(1, Ordering::AcqRel);
    tracing::debug!(conn = %conn.id, messages = n, "replay started");
}
