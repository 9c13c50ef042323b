#!/usr/bin/env python3
"""Reference values for the eeg_features numeric convention (EEG.md).

Generates seeded multi-channel signals, windows them exactly as EEG.md §1-2
says, and computes per window and channel the absolute band powers and
total power with

    scipy.signal.welch(x, fs, window='hann', nperseg=N, noverlap=N//2,
                       nfft=N, detrend='constant', return_onesided=True,
                       scaling='density', average='mean')
    scipy.integrate.trapezoid(P[k_lo:k_hi+1], f[k_lo:k_hi+1])

plus the derived relative powers, channel averages, metrics and workload
(EEG.md §8-11), written to
components/eeg-features/testdata/welch_reference.json. The input signals are
stored in the JSON itself (rounded to 6 decimals, and the reference is
computed from the rounded values), so the Rust test
(components/eeg-features/tests/numeric.rs) needs no Python and no shared
random generator.

Rounding: every round() of the convention is "half away from zero" (Rust's
f64::round); Python's round() is half-to-even, so rnd() below is used.

Usage:  pip install numpy scipy
        python3 scripts/eeg_reference.py            # write JSON + timing
        python3 scripts/eeg_reference.py --no-timing
"""

import json
import math
import os
import sys
import timeit

import numpy as np
import scipy
import scipy.integrate
import scipy.signal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "components", "eeg-features", "testdata", "welch_reference.json")

DEFAULT_BANDS = [
    ["delta", 1.0, 4.0],
    ["theta", 4.0, 8.0],
    ["alpha", 8.0, 13.0],
    ["beta", 13.0, 30.0],
    ["gamma", 30.0, 45.0],
]
FRONTAL = ["Fz", "F3", "F4"]
PARIETAL = ["Pz", "P3", "P4"]


def rnd(x):
    """round half away from zero (x >= 0 here), like Rust's f64::round."""
    return int(math.floor(x + 0.5))


def geometry(fs, window_seconds, overlap):
    w = rnd(window_seconds * fs)
    hop = min(w, max(1, rnd(w * (1.0 - overlap))))
    n = max(1, rnd(fs))
    return w, hop, n


def welch(x, fs, n):
    return scipy.signal.welch(
        x, fs, window="hann", nperseg=n, noverlap=n // 2, nfft=n,
        detrend="constant", return_onesided=True, scaling="density",
        average="mean", axis=-1,
    )


def band_power(f, p, lo, hi, df):
    k_lo, k_hi = rnd(lo / df), rnd(hi / df)
    # numpy slicing clamps to the last bin, as the Rust side does.
    return scipy.integrate.trapezoid(p[..., k_lo:k_hi + 1], f[k_lo:k_hi + 1], axis=-1)


def make_signal(rng, fs, n_samples, scale):
    """EEG-like: 1/f noise + white noise + a few sines + DC + slow drift."""
    t = np.arange(n_samples) / fs
    white = rng.normal(0.0, 1.0, n_samples)
    spec = np.fft.rfft(rng.normal(0.0, 1.0, n_samples))
    freqs = np.fft.rfftfreq(n_samples, 1.0 / fs)
    spec[1:] /= np.sqrt(freqs[1:])
    spec[0] = 0.0
    pink = np.fft.irfft(spec, n_samples)
    pink *= 20.0 / pink.std()
    x = pink + 3.0 * white
    for _ in range(3):
        f0 = rng.uniform(2.0, min(45.0, fs / 2 - 1))
        x += rng.uniform(2.0, 15.0) * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    x += rng.uniform(-100.0, 100.0) + 5.0 * np.sin(2 * np.pi * 0.1 * t)
    return np.round(x * scale, 6) if scale >= 1 else x * scale


def metrics(channel_names, bands, rel_ch, avg_rel):
    names = [b[0] for b in bands]
    idx = {n: i for i, n in enumerate(names)}
    chan = {c: i for i, c in enumerate(channel_names)}

    def ratio(a, b):
        if b == 0:
            return None
        r = a / b
        return r if math.isfinite(r) else None

    def mean_over(chs, b):
        present = [chan[c] for c in dict.fromkeys(chs) if c in chan]
        if not present:
            return None
        return float(np.mean([rel_ch[i][b] for i in present]))

    t, a, be = idx.get("theta"), idx.get("alpha"), idx.get("beta")
    out = {
        "frontal_theta": None, "theta_beta_ratio": None, "theta_alpha_ratio": None,
        "engagement_index": None, "frontal_alpha_asymmetry": None,
    }
    workload = None
    if t is not None:
        out["frontal_theta"] = mean_over(FRONTAL, t)
    if t is not None and be is not None:
        out["theta_beta_ratio"] = ratio(avg_rel[t], avg_rel[be])
    if t is not None and a is not None:
        out["theta_alpha_ratio"] = ratio(avg_rel[t], avg_rel[a])
        th = out["frontal_theta"] if out["frontal_theta"] is not None else avg_rel[t]
        al = mean_over(PARIETAL, a)
        al = al if al is not None else avg_rel[a]
        workload = ratio(th, th + al)
        if workload is not None:
            workload = min(1.0, max(0.0, workload))
    if t is not None and a is not None and be is not None:
        out["engagement_index"] = ratio(avg_rel[be], avg_rel[a] + avg_rel[t])
    if a is not None and "F3" in chan and "F4" in chan:
        l, r = rel_ch[chan["F3"]][a], rel_ch[chan["F4"]][a]
        if l > 0 and r > 0:
            out["frontal_alpha_asymmetry"] = math.log(r) - math.log(l)
    return out, workload


