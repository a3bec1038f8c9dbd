//! AutoAugment (Cubuk et al. 2019) with the learned CIFAR-10, ImageNet and SVHN policies, on uint8
//! CHW images, following torchvision's tensor implementation (`transforms/autoaugment.py` and
//! `_functional_tensor.py`): the same magnitude bins, nearest-neighbour affine warps with zero fill,
//! float32 blends truncated back to uint8, and PIL-style equalisation.
use super::Image;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Cifar10,
    Imagenet,
    Svhn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
    Invert,
}

use Op::*;
/// One sub-policy: two (operation, probability, magnitude bin) steps.
type SubPolicy = [(Op, f64, u8); 2];
/// Bin of operations without a magnitude (ignored).
const N: u8 = 0;

const IMAGENET: [SubPolicy; 25] = [
    [(Posterize, 0.4, 8), (Rotate, 0.6, 9)],
    [(Solarize, 0.6, 5), (AutoContrast, 0.6, N)],
    [(Equalize, 0.8, N), (Equalize, 0.6, N)],
    [(Posterize, 0.6, 7), (Posterize, 0.6, 6)],
    [(Equalize, 0.4, N), (Solarize, 0.2, 4)],
    [(Equalize, 0.4, N), (Rotate, 0.8, 8)],
    [(Solarize, 0.6, 3), (Equalize, 0.6, N)],
    [(Posterize, 0.8, 5), (Equalize, 1.0, N)],
    [(Rotate, 0.2, 3), (Solarize, 0.6, 8)],
    [(Equalize, 0.6, N), (Posterize, 0.4, 6)],
    [(Rotate, 0.8, 8), (Color, 0.4, 0)],
    [(Rotate, 0.4, 9), (Equalize, 0.6, N)],
    [(Equalize, 0.0, N), (Equalize, 0.8, N)],
    [(Invert, 0.6, N), (Equalize, 1.0, N)],
    [(Color, 0.6, 4), (Contrast, 1.0, 8)],
    [(Rotate, 0.8, 8), (Color, 1.0, 2)],
    [(Color, 0.8, 8), (Solarize, 0.8, 7)],
    [(Sharpness, 0.4, 7), (Invert, 0.6, N)],
    [(ShearX, 0.6, 5), (Equalize, 1.0, N)],
    [(Color, 0.4, 0), (Equalize, 0.6, N)],
    [(Equalize, 0.4, N), (Solarize, 0.2, 4)],
    [(Solarize, 0.6, 5), (AutoContrast, 0.6, N)],
    [(Invert, 0.6, N), (Equalize, 1.0, N)],
    [(Color, 0.6, 4), (Contrast, 1.0, 8)],
    [(Equalize, 0.8, N), (Equalize, 0.6, N)],
];

const CIFAR10: [SubPolicy; 25] = [
    [(Invert, 0.1, N), (Contrast, 0.2, 6)],
    [(Rotate, 0.7, 2), (TranslateX, 0.3, 9)],
    [(Sharpness, 0.8, 1), (Sharpness, 0.9, 3)],
    [(ShearY, 0.5, 8), (TranslateY, 0.7, 9)],
    [(AutoContrast, 0.5, N), (Equalize, 0.9, N)],
    [(ShearY, 0.2, 7), (Posterize, 0.3, 7)],
    [(Color, 0.4, 3), (Brightness, 0.6, 7)],
    [(Sharpness, 0.3, 9), (Brightness, 0.7, 9)],
    [(Equalize, 0.6, N), (Equalize, 0.5, N)],
    [(Contrast, 0.6, 7), (Sharpness, 0.6, 5)],
    [(Color, 0.7, 7), (TranslateX, 0.5, 8)],
    [(Equalize, 0.3, N), (AutoContrast, 0.4, N)],
    [(TranslateY, 0.4, 3), (Sharpness, 0.2, 6)],
    [(Brightness, 0.9, 6), (Color, 0.2, 8)],
    [(Solarize, 0.5, 2), (Invert, 0.0, N)],
    [(Equalize, 0.2, N), (AutoContrast, 0.6, N)],
    [(Equalize, 0.2, N), (Equalize, 0.6, N)],
    [(Color, 0.9, 9), (Equalize, 0.6, N)],
    [(AutoContrast, 0.8, N), (Solarize, 0.2, 8)],
    [(Brightness, 0.1, 3), (Color, 0.7, 0)],
    [(Solarize, 0.4, 5), (AutoContrast, 0.9, N)],
    [(TranslateY, 0.9, 9), (TranslateY, 0.7, 9)],
    [(AutoContrast, 0.9, N), (Solarize, 0.8, 3)],
    [(Equalize, 0.8, N), (Invert, 0.1, N)],
    [(TranslateY, 0.7, 9), (AutoContrast, 0.9, N)],
];

