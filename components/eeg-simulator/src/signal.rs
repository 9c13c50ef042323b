//! A deterministic EEG-like signal: per channel, the configured sines with a
//! channel-specific phase and gain, plus Gaussian noise from a seeded
//! generator (so a seed reproduces a run exactly).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::TAU;

use crate::config::SineComponent;

/// The signal of one user.
pub struct Generator {
    fs: f64,
    components: Vec<SineComponent>,
    /// Per channel: (gain, phase offset).
    channels: Vec<(f64, f64)>,
    noise: f64,
    rng: StdRng,
    index: u64,
}

impl Generator {
    /// A generator for `channels` channels; `seed` picks the noise.
    pub fn new(
        fs: f64,
        channels: usize,
        components: &[SineComponent],
        noise: f64,
        seed: u64,
    ) -> Self {
        let channels = (0..channels)
            .map(|c| (1.0 + 0.1 * (c as f64 % 3.0), 0.7 * c as f64))
            .collect();
        Generator {
            fs,
            components: components.to_vec(),
            channels,
            noise,
            rng: StdRng::seed_from_u64(seed),
            index: 0,
        }
    }

    /// Samples produced so far.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Write the next sample (one value per channel) into `out`.
    pub fn next_sample(&mut self, out: &mut Vec<f64>) {
        out.clear();
        let t = self.index as f64 / self.fs;
        for &(gain, phase) in &self.channels {
            let mut v = 0.0;
            for c in &self.components {
                v += gain * c.amplitude * (TAU * c.frequency * t + phase).sin();
            }
            if self.noise > 0.0 {
                v += self.noise * gaussian(&mut self.rng);
            }
            out.push(v);
        }
        self.index += 1;
    }
}

/// A standard normal value (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_signal() {
        let comps = [SineComponent {
            frequency: 10.0,
            amplitude: 5.0,
        }];
        let mut a = Generator::new(256.0, 4, &comps, 1.0, 7);
        let mut b = Generator::new(256.0, 4, &comps, 1.0, 7);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            a.next_sample(&mut x);
            b.next_sample(&mut y);
            assert_eq!(x, y);
        }
        assert_eq!(x.len(), 4);
        assert_eq!(a.index(), 100);
    }
}
