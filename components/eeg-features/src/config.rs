//! The `eeg_features` processor's config: the numeric parameters of
//! the numeric convention (crate README) plus streams, queue and ports. [`Config::parse`]
//! reports every problem at once, each with its JSON path
//! (`components.feat.config.bands[4].hi: …`).

use fednode_kit::config::{join, parse_checked, ConfigError, PortRules, PortsConfig};
use serde::Deserialize;
use std::time::Duration;

use crate::dsp::{self, Band};
use crate::features::{FeatureConfig, DEFAULT_FRONTAL, DEFAULT_PARIETAL};
use crate::key::KeyPath;

/// Largest window a stream may hold, in values (channels × samples): each
/// stream keeps one window in memory, and `max_streams` of them may exist.
pub const MAX_WINDOW_VALUES: usize = 1 << 22;

/// `components.<name>.config` of an `eeg_features` processor.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Samples per second of every stream (Hz). Sets the Welch segment
    /// (`round(sampling_rate)` samples, 1 Hz bins at integer rates) and the
    /// Nyquist limit for `bands`. Required: a wrong rate silently shifts
    /// every band.
    pub sampling_rate: f64,
    /// The channels of a sample, in the order a `channels: [...]` list
    /// holds them; a `channels: {name: value}` map is matched by these
    /// names. Output maps keep this order.
    pub channel_names: Vec<String>,
    /// Window length in seconds (`window_samples = round(window_seconds ·
    /// sampling_rate)`); at least one Welch segment (about 1 s).
    #[serde(default = "default_window_seconds")]
    pub window_seconds: f64,
    /// Fraction of a window shared with the next one, in `[0, 1)`:
    /// `hop = round(window_samples · (1 − overlap))`.
    #[serde(default = "default_overlap")]
    pub overlap: f64,
    /// Frequency bands `[{name, lo, hi}]` in Hz, closed at both ends, in
    /// output order; `total_power` spans the lowest `lo` to the highest
    /// `hi`.
    #[serde(default = "default_bands")]
    pub bands: Vec<Band>,
    /// Channels whose relative theta makes `frontal_theta` and the
    /// workload numerator (those that are present in `channel_names`).
    #[serde(default = "default_frontal_channels")]
    pub frontal_channels: Vec<String>,
    /// Channels whose relative alpha makes the workload denominator.
    #[serde(default = "default_parietal_channels")]
    pub parietal_channels: Vec<String>,
    /// Peak-to-peak amplitude (sample units) above which a channel counts
    /// as an artifact in `confidence`; none: no amplitude limit.
    #[serde(default)]
    pub artifact_threshold: Option<f64>,
    /// The value that names a stream: each distinct value is an independent
    /// stream, and the output carries it under the path's last name. A
    /// message without it joins the default stream (key `null`).
    #[serde(default = "default_key_path")]
    pub key_path: String,
    /// A stream that receives no sample for this long is freed (its partial
    /// window is dropped; a later sample starts it afresh at index 0).
    #[schemars(with = "String")]
    #[serde(default = "default_stream_idle_timeout", with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Most streams alive at once; a sample that opens another evicts the
    /// least recently used stream (`eeg_features_streams_evicted_total`),
    /// so a flood of short-lived keys cannot lock real streams out. Bounds
    /// memory: each stream holds one window, and the table is also bounded
    /// in bytes (`max_streams × (window bytes + 512 B + overhead)`).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Messages held per input subscription before the bus drops (and
    /// counts) new ones: room for bursts while windows are computed.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// `inputs`: one or more subjects of raw messages (any port names, `in`
    /// by convention; `*` and `>` allowed). `outputs`: exactly `out`, whose
    /// subject may be a template filled from the feature message, e.g.
    /// `user.{user_id}.features`.
    #[serde(default)]
    pub ports: PortsConfig,
}

fn default_window_seconds() -> f64 {
    2.0
}
fn default_overlap() -> f64 {
    0.5
}
fn default_bands() -> Vec<Band> {
    dsp::default_bands()
}
fn default_frontal_channels() -> Vec<String> {
    DEFAULT_FRONTAL.iter().map(|s| s.to_string()).collect()
}
fn default_parietal_channels() -> Vec<String> {
    DEFAULT_PARIETAL.iter().map(|s| s.to_string()).collect()
}
fn default_key_path() -> String {
    "$.user_id".to_string()
}
fn default_stream_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_streams() -> usize {
    10_000
}
fn default_queue_size() -> usize {
    fednode_kit::bus::DEFAULT_CAPACITY
}

impl Config {
    /// Parse and check the block at `path`; every problem is reported.
    pub fn parse(value: &serde_json::Value, path: &str) -> Result<Self, Vec<ConfigError>> {
        parse_checked(value, path, |cfg: Config| Self::resolve(cfg, path))
    }

