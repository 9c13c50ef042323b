//! Welch power spectral density and band-power integration, exactly as
//! the numeric convention (crate README) specifies (the convention is authoritative; this
//! module is its executable form).
//!
//! * [`Welch`] computes the one-sided PSD of one channel's window:
//!   `N = nperseg = nfft = round(fs)`, `noverlap = floor(N/2)`, segments at
//!   `0, step, 2·step …` while `start + N <= len` (no padding), per-segment
//!   mean removal, periodic Hann window, density scaling `1/(fs·Σw²)`,
//!   doubling of every bin except DC and (for even `N`) Nyquist, mean over
//!   segments. This equals `scipy.signal.welch(x, fs, window='hann',
//!   nperseg=N, noverlap=N//2, nfft=N, detrend='constant',
//!   return_onesided=True, scaling='density', average='mean')`.
//! * [`BandBins`] integrates that PSD over a **closed** band `[lo, hi]` with
//!   the trapezoid rule on bins `round(lo/df) ..= round(hi/df)`, i.e.
//!   `numpy.trapezoid(P[k_lo:k_hi+1], f[k_lo:k_hi+1])`.
//! * [`Band`], [`default_bands`] and the `validate_*` helpers describe and
//!   check the configuration; the helpers return plain messages so the
//!   caller can attach the JSON path of the offending field.
//!
//! Everything is `f64`: some bands sit ~1e-6 below the total power, where
//! `f32` would miss the 1e-3 agreement with scipy.
//!
//! Rounding: every `round(·)` in the convention is [`f64::round`] (half away
//! from zero). `scripts/eeg_reference.py` uses `floor(x + 0.5)` to match
//! (Python's `round` rounds half to even).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

/// A named frequency band `[lo, hi]` in Hz (closed at both ends); written
/// `{"name": "alpha", "lo": 8, "hi": 13}` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// The key of this band in every output map (`band_powers`, …).
    pub name: String,
    /// Lower edge in Hz (included).
    pub lo: f64,
    /// Upper edge in Hz (included), at most the Nyquist frequency.
    pub hi: f64,
}

impl Band {
    pub fn new(name: impl Into<String>, lo: f64, hi: f64) -> Self {
        Band {
            name: name.into(),
            lo,
            hi,
        }
    }
}

/// The default bands, in output order: delta `[1,4]`,
/// theta `[4,8]`, alpha `[8,13]`, beta `[13,30]`, gamma `[30,45]` Hz.
pub fn default_bands() -> Vec<Band> {
    vec![
        Band::new("delta", 1.0, 4.0),
        Band::new("theta", 4.0, 8.0),
        Band::new("alpha", 8.0, 13.0),
        Band::new("beta", 13.0, 30.0),
        Band::new("gamma", 30.0, 45.0),
    ]
}

/// The frequency span over which `total_power` is integrated:
/// `[min(lo), max(hi)]` of the configured bands. For the default bands this
/// is `[1, 45]` Hz, and because the bands are contiguous `total_power` then
/// equals the sum of the band powers (trapezoid integrals over adjacent
/// closed bands share their edge bin and add up exactly). With gaps or
/// overlaps between custom bands the sum and the total differ, which is
/// intended: the total is still "all power in the configured range".
/// Returns `None` for an empty band list.
pub fn total_span(bands: &[Band]) -> Option<(f64, f64)> {
    let lo = bands.iter().map(|b| b.lo).reduce(f64::min)?;
    let hi = bands.iter().map(|b| b.hi).reduce(f64::max)?;
    Some((lo, hi))
}

// ---------------------------------------------------------------------------
// Derived sizes (the numeric convention, crate README)
// ---------------------------------------------------------------------------

/// `nperseg = nfft = round(fs)`, at least 1.
pub fn segment_len(fs: f64) -> usize {
    (fs.round() as usize).max(1)
}

/// `window_samples = round(window_seconds * fs)`.
pub fn window_samples(window_seconds: f64, fs: f64) -> usize {
    (window_seconds * fs).round().max(0.0) as usize
}