const SVHN: [SubPolicy; 25] = [
    [(ShearX, 0.9, 4), (Invert, 0.2, N)],
    [(ShearY, 0.9, 8), (Invert, 0.7, N)],
    [(Equalize, 0.6, N), (Solarize, 0.6, 6)],
    [(Invert, 0.9, N), (Equalize, 0.6, N)],
    [(Equalize, 0.6, N), (Rotate, 0.9, 3)],
    [(ShearX, 0.9, 4), (AutoContrast, 0.8, N)],
    [(ShearY, 0.9, 8), (Invert, 0.4, N)],
    [(ShearY, 0.9, 5), (Solarize, 0.2, 6)],
    [(Invert, 0.9, N), (AutoContrast, 0.8, N)],
    [(Equalize, 0.6, N), (Rotate, 0.9, 3)],
    [(ShearX, 0.9, 4), (Solarize, 0.3, 3)],
    [(ShearY, 0.8, 8), (Invert, 0.7, N)],
    [(Equalize, 0.9, N), (TranslateY, 0.6, 6)],
    [(Invert, 0.9, N), (Equalize, 0.6, N)],
    [(Contrast, 0.3, 3), (Rotate, 0.8, 4)],
    [(Invert, 0.8, N), (TranslateY, 0.0, 2)],
    [(ShearY, 0.7, 6), (Solarize, 0.4, 8)],
    [(Invert, 0.6, N), (Rotate, 0.8, 4)],
    [(ShearY, 0.3, 7), (TranslateX, 0.9, 3)],
    [(ShearX, 0.1, 6), (Invert, 0.6, N)],
    [(Solarize, 0.7, 2), (TranslateY, 0.6, 7)],
    [(ShearY, 0.8, 4), (Invert, 0.8, N)],
    [(ShearX, 0.7, 9), (TranslateY, 0.8, 3)],
    [(ShearY, 0.8, 5), (AutoContrast, 0.7, N)],
    [(ShearX, 0.7, 2), (Invert, 0.1, N)],
];

impl Policy {
    fn table(self) -> &'static [SubPolicy; 25] {
        match self {
            Policy::Cifar10 => &CIFAR10,
            Policy::Imagenet => &IMAGENET,
            Policy::Svhn => &SVHN,
        }
    }
}

/// `torch.linspace(start, end, 10)[bin]`, computed in double precision and rounded to float32
/// once. torch's own float32 kernel differs from this by at most one ulp, depending on the CPU's
/// vector width; such differences never change which pixels an operation produces.
fn linspace(start: f64, end: f64, bin: u8) -> f32 {
    (start + (end - start) * bin as f64 / 9.0) as f32
}

/// The magnitude of `op` at `bin` for a `w`×`h` image, and whether it gets a random sign
/// (`AutoAugment._augmentation_space(10, [w, h])`).
pub fn magnitude(op: Op, bin: u8, w: usize, h: usize) -> (f32, bool) {
    match op {
        ShearX | ShearY => (linspace(0.0, 0.3, bin), true),
        TranslateX => (linspace(0.0, 150.0 / 331.0 * w as f64, bin), true),
        TranslateY => (linspace(0.0, 150.0 / 331.0 * h as f64, bin), true),
        Rotate => (linspace(0.0, 30.0, bin), true),
        Brightness | Color | Contrast | Sharpness => (linspace(0.0, 0.9, bin), true),
        // 8 - round(bin / 2.25), rounding half to even as torch.round does.
        Posterize => (8.0 - (bin as f32 / 2.25).round_ties_even(), false),
        Solarize => (linspace(255.0, 0.0, bin), false),
        AutoContrast | Equalize | Invert => (0.0, false),
    }
}

