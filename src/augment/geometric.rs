//! Geometric augmentations of the authors' recipes: random crop with zero padding, horizontal flip
//! and RandomResizedCrop, each on one uint8 CHW image, matching torchvision's parameter sampling.
use super::Image;
use rand::Rng;

/// `RandomCrop(size, padding=p)`: zero-pad by `p` on every side, then crop a random window of the
/// original size.
pub fn random_crop(img: &mut Image, padding: usize, rng: &mut impl Rng) {
    if padding == 0 {
        return;
    }
    let (c, h, w) = (img.c, img.h, img.w);
    let dy = rng.random_range(0..=2 * padding) as isize - padding as isize;
    let dx = rng.random_range(0..=2 * padding) as isize - padding as isize;
    let src = img.data.to_vec();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as isize + dy, x as isize + dx);
                img.data[(ch * h + y) * w + x] =
                    if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                        src[(ch * h + sy as usize) * w + sx as usize]
                    } else {
                        0
                    };
            }
        }
    }
}

/// Mirrors the image left-right.
pub fn hflip(img: &mut Image) {
    let w = img.w;
    for row in img.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// Samples torchvision's `RandomResizedCrop.get_params`: up to ten tries of a window with area
/// fraction in `scale` and log-uniform aspect ratio in `ratio`, else a centre crop with the ratio
/// clamped. Returns (top, left, height, width).
pub fn rrc_window(
    h: usize,
    w: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = (rng.random_range(lr0..=lr1)).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return (top, left, ch, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        ((w as f64 / ratio.0).round() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, (h as f64 * ratio.1).round() as usize)
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// `RandomResizedCrop(size)` back to the image's own size, bilinear (half-pixel centres).
pub fn random_resized_crop(
    img: &mut Image,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) {
    let (top, left, ch, cw) = rrc_window(img.h, img.w, scale, ratio, rng);
    let src = img.data.to_vec();
    let (c, h, w) = (img.c, img.h, img.w);
    let (sy, sx) = (ch as f32 / h as f32, cw as f32 / w as f32);
    for y in 0..h {
        let fy = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (fy as usize).min(ch - 1);
        let y1 = (y0 + 1).min(ch - 1);
        let wy = fy - y0 as f32;
        for x in 0..w {
            let fx = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (fx as usize).min(cw - 1);
            let x1 = (x0 + 1).min(cw - 1);
            let wx = fx - x0 as f32;
            for k in 0..c {
                let at = |yy: usize, xx: usize| src[(k * h + top + yy) * w + left + xx] as f32;
                let v = (1.0 - wy) * ((1.0 - wx) * at(y0, x0) + wx * at(y0, x1))
                    + wy * ((1.0 - wx) * at(y1, x0) + wx * at(y1, x1));
                img.data[(k * h + y) * w + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ramp(c: usize, h: usize, w: usize) -> Vec<u8> {
        (0..c * h * w).map(|i| (i % 251) as u8 + 1).collect()
    }

    #[test]
    fn random_crop_shifts_content_and_zero_fills() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let orig = ramp(1, 6, 6);
        let mut seen_shift = false;
        for _ in 0..20 {
            let mut d = orig.clone();
            random_crop(
                &mut Image {
                    data: &mut d,
                    c: 1,
                    h: 6,
                    w: 6,
                },
                2,
                &mut rng,
            );
            // Every output pixel is either padding (0) or an input pixel at one common offset.
            let zeros = d.iter().filter(|&&v| v == 0).count();
            let kept: Vec<u8> = d.iter().copied().filter(|&v| v != 0).collect();
            assert_eq!(zeros + kept.len(), 36);
            assert!(
                kept.windows(2).all(|p| p[0] < p[1]),
                "order preserved: {d:?}"
            );
            seen_shift |= zeros > 0;
        }
        assert!(seen_shift);
    }

    #[test]
    fn hflip_reverses_rows_per_channel() {
        let mut d = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        hflip(&mut Image {
            data: &mut d,
            c: 2,
            h: 2,
            w: 3,
        });
        assert_eq!(d, [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
    }

    #[test]
    fn rrc_window_respects_bounds_and_full_scale_is_identity() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        for _ in 0..200 {
            let (t, l, h, w) = rrc_window(32, 40, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(t + h <= 32 && l + w <= 40 && h > 0 && w > 0);
            let a = (h * w) as f64 / (32.0 * 40.0);
            assert!(a <= 1.0 + 1e-9);
        }
        // scale = ratio = 1 on a square image: the crop is the whole image, resize is the identity.
        let orig = ramp(3, 8, 8);
        let mut d = orig.clone();
        random_resized_crop(
            &mut Image {
                data: &mut d,
                c: 3,
                h: 8,
                w: 8,
            },
            (1.0, 1.0),
            (1.0, 1.0),
            &mut rng,
        );
        assert_eq!(d, orig);
    }
}
