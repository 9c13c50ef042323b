//! Exponential backoff with jitter, shared by every reconnect and retry
//! loop (WebSocket clients, storage retries), so they all behave alike.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `reconnect` block of a client-mode WebSocket component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// Reconnect at all after a drop or a failed attempt.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Failed attempts in a row before giving up (FAILED); 0 (the default)
    /// or `null` retries until the component is stopped, so an edge rides
    /// out a hub outage of any length.
    #[serde(default, deserialize_with = "zero_when_null")]
    pub max_retries: u32,
    /// First delay.
    #[schemars(with = "String")]
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Largest delay.
    #[schemars(with = "String")]
    #[serde(default = "default_max", with = "humantime_serde")]
    pub max_interval: Duration,
    /// Growth factor per attempt.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
}

fn default_true() -> bool {
    true
}
/// `null` reads as 0 (retry forever), like an absent value.
fn zero_when_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Option::<u32>::deserialize(d).map(Option::unwrap_or_default)
}
fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_max() -> Duration {
    Duration::from_secs(60)
}
fn default_multiplier() -> f64 {
    2.0
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            enabled: true,
            max_retries: 0,
            initial_interval: default_initial(),
            max_interval: default_max(),
            multiplier: default_multiplier(),
        }
    }
}

impl ReconnectConfig {
    /// Problems with the values (`base` is the block's JSON path).
    pub fn validate(&self, base: &str) -> Vec<crate::ConfigError> {
        let mut errors = Vec::new();
        if self.multiplier < 1.0 || !self.multiplier.is_finite() {
            errors.push(crate::ConfigError::new(
                format!("{base}.multiplier"),
                format!("expected a number >= 1, got {}", self.multiplier),
            ));
        }
        if self.initial_interval > self.max_interval {
            errors.push(crate::ConfigError::new(
                format!("{base}.initial_interval"),
                "must not exceed max_interval",
            ));
        }
        errors
    }

    /// A backoff sequence following this config.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_interval, self.max_interval, self.multiplier)
    }
}

/// Delays `initial · multiplier^n`, capped at `max`, each with ±20 % jitter
/// so that many clients dropped at once do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Backoff {
            initial,
            max,
            multiplier: multiplier.max(1.0),
            attempt: 0,
        }
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Start over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay, without jitter (for tests and logs).
    pub fn base_delay(&self) -> Duration {
        let factor = self.multiplier.powi(self.attempt.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// The next delay with jitter; advances the attempt count.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base_delay();
        self.attempt = self.attempt.saturating_add(1);
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        Duration::from_secs_f64((base.as_secs_f64() * jitter).min(self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(80) && d[0] <= Duration::from_millis(120));
        assert!(d[2] >= Duration::from_millis(320) && d[2] <= Duration::from_millis(480));
        assert!(d[5] <= Duration::from_secs(1));
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.base_delay(), Duration::from_millis(100));
    }
}