    /// Check the parsed block (at JSON path `path`).
    fn resolve(cfg: Config, path: &str) -> Result<Self, Vec<ConfigError>> {
        let errors = cfg.check(path);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The numeric part, as the feature core takes it.
    pub fn feature_config(&self) -> FeatureConfig {
        FeatureConfig {
            sampling_rate: self.sampling_rate,
            channel_names: self.channel_names.clone(),
            window_seconds: self.window_seconds,
            overlap: self.overlap,
            bands: self.bands.clone(),
            frontal_channels: self.frontal_channels.clone(),
            parietal_channels: self.parietal_channels.clone(),
            artifact_threshold: self.artifact_threshold,
        }
    }

    /// The parsed `key_path` (valid once `parse` succeeded).
    pub fn key(&self) -> KeyPath {
        KeyPath::parse(&self.key_path).expect("validated by parse")
    }

    fn check(&self, path: &str) -> Vec<ConfigError> {
        let at = |field: &str| join(path, field);
        let mut errors = Vec::new();
        let ports_path = at("ports");
        errors.extend(self.ports.validate(&ports_path, &PortRules::PROCESSOR));
        if self.ports.inputs.is_empty() {
            errors.push(ConfigError::new(
                join(&ports_path, "inputs"),
                "at least one input port is required (conventionally named \"in\")",
            ));
        }

        let fs = self.sampling_rate;
        let fs_ok = match dsp::validate_sampling_rate(fs) {
            Ok(()) => true,
            Err(m) => {
                errors.push(ConfigError::new(at("sampling_rate"), m));
                false
            }
        };
        if fs_ok {
            match dsp::validate_window(self.window_seconds, fs) {
                Ok(()) => {
                    let values = dsp::window_samples(self.window_seconds, fs)
                        .saturating_mul(self.channel_names.len().max(1));
                    if values > MAX_WINDOW_VALUES {
                        errors.push(ConfigError::new(
                            at("window_seconds"),
                            format!(
                                "a window of {} s at {fs} Hz over {} channels holds {values} values, \
                                 more than the {MAX_WINDOW_VALUES} a stream may keep",
                                self.window_seconds,
                                self.channel_names.len()
                            ),
                        ));
                    }
                }
                Err(m) => errors.push(ConfigError::new(at("window_seconds"), m)),
            }
        } else if !self.window_seconds.is_finite() || self.window_seconds <= 0.0 {
            errors.push(ConfigError::new(
                at("window_seconds"),
                format!(
                    "window_seconds must be a finite number > 0, got {}",
                    self.window_seconds
                ),
            ));
        }
        if let Err(m) = dsp::validate_overlap(self.overlap) {
            errors.push(ConfigError::new(at("overlap"), m));
        }

        if self.bands.is_empty() {
            errors.push(ConfigError::new(
                at("bands"),
                "at least one band is required",
            ));
        }
        for (i, b) in self.bands.iter().enumerate() {
            let band_at = |field: &str| at(&format!("bands[{i}].{field}"));
            // Without a valid rate the Nyquist check is meaningless: check
            // the rest against an unbounded rate.
            let check_fs = if fs_ok { fs } else { f64::INFINITY };
            if let Err((field, m)) = dsp::check_band(b, check_fs) {
                errors.push(ConfigError::new(band_at(field.as_str()), m));
            } else if self.bands[..i].iter().any(|o| o.name == b.name) {
                errors.push(ConfigError::new(
                    band_at("name"),
                    format!("band name {} is used twice", b.name),
                ));
            }
        }

        if self.channel_names.is_empty() {
            errors.push(ConfigError::new(
                at("channel_names"),
                "at least one channel is required",
            ));
        }
        for (i, name) in self.channel_names.iter().enumerate() {
            if name.is_empty() {
                errors.push(ConfigError::new(
                    at(&format!("channel_names[{i}]")),
                    "channel name must not be empty",
                ));
            } else if self.channel_names[..i].contains(name) {
                errors.push(ConfigError::new(
                    at(&format!("channel_names[{i}]")),
                    format!("channel name {name} is used twice"),
                ));
            }
        }
        if let Some(t) = self.artifact_threshold {
            if !t.is_finite() || t <= 0.0 {
                errors.push(ConfigError::new(
                    at("artifact_threshold"),
                    format!("artifact_threshold must be a finite number > 0, got {t}"),
                ));
            }
        }

        if let Err(m) = KeyPath::parse(&self.key_path) {
            errors.push(ConfigError::new(at("key_path"), m));
        }
        if self.stream_idle_timeout.is_zero() {
            errors.push(ConfigError::new(
                at("stream_idle_timeout"),
                "expected a duration > 0, got 0s",
            ));
        }
        if self.max_streams == 0 {
            errors.push(ConfigError::new(
                at("max_streams"),
                "expected at least 1, got 0",
            ));
        }
        if self.queue_size == 0 {
            errors.push(ConfigError::new(
                at("queue_size"),
                "expected at least 1, got 0",
            ));
        }

        // The core's own validation: it must agree with the checks above;
        // if it finds something they missed, report it rather than start.
        if errors.is_empty() {
            if let Err(e) = self.feature_config().validate() {
                errors.push(ConfigError::new(at(&e.path), e.message));
            }
        }
        errors
    }
}
