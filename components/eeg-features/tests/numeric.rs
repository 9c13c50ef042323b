//! Numeric tests of the eeg_features core against the numeric convention (crate README):
//!
//! * cross-check with scipy (`testdata/welch_reference.json`, written by
//!   `scripts/eeg_reference.py`; no Python needed here): windowing, band
//!   powers, total power, relative powers, averages, metrics, workload;
//! * the "checks worth having": sine → A²/2 in its band, DC + 50 Hz
//!   invisible, bands sum to `total_power`;
//! * windowing (overlap 0.5, 0, non-integer hop), refused samples, interleaved streams;
//! * output shape: JSON key order, nulls, confidence.

use fednode_eeg_features::dsp::{self, Band, Welch};
use fednode_eeg_features::features::{FeatureConfig, FeatureExtractor, Features};
use fednode_eeg_features::stream::{Stream, WindowBuffer, WindowMeta, WindowSpec};
use proptest::prelude::*;
use serde::Deserialize;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// Deterministic generator (SplitMix64) so the tests need no rand crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Approximately normal (Irwin–Hall of 12 uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// EEG-like noise: white + a random walk, plus a few sines.
fn noise(rng: &mut Rng, fs: f64, len: usize, sigma: f64) -> Vec<f64> {
    let mut walk = 0.0;
    let sines: Vec<(f64, f64, f64)> = (0..3)
        .map(|_| {
            (
                1.0 + rng.uniform() * 40.0,
                2.0 + rng.uniform() * 10.0,
                rng.uniform() * std::f64::consts::TAU,
            )
        })
        .collect();
    (0..len)
        .map(|i| {
            walk = 0.98 * walk + rng.normal();
            let t = i as f64 / fs;
            let s: f64 = sines
                .iter()
                .map(|&(f, a, p)| a * (std::f64::consts::TAU * f * t + p).sin())
                .sum();
            sigma * (rng.normal() + 3.0 * walk) + s
        })
        .collect()
}

fn rel_err(got: f64, want: f64) -> f64 {
    if want == 0.0 {
        got.abs()
    } else {
        (got - want).abs() / want.abs()
    }
}

fn one_channel(fs: f64) -> FeatureExtractor {
    FeatureExtractor::new(&FeatureConfig::new(fs, vec!["Cz".into()])).unwrap()
}

fn features_of(ex: &mut FeatureExtractor, channels: &[Vec<f64>]) -> Features {
    ex.compute(channels.iter().map(Vec::as_slice)).unwrap()
}

// ---------------------------------------------------------------------------
// scipy cross-check
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    fs: f64,
    window_seconds: f64,
    overlap: f64,
    window_samples: usize,
    hop: usize,
    nperseg: usize,
    channel_names: Vec<String>,
    bands: Vec<Band>,
    signals: Vec<Vec<f64>>,
    windows: Vec<RefWindow>,
}

#[derive(Deserialize)]
struct RefWindow {
    index: u64,
    start_sample: u64,
    end_sample: u64,
    absolute: Vec<Vec<f64>>,
    total_power: Vec<f64>,
    relative: Vec<Vec<f64>>,
    average_absolute: Vec<f64>,
    average_relative: Vec<f64>,
    metrics: RefMetrics,
    workload: Option<f64>,
}

#[derive(Deserialize)]
struct RefMetrics {
    frontal_theta: Option<f64>,
    theta_beta_ratio: Option<f64>,
    theta_alpha_ratio: Option<f64>,
    engagement_index: Option<f64>,
    frontal_alpha_asymmetry: Option<f64>,
}

fn load_reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/welch_reference.json");
    let text = std::fs::read_to_string(path).expect("testdata/welch_reference.json");
    serde_json::from_str(&text).expect("valid reference JSON")
}

/// Tracks the worst relative error seen, to report it.
#[derive(Default)]
struct Worst(f64, String);