/// Applies one sampled sub-policy of `policy` to `img`.
pub fn apply(img: &mut Image, policy: Policy, rng: &mut impl Rng) {
    let sub = &policy.table()[rng.random_range(0..25)];
    let probs: [f64; 2] = [rng.random(), rng.random()];
    let signs: [bool; 2] = [rng.random(), rng.random()];
    for (i, &(op, p, bin)) in sub.iter().enumerate() {
        if probs[i] <= p {
            let (mut m, signed) = magnitude(op, bin, img.w, img.h);
            if signed && !signs[i] {
                m = -m;
            }
            apply_op(img, op, m);
        }
    }
}

/// The inverse-affine parameters (centre, angle, translation, shear) of a geometric operation
/// with signed magnitude `m` on a `w`×`h` image, as torchvision's `_apply_op` passes them to
/// `F.affine`/`F.rotate`; `None` for the pixel-value operations.
fn warp(op: Op, m: f32, w: usize, h: usize) -> Option<Warp> {
    let corner = (-(w as f64) * 0.5, -(h as f64) * 0.5);
    let shear = (m as f64).atan().to_degrees();
    Some(match op {
        ShearX => Warp {
            center: corner,
            shear: (shear, 0.0),
            ..Warp::IDENTITY
        },
        ShearY => Warp {
            center: corner,
            shear: (0.0, shear),
            ..Warp::IDENTITY
        },
        TranslateX => Warp {
            t: (m.trunc() as f64, 0.0),
            ..Warp::IDENTITY
        },
        TranslateY => Warp {
            t: (0.0, m.trunc() as f64),
            ..Warp::IDENTITY
        },
        // F.rotate passes -angle to the inverse-matrix builder.
        Rotate => Warp {
            angle: -(m as f64),
            ..Warp::IDENTITY
        },
        _ => return None,
    })
}

/// Applies one operation with a signed magnitude (torchvision `_apply_op`).
pub fn apply_op(img: &mut Image, op: Op, m: f32) {
    match op {
        ShearX | ShearY | TranslateX | TranslateY | Rotate => {
            let warp = warp(op, m, img.w, img.h).expect("geometric operations have a warp");
            affine(img, &warp)
        }
        Brightness => blend(img, |_| 0.0, m),
        Color => {
            if img.c == 1 {
                return;
            }
            let g = grayscale(img);
            let plane = img.h * img.w;
            blend(img, |i| g[i % plane] as f32, m)
        }
        Contrast => {
            let g = grayscale(img);
            let mean = g.iter().map(|&v| v as f32).sum::<f32>() / g.len() as f32;
            blend(img, |_| mean, m)
        }
        Sharpness => {
            if img.h <= 2 || img.w <= 2 {
                return;
            }
            let blurred = degenerate(img);
            blend(img, |i| blurred[i] as f32, m)
        }
        Posterize => {
            let mask = (0xFFu32 << (8 - m as u32)) as u8;
            img.data.iter_mut().for_each(|v| *v &= mask);
        }
        Solarize => img
            .data
            .iter_mut()
            .for_each(|v| *v = if *v as f32 >= m { 255 - *v } else { *v }),
        AutoContrast => {
            let plane = img.h * img.w;
            for ch in img.data.chunks_exact_mut(plane) {
                let lo = *ch.iter().min().unwrap_or(&0) as f32;
                let hi = *ch.iter().max().unwrap_or(&0) as f32;
                let (lo, scale) = if hi > lo {
                    (lo, 255.0 / (hi - lo))
                } else {
                    (0.0, 1.0)
                };
                ch.iter_mut()
                    .for_each(|v| *v = ((*v as f32 - lo) * scale).clamp(0.0, 255.0) as u8);
            }
        }
        Equalize => {
            let plane = img.h * img.w;
            img.data.chunks_exact_mut(plane).for_each(equalize_channel);
        }
        Invert => img.data.iter_mut().for_each(|v| *v = 255 - *v),
    }
}

/// `ratio * img + (1 - ratio) * other` with `ratio = 1 + m`, clamped and truncated to uint8
/// (`_blend`). As in PyTorch, the factors are formed in double precision and rounded to float32
/// once, and the two products are separate float32 operations.
fn blend(img: &mut Image, other: impl Fn(usize) -> f32, m: f32) {
    let ratio = 1.0 + m as f64;
    let (r, q) = (ratio as f32, (1.0 - ratio) as f32);
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = (r * *v as f32 + q * other(i)).clamp(0.0, 255.0) as u8;
    }
}

