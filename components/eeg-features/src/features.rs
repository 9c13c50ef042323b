//! Feature extraction for one window: band powers per channel, channel
//! averages, ratio metrics, workload and confidence (the numeric convention of
//! the crate README).
//!
//! [`FeatureExtractor`] is built once per component configuration and
//! shared by all streams (it holds no per-stream state, only the FFT plan
//! and scratch). [`FeatureExtractor::compute_into`] fills a pre-shaped
//! [`Features`] in place, so a window costs no allocation; [`Features`]
//! serializes to exactly the feature part of the output message:
//!
//! ```json
//! {"band_powers":{band:…},
//!  "average":{"absolute":{band:…},"relative":{band:…}},
//!  "channels":{name:{"absolute":{band:…},"relative":{band:…},"total_power":…}},
//!  "metrics":{"frontal_theta","theta_beta_ratio","theta_alpha_ratio",
//!             "engagement_index","frontal_alpha_asymmetry"},
//!  "workload":…, "confidence":…}
//! ```
//!
//! Band keys follow the configured band order, channel keys the configured
//! channel order ([`OrderedMap`]).
//!
//! Choices the convention leaves open, made here:
//! * `total_power` integrates `[min(lo), max(hi)]` over the configured bands
//!   (`[1, 45]` Hz by default, where it equals the sum of the five bands).
//! * A channel whose `total_power` is 0 (a flat channel) gets relative
//!   powers of 0 rather than 0/0, so averages and metrics stay defined; its
//!   unusability shows in `confidence`.
//! * Metrics need bands named `theta`, `alpha` and `beta`; a metric whose
//!   band is missing, whose channels are missing, whose denominator is 0 or
//!   whose value is not finite is `null`.
//! * `frontal_alpha_asymmetry` uses the channels named exactly `F3`/`F4`.
//! * `workload` falls back to the channel average for *both* the frontal
//!   theta and the parietal alpha term when none of the configured channels
//!   is present (so a headset without those electrodes still gets a value);
//!   it is clamped to `[0, 1]`.
//! * Non-finite numbers (only possible with overflowing input) serialize as
//!   JSON `null` (serde_json's behaviour for NaN/∞).

use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::dsp::{self, Band, BandBins, Welch};
use crate::stream::WindowSpec;

/// Default frontal channels (`frontal_theta`, workload numerator).
pub const DEFAULT_FRONTAL: [&str; 3] = ["Fz", "F3", "F4"];
/// Default parietal channels (workload alpha term).
pub const DEFAULT_PARIETAL: [&str; 3] = ["Pz", "P3", "P4"];
/// Channels of `frontal_alpha_asymmetry = ln(α F4) − ln(α F3)`.
pub const ASYMMETRY_LEFT: &str = "F3";
pub const ASYMMETRY_RIGHT: &str = "F4";

fn default_window_seconds() -> f64 {
    2.0
}
fn default_overlap() -> f64 {
    0.5
}
fn default_frontal() -> Vec<String> {
    DEFAULT_FRONTAL.iter().map(|s| s.to_string()).collect()
}
fn default_parietal() -> Vec<String> {
    DEFAULT_PARIETAL.iter().map(|s| s.to_string()).collect()
}

/// The numeric part of the `eeg_features` configuration (field names as in
/// defaults applied when deserializing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    pub sampling_rate: f64,
    pub channel_names: Vec<String>,
    #[serde(default = "default_window_seconds")]
    pub window_seconds: f64,
    #[serde(default = "default_overlap")]
    pub overlap: f64,
    #[serde(default = "dsp::default_bands")]
    pub bands: Vec<Band>,
    #[serde(default = "default_frontal")]
    pub frontal_channels: Vec<String>,
    #[serde(default = "default_parietal")]
    pub parietal_channels: Vec<String>,
    /// Peak-to-peak limit above which a channel counts as artifacted in
    /// `confidence` (same unit as the samples). `None`: no limit.
    #[serde(default)]
    pub artifact_threshold: Option<f64>,
}

