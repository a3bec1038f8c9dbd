//! Procedural image classification data of any size and resolution, for benchmarks and scale tests.
//!
//! Each class is a fixed random pattern of Gaussian blobs per channel; an image is its class pattern
//! shifted by a random offset, plus pixel noise. Learnable but not trivial, and fully seeded.
use super::RawSplit;
use crate::vocab::Problem;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub const NATIVE_RESOLUTION: u32 = 32;
/// Bump when the generator's output changes; it is part of the prepare stage's key.
pub const GENERATOR_VERSION: &str = "synthetic-v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    #[serde(default = "d_classes")]
    pub classes: usize,
    #[serde(default = "d_train")]
    pub train_size: usize,
    #[serde(default = "d_test")]
    pub test_size: usize,
    #[serde(default = "d_channels")]
    pub channels: usize,
    /// Standard deviation of the pixel noise, in [0,1] pixel units.
    #[serde(default = "d_noise")]
    pub noise: f64,
}

fn d_classes() -> usize {
    10
}
fn d_train() -> usize {
    1000
}
fn d_test() -> usize {
    200
}
fn d_channels() -> usize {
    3
}
fn d_noise() -> f64 {
    0.15
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            classes: 10,
            train_size: 1000,
            test_size: 200,
            channels: 3,
            noise: 0.15,
        }
    }
}

impl SyntheticSpec {
    /// Checks the sizes and ranges; the problem is relative to the `synthetic:` options.
    pub fn check(&self) -> Result<(), Problem> {
        if !(2..=1000).contains(&self.classes) {
            return Err(Problem::at("classes", "must be between 2 and 1000"));
        }
        if self.train_size == 0 {
            return Err(Problem::at("train_size", "must be at least 1"));
        }
        if self.test_size == 0 {
            return Err(Problem::at("test_size", "must be at least 1"));
        }
        if !(self.channels == 1 || self.channels == 3) {
            return Err(Problem::at("channels", "must be 1 or 3"));
        }
        if !(0.0..=1.0).contains(&self.noise) {
            return Err(Problem::at("noise", "must be in [0, 1]"));
        }
        Ok(())
    }
}

fn gaussian(rng: &mut impl Rng) -> f64 {
    // Box–Muller; one of the pair is enough here.
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

struct Blob {
    cx: f64,
    cy: f64,
    sigma: f64,
    amp: Vec<f64>,
}

/// Generates (train, test) splits.
pub fn generate(spec: &SyntheticSpec, resolution: u32, seed: u64) -> (RawSplit, RawSplit) {
    let size = resolution as usize;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed ^ 0x5eed_5e7);
    let patterns: Vec<Vec<Blob>> = (0..spec.classes)
        .map(|_| {
            (0..3)
                .map(|_| Blob {
                    cx: rng.random_range(0.2..0.8),
                    cy: rng.random_range(0.2..0.8),
                    sigma: rng.random_range(0.08..0.25),
                    amp: (0..spec.channels)
                        .map(|_| rng.random_range(-0.5..0.5))
                        .collect(),
                })
                .collect()
        })
        .collect();
    let make = |n: usize, rng: &mut rand_pcg::Pcg64| {
        let mut images = Vec::with_capacity(n * spec.channels * size * size);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % spec.classes;
            let (dx, dy) = (rng.random_range(-0.1..0.1), rng.random_range(-0.1..0.1));
            for c in 0..spec.channels {
                for yy in 0..size {
                    for xx in 0..size {
                        let (px, py) = (
                            (xx as f64 + 0.5) / size as f64,
                            (yy as f64 + 0.5) / size as f64,
                        );
                        let mut v = 0.5;
                        for b in &patterns[class] {
                            let d2 = (px - b.cx - dx).powi(2) + (py - b.cy - dy).powi(2);
                            v += b.amp[c] * (-d2 / (2.0 * b.sigma * b.sigma)).exp();
                        }
                        v += spec.noise * gaussian(rng);
                        images.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                    }
                }
            }
            labels.push(class as i64);
        }
        RawSplit {
            images,
            labels,
            channels: spec.channels,
            size,
        }
    };
    let train = make(spec.train_size, &mut rng);
    let test = make(spec.test_size, &mut rng);
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sized_and_seed_dependent() {
        let s = SyntheticSpec {
            classes: 3,
            train_size: 12,
            test_size: 6,
            channels: 3,
            noise: 0.1,
        };
        let (a, b) = generate(&s, 8, 1);
        assert_eq!(a.images.len(), 12 * 3 * 64);
        assert_eq!(b.len(), 6);
        assert_eq!(a.images, generate(&s, 8, 1).0.images);
        assert_ne!(a.images, generate(&s, 8, 2).0.images);
        assert_eq!(a.labels.iter().filter(|&&l| l == 2).count(), 4);
    }
}