/// ITU-R 601 luma, truncated to uint8 (`rgb_to_grayscale`); a single channel is returned as is.
fn grayscale(img: &Image) -> Vec<u8> {
    let plane = img.h * img.w;
    if img.c == 1 {
        return img.data.to_vec();
    }
    (0..plane)
        .map(|i| {
            let (r, g, b) = (
                img.data[i] as f32,
                img.data[plane + i] as f32,
                img.data[2 * plane + i] as f32,
            );
            (0.2989 * r + 0.587 * g + 0.114 * b) as u8
        })
        .collect()
}

/// The smoothed image PIL's sharpness enhancer blends with: a 3×3 kernel (centre 5, others 1,
/// /13) on the interior, rounded; the one-pixel border keeps its values.
fn degenerate(img: &Image) -> Vec<u8> {
    let (h, w) = (img.h, img.w);
    let mut out = img.data.to_vec();
    for ch in 0..img.c {
        let p = &img.data[ch * h * w..(ch + 1) * h * w];
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let mut s = 0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let k = if dy == 1 && dx == 1 { 5.0 } else { 1.0 };
                        s += k / 13.0 * p[(y + dy - 1) * w + x + dx - 1] as f32;
                    }
                }
                out[ch * h * w + y * w + x] = s.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// PIL's histogram equalisation of one channel (`_scale_channel`).
