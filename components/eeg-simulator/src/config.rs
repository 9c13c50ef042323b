//! The `eeg_simulator` input's config.

use fednode_kit::config::{parse_checked, ConfigError, PortRules, PortsConfig};
use serde::Deserialize;

/// `components.<name>.config` of an `eeg_simulator` input.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Samples per second per user.
    #[serde(default = "default_rate")]
    pub sampling_rate: f64,
    /// One value per channel per sample, in this order.
    #[serde(default = "default_channels")]
    pub channel_names: Vec<String>,
    /// One independent stream per user id (`user_id` in every message).
    #[serde(default = "default_users")]
    pub user_ids: Vec<String>,
    /// The sines every channel is made of (each channel shifts their phase
    /// and scales them slightly so channels differ).
    #[serde(default = "default_components")]
    pub components: Vec<SineComponent>,
    /// Standard deviation of the Gaussian noise added to every value (µV).
    #[serde(default = "default_noise")]
    pub noise_amplitude: f64,
    /// Seed of the noise, so runs are reproducible.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Samples per message: 1 sends `channels: [...]`, more sends
    /// `samples: [[...], ...]`.
    #[serde(default = "default_batch")]
    pub samples_per_message: usize,
    /// `realtime` paces samples at `sampling_rate`; `as_fast_as_possible`
    /// is for benchmarks.
    #[serde(default)]
    pub pacing: Pacing,
    /// Stop after this many samples per user (none = run until stopped).
    #[serde(default)]
    pub max_samples: Option<u64>,
    /// `outputs: [{name: "out", subject}]`; e.g. `eeg.{user_id}.raw`.
    #[serde(default)]
    pub ports: PortsConfig,
}

/// One sine: `amplitude · sin(2π · frequency · t + phase)`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SineComponent {
    /// Hz.
    pub frequency: f64,
    /// Peak amplitude (µV).
    pub amplitude: f64,
}

/// How fast samples are produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    #[default]
    Realtime,
    AsFastAsPossible,
}

fn default_rate() -> f64 {
    256.0
}
fn default_channels() -> Vec<String> {
    ["Fz", "F3", "F4", "Cz", "C3", "C4", "Pz", "P3"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_users() -> Vec<String> {
    vec!["demo".into()]
}
fn default_components() -> Vec<SineComponent> {
    vec![
        SineComponent {
            frequency: 10.0,
            amplitude: 20.0,
        },
        SineComponent {
            frequency: 6.0,
            amplitude: 10.0,
        },
        SineComponent {
            frequency: 20.0,
            amplitude: 5.0,
        },
    ]
}
fn default_noise() -> f64 {
    3.0
}
fn default_seed() -> u64 {
    42
}
fn default_batch() -> usize {
    1
}

impl Config {
    /// Parse and check the block at `path`.
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, Vec<ConfigError>> {
        parse_checked(value, path, |cfg: Config| Self::resolve(cfg, path))
    }

    /// Check the parsed block (at JSON path `path`).
    fn resolve(cfg: Config, path: &str) -> Result<Self, Vec<ConfigError>> {
        let mut errors = cfg
            .ports
            .validate(&format!("{path}.ports"), &PortRules::SOURCE);
        if !(cfg.sampling_rate > 0.0 && cfg.sampling_rate <= 100_000.0) {
            errors.push(ConfigError::new(
                format!("{path}.sampling_rate"),
                format!(
                    "expected a rate in (0, 100000] Hz, got {}",
                    cfg.sampling_rate
                ),
            ));
        }
        if cfg.channel_names.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.channel_names"),
                "needs at least one channel",
            ));
        }
        if cfg.user_ids.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.user_ids"),
                "needs at least one user id",
            ));
        }
        if cfg.samples_per_message == 0 {
            errors.push(ConfigError::new(
                format!("{path}.samples_per_message"),
                "must be at least 1",
            ));
        }
        if !(cfg.noise_amplitude >= 0.0 && cfg.noise_amplitude.is_finite()) {
            errors.push(ConfigError::new(
                format!("{path}.noise_amplitude"),
                "must be a finite number >= 0",
            ));
        }
        for (i, c) in cfg.components.iter().enumerate() {
            if !(c.frequency >= 0.0 && c.frequency < cfg.sampling_rate / 2.0) {
                errors.push(ConfigError::new(
                    format!("{path}.components[{i}].frequency"),
                    format!(
                        "expected a frequency in [0, {}) Hz (below Nyquist), got {}",
                        cfg.sampling_rate / 2.0,
                        c.frequency
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}