impl Worst {
    fn check(&mut self, got: f64, want: f64, what: impl Fn() -> String) {
        let e = rel_err(got, want);
        if e > self.0 || e.is_nan() {
            self.0 = e;
            self.1 = what();
        }
        assert!(
            e <= 1e-3,
            "{}: got {got}, scipy {want}, rel err {e}",
            what()
        );
    }
    fn check_opt(&mut self, got: Option<f64>, want: Option<f64>, what: impl Fn() -> String) {
        match (got, want) {
            (Some(g), Some(w)) => self.check(g, w, what),
            (None, None) => {}
            _ => panic!("{}: got {got:?}, reference {want:?}", what()),
        }
    }
}

#[test]
fn matches_scipy_reference() {
    let reference = load_reference();
    assert!(reference.cases.len() >= 9);
    let mut worst = Worst::default();
    let mut buf = WindowBuffer::new();
    for case in &reference.cases {
        let mut cfg = FeatureConfig::new(case.fs, case.channel_names.clone());
        cfg.window_seconds = case.window_seconds;
        cfg.overlap = case.overlap;
        cfg.bands = case.bands.clone();
        let spec = cfg.window_spec().unwrap();
        assert_eq!(spec.window_samples, case.window_samples, "{}", case.name);
        assert_eq!(spec.hop, case.hop, "{}", case.name);
        let mut ex = FeatureExtractor::new(&cfg).unwrap();
        assert_eq!(ex.welch().segment_len(), case.nperseg, "{}", case.name);
        let mut out = ex.new_output();

        let mut stream = Stream::new(case.channel_names.len(), spec);
        let mut sample = vec![0.0; case.channel_names.len()];
        let mut seen = 0;
        for i in 0..case.signals[0].len() {
            for (c, s) in case.signals.iter().enumerate() {
                sample[c] = s[i];
            }
            let Some(meta) = stream.push(&sample, Some(1_000 + i as i64)).unwrap() else {
                continue;
            };
            let rw = &case.windows[seen];
            seen += 1;
            assert_eq!(
                (meta.index, meta.start_sample, meta.end_sample),
                (rw.index, rw.start_sample, rw.end_sample),
                "{}",
                case.name
            );
            stream.copy_window(&mut buf);
            ex.compute_into(buf.iter(), &mut out).unwrap();
            let at =
                |c: usize, what: &str| format!("{} window {} ch {c} {what}", case.name, rw.index);
            for (c, ch) in out.channels.values().iter().enumerate() {
                worst.check(ch.total_power, rw.total_power[c], || at(c, "total"));
                for b in 0..case.bands.len() {
                    let band = &case.bands[b].name;
                    worst.check(ch.absolute[b], rw.absolute[c][b], || at(c, band));
                    worst.check(ch.relative[b], rw.relative[c][b], || at(c, band));
                }
            }
            for b in 0..case.bands.len() {
                worst.check(out.average.absolute[b], rw.average_absolute[b], || {
                    at(0, "avg abs")
                });
                worst.check(out.average.relative[b], rw.average_relative[b], || {
                    at(0, "avg rel")
                });
                assert_eq!(out.band_powers[b], out.average.relative[b]);
            }
            let (m, r) = (&out.metrics, &rw.metrics);
            worst.check_opt(m.frontal_theta, r.frontal_theta, || at(0, "frontal_theta"));
            worst.check_opt(m.theta_beta_ratio, r.theta_beta_ratio, || {
                at(0, "theta_beta")
            });
            worst.check_opt(m.theta_alpha_ratio, r.theta_alpha_ratio, || {
                at(0, "theta_alpha")
            });
            worst.check_opt(m.engagement_index, r.engagement_index, || {
                at(0, "engagement")
            });
            worst.check_opt(m.frontal_alpha_asymmetry, r.frontal_alpha_asymmetry, || {
                at(0, "faa")
            });
            worst.check_opt(out.workload, rw.workload, || at(0, "workload"));
        }
        assert_eq!(seen, case.windows.len(), "{}: window count", case.name);
    }
    println!("worst relative error vs scipy: {:e} ({})", worst.0, worst.1);
    assert!(
        worst.0 < 1e-9,
        "expected ~1e-12 agreement, worst {:e} at {}",
        worst.0,
        worst.1
    );
}

