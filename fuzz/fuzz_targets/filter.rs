//! The filter engine (`fednode_kit::filter`) on an arbitrary spec and an
//! arbitrary message.
//!
//! Input: `<spec JSON> 0x00 <message JSON>` (a NUL byte cannot occur in
//! JSON text); without a NUL byte the spec is evaluated against itself.
//!
//! Asserts:
//! - `FilterSpec::from_value` and `Filter::compile` never panic, and a
//!   refusal always carries at least one error;
//! - the canonical form of a spec (`{"filters": […], "match": …}`) reads
//!   back as the same criteria and match mode;
//! - evaluating never panics and returns within the evaluation budget:
//!   the same spec compiled with a budget of 64 visits gives the same
//!   outcome whenever that small budget suffices (so a small budget can
//!   only turn an answer into `OverBudget`), one evaluation with the
//!   default budget takes less than two seconds, and evaluating twice gives
//!   the same answer;
//! - `matches`, `evaluate_bytes` and `matches_bytes` agree with `evaluate`.
#![no_main]

use fednode_kit::filter::{Filter, FilterSpec, Limits, Outcome};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Far above what a budget of 10,000 visits costs (microseconds to a few
/// milliseconds), far below libFuzzer's timeout.
const SLOW: Duration = Duration::from_secs(2);

fuzz_target!(|data: &[u8]| {
    let (spec_bytes, message_bytes) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let Ok(spec_value) = serde_json::from_slice::<Value>(spec_bytes) else {
        return;
    };
    let spec = match FilterSpec::from_value(&spec_value) {
        Ok(spec) => spec,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            return;
        }
    };
    let canonical = serde_json::to_value(&spec).expect("a spec serialises");
    let again = FilterSpec::from_value(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical} refused: {e:?}"));
    assert_eq!(again.criteria.as_slice(), spec.criteria.as_slice());
    assert_eq!(again.match_mode, spec.match_mode);

    let filter = match Filter::compile(&spec) {
        Ok(filter) => filter,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            return;
        }
    };
    let small = Filter::compile_with_limits(
        &spec,
        &Limits {
            max_visits: 64,
            ..Limits::default()
        },
    )
    .expect("compiles with a smaller budget as it did with the default");

    let message = serde_json::from_slice::<Value>(message_bytes);
    let Ok(message) = message else {
        assert_eq!(filter.evaluate_bytes(message_bytes), Outcome::NoMatch);
        assert!(!filter.matches_bytes(message_bytes));
        return;
    };

    let started = Instant::now();
    let outcome = filter.evaluate(&message);
    let took = started.elapsed();
    assert!(took < SLOW, "one evaluation took {took:?}");

    assert_eq!(filter.evaluate(&message), outcome, "evaluated twice");
    assert_eq!(filter.matches(&message), outcome.is_match());
    assert_eq!(filter.evaluate_bytes(message_bytes), outcome);
    assert_eq!(filter.matches_bytes(message_bytes), outcome.is_match());

    let small_outcome = small.evaluate(&message);
    if small_outcome != Outcome::OverBudget {
        assert_eq!(
            small_outcome, outcome,
            "a budget of 64 visits changed the answer"
        );
    }
});