/// `hop = round(window_samples * (1 - overlap))`, at least 1 so that the
/// stream always advances.
pub fn hop_samples(window_samples: usize, overlap: f64) -> usize {
    ((window_samples as f64 * (1.0 - overlap)).round() as usize).max(1)
}

/// Number of Welch segments in a window of `len` samples:
/// `floor((len - N) / step) + 1` with `step = N - floor(N/2)`, or 0 when
/// `len < N`.
pub fn segment_count(len: usize, n: usize) -> usize {
    if n == 0 || len < n {
        return 0;
    }
    let step = n - n / 2;
    (len - n) / step + 1
}

// ---------------------------------------------------------------------------
// Validation helpers: plain messages, the caller attaches the JSON path.
// ---------------------------------------------------------------------------

/// `fs` must be finite and > 0 (and give at least a 2-point segment, so
/// there is a non-DC frequency bin).
pub fn validate_sampling_rate(fs: f64) -> Result<(), String> {
    if !fs.is_finite() || fs <= 0.0 {
        return Err(format!(
            "sampling_rate must be a finite number > 0 Hz, got {fs}"
        ));
    }
    if segment_len(fs) < 2 {
        return Err(format!(
            "sampling_rate {fs} Hz is too low: the Welch segment (round(fs) samples) needs at least 2 samples"
        ));
    }
    Ok(())
}

/// `overlap` must lie in `[0, 1)`.
pub fn validate_overlap(overlap: f64) -> Result<(), String> {
    if !(0.0..1.0).contains(&overlap) {
        return Err(format!("overlap must be in [0, 1), got {overlap}"));
    }
    Ok(())
}

/// `window_seconds` must be finite, > 0, and the window must hold at least
/// one Welch segment (`window_samples >= N = round(fs)`, i.e. about 1 s).
/// Call after [`validate_sampling_rate`].
pub fn validate_window(window_seconds: f64, fs: f64) -> Result<(), String> {
    if !window_seconds.is_finite() || window_seconds <= 0.0 {
        return Err(format!(
            "window_seconds must be a finite number > 0, got {window_seconds}"
        ));
    }
    let w = window_samples(window_seconds, fs);
    let n = segment_len(fs);
    if w < n {
        return Err(format!(
            "window_seconds {window_seconds} gives {w} samples at {fs} Hz, shorter than one Welch segment of {n} samples (round(fs)); use at least {:.3} s",
            n as f64 / fs
        ));
    }
    Ok(())
}

/// Which field of a [`Band`] a validation problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandField {
    Name,
    Lo,
    Hi,
}

impl BandField {
    /// The config key (`name`, `lo`, `hi`).
    pub fn as_str(self) -> &'static str {
        match self {
            BandField::Name => "name",
            BandField::Lo => "lo",
            BandField::Hi => "hi",
        }
    }
}

/// A band needs a name, finite edges, `0 <= lo < hi`, and `hi <= fs/2`
/// (Nyquist). Call after [`validate_sampling_rate`].
pub fn validate_band(band: &Band, fs: f64) -> Result<(), String> {
    check_band(band, fs).map_err(|(_, m)| m)
}

/// [`validate_band`], also naming the offending field (so a config error
/// can point at `bands[4].hi`).
pub fn check_band(band: &Band, fs: f64) -> Result<(), (BandField, String)> {
    let name = &band.name;
    if name.is_empty() {
        return Err((BandField::Name, "band name must not be empty".to_string()));
    }
    for (field, v) in [(BandField::Lo, band.lo), (BandField::Hi, band.hi)] {
        if !v.is_finite() {
            return Err((
                field,
                format!(
                    "band {name}: edges must be finite numbers, got [{}, {}]",
                    band.lo, band.hi
                ),
            ));
        }
    }
    if band.lo < 0.0 {
        return Err((
            BandField::Lo,
            format!("band {name}: lower edge {} Hz is negative", band.lo),
        ));
    }
    if band.lo >= band.hi {
        return Err((
            BandField::Lo,
            format!(
                "band {name}: lower edge {} Hz must be below upper edge {} Hz",
                band.lo, band.hi
            ),
        ));
    }
    let nyquist = fs / 2.0;
    if band.hi > nyquist {
        return Err((
            BandField::Hi,
            format!(
                "band {name}: upper edge {} Hz is above the Nyquist frequency {nyquist} Hz (sampling_rate {fs} Hz)",
                band.hi
            ),
        ));
    }
    Ok(())
}