CASES = [
    # name, fs, window_seconds, overlap, channels, seconds of data, bands, scales
    ("fs256_default", 256.0, 2.0, 0.5, ["F3", "F4", "Pz", "Oz"], 6.0, DEFAULT_BANDS, [1, 1, 1, 1]),
    ("fs256_overlap0", 256.0, 2.0, 0.0, ["Fz", "C3"], 6.5, DEFAULT_BANDS, [1, 1]),
    ("fs250_default", 250.0, 2.0, 0.5, ["Fz", "F3", "F4"], 5.0, DEFAULT_BANDS, [1, 1e4, 1]),
    ("fs128_default", 128.0, 2.0, 0.5, ["P3", "P4", "Cz"], 6.0, DEFAULT_BANDS, [1, 1, 1e-6]),
    # hop = round(192 * 0.7) = round(134.4) = 134
    ("fs128_fractional_hop", 128.0, 1.5, 0.3, ["F4", "Pz"], 5.0, DEFAULT_BANDS, [1, 1]),
    # w = 625, hop = round(468.75) = 469, 4 Welch segments per window
    ("fs250_fractional_hop", 250.0, 2.5, 0.25, ["Fz", "Pz"], 6.0, DEFAULT_BANDS, [1, 1]),
    # odd N = 125 (last bin doubled), a band ending at Nyquist 62.5 Hz
    ("fs125_odd_n", 125.0, 2.0, 0.5, ["F3", "F4"], 5.0,
     [["slow", 0.5, 4.0], ["theta", 4.0, 8.0], ["alpha", 8.0, 13.0], ["beta", 13.0, 30.0],
      ["high", 50.0, 62.5]], [1, 1]),
    # non-integer fs: N = 251, df = 250.5/251, w = 501, hop = round(250.5) = 251
    ("fs250.5_fractional", 250.5, 2.0, 0.5, ["Fz", "O1"], 5.0, DEFAULT_BANDS, [1, 1]),
    # custom bands with gaps, one ending at Nyquist (even N: last bin not doubled)
    ("fs100_custom_bands", 100.0, 3.0, 0.5, ["C3", "C4"], 7.0,
     [["low", 2.0, 6.0], ["mid", 9.0, 20.0], ["top", 30.0, 50.0]], [1, 1]),
]


def build():
    rng = np.random.default_rng(20240611)
    cases = []
    for name, fs, wsec, overlap, chans, secs, bands, scales in CASES:
        w, hop, n = geometry(fs, wsec, overlap)
        n_samples = rnd(secs * fs)
        data = np.stack([make_signal(rng, fs, n_samples, s) for s in scales])
        df = fs / n
        lo = min(b[1] for b in bands)
        hi = max(b[2] for b in bands)
        windows = []
        k = 0
        while k * hop + w <= n_samples:
            x = data[:, k * hop:k * hop + w]
            f, p = welch(x, fs, n)
            absolute = np.stack([band_power(f, p, b[1], b[2], df) for b in bands], axis=1)
            total = band_power(f, p, lo, hi, df)
            rel = np.where(total[:, None] > 0, absolute / np.where(total > 0, total, 1)[:, None], 0.0)
            avg_abs = absolute.mean(axis=0)
            avg_rel = rel.mean(axis=0)
            m, workload = metrics(chans, bands, rel.tolist(), avg_rel.tolist())
            windows.append({
                "index": k,
                "start_sample": k * hop,
                "end_sample": k * hop + w,
                "absolute": absolute.tolist(),
                "total_power": total.tolist(),
                "relative": rel.tolist(),
                "average_absolute": avg_abs.tolist(),
                "average_relative": avg_rel.tolist(),
                "metrics": m,
                "workload": workload,
            })
            k += 1
        cases.append({
            "name": name,
            "fs": fs,
            "window_seconds": wsec,
            "overlap": overlap,
            "window_samples": w,
            "hop": hop,
            "nperseg": n,
            "channel_names": chans,
            "bands": [{"name": b[0], "lo": b[1], "hi": b[2]} for b in bands],
            "signals": data.tolist(),
            "windows": windows,
        })
    return {
        "generator": "scripts/eeg_reference.py",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cases": cases,
    }


def timing():
    """µs per window for scipy: 8 channels, 256 Hz, 2 s window."""
    fs, n = 256.0, 256
    rng = np.random.default_rng(1)
    x = rng.normal(0, 10, (8, 512))
    df = fs / n
    bands = DEFAULT_BANDS

    def vectorised():
        f, p = welch(x, fs, n)
        for b in bands:
            band_power(f, p, b[1], b[2], df)
        band_power(f, p, 1.0, 45.0, df)

    def per_channel():
        for c in range(8):
            f, p = welch(x[c], fs, n)
            for b in bands:
                band_power(f, p, b[1], b[2], df)
            band_power(f, p, 1.0, 45.0, df)

    def welch_only():
        welch(x, fs, n)

    for label, fn in [("welch + 6 trapezoids, 8 channels in one call", vectorised),
                      ("welch + 6 trapezoids, one call per channel", per_channel),
                      ("welch only, 8 channels in one call", welch_only)]:
        # best of many short runs: robust against other load on the machine
        reps = 200
        best = min(timeit.repeat(fn, number=reps, repeat=30)) / reps
        print(f"scipy {scipy.__version__}: {label}: {best * 1e6:.1f} µs per window")


def main():
    ref = build()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        json.dump(ref, fh, separators=(",", ":"))
    size = os.path.getsize(OUT)
    n_win = sum(len(c["windows"]) for c in ref["cases"])
    print(f"wrote {OUT}: {len(ref['cases'])} cases, {n_win} windows, {size / 1024:.0f} KiB")
    if "--no-timing" not in sys.argv:
        timing()


if __name__ == "__main__":
    main()
