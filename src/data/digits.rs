//! The embedded UCI optical handwritten digits (1,797 images, 8×8, values 0..16; CC BY 4.0).
use super::RawSplit;
use anyhow::{bail, Context, Result};
use std::io::Read;

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

pub const NATIVE_RESOLUTION: u32 = 8;
pub const CLASSES: usize = 10;

/// Content hash of the embedded file; part of the prepare stage's key.
pub fn source_hash() -> String {
    blake3::hash(DIGITS_CSV_GZ).to_hex().to_string()
}

/// Decodes all 1,797 images, scaling 0..16 to 0..255.
pub fn load_all() -> Result<RawSplit> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .context("decompressing the embedded digits data")?;
    let mut images = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (lineno, line) in text.lines().enumerate() {
        let vals: Vec<u32> = line
            .split(',')
            .map(|v| v.trim().parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("embedded digits line {}", lineno + 1))?;
        if vals.len() != 65 || vals[..64].iter().any(|&v| v > 16) || vals[64] as usize >= CLASSES {
            bail!("embedded digits line {} is malformed", lineno + 1);
        }
        images.extend(vals[..64].iter().map(|&v| ((v * 255 + 8) / 16) as u8));
        labels.push(vals[64] as i64);
    }
    Ok(RawSplit {
        images,
        labels,
        channels: 1,
        size: 8,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_all_digits_with_full_range() {
        let d = super::load_all().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.images.len(), 1797 * 64);
        assert_eq!(*d.images.iter().max().unwrap(), 255);
        for c in 0..10 {
            let n = d.labels.iter().filter(|&&l| l == c).count();
            assert!((170..=190).contains(&n), "class {c} has {n}");
        }
    }
}
