//! What a connection lets through: its routing (subscriptions and
//! announced `message_types`) and its rate limit (the lower of
//! `backpressure` and `announce`'s `max_rate`).

use fednode_kit::filter::{Filter, Outcome};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::item::Item;

/// Which data a connection wants: its subscriptions (alternatives: any one
/// matching is enough; none means everything) and its announced
/// `message_types` (data must also pass this).
#[derive(Default)]
pub(crate) struct Routing {
    pub subscriptions: Vec<(String, Filter)>,
    pub message_types: Option<HashSet<String>>,
}

impl Routing {
    /// Whether anything needs the parsed payload.
    pub fn is_open(&self) -> bool {
        self.subscriptions.is_empty() && self.message_types.is_none()
    }

    /// Whether `item` goes to this connection. `OverBudget` when no
    /// subscription matched and at least one ran out of its evaluation
    /// budget (it then does not match; the caller counts it).
    pub fn route(&self, item: &Item) -> Outcome {
        if self.is_open() {
            return Outcome::Match;
        }
        let Some(v) = item.value() else {
            return Outcome::NoMatch;
        };
        if let Some(types) = &self.message_types {
            match v.get("type").and_then(Value::as_str) {
                Some(t) if types.contains(t) => {}
                _ => return Outcome::NoMatch,
            }
        }
        if self.subscriptions.is_empty() {
            return Outcome::Match;
        }
        let mut outcome = Outcome::NoMatch;
        for (_, f) in &self.subscriptions {
            match f.evaluate(v) {
                Outcome::Match => return Outcome::Match,
                Outcome::OverBudget => outcome = Outcome::OverBudget,
                Outcome::NoMatch => {}
            }
        }
        outcome
    }
}

/// The two sources of a connection's rate limit; the lower one applies.
#[derive(Default, Clone, Copy)]
pub(crate) struct Limits {
    /// From `backpressure`.
    pub rate_limit: Option<f64>,
    /// From `announce`'s `max_rate`.
    pub max_rate: Option<f64>,
}

impl Limits {
    pub fn effective(self) -> Option<f64> {
        match (self.rate_limit, self.max_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A limiter sending at most `rate` msg/s, evenly spaced (burst 1, so a
/// backlog drains at exactly the rate).
pub(crate) fn build_limiter(rate: f64) -> Option<Arc<DefaultDirectRateLimiter>> {
    if rate.is_nan() || rate <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64((1.0 / rate).min(1e9)).max(Duration::from_nanos(1));
    Quota::with_period(period).map(|q| Arc::new(RateLimiter::direct(q)))
}