// ---------------------------------------------------------------------------
// Checks worth having
// ---------------------------------------------------------------------------

#[test]
fn sine_puts_half_a_squared_in_its_band() {
    let mut rng = Rng(7);
    // (frequency, band index in the default bands); each ≥ 2 Hz from an edge.
    let tones = [
        (6.0, 1),
        (10.0, 2),
        (10.7, 2),
        (11.0, 2),
        (15.2, 3),
        (21.5, 3),
        (27.9, 3),
        (32.0, 4),
        (37.3, 4),
        (43.0, 4),
    ];
    let mut worst: f64 = 0.0;
    for fs in [128.0, 250.0, 256.0, 512.0] {
        let mut ex = one_channel(fs);
        let len = dsp::window_samples(2.0, fs);
        for &(f, band) in &tones {
            let a = 1.0 + 99.0 * rng.uniform();
            let phase = rng.uniform() * std::f64::consts::TAU;
            let x: Vec<f64> = (0..len)
                .map(|i| a * (std::f64::consts::TAU * f * i as f64 / fs + phase).sin())
                .collect();
            let out = features_of(&mut ex, &[x]);
            let got = out.channels[0].absolute[band];
            let want = a * a / 2.0;
            worst = worst.max(rel_err(got, want));
            assert!(
                rel_err(got, want) <= 0.005,
                "fs {fs} f {f}: band power {got}, A²/2 = {want} ({:.4}%)",
                100.0 * rel_err(got, want)
            );
        }
    }
    println!("sine: worst deviation from A²/2: {:.4}%", 100.0 * worst);
}

#[test]
fn dc_offset_and_50_hz_change_no_band() {
    let mut rng = Rng(11);
    for fs in [128.0, 250.0, 256.0] {
        let mut ex = one_channel(fs);
        let len = dsp::window_samples(2.0, fs);
        let base = noise(&mut rng, fs, len, 5.0);
        let mains: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v + 1_000.0 + 80.0 * (std::f64::consts::TAU * 50.0 * i as f64 / fs + 0.3).sin()
            })
            .collect();
        let a = features_of(&mut ex, &[base]);
        let b = features_of(&mut ex, &[mains]);
        for (k, name) in a.channels[0].absolute.keys().iter().enumerate() {
            let e = rel_err(b.channels[0].absolute[k], a.channels[0].absolute[k]);
            assert!(e <= 1e-6, "fs {fs} band {name}: changed by {e:e}");
        }
        let e = rel_err(b.channels[0].total_power, a.channels[0].total_power);
        assert!(e <= 1e-6, "fs {fs} total: changed by {e:e}");
    }
}

#[test]
fn default_bands_sum_to_total_power() {
    let mut rng = Rng(3);
    for fs in [100.0, 125.0, 128.0, 250.0, 250.5, 256.0, 500.0] {
        let mut ex = one_channel(fs);
        for _ in 0..5 {
            let x = noise(&mut rng, fs, dsp::window_samples(2.0, fs), 10.0);
            let out = features_of(&mut ex, &[x]);
            let ch = &out.channels[0];
            let sum: f64 = ch.absolute.values().iter().sum();
            assert!(
                rel_err(sum, ch.total_power) < 1e-13,
                "fs {fs}: {sum} vs {}",
                ch.total_power
            );
            let rel: f64 = ch.relative.values().iter().sum();
            assert!((rel - 1.0).abs() < 1e-13);
        }
    }
}