/// Checks a whole band list: non-empty, unique names, each band valid.
/// On error returns `(index of the offending band or None, message)`.
pub fn validate_bands(bands: &[Band], fs: f64) -> Result<(), (Option<usize>, String)> {
    if bands.is_empty() {
        return Err((None, "at least one band is required".to_string()));
    }
    for (i, b) in bands.iter().enumerate() {
        validate_band(b, fs).map_err(|m| (Some(i), m))?;
        if bands[..i].iter().any(|o| o.name == b.name) {
            return Err((Some(i), format!("band name {} is used twice", b.name)));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Welch PSD
// ---------------------------------------------------------------------------

/// Welch PSD estimator for one sampling rate. Holds the FFT plan, the Hann
/// window and every buffer, so [`Welch::psd`] allocates nothing. One
/// instance serves any number of channels and streams (it keeps no state
/// between calls). Cloning shares the (immutable) FFT plan and duplicates
/// only the scratch, e.g. for one instance per worker thread.
#[derive(Clone)]
pub struct Welch {
    fs: f64,
    n: usize,
    step: usize,
    /// Periodic Hann window, length `n`.
    window: Vec<f64>,
    /// Per bin: `1 / (fs · Σw²)` (density scaling), doubled for every bin
    /// that has a negative-frequency twin: all but DC and, for even `N`,
    /// the Nyquist bin (for odd `N` the last bin is not Nyquist).
    bin_scale: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
    /// FFT input (overwritten by realfft, hence rebuilt per segment).
    seg: Vec<f64>,
    spec: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    /// Result: one-sided PSD, `n/2 + 1` bins.
    psd: Vec<f64>,
}

impl std::fmt::Debug for Welch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Welch")
            .field("fs", &self.fs)
            .field("n", &self.n)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Welch {
    /// Plans the FFT for `N = round(fs)`. Errors if `fs` is invalid.
    pub fn new(fs: f64) -> Result<Self, String> {
        validate_sampling_rate(fs)?;
        let mut planner = RealFftPlanner::<f64>::new();
        Ok(Self::with_planner(fs, &mut planner))
    }

    /// Like [`Welch::new`] but reusing a planner (plans are cached per
    /// length inside it). `fs` must already be validated.
    pub fn with_planner(fs: f64, planner: &mut RealFftPlanner<f64>) -> Self {
        let n = segment_len(fs);
        let step = n - n / 2;
        // Periodic Hann (scipy get_window('hann', N)): the N+1-point
        // symmetric window without its last point.
        let window: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let sum_w2: f64 = window.iter().map(|w| w * w).sum();
        let scale = 1.0 / (fs * sum_w2);
        let bins = n / 2 + 1;
        let doubled_end = bins - 1 + n % 2;
        let bin_scale = (0..bins)
            .map(|k| {
                if k > 0 && k < doubled_end {
                    2.0 * scale
                } else {
                    scale
                }
            })
            .collect();
        let fft = planner.plan_fft_forward(n);
        let seg = fft.make_input_vec();
        let spec = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Welch {
            fs,
            n,
            step,
            window,
            bin_scale,
            fft,
            seg,
            spec,
            scratch,
            psd: vec![0.0; bins],
        }
    }

    /// Sampling rate in Hz.
    pub fn fs(&self) -> f64 {
        self.fs
    }

    /// Segment length `N = nperseg = nfft`.
    pub fn segment_len(&self) -> usize {
        self.n
    }

    /// Bin spacing `df = fs / N` (1 Hz at integer `fs`).
    pub fn df(&self) -> f64 {
        self.fs / self.n as f64
    }

    /// Number of PSD bins, `N/2 + 1`.
    pub fn bins(&self) -> usize {
        self.n / 2 + 1
    }

    /// One-sided Welch PSD of `x` (units²/Hz), `N/2 + 1` bins at
    /// `k · df`. Returns `None` when `x` is shorter than one segment.
    /// Non-finite input yields non-finite output (no panic).
    pub fn psd(&mut self, x: &[f64]) -> Option<&[f64]> {
        self.psd_prefix(x, self.bins())
    }

    /// The first `bins` bins (clamped to `N/2 + 1`) of [`Welch::psd`]:
    /// bins above the highest band edge are never integrated, so skipping
    /// their accumulation and scaling saves time (at 256 Hz only 46 of 129
    /// bins reach 45 Hz). The values are identical to the full PSD's.
    pub fn psd_prefix(&mut self, x: &[f64], bins: usize) -> Option<&[f64]> {
        let n = self.n;
        let nseg = segment_count(x.len(), n);
        if nseg == 0 {
            return None;
        }
        let bins = bins.min(self.bins());
        let psd = &mut self.psd[..bins];
        psd.fill(0.0);
        for s in 0..nseg {
            let segment = &x[s * self.step..s * self.step + n];
            // detrend='constant' applies to each segment, before windowing.
            // (Subtracting first, rather than correcting bins 0 and 1 after
            // the FFT, keeps large DC offsets out of the FFT's rounding.)
            let mean = sum(segment) / n as f64;
            for ((dst, &v), &w) in self.seg.iter_mut().zip(segment).zip(&self.window) {
                *dst = (v - mean) * w;
            }
            // Lengths come from the plan itself, so this cannot fail.
            self.fft
                .process_with_scratch(&mut self.seg, &mut self.spec, &mut self.scratch)
                .expect("buffer lengths match the FFT plan");
            for (p, c) in psd.iter_mut().zip(&self.spec) {
                *p += c.norm_sqr();
            }
        }
        // Density scaling, one-sided doubling (precomputed per bin) and the
        // mean over segments.
        let inv_nseg = 1.0 / nseg as f64;
        for (p, &f) in psd.iter_mut().zip(&self.bin_scale) {
            *p *= f * inv_nseg;
        }
        Some(psd)
    }
}

/// Sum with eight independent accumulators: a plain `iter().sum()` is one
/// serial chain of dependent additions (~4 cycles each) and was a third of
/// the whole Welch time; independent lanes let the CPU overlap them and
/// the compiler vectorise. (Summation order differs from numpy's pairwise
/// sum only at the 1e-16 level.)
pub fn sum(x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut total =
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for v in tail {
        total += v;
    }
    total
}

/// Peak-to-peak (`max − min`) of `x`, or `None` if `x` is empty or holds a
/// non-finite value. Eight independent lanes for the same reason as
/// [`sum`]; the `<`/`>` selects compile to `minpd`/`maxpd`. NaN never wins
/// a comparison, so finiteness is tracked separately: `v · 0` is 0 for
/// finite `v` and NaN for ±∞/NaN, so the lane sums stay 0 exactly when
/// every value is finite.
pub fn peak_to_peak(x: &[f64]) -> Option<f64> {
    let mut lo = [f64::INFINITY; 8];
    let mut hi = [f64::NEG_INFINITY; 8];
    let mut bad = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let v = c[i];
            lo[i] = if v < lo[i] { v } else { lo[i] };
            hi[i] = if v > hi[i] { v } else { hi[i] };
            bad[i] += v * 0.0;
        }
    }
    for &v in tail {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
        bad[0] += v * 0.0;
    }
    let l = lo.iter().fold(f64::INFINITY, |a, &b| a.min(b));
    let h = hi.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let finite = bad.iter().sum::<f64>() == 0.0 && l.is_finite() && h.is_finite();
    (!x.is_empty() && finite).then_some(h - l)
}

/// Precomputed bin range of one closed band `[lo, hi]` for a given
/// `(fs, N)`: `k_lo = round(lo/df)`, `k_hi = round(hi/df)`, both clamped to
/// the last bin (as numpy slicing `P[k_lo:k_hi+1]` would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandBins {
    pub k_lo: usize,
    pub k_hi: usize,
}

