//! What a filter may cost: the size of its source and of its regexes at
//! compile time, and the nodes its paths may visit for one message.

use std::cell::Cell;

/// The default of [`Limits::max_filter_bytes`]: 4 KiB.
pub const DEFAULT_MAX_FILTER_BYTES: usize = 4 * 1024;
/// The default of [`Limits::max_regex_bytes`]: 256 KiB.
pub const DEFAULT_MAX_REGEX_BYTES: usize = 256 * 1024;
/// The default of [`Limits::max_visits`]: 10,000 nodes per message.
pub const DEFAULT_MAX_VISITS: usize = 10_000;

/// Bounds on one filter, checked when it is compiled and when it runs.
///
/// [`Filter::compile`](super::Filter::compile) applies the defaults;
/// [`Filter::compile_with_limits`](super::Filter::compile_with_limits)
/// takes the caller's (e.g. a connection's `max_filter_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest filter accepted, in bytes of its canonical JSON form
    /// (`{"filters":[…],"match":…}`); a longer one is refused at compile.
    pub max_filter_bytes: usize,
    /// The largest compiled regex of a `matches` criterion, in bytes
    /// (`regex::RegexBuilder::size_limit`); a larger one is refused at compile.
    pub max_regex_bytes: usize,
    /// The most JSONPath nodes the filter's paths may visit for one
    /// message; a message that would need more does not match and is
    /// reported as [`Outcome::OverBudget`].
    pub max_visits: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_filter_bytes: DEFAULT_MAX_FILTER_BYTES,
            max_regex_bytes: DEFAULT_MAX_REGEX_BYTES,
            max_visits: DEFAULT_MAX_VISITS,
        }
    }
}

/// What evaluating a filter on one message found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The message passes the filter.
    Match,
    /// The message does not pass.
    NoMatch,
    /// The filter's paths would visit more than [`Limits::max_visits`]
    /// nodes of this message: it does not pass, and the caller counts it
    /// (`<component>_filter_over_budget_total`).
    OverBudget,
}

impl Outcome {
    /// Whether the message passes (only [`Outcome::Match`] does).
    pub fn is_match(self) -> bool {
        self == Outcome::Match
    }
}

/// The evaluation stopped: the budget of visits is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exceeded;

/// The visits one evaluation may still make. Shared by reference through
/// the walk's callbacks, hence a `Cell`.
#[derive(Debug)]
pub(super) struct Budget {
    left: Cell<usize>,
}

impl Budget {
    pub(super) fn new(max_visits: usize) -> Self {
        Budget {
            left: Cell::new(max_visits),
        }
    }

    /// The visits left.
    pub(super) fn left(&self) -> usize {
        self.left.get()
    }

    /// Spends `n` visits; `Err` once more than the budget was asked for.
    #[inline]
    pub(super) fn charge(&self, n: usize) -> Result<(), Exceeded> {
        match self.left.get().checked_sub(n) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(Exceeded)
            }
        }
    }
}