/// A direct O(N²) DFT implementation of the numeric convention (crate README), independent of realfft.
fn naive_welch(x: &[f64], fs: f64) -> Vec<f64> {
    let n = dsp::segment_len(fs);
    let step = n - n / 2;
    let w: Vec<f64> = (0..n)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos())
        .collect();
    let s2: f64 = w.iter().map(|v| v * v).sum();
    let mut p = vec![0.0; n / 2 + 1];
    let mut nseg = 0;
    let mut start = 0;
    while start + n <= x.len() {
        let seg = &x[start..start + n];
        let mean = seg.iter().sum::<f64>() / n as f64;
        for (k, pk) in p.iter_mut().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, (&v, &wi)) in seg.iter().zip(&w).enumerate() {
                let ang = -std::f64::consts::TAU * (k * i % n) as f64 / n as f64;
                re += (v - mean) * wi * ang.cos();
                im += (v - mean) * wi * ang.sin();
            }
            let double = k > 0 && (k < n / 2 || (n % 2 == 1 && k == n / 2));
            *pk += (re * re + im * im) / (fs * s2) * if double { 2.0 } else { 1.0 };
        }
        nseg += 1;
        start += step;
    }
    p.iter().map(|v| v / nseg as f64).collect()
}

#[test]
fn welch_matches_naive_dft() {
    let mut rng = Rng(5);
    for (fs, secs) in [(64.0, 2.0), (65.0, 2.5), (100.0, 1.0), (128.0, 3.3)] {
        let x = noise(&mut rng, fs, dsp::window_samples(secs, fs), 4.0);
        let mut welch = Welch::new(fs).unwrap();
        let fast = welch.psd(&x).unwrap().to_vec();
        let slow = naive_welch(&x, fs);
        assert_eq!(fast.len(), slow.len());
        let peak = slow.iter().cloned().fold(0.0, f64::max);
        for (k, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert!((a - b).abs() <= 1e-10 * peak, "fs {fs} bin {k}: {a} vs {b}");
        }
    }
}

#[test]
fn too_short_window_has_no_psd() {
    let mut welch = Welch::new(256.0).unwrap();
    assert!(welch.psd(&[0.0; 255]).is_none());
    assert!(welch.psd(&[0.0; 256]).is_some());
}

// ---------------------------------------------------------------------------
// windowing
// ---------------------------------------------------------------------------

/// Pushes `len` samples of 3 channels (value = channel·1e6 + index) and
/// returns every window's metadata and data.
fn run_stream(spec: WindowSpec, len: usize) -> Vec<(WindowMeta, WindowBuffer)> {
    let mut stream = Stream::new(3, spec);
    let mut out = Vec::new();
    for i in 0..len {
        let sample = [i as f64, 1e6 + i as f64, 2e6 + i as f64];
        let ts = (i % 7 != 3).then_some(10 * i as i64);
        if let Some(meta) = stream.push(&sample, ts).unwrap() {
            let mut buf = WindowBuffer::new();
            stream.copy_window(&mut buf);
            out.push((meta, buf));
        }
    }
    out
}

fn check_geometry(spec: WindowSpec, len: usize) {
    let windows = run_stream(spec, len);
    let (w, hop) = (spec.window_samples as u64, spec.hop as u64);
    let expected = if (len as u64) < w {
        0
    } else {
        (len as u64 - w) / hop + 1
    };
    assert_eq!(windows.len() as u64, expected, "{spec:?}");
    for (k, (meta, buf)) in windows.iter().enumerate() {
        let k = k as u64;
        assert_eq!(meta.index, k);
        assert_eq!(meta.start_sample, k * hop);
        assert_eq!(meta.end_sample, k * hop + w);
        let ts = |i: u64| (i % 7 != 3).then_some(10 * i as i64);
        assert_eq!(meta.start_timestamp, ts(meta.start_sample));
        assert_eq!(meta.end_timestamp, ts(meta.end_sample - 1));
        assert_eq!(buf.channels(), 3);
        assert_eq!(buf.len(), w as usize);
        for c in 0..3 {
            let want: Vec<f64> = (meta.start_sample..meta.end_sample)
                .map(|i| c as f64 * 1e6 + i as f64)
                .collect();
            assert_eq!(buf.channel(c), want.as_slice(), "window {k} channel {c}");
        }
    }
}