/// A configuration error: `path` is relative to the component config
/// (`sampling_rate`, `bands[2]`, `channel_names[1]` …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ParamError {}

fn perr(path: impl Into<String>, message: impl Into<String>) -> ParamError {
    ParamError {
        path: path.into(),
        message: message.into(),
    }
}

impl FeatureConfig {
    /// Defaults for everything but the sampling rate and channels.
    pub fn new(sampling_rate: f64, channel_names: Vec<String>) -> Self {
        FeatureConfig {
            sampling_rate,
            channel_names,
            window_seconds: default_window_seconds(),
            overlap: default_overlap(),
            bands: dsp::default_bands(),
            frontal_channels: default_frontal(),
            parietal_channels: default_parietal(),
            artifact_threshold: None,
        }
    }

    /// Checks every numeric parameter; the first problem is returned with
    /// the path of its field.
    pub fn validate(&self) -> Result<(), ParamError> {
        let fs = self.sampling_rate;
        dsp::validate_sampling_rate(fs).map_err(|m| perr("sampling_rate", m))?;
        dsp::validate_window(self.window_seconds, fs).map_err(|m| perr("window_seconds", m))?;
        dsp::validate_overlap(self.overlap).map_err(|m| perr("overlap", m))?;
        dsp::validate_bands(&self.bands, fs).map_err(|(i, m)| match i {
            Some(i) => perr(format!("bands[{i}]"), m),
            None => perr("bands", m),
        })?;
        if self.channel_names.is_empty() {
            return Err(perr("channel_names", "at least one channel is required"));
        }
        for (i, name) in self.channel_names.iter().enumerate() {
            if name.is_empty() {
                return Err(perr(
                    format!("channel_names[{i}]"),
                    "channel name must not be empty",
                ));
            }
            if self.channel_names[..i].contains(name) {
                return Err(perr(
                    format!("channel_names[{i}]"),
                    format!("channel name {name} is used twice"),
                ));
            }
        }
        if let Some(t) = self.artifact_threshold {
            if !t.is_finite() || t <= 0.0 {
                return Err(perr(
                    "artifact_threshold",
                    format!("artifact_threshold must be a finite number > 0, got {t}"),
                ));
            }
        }
        Ok(())
    }

    /// Window geometry (validates `sampling_rate`, `window_seconds`,
    /// `overlap`).
    pub fn window_spec(&self) -> Result<WindowSpec, ParamError> {
        self.validate()?;
        WindowSpec::new(self.window_seconds, self.sampling_rate, self.overlap)
            .map_err(|m| perr("window_seconds", m))
    }
}

// ---------------------------------------------------------------------------
// Output types
// ---------------------------------------------------------------------------

/// A small insertion-ordered map with shared keys: serializes as a JSON
/// object whose keys keep the configured order. Keys are an `Arc` so every
/// window's output shares one allocation of the band or channel names.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V> {
    keys: Arc<[String]>,
    values: Vec<V>,
}

impl<V> OrderedMap<V> {
    /// `keys.len()` must equal `values.len()`.
    pub fn new(keys: Arc<[String]>, values: Vec<V>) -> Self {
        assert_eq!(keys.len(), values.len(), "one value per key");
        OrderedMap { keys, values }
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn values(&self) -> &[V] {
        &self.values
    }

    pub fn values_mut(&mut self) -> &mut [V] {
        &mut self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Value for `key` (linear scan: maps hold a handful of entries).
    pub fn get(&self, key: &str) -> Option<&V> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(|i| &self.values[i])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &V)> + '_ {
        self.keys.iter().map(String::as_str).zip(&self.values)
    }
}

