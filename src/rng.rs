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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_give_different_seeds() {
        assert_ne!(derive(1, &[2, 3]), derive(1, &[3, 2]));
        assert_ne!(derive(1, &[0]), derive(2, &[0]));
        assert_eq!(derive(1, &[2, 3]), derive(1, &[2, 3]));
    }
}