#[test]
fn windowing_overlap_half_and_zero() {
    let half = WindowSpec::new(2.0, 256.0, 0.5).unwrap();
    assert_eq!((half.window_samples, half.hop), (512, 256));
    check_geometry(half, 3000);
    let zero = WindowSpec::new(2.0, 256.0, 0.0).unwrap();
    assert_eq!((zero.window_samples, zero.hop), (512, 512));
    check_geometry(zero, 3000);
    // window k is emitted exactly when sample k·hop + w − 1 arrives
    let mut s = Stream::new(1, half);
    let mut emitted = Vec::new();
    for i in 0..1300u64 {
        if s.push(&[0.0], None).unwrap().is_some() {
            emitted.push(i);
        }
    }
    assert_eq!(emitted, vec![511, 767, 1023, 1279]);
}

#[test]
fn windowing_non_integer_hop() {
    let spec = WindowSpec::new(1.5, 128.0, 0.3).unwrap(); // 192 · 0.7 = 134.4
    assert_eq!((spec.window_samples, spec.hop), (192, 134));
    check_geometry(spec, 1000);
    let spec = WindowSpec::new(2.0, 250.5, 0.5).unwrap(); // 501 · 0.5 = 250.5 → 251
    assert_eq!((spec.window_samples, spec.hop), (501, 251));
    check_geometry(spec, 2000);
    check_geometry(WindowSpec::from_samples(5, 1), 40);
}

#[test]
fn wrong_channel_count_takes_no_index() {
    let mut s = Stream::new(2, WindowSpec::from_samples(4, 2));
    assert!(s.push(&[1.0], None).is_err());
    assert!(s.push(&[1.0, 2.0, 3.0], None).is_err());
    assert_eq!(s.samples_seen(), 0);
    for _ in 0..3 {
        assert!(s.push(&[1.0, 2.0], None).unwrap().is_none());
    }
    assert!(s.push(&[9.0], None).is_err());
    let meta = s.push(&[1.0, 2.0], Some(5)).unwrap().unwrap();
    assert_eq!((meta.index, meta.start_sample, meta.end_sample), (0, 0, 4));
}

