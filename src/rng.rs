//! Reproducible randomness while stages run concurrently: every random draw that affects results
//! (weight init, shuffling, augmentation, random starts) is seeded from the stage seed and the
//! position in the computation (epoch, batch) via [`derive`]. Results then depend only on those
//! numbers, so a resumed run reproduces an uninterrupted one without saving RNG state. libtorch's
//! global generators are reseeded under `torch::seed::with_seed`.
/// A seed for a position (`parts`) in a computation seeded with `seed` (SplitMix64 mixing).
pub fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut z = seed ^ 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        z = z
            .wrapping_add(p.wrapping_mul(0xBF58_476D_1CE4_E5B9))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// SplitMix64 (Steele, Lea & Flood 2014): the generator `derive` mixes with, as a stream. Its
/// state is one `u64`, so a stream per point costs nothing to set up, and a few lines of Python
/// reproduce it (`scripts/square_reference/harness.py`).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// U[0, 1) in float32 from the top 24 bits of the next output (exact in float32).
    pub fn next_f32(&mut self) -> f32 {
        use rand::RngCore;
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

impl rand::RngCore for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::rand_core::impls::fill_bytes_via_next(self, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_the_published_sequence() {
        use rand::RngCore;
        // The reference implementation's first outputs from seed 1234567 (splitmix64.c).
        let mut g = SplitMix64(1234567);
        let want = [6457827717110365317u64, 3203168211198807973, 9817491932198370423];
        for w in want {
            assert_eq!(g.next_u64(), w);
        }
        let u = SplitMix64(7).next_f32();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn positions_give_different_seeds() {
        assert_ne!(derive(1, &[2, 3]), derive(1, &[3, 2]));
        assert_ne!(derive(1, &[0]), derive(2, &[0]));
        assert_eq!(derive(1, &[2, 3]), derive(1, &[2, 3]));
    }
}
