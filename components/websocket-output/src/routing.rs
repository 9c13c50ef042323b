//! What a connection lets through: its routing (the values its URL path
//! bound it to, subscriptions and announced `message_types`) and its rate
//! limit (the lower of `backpressure` and `announce`'s `max_rate`).

use fednode_kit::filter::{Filter, Outcome};
use fednode_kit::json::{scan, Members, Shape};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Map, Value};
use std::cell::OnceCell;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::item::Item;

/// Which data a connection wants: the values its URL path bound it to
/// (data must hold every one), its subscriptions (alternatives: any one
/// matching is enough; none means everything) and its announced
/// `message_types` (data must also pass this).
#[derive(Default)]
pub(crate) struct Routing {
    pub bound: Option<Arc<Binding>>,
    pub subscriptions: Vec<(String, Filter)>,
    pub message_types: Option<HashSet<String>>,
}

impl Routing {
    /// Whether everything goes to this connection (nothing needs to look
    /// inside the payload).
    pub fn is_open(&self) -> bool {
        self.bound.is_none() && self.subscriptions.is_empty() && self.message_types.is_none()
    }

    /// Whether `item` goes to this connection; `keys` holds the members the
    /// output's path binds, read from `item` at most once for every
    /// connection. `OverBudget` when no subscription matched and at least
    /// one ran out of its evaluation budget (it then does not match; the
    /// caller counts it).
    pub fn route(&self, item: &Item, keys: &Keys<'_>) -> Outcome {
        if self.is_open() {
            return Outcome::Match;
        }
        if let Some(bound) = &self.bound {
            if !bound.admits(keys) {
                return Outcome::NoMatch;
            }
            if self.subscriptions.is_empty() && self.message_types.is_none() {
                // Bound only: no tree is built.
                return Outcome::Match;
            }
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

/// The values a connection's URL path bound it to (`/subscribe/{user_id}`
/// requested as `/subscribe/jamie`): one per placeholder of the output's
/// path, in the path's order. Only data whose top-level members hold them
/// goes to the connection, and data it sends gets them.
pub(crate) struct Binding {
    pairs: Vec<(Arc<str>, String)>,
}

impl Binding {
    /// `names` are the path's placeholders, `values` what the request's
    /// path held for them (the same length).
    pub fn new(names: &[Arc<str>], values: Vec<String>) -> Self {
        Binding {
            pairs: names.iter().cloned().zip(values).collect(),
        }
    }

    /// Each placeholder's name and bound value.
    pub fn pairs(&self) -> &[(Arc<str>, String)] {
        &self.pairs
    }

    /// Whether the message whose members `keys` holds carries every bound
    /// value: a string member compares by its text, any other value by its
    /// JSON text (`7` binds as `"7"`).
    fn admits(&self, keys: &Keys<'_>) -> bool {
        let found = keys.get();
        found.len() == self.pairs.len()
            && found
                .iter()
                .zip(&self.pairs)
                .all(|(f, (_, v))| f.as_deref() == Some(v.as_str()))
    }

    /// `{"user_id": "jamie"}`, for `status` and `GET /components`.
    pub fn describe(&self) -> Value {
        Value::Object(
            self.pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                .collect::<Map<String, Value>>(),
        )
    }
}

/// The top-level members of one message that the output's path binds
/// (none without placeholders), found by the kit's scanner (no tree) the
/// first time a bound connection asks, and then kept for the others.
pub(crate) struct Keys<'a> {
    names: &'a [Arc<str>],
    payload: &'a [u8],
    found: OnceCell<Vec<Option<String>>>,
}

impl<'a> Keys<'a> {
    pub fn new(names: &'a [Arc<str>], item: &'a Item) -> Self {
        Keys {
            names,
            payload: &item.payload,
            found: OnceCell::new(),
        }
    }

    /// For each name, the member's text (a string's decoded text, else its
    /// JSON text), `None` when the payload is not an object that has it.
    fn get(&self) -> &[Option<String>] {
        self.found.get_or_init(|| {
            let text = std::str::from_utf8(self.payload).ok();
            self.names
                .iter()
                .map(|name| text.and_then(|t| member_text(t, name)))
                .collect()
        })
    }
}

/// The text of the top-level member `name` of the JSON object `text`.
fn member_text(text: &str, name: &str) -> Option<String> {
    let mut members = Members::<1>::new();
    match scan(text, &[name], &mut members) {
        Ok(Shape::Object) => {}
        _ => return None,
    }
    let span = members.values[0]?;
    if text.as_bytes()[span.start] == b'"' {
        span.string_text(text).map(std::borrow::Cow::into_owned)
    } else {
        Some(span.raw(text).to_string())
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