impl BandBins {
    /// Bins for `[lo, hi]` Hz at bin spacing `df` with `bins` PSD bins.
    pub fn new(lo: f64, hi: f64, df: f64, bins: usize) -> Self {
        let last = bins.saturating_sub(1);
        let k = |f: f64| ((f / df).round().max(0.0) as usize).min(last);
        BandBins {
            k_lo: k(lo),
            k_hi: k(hi),
        }
    }

    /// Trapezoid integral of `psd` over the band:
    /// `df · (Σ_{k_lo..=k_hi} P[k] − ½P[k_lo] − ½P[k_hi])`. A band covering
    /// a single bin (or an empty one) integrates to 0, like numpy.
    pub fn power(&self, psd: &[f64], df: f64) -> f64 {
        if self.k_hi <= self.k_lo {
            return 0.0;
        }
        let inner: f64 = psd[self.k_lo..=self.k_hi].iter().sum();
        df * (inner - 0.5 * psd[self.k_lo] - 0.5 * psd[self.k_hi])
    }
}

/// Convenience: trapezoid band power of `psd` over `[lo, hi]` Hz.
pub fn band_power(psd: &[f64], df: f64, lo: f64, hi: f64) -> f64 {
    BandBins::new(lo, hi, df, psd.len()).power(psd, df)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(segment_len(256.0), 256);
        assert_eq!(segment_len(250.5), 251);
        assert_eq!(window_samples(2.0, 256.0), 512);
        assert_eq!(hop_samples(512, 0.5), 256);
        assert_eq!(hop_samples(512, 0.0), 512);
        assert_eq!(hop_samples(3, 0.99), 1);
        assert_eq!(segment_count(512, 256), 3);
        assert_eq!(segment_count(250, 125), 2);
        assert_eq!(segment_count(255, 256), 0);
    }

    #[test]
    fn psd_prefix_is_a_prefix() {
        for fs in [125.0, 256.0] {
            let x: Vec<f64> = (0..600)
                .map(|i| ((i * 7919) % 1009) as f64 * 0.01)
                .collect();
            let mut w = Welch::new(fs).unwrap();
            let full = w.psd(&x).unwrap().to_vec();
            assert_eq!(full.len(), w.bins());
            let part = w.psd_prefix(&x, 46).unwrap().to_vec();
            assert_eq!(part.as_slice(), &full[..46]);
            assert_eq!(w.psd_prefix(&x, 10_000).unwrap(), full.as_slice());
        }
    }

    #[test]
    fn sum_and_peak_to_peak() {
        for len in 0..40 {
            let x: Vec<f64> = (0..len).map(|i| ((i * 37) % 11) as f64 - 4.5).collect();
            assert_eq!(sum(&x), x.iter().sum::<f64>());
            let want = (len > 0).then(|| {
                x.iter().cloned().fold(f64::MIN, f64::max)
                    - x.iter().cloned().fold(f64::MAX, f64::min)
            });
            assert_eq!(peak_to_peak(&x), want, "len {len}");
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                for pos in 0..len {
                    let mut y = x.clone();
                    y[pos] = bad;
                    assert_eq!(peak_to_peak(&y), None, "len {len} pos {pos} {bad}");
                }
            }
        }
    }

    #[test]
    fn validation_messages() {
        assert!(validate_sampling_rate(0.0).is_err());
        assert!(validate_sampling_rate(f64::NAN).is_err());
        assert!(validate_overlap(1.0).is_err());
        assert!(validate_overlap(-0.1).is_err());
        assert!(validate_overlap(0.0).is_ok());
        assert!(validate_window(0.5, 256.0)
            .unwrap_err()
            .contains("shorter than one Welch segment"));
        assert!(validate_window(1.0, 256.0).is_ok());
        let e = validate_band(&Band::new("g", 30.0, 129.0), 256.0).unwrap_err();
        assert!(e.contains("Nyquist"), "{e}");
        assert!(validate_band(&Band::new("g", 30.0, 128.0), 256.0).is_ok());
        assert!(validate_band(&Band::new("g", 8.0, 8.0), 256.0).is_err());
        let bands = vec![Band::new("a", 1.0, 2.0), Band::new("a", 2.0, 3.0)];
        assert_eq!(validate_bands(&bands, 256.0).unwrap_err().0, Some(1));
    }
}