impl<V> std::ops::Index<usize> for OrderedMap<V> {
    type Output = V;
    fn index(&self, i: usize) -> &V {
        &self.values[i]
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (k, v) in self.keys.iter().zip(&self.values) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Band name → value, in configured band order.
pub type BandMap = OrderedMap<f64>;

/// Per-channel powers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelFeatures {
    /// Trapezoid integral of the Welch PSD over each band (units²).
    pub absolute: BandMap,
    /// `absolute / total_power` (0 when `total_power` is 0).
    pub relative: BandMap,
    /// Integral over `[min(lo), max(hi)]` of the configured bands.
    pub total_power: f64,
}

/// Plain means over channels of the per-channel values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Average {
    pub absolute: BandMap,
    pub relative: BandMap,
}

/// Ratio metrics from relative powers (the numeric convention, crate README); `None` → `null`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Metrics {
    /// Mean relative θ over the configured frontal channels present.
    pub frontal_theta: Option<f64>,
    /// θ/β of the channel average.
    pub theta_beta_ratio: Option<f64>,
    /// θ/α of the channel average.
    pub theta_alpha_ratio: Option<f64>,
    /// β/(α+θ) of the channel average (Pope et al. 1995).
    pub engagement_index: Option<f64>,
    /// ln(relative α F4) − ln(relative α F3).
    pub frontal_alpha_asymmetry: Option<f64>,
}

/// Everything computed from one window, in output-message order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Features {
    /// `= average.relative`.
    pub band_powers: BandMap,
    pub average: Average,
    pub channels: OrderedMap<ChannelFeatures>,
    pub metrics: Metrics,
    /// θ_frontal / (θ_frontal + α_parietal) in `[0, 1]` (heuristic,
    /// Radüntz 2017).
    pub workload: Option<f64>,
    /// Fraction of channels that are usable: finite, not flat, and
    /// peak-to-peak within `artifact_threshold` when one is set.
    pub confidence: f64,
}

// ---------------------------------------------------------------------------
// Extractor
// ---------------------------------------------------------------------------

/// The window problem: wrong channel count or a channel shorter than one
/// Welch segment. Only a caller bug produces it (streams always deliver the
/// configured shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowShapeError(pub String);

impl std::fmt::Display for WindowShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WindowShapeError {}

/// Computes [`Features`] from windows of one configuration. Holds the Welch
/// plan and scratch; keeps no per-stream state, so one extractor serves all
/// streams of a component (interleaving streams changes nothing).
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    welch: Welch,
    df: f64,
    band_names: Arc<[String]>,
    channel_names: Arc<[String]>,
    band_bins: Vec<BandBins>,
    total_bins: BandBins,
    /// PSD bins up to the highest band edge: the only ones integrated.
    bins_needed: usize,
    theta: Option<usize>,
    alpha: Option<usize>,
    beta: Option<usize>,
    frontal: Vec<usize>,
    parietal: Vec<usize>,
    asym_left: Option<usize>,
    asym_right: Option<usize>,
    artifact_threshold: Option<f64>,
}

impl FeatureExtractor {
    /// Validates `cfg` and precomputes band bins, channel roles and the FFT
    /// plan.
    pub fn new(cfg: &FeatureConfig) -> Result<Self, ParamError> {
        cfg.validate()?;
        let welch = Welch::new(cfg.sampling_rate).map_err(|m| perr("sampling_rate", m))?;
        let df = welch.df();
        let bins = welch.bins();
        let band_bins = cfg
            .bands
            .iter()
            .map(|b| BandBins::new(b.lo, b.hi, df, bins))
            .collect();
        let (lo, hi) = dsp::total_span(&cfg.bands).expect("validated: bands non-empty");
        let band_index = |name: &str| cfg.bands.iter().position(|b| b.name == name);
        let channel_index = |name: &str| cfg.channel_names.iter().position(|c| c == name);
        // A channel listed twice in frontal/parietal counts once.
        let roles = |names: &[String]| {
            let mut idx: Vec<usize> = names.iter().filter_map(|n| channel_index(n)).collect();
            idx.sort_unstable();
            idx.dedup();
            idx
        };
        let total_bins = BandBins::new(lo, hi, df, bins);
        Ok(FeatureExtractor {
            df,
            bins_needed: total_bins.k_hi + 1,
            band_names: cfg.bands.iter().map(|b| b.name.clone()).collect(),
            channel_names: cfg.channel_names.iter().cloned().collect(),
            band_bins,
            total_bins,
            theta: band_index("theta"),
            alpha: band_index("alpha"),
            beta: band_index("beta"),
            frontal: roles(&cfg.frontal_channels),
            parietal: roles(&cfg.parietal_channels),
            asym_left: channel_index(ASYMMETRY_LEFT),
            asym_right: channel_index(ASYMMETRY_RIGHT),
            artifact_threshold: cfg.artifact_threshold,
            welch,
        })
    }