fn equalize_channel(ch: &mut [u8]) {
    let mut hist = [0u64; 256];
    ch.iter().for_each(|&v| hist[v as usize] += 1);
    let nonzero: Vec<u64> = hist.iter().copied().filter(|&c| c != 0).collect();
    let step = nonzero[..nonzero.len().saturating_sub(1)]
        .iter()
        .sum::<u64>()
        / 255;
    if step == 0 {
        return;
    }
    let mut lut = [0u8; 256];
    let mut cum = 0u64;
    for (i, &c) in hist.iter().enumerate() {
        // lut[i] = (cumsum[i-1] + step/2) / step, shifted by one, clamped to 255.
        lut[i] = ((cum + step / 2) / step).min(255) as u8;
        cum += c;
    }
    ch.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// An inverse affine warp about `center` (centre-relative pixels): rotation by `angle` and
/// shear (degrees), translation `t` (pixels).
struct Warp {
    center: (f64, f64),
    angle: f64,
    t: (f64, f64),
    shear: (f64, f64),
}

impl Warp {
    const IDENTITY: Warp = Warp {
        center: (0.0, 0.0),
        angle: 0.0,
        t: (0.0, 0.0),
        shear: (0.0, 0.0),
    };

    /// torchvision `_get_inverse_affine_matrix`: maps output to input coordinates, both relative
    /// to the image centre.
    fn inverse_matrix(&self) -> [f64; 6] {
        let rot = self.angle.to_radians();
        let (sx, sy) = (self.shear.0.to_radians(), self.shear.1.to_radians());
        let (cx, cy) = self.center;
        let t = self.t;
        let a = (rot - sy).cos() / sy.cos();
        let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
        let c = (rot - sy).sin() / sy.cos();
        let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
        let mut m = [d, -b, 0.0, -c, a, 0.0];
        m[2] += m[0] * (-cx - t.0) + m[1] * (-cy - t.1);
        m[5] += m[3] * (-cx - t.0) + m[4] * (-cy - t.1);
        m[2] += cx;
        m[5] += cy;
        m
    }

    /// The source coordinate (x, y) in input pixels of every output pixel, row-major, before
    /// nearest-neighbour rounding. Follows torchvision's float32 path step by step
    /// (`_gen_affine_grid`: theta rescaled to normalised coordinates, then `grid_sample`'s
    /// unnormalisation), each product and sum rounded separately.
    fn sources(&self, w: usize, h: usize) -> impl Iterator<Item = (f32, f32)> {
        let m = self.inverse_matrix().map(|v| v as f32);
        let (hw, hh) = (w as f32 * 0.5, h as f32 * 0.5);
        // rescaled_theta = theta^T / [w/2, h/2]
        let r = [
            m[0] / hw,
            m[1] / hw,
            m[2] / hw,
            m[3] / hh,
            m[4] / hh,
            m[5] / hh,
        ];
        (0..h).flat_map(move |y| {
            let yc = -hh + 0.5 + y as f32;
            (0..w).map(move |x| {
                let xc = -hw + 0.5 + x as f32;
                let gx = xc * r[0] + yc * r[1] + r[2];
                let gy = xc * r[3] + yc * r[4] + r[5];
                (
                    ((gx + 1.0) * w as f32 - 1.0) / 2.0,
                    ((gy + 1.0) * h as f32 - 1.0) / 2.0,
                )
            })
        })
    }
}

/// For a geometric operation, the unrounded source coordinate (x, y) of every output pixel of a
/// `w`×`h` image, row-major; `None` for pixel-value operations. Output pixel `i` takes input
/// pixel `(x.round_ties_even(), y.round_ties_even())`, or zero outside the image. Exposed so the
/// torchvision cross-check can tell a rounding tie from a wrong pixel.
pub fn source_coordinates(op: Op, m: f32, w: usize, h: usize) -> Option<Vec<(f32, f32)>> {
    warp(op, m, w, h).map(|warp| warp.sources(w, h).collect())
}

/// Nearest-neighbour affine warp with zero fill (`F.affine` / `F.rotate` on tensors): source
/// coordinates as `Warp::sources`, rounded half to even as `grid_sample` does, so pixels whose
/// source lies exactly between two pixels pick the same neighbour.
fn affine(img: &mut Image, warp: &Warp) {
    let (c, h, w) = (img.c, img.h, img.w);
    let src = img.data.to_vec();
    for (i, (sx, sy)) in warp.sources(w, h).enumerate() {
        let (sx, sy) = (sx.round_ties_even(), sy.round_ties_even());
        let inside = sx >= 0.0 && sy >= 0.0 && sx < w as f32 && sy < h as f32;
        for k in 0..c {
            img.data[k * h * w + i] = if inside {
                src[(k * h + sy as usize) * w + sx as usize]
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Op, m: f32, data: &[u8], c: usize, h: usize, w: usize) -> Vec<u8> {
        let mut d = data.to_vec();
        apply_op(
            &mut Image {
                data: &mut d,
                c,
                h,
                w,
            },
            op,
            m,
        );
        d
    }

    #[test]
    fn magnitude_bins_match_torchvision() {
        assert_eq!(magnitude(Posterize, 0, 32, 32).0, 8.0);
        // torch.arange(10) / 2.25 rounded half-to-even: [0,0,1,1,2,2,3,3,4,4].
        let bits: Vec<f32> = (0..10).map(|b| magnitude(Posterize, b, 32, 32).0).collect();
        assert_eq!(bits, [8., 8., 7., 7., 6., 6., 5., 5., 4., 4.]);
        assert_eq!(magnitude(Solarize, 0, 32, 32).0, 255.0);
        assert_eq!(magnitude(Solarize, 9, 32, 32).0, 0.0);
        assert!((magnitude(Rotate, 9, 32, 32).0 - 30.0).abs() < 1e-5);
        // 150/331 of the width at the top bin: 14.50 px on CIFAR, truncated to 14 when applied.
        assert!((magnitude(TranslateX, 9, 32, 20).0 - 14.501_51).abs() < 1e-3);
        assert!((magnitude(TranslateY, 9, 32, 20).0 - 9.063_44).abs() < 1e-3);
    }

    #[test]
    fn pointwise_ops_by_hand() {
        let px = [0u8, 100, 200, 255];
        assert_eq!(run(Invert, 0.0, &px, 1, 2, 2), [255, 155, 55, 0]);
        assert_eq!(run(Posterize, 4.0, &px, 1, 2, 2), [0, 96, 192, 240]);
        assert_eq!(run(Solarize, 150.0, &px, 1, 2, 2), [0, 100, 55, 0]);
        // Brightness 1.5: 150, 300 → 255; truncation not rounding: 0.7 × 255 = 178.5 → 178.
        assert_eq!(run(Brightness, 0.5, &px, 1, 2, 2), [0, 150, 255, 255]);
        assert_eq!(run(Brightness, -0.3, &px, 1, 2, 2), [0, 70, 140, 178]);
        // Autocontrast stretches [100, 200] to [0, 255]; a constant image is left alone.
        assert_eq!(
            run(AutoContrast, 0.0, &[100, 150, 200, 125], 1, 2, 2),
            [0, 127, 255, 63]
        );
        assert_eq!(run(AutoContrast, 0.0, &[7, 7, 7, 7], 1, 2, 2), [7, 7, 7, 7]);
        // Contrast 0 collapses to the (float) mean 138.75, truncated.
        assert_eq!(run(Contrast, -1.0, &px, 1, 2, 2), [138, 138, 138, 138]);
    }

    #[test]
    fn color_uses_luma_and_ignores_gray_images() {
        // One pixel, RGB (255, 0, 0): luma 0.2989×255 = 76.2 → 76; saturation 0 gives gray 76.
        assert_eq!(run(Color, -1.0, &[255, 0, 0], 3, 1, 1), [76, 76, 76]);
        assert_eq!(run(Color, -1.0, &[5, 9], 1, 1, 2), [5, 9]);
    }

    #[test]
    fn equalize_matches_pil_lut() {
        // Histogram {10: 2, 20: 1, 30: 1}: step = (2 + 1) / 255 = 0 → unchanged (PIL too).
        assert_eq!(
            run(Equalize, 0.0, &[10, 10, 20, 30], 1, 2, 2),
            [10, 10, 20, 30]
        );
        // 512 pixels: 256 at 0, 128 at 100, 128 at 200. step = (256 + 128) / 255 = 1.
        // lut[0] = 0, lut[100] = (256 + 0) / 1 = 256 → 255, lut[200] = 384 → 255.
        let mut d = vec![0u8; 256];
        d.extend(vec![100u8; 128]);
        d.extend(vec![200u8; 128]);
        let out = run(Equalize, 0.0, &d, 1, 16, 32);
        assert_eq!((out[0], out[300], out[500]), (0, 255, 255));
        // Uniform 0..=255 ramp twice: step = 510 / 255 = 2, lut[v] = (2v + 1) / 2 = v → identity.
        let ramp: Vec<u8> = (0..512).map(|i| (i % 256) as u8).collect();
        assert_eq!(run(Equalize, 0.0, &ramp, 1, 16, 32), ramp);
    }

    #[test]
    fn sharpness_blends_with_interior_blur() {
        // 3×3 with a bright centre: the blur of the centre is (8×0 + 5×130) / 13 = 50; factor 0
        // gives the blur, the border is untouched.
        let mut img = vec![0u8; 9];
        img[4] = 130;
        let out = run(Sharpness, -1.0, &img, 1, 3, 3);
        assert_eq!(out[4], 50);
        assert_eq!(out[0], 0);
        assert_eq!(run(Sharpness, 0.0, &img, 1, 3, 3), img);
    }

    #[test]
    fn affine_ops_move_pixels_as_torchvision_does() {
        let img: Vec<u8> = (1..=16).collect();
        // Translate x by +1 (magnitude 1.9 truncates to 1): content moves right, left column 0.
        let t = run(TranslateX, 1.9, &img, 1, 4, 4);
        assert_eq!(&t[..4], &[0, 1, 2, 3]);
        let t = run(TranslateY, -1.0, &img, 1, 4, 4);
        assert_eq!(&t[..4], &[5, 6, 7, 8]);
        assert_eq!(&t[12..], &[0, 0, 0, 0]);
        // Rotate +90° is counter-clockwise: the top row becomes the left column, bottom to top.
        let r = run(Rotate, 90.0, &img, 1, 4, 4);
        assert_eq!(r, [4, 8, 12, 16, 3, 7, 11, 15, 2, 6, 10, 14, 1, 5, 9, 13]);
        // Shear about the top-left corner leaves row 0 in place.
        let s = run(ShearX, 0.3, &img, 1, 4, 4);
        assert_eq!(&s[..4], &img[..4]);
        assert_ne!(s, img);
    }

    #[test]
    fn policy_application_is_deterministic_per_seed() {
        use rand::SeedableRng;
        let base: Vec<u8> = (0..3 * 8 * 8).map(|i| (i * 7 % 256) as u8).collect();
        let go = |seed| {
            let mut d = base.clone();
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            apply(
                &mut Image {
                    data: &mut d,
                    c: 3,
                    h: 8,
                    w: 8,
                },
                Policy::Cifar10,
                &mut rng,
            );
            d
        };
        assert_eq!(go(1), go(1));
        assert!((0..20).any(|s| go(s) != base));
    }
}