#[test]
fn interleaved_streams_equal_streams_alone() {
    let fs = 256.0;
    let spec = WindowSpec::new(2.0, fs, 0.5).unwrap();
    let names: Vec<String> = ["F3", "F4", "Pz"].iter().map(|s| s.to_string()).collect();
    let mut rng = Rng(99);
    let signals: Vec<Vec<Vec<f64>>> = (0..2)
        .map(|_| (0..3).map(|_| noise(&mut rng, fs, 2000, 8.0)).collect())
        .collect();
    let sample = |s: usize, i: usize| -> Vec<f64> { signals[s].iter().map(|c| c[i]).collect() };

    // Alone: one stream, its own extractor.
    let alone: Vec<Vec<(WindowMeta, Features)>> = (0..2)
        .map(|s| {
            let mut ex = FeatureExtractor::new(&FeatureConfig::new(fs, names.clone())).unwrap();
            let mut st = Stream::new(3, spec);
            let mut buf = WindowBuffer::new();
            let mut out = Vec::new();
            for i in 0..2000 {
                if let Some(m) = st.push(&sample(s, i), Some(i as i64)).unwrap() {
                    st.copy_window(&mut buf);
                    out.push((m, ex.compute(buf.iter()).unwrap()));
                }
            }
            out
        })
        .collect();

    // Interleaved irregularly, sharing one extractor, one buffer, one output.
    let mut ex = FeatureExtractor::new(&FeatureConfig::new(fs, names.clone())).unwrap();
    let mut streams = [Stream::new(3, spec), Stream::new(3, spec)];
    let mut pos = [0usize; 2];
    let mut buf = WindowBuffer::new();
    let mut shared_out = ex.new_output();
    let mut got: [Vec<(WindowMeta, Features)>; 2] = [Vec::new(), Vec::new()];
    while pos[0] < 2000 || pos[1] < 2000 {
        let s = if pos[1] >= 2000 || (pos[0] < 2000 && rng.uniform() < 0.5) {
            0
        } else {
            1
        };
        let burst = 1 + (rng.uniform() * 40.0) as usize;
        for _ in 0..burst.min(2000 - pos[s]) {
            let i = pos[s];
            pos[s] += 1;
            if let Some(m) = streams[s].push(&sample(s, i), Some(i as i64)).unwrap() {
                streams[s].copy_window(&mut buf);
                ex.compute_into(buf.iter(), &mut shared_out).unwrap();
                got[s].push((m, shared_out.clone()));
            }
        }
    }
    for s in 0..2 {
        assert_eq!(got[s].len(), alone[s].len());
        assert_eq!(got[s].len(), 6);
        for (a, b) in got[s].iter().zip(&alone[s]) {
            assert_eq!(a.0, b.0);
            // bit-identical, serialized form included
            assert_eq!(a.1, b.1);
            assert_eq!(
                serde_json::to_string(&a.1).unwrap(),
                serde_json::to_string(&b.1).unwrap()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// output shape
// ---------------------------------------------------------------------------

#[test]
fn json_shape_and_key_order() {
    let fs = 256.0;
    let names: Vec<String> = ["Pz", "F4", "F3", "Fz"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut cfg = FeatureConfig::new(fs, names);
    // reversed band order must be kept in the output
    cfg.bands.reverse();
    let mut ex = FeatureExtractor::new(&cfg).unwrap();
    let mut rng = Rng(1);
    let chans: Vec<Vec<f64>> = (0..4).map(|_| noise(&mut rng, fs, 512, 3.0)).collect();
    let out = features_of(&mut ex, &chans);
    let json = serde_json::to_string(&out).unwrap();
    let pos = |k: &str| {
        json.find(&format!("\"{k}\""))
            .unwrap_or_else(|| panic!("{k} missing in {json}"))
    };
    // top-level order
    let top = [
        "band_powers",
        "average",
        "channels",
        "metrics",
        "workload",
        "confidence",
    ];
    assert!(top.windows(2).all(|p| pos(p[0]) < pos(p[1])), "{json}");
    // band order inside band_powers follows configuration (gamma first)
    let bp = &json[..pos("average")];
    let order: Vec<usize> = ["gamma", "beta", "alpha", "theta", "delta"]
        .iter()
        .map(|b| bp.find(b).unwrap())
        .collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "{bp}");
    // channel order follows configuration
    let ch = &json[pos("channels")..pos("metrics")];
    let order: Vec<usize> = ["\"Pz\"", "\"F4\"", "\"F3\"", "\"Fz\""]
        .iter()
        .map(|c| ch.find(c).unwrap())
        .collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "{ch}");

    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["band_powers"], v["average"]["relative"]);
    for c in ["Pz", "F4", "F3", "Fz"] {
        let chv = &v["channels"][c];
        assert!(chv["total_power"].as_f64().unwrap() > 0.0);
        assert_eq!(chv["absolute"].as_object().unwrap().len(), 5);
        assert_eq!(chv["relative"].as_object().unwrap().len(), 5);
    }
    for m in [
        "frontal_theta",
        "theta_beta_ratio",
        "theta_alpha_ratio",
        "engagement_index",
        "frontal_alpha_asymmetry",
    ] {
        assert!(v["metrics"][m].is_f64(), "{m}: {}", v["metrics"]);
    }
    let w = v["workload"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&w));
    assert_eq!(v["confidence"].as_f64(), Some(1.0));

    // frontal_theta = mean of Fz, F3, F4 relative theta; FAA = ln F4 − ln F3
    let theta = ex.band_names().iter().position(|b| b == "theta").unwrap();
    let alpha = ex.band_names().iter().position(|b| b == "alpha").unwrap();
    let rel = |c: usize, b: usize| out.channels[c].relative[b];
    let ft = (rel(1, theta) + rel(2, theta) + rel(3, theta)) / 3.0;
    assert!((out.metrics.frontal_theta.unwrap() - ft).abs() < 1e-15);
    let faa = rel(1, alpha).ln() - rel(2, alpha).ln();
    assert!((out.metrics.frontal_alpha_asymmetry.unwrap() - faa).abs() < 1e-12);
    // workload with parietal Pz only
    let wl = ft / (ft + rel(0, alpha));
    assert!((out.workload.unwrap() - wl).abs() < 1e-15);
}

#[test]
fn missing_bands_and_channels_give_nulls() {
    let fs = 128.0;
    let mut cfg = FeatureConfig::new(fs, vec!["O1".into(), "O2".into()]);
    cfg.bands = vec![Band::new("low", 1.0, 10.0), Band::new("high", 10.0, 40.0)];
    let mut ex = FeatureExtractor::new(&cfg).unwrap();
    let mut rng = Rng(2);
    let chans: Vec<Vec<f64>> = (0..2).map(|_| noise(&mut rng, fs, 256, 3.0)).collect();
    let out = features_of(&mut ex, &chans);
    let v = serde_json::to_value(&out).unwrap();
    for m in [
        "frontal_theta",
        "theta_beta_ratio",
        "theta_alpha_ratio",
        "engagement_index",
        "frontal_alpha_asymmetry",
    ] {
        assert!(v["metrics"][m].is_null(), "{m}");
    }
    assert!(v["workload"].is_null());

    // default bands, but no frontal/parietal/F3/F4 channels: ratios exist,
    // frontal_theta and FAA are null, workload falls back to averages.
    let mut ex =
        FeatureExtractor::new(&FeatureConfig::new(fs, vec!["O1".into(), "O2".into()])).unwrap();
    let out = features_of(&mut ex, &chans);
    assert!(out.metrics.frontal_theta.is_none());
    assert!(out.metrics.frontal_alpha_asymmetry.is_none());
    assert!(out.metrics.theta_beta_ratio.is_some());
    let (t, a) = (out.average.relative[1], out.average.relative[2]);
    assert!((out.workload.unwrap() - t / (t + a)).abs() < 1e-15);
}

#[test]
fn confidence_counts_usable_channels() {
    let fs = 128.0;
    let names: Vec<String> = ["F3", "F4", "Pz", "Cz"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut cfg = FeatureConfig::new(fs, names);
    cfg.artifact_threshold = Some(200.0);
    let mut ex = FeatureExtractor::new(&cfg).unwrap();
    let mut rng = Rng(4);
    let good = noise(&mut rng, fs, 256, 1.0);
    let ptp = good.iter().cloned().fold(f64::MIN, f64::max)
        - good.iter().cloned().fold(f64::MAX, f64::min);
    assert!(ptp < 200.0, "test signal ptp {ptp}");
    let flat = vec![42.0; 256];
    let artifact: Vec<f64> = good
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 100 { v + 500.0 } else { *v })
        .collect();
    let out = features_of(&mut ex, &[good.clone(), flat, artifact, good]);
    assert_eq!(out.confidence, 0.5);
    // the flat channel: zero power, relative 0 (not NaN), so averages stay numbers
    assert_eq!(out.channels[1].total_power, 0.0);
    assert!(out.channels[1].relative.values().iter().all(|&r| r == 0.0));
    assert!(out.average.relative.values().iter().all(|r| r.is_finite()));
    // a flat F4 makes ln(0): asymmetry is null, not -inf
    assert!(out.metrics.frontal_alpha_asymmetry.is_none());
    let json = serde_json::to_string(&out).unwrap();
    assert!(!json.contains("NaN") && !json.contains("inf"));

    // every channel flat → ratios with a zero denominator are null
    let flat = vec![vec![1.0; 256]; 4];
    let out = features_of(&mut ex, &flat);
    assert_eq!(out.confidence, 0.0);
    assert!(out.metrics.theta_beta_ratio.is_none());
    assert!(out.metrics.engagement_index.is_none());
    assert!(out.workload.is_none());
}

#[test]
fn types_are_send_and_foreign_outputs_are_reshaped() {
    fn send<T: Send + 'static>() {}
    send::<FeatureExtractor>();
    send::<Features>();
    send::<Stream>();
    // an output made by another extractor is replaced, not mis-indexed
    let mut a = FeatureExtractor::new(&FeatureConfig::new(128.0, vec!["a".into()])).unwrap();
    let b =
        FeatureExtractor::new(&FeatureConfig::new(128.0, vec!["x".into(), "y".into()])).unwrap();
    let mut out = b.new_output();
    let x = vec![0.5; 256];
    a.compute_into([x.as_slice()], &mut out).unwrap();
    assert_eq!(out.channels.keys(), ["a".to_string()]);
}

#[test]
fn wrong_window_shape_is_an_error() {
    let mut ex =
        FeatureExtractor::new(&FeatureConfig::new(128.0, vec!["a".into(), "b".into()])).unwrap();
    let x = vec![0.5; 256];
    assert!(ex.compute([x.as_slice()]).is_err());
    assert!(ex
        .compute([x.as_slice(), x.as_slice(), x.as_slice()])
        .is_err());
    assert!(ex.compute([x.as_slice(), &x[..100]]).is_err());
    assert!(ex.compute([x.as_slice(), x.as_slice()]).is_ok());
}

#[test]
fn config_validation_paths() {
    let base = FeatureConfig::new(256.0, vec!["F3".into(), "F4".into()]);
    assert!(base.validate().is_ok());
    let err = |f: &dyn Fn(&mut FeatureConfig)| {
        let mut c = base.clone();
        f(&mut c);
        let e = c.validate().unwrap_err();
        (e.path, e.message)
    };
    assert_eq!(err(&|c| c.sampling_rate = 0.0).0, "sampling_rate");
    assert_eq!(err(&|c| c.sampling_rate = -5.0).0, "sampling_rate");
    let (p, m) = err(&|c| c.window_seconds = 0.5);
    assert_eq!(p, "window_seconds");
    assert!(m.contains("shorter than one Welch segment"), "{m}");
    assert_eq!(err(&|c| c.overlap = 1.0).0, "overlap");
    let (p, m) = err(&|c| c.bands[4].hi = 200.0);
    assert_eq!(p, "bands[4]");
    assert!(m.contains("Nyquist"), "{m}");
    let (p, m) = err(&|c| c.bands[1].lo = 8.0);
    assert_eq!(p, "bands[1]");
    assert!(m.contains("below"), "{m}");
    assert_eq!(err(&|c| c.bands.clear()).0, "bands");
    assert_eq!(err(&|c| c.channel_names.clear()).0, "channel_names");
    assert_eq!(
        err(&|c| c.channel_names.push("F3".into())).0,
        "channel_names[2]"
    );
    assert_eq!(
        err(&|c| c.artifact_threshold = Some(0.0)).0,
        "artifact_threshold"
    );
    // deserialization applies the defaults
    let cfg: FeatureConfig =
        serde_json::from_str(r#"{"sampling_rate":250,"channel_names":["Fz"]}"#).unwrap();
    assert_eq!(cfg, FeatureConfig::new(250.0, vec!["Fz".into()]));
}

// ---------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any geometry and length, windows are exactly the slices
    /// [k·hop, k·hop + w) of the input.
    #[test]
    fn windows_are_slices(w in 1usize..64, hop_frac in 0.0f64..1.0, len in 0usize..300) {
        let hop = 1 + ((w - 1) as f64 * hop_frac) as usize;
        check_geometry(WindowSpec::from_samples(w, hop), len);
    }

    /// Band powers are non-negative and add up to total_power, for any
    /// signal scale.
    #[test]
    fn bands_non_negative_and_additive(seed in any::<u64>(), scale_exp in -6i32..6, fs in 90.0f64..600.0) {
        let mut rng = Rng(seed);
        let mut ex = one_channel(fs);
        let x = noise(&mut rng, fs, dsp::window_samples(2.0, fs), 10f64.powi(scale_exp));
        let out = features_of(&mut ex, &[x]);
        let ch = &out.channels[0];
        prop_assert!(ch.absolute.values().iter().all(|&v| v >= 0.0));
        let sum: f64 = ch.absolute.values().iter().sum();
        prop_assert!(rel_err(sum, ch.total_power) < 1e-12);
    }
}