    /// Band names in output order.
    pub fn band_names(&self) -> &[String] {
        &self.band_names
    }

    /// Channel names in output order.
    pub fn channel_names(&self) -> &[String] {
        &self.channel_names
    }

    /// The Welch estimator (segment length, df …).
    pub fn welch(&self) -> &Welch {
        &self.welch
    }

    /// An output value of the right shape, to be filled by
    /// [`FeatureExtractor::compute_into`] (all zeros / `None`).
    pub fn new_output(&self) -> Features {
        let bands = || {
            BandMap::new(
                Arc::clone(&self.band_names),
                vec![0.0; self.band_names.len()],
            )
        };
        let channels = (0..self.channel_names.len())
            .map(|_| ChannelFeatures {
                absolute: bands(),
                relative: bands(),
                total_power: 0.0,
            })
            .collect();
        Features {
            band_powers: bands(),
            average: Average {
                absolute: bands(),
                relative: bands(),
            },
            channels: OrderedMap::new(Arc::clone(&self.channel_names), channels),
            metrics: Metrics::default(),
            workload: None,
            confidence: 0.0,
        }
    }

    /// Computes the features of one window into `out` (re-shaped first if
    /// it was not made by [`FeatureExtractor::new_output`] of this
    /// extractor). `channels` yields one slice per configured channel, in
    /// order, each at least one Welch segment long (normally
    /// `WindowBuffer::iter()`). Allocates nothing when `out` has the right
    /// shape. On error `out` may be partly written.
    pub fn compute_into<'a, I>(
        &mut self,
        channels: I,
        out: &mut Features,
    ) -> Result<(), WindowShapeError>
    where
        I: IntoIterator<Item = &'a [f64]>,
    {
        if !self.is_shaped(out) {
            *out = self.new_output();
        }
        let n_ch = self.channel_names.len();
        let n_bands = self.band_names.len();
        let df = self.df;
        let mut usable = 0usize;
        let mut seen = 0usize;

        for (c, x) in channels.into_iter().enumerate() {
            if c >= n_ch {
                return Err(WindowShapeError(format!(
                    "window has more than the {n_ch} configured channels"
                )));
            }
            seen += 1;
            if self.is_usable(x) {
                usable += 1;
            }
            let Some(psd) = self.welch.psd_prefix(x, self.bins_needed) else {
                return Err(WindowShapeError(format!(
                    "channel {} has {} samples, fewer than one Welch segment ({})",
                    self.channel_names[c],
                    x.len(),
                    self.welch.segment_len()
                )));
            };
            let ch = &mut out.channels.values[c];
            let total = self.total_bins.power(psd, df);
            ch.total_power = total;
            for (b, bins) in self.band_bins.iter().enumerate() {
                let abs = bins.power(psd, df);
                ch.absolute.values[b] = abs;
                ch.relative.values[b] = if total == 0.0 { 0.0 } else { abs / total };
            }
        }
        if seen != n_ch {
            return Err(WindowShapeError(format!(
                "window has {seen} channels, expected {n_ch}"
            )));
        }

        // Plain means over channels.
        let inv = 1.0 / n_ch as f64;
        for b in 0..n_bands {
            let (mut sa, mut sr) = (0.0, 0.0);
            for ch in &out.channels.values {
                sa += ch.absolute.values[b];
                sr += ch.relative.values[b];
            }
            out.average.absolute.values[b] = sa * inv;
            out.average.relative.values[b] = sr * inv;
        }
        out.band_powers
            .values
            .copy_from_slice(&out.average.relative.values);

        self.metrics_into(out);
        out.confidence = usable as f64 / n_ch as f64;
        Ok(())
    }

    /// Allocating convenience wrapper around
    /// [`FeatureExtractor::compute_into`].
    pub fn compute<'a, I>(&mut self, channels: I) -> Result<Features, WindowShapeError>
    where
        I: IntoIterator<Item = &'a [f64]>,
    {
        let mut out = self.new_output();
        self.compute_into(channels, &mut out)?;
        Ok(out)
    }

    /// Whether every map of `out` has this extractor's keys (an `OrderedMap`
    /// always holds one value per key, so this guarantees the lengths that
    /// `compute_into` indexes with).
    fn is_shaped(&self, out: &Features) -> bool {
        let bands = |m: &BandMap| Arc::ptr_eq(&m.keys, &self.band_names);
        Arc::ptr_eq(&out.channels.keys, &self.channel_names)
            && bands(&out.band_powers)
            && bands(&out.average.absolute)
            && bands(&out.average.relative)
            && out
                .channels
                .values
                .iter()
                .all(|c| bands(&c.absolute) && bands(&c.relative))
    }

    /// Finite, not flat (peak-to-peak > 0) and, if configured, peak-to-peak
    /// within the artifact threshold.
    fn is_usable(&self, x: &[f64]) -> bool {
        match dsp::peak_to_peak(x) {
            Some(ptp) => ptp > 0.0 && self.artifact_threshold.is_none_or(|t| ptp <= t),
            None => false,
        }
    }

    fn metrics_into(&self, out: &mut Features) {
        let avg = &out.average.relative.values;
        let chans = &out.channels.values;
        let rel = |c: usize, b: usize| chans[c].relative.values[b];
        let mean_over = |idx: &[usize], b: usize| -> Option<f64> {
            if idx.is_empty() {
                None
            } else {
                Some(idx.iter().map(|&c| rel(c, b)).sum::<f64>() / idx.len() as f64)
            }
        };
        let (theta, alpha, beta) = (self.theta, self.alpha, self.beta);

        let frontal_theta = theta.and_then(|t| mean_over(&self.frontal, t));
        let m = Metrics {
            frontal_theta: frontal_theta.filter(|v| v.is_finite()),
            theta_beta_ratio: theta.zip(beta).and_then(|(t, b)| ratio(avg[t], avg[b])),
            theta_alpha_ratio: theta.zip(alpha).and_then(|(t, a)| ratio(avg[t], avg[a])),
            engagement_index: theta
                .zip(alpha)
                .zip(beta)
                .and_then(|((t, a), b)| ratio(avg[b], avg[a] + avg[t])),
            frontal_alpha_asymmetry: alpha
                .zip(self.asym_left.zip(self.asym_right))
                .and_then(|(a, (l, r))| finite(rel(r, a).ln() - rel(l, a).ln())),
        };
        // Workload: frontal θ vs parietal α, each falling back to the
        // channel average when none of its channels is present.
        out.workload = theta.zip(alpha).and_then(|(t, a)| {
            let th = frontal_theta.unwrap_or(avg[t]);
            let al = mean_over(&self.parietal, a).unwrap_or(avg[a]);
            ratio(th, th + al).map(|w| w.clamp(0.0, 1.0))
        });
        out.metrics = m;
    }
}

/// `num / den`, or `None` when `den` is 0 or the result is not finite.
fn ratio(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 {
        return None;
    }
    finite(num / den)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
