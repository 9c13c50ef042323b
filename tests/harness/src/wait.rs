//! Waiting for something observable instead of sleeping and hoping: poll a
//! condition until it holds, and fail loudly, naming what was awaited, when
//! a deadline passes.
//!
//! Three flavours of one loop, for the three kinds of test code:
//!
//! - [`wait_until`]: an async test, a condition that is a plain check
//!   (a metric, a health status, a counter);
//! - [`wait_until_async`]: an async test, a condition that must itself
//!   await (a query, a request);
//! - [`wait_until_blocking`]: a test on plain threads (one that drives a
//!   `fednode` process, say).
//!
//! The pause between two checks starts short (5 ms, so a quick condition
//! costs little latency) and doubles up to 100 ms (so an expensive check,
//! such as a database query, does not hammer what it observes).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(100);

fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(MAX_PAUSE)
}

fn timed_out(limit: Duration, what: &dyn Display) -> ! {
    panic!("timed out after {limit:?} waiting for {what}")
}

/// Polls `cond` until it returns true; panics with "timed out after
/// `limit` waiting for `what`" if it still does not hold after `limit`.
///
/// ```no_run
/// # async fn f(count: impl Fn() -> u64) {
/// use std::time::Duration;
/// fednode_testkit::wait_until(Duration::from_secs(5), "ten messages", || count() == 10).await;
/// # }
/// ```
pub async fn wait_until(limit: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    wait_until_async(limit, what, || std::future::ready(cond())).await;
}

/// [`wait_until`] for a condition that awaits (a query, a request).
///
/// ```no_run
/// # async fn rows() -> i64 { 0 }
/// # async fn f() {
/// use std::time::Duration;
/// fednode_testkit::wait_until_async(Duration::from_secs(30), "every row", || async {
///     rows().await == 100
/// })
/// .await;
/// # }
/// ```
pub async fn wait_until_async<F, Fut>(limit: Duration, what: impl Display, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = FIRST_PAUSE;
    loop {
        if cond().await {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            timed_out(limit, &what);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = next_pause(pause);
    }
}

/// [`wait_until`] for tests on plain threads: sleeps the calling thread
/// between checks.
pub fn wait_until_blocking(limit: Duration, what: impl Display, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = FIRST_PAUSE;
    loop {
        if cond() {
            return;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            timed_out(limit, &what);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = next_pause(pause);
    }
}
