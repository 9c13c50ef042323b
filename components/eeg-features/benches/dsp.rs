//! Per-window cost of the eeg_features numeric core: 8 channels, 256 Hz,
//! 2 s window (512 samples, 3 Welch segments of 256 per channel).
//!
//! * `welch_psd/1ch`: one channel's Welch PSD.
//! * `features/8ch_256Hz_2s`: everything one window needs (8 PSDs, band
//!   integrals, averages, metrics, confidence) into a reused output.
//! * `window/copy_8ch`: copying the window out of a stream's ring.
//! * `stream/push_8ch_1s`: pushing one second (256 samples) into a stream,
//!   which completes one window, plus copy + features: the real-time cost of
//!   one stream-second at overlap 0.5.
//!
//! Run: `cargo bench -p fednode-eeg-features --bench dsp`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fednode_eeg_features::dsp::Welch;
use fednode_eeg_features::features::{FeatureConfig, FeatureExtractor};
use fednode_eeg_features::stream::{Stream, WindowBuffer, WindowSpec};

const FS: f64 = 256.0;
const CHANNELS: [&str; 8] = ["Fz", "F3", "F4", "Cz", "C3", "C4", "Pz", "Oz"];

/// Deterministic EEG-like test signal (sines + LCG noise).
fn signal(channels: usize, len: usize) -> Vec<Vec<f64>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..channels)
        .map(|c| {
            (0..len)
                .map(|i| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                    let t = i as f64 / FS;
                    20.0 * (std::f64::consts::TAU * (6.0 + c as f64) * t).sin()
                        + 10.0 * (std::f64::consts::TAU * 10.0 * t).sin()
                        + 15.0 * noise
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let names: Vec<String> = CHANNELS.iter().map(|s| s.to_string()).collect();
    let cfg = FeatureConfig::new(FS, names);
    let spec = cfg.window_spec().unwrap();
    let data = signal(CHANNELS.len(), spec.window_samples);

    let mut welch = Welch::new(FS).unwrap();
    c.bench_function("welch_psd/1ch", |b| {
        b.iter(|| black_box(welch.psd(black_box(&data[0])).unwrap()[10]))
    });

    let mut ex = FeatureExtractor::new(&cfg).unwrap();
    let mut out = ex.new_output();
    let buf = WindowBuffer::from_channels(&data);
    c.bench_function("features/8ch_256Hz_2s", |b| {
        b.iter(|| {
            ex.compute_into(black_box(&buf).iter(), &mut out).unwrap();
            black_box(out.confidence)
        })
    });

    // A stream filled with one window, for the copy benchmark.
    let mut stream = Stream::new(CHANNELS.len(), spec);
    let samples: Vec<Vec<f64>> = (0..spec.window_samples)
        .map(|i| data.iter().map(|ch| ch[i]).collect())
        .collect();
    for s in &samples {
        stream.push(s, Some(0)).unwrap();
    }
    let mut wbuf = WindowBuffer::new();
    c.bench_function("window/copy_8ch", |b| {
        b.iter(|| {
            stream.copy_window(&mut wbuf);
            black_box(wbuf.channel(7)[511])
        })
    });

    // One stream-second: 256 pushes (each 8 values), exactly one window.
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(256 * CHANNELS.len() as u64));
    let mut stream = Stream::new(CHANNELS.len(), WindowSpec::new(2.0, FS, 0.5).unwrap());
    for s in &samples[..256] {
        stream.push(s, Some(0)).unwrap();
    }
    group.bench_function("push_8ch_1s_plus_window", |b| {
        let mut ts = 0i64;
        b.iter(|| {
            let mut windows = 0;
            for s in &samples[..256] {
                ts += 4;
                if stream.push(black_box(s), Some(ts)).unwrap().is_some() {
                    stream.copy_window(&mut wbuf);
                    ex.compute_into(wbuf.iter(), &mut out).unwrap();
                    windows += 1;
                }
            }
            assert_eq!(windows, 1);
            black_box(out.confidence)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
