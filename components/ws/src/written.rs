//! "Has what I queued been written yet?": the handshake between a
//! connection's senders and its writer ([`crate::frame::write_loop`])
//! behind [`Outbound::written`](crate::frame::Outbound::written).
//!
//! A sender asks (each ask a number); the writer answers every ask made so
//! far whenever it has nothing queued: after writing and flushing a batch
//! that left the queue empty, or at once when an ask wakes it idle. What
//! was queued before an ask is then on the socket.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// Shared by a connection's senders and its writer.
#[derive(Default)]
pub(crate) struct WriteProgress {
    /// Asks made.
    asked: AtomicU64,
    /// The last ask answered.
    answered: AtomicU64,
    /// Wakes an idle writer.
    ask: Notify,
    /// Wakes the senders waiting for an answer.
    answer: Notify,
}

impl WriteProgress {
    /// Sender: a new ask (the writer is woken); wait for it with
    /// [`answered`](Self::answered).
    pub fn ask(&self) -> u64 {
        let n = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        self.ask.notify_one();
        n
    }

    /// Whether an ask is still unanswered: the writer is held up (by a
    /// peer that does not read), and a new ask would only wait too.
    pub fn behind(&self) -> bool {
        self.answered.load(Ordering::Acquire) < self.asked.load(Ordering::Acquire)
    }

    /// Sender: until ask `n` is answered.
    pub async fn answered(&self, n: u64) {
        loop {
            let notified = self.answer.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.answered.load(Ordering::Acquire) >= n {
                return;
            }
            notified.await;
        }
    }

    /// Writer: until someone asks.
    pub async fn asked(&self) {
        self.ask.notified().await;
    }

    /// Writer: everything queued so far is written (nothing is queued and
    /// nothing is held unflushed); every ask made until now is answered.
    pub fn caught_up(&self) {
        let asked = self.asked.load(Ordering::Acquire);
        if self.answered.load(Ordering::Relaxed) < asked {
            self.answered.store(asked, Ordering::Release);
            self.answer.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_ask_is_answered_once_the_writer_catches_up() {
        let p = WriteProgress::default();
        p.caught_up();
        assert!(!p.behind(), "nothing asked yet");
        let n = p.ask();
        assert!(p.behind());
        let early = tokio::time::timeout(Duration::from_millis(20), p.answered(n)).await;
        assert!(early.is_err(), "not answered before the writer caught up");
        p.caught_up();
        p.answered(n).await;
        assert!(!p.behind());
        // An ask made after the writer caught up waits for the next time.
        let m = p.ask();
        assert!(p.behind() && m == n + 1);
        tokio::time::timeout(Duration::from_secs(5), p.asked())
            .await
            .expect("the ask wakes the writer");
        p.caught_up();
        p.answered(m).await;
    }
}
