//! AutoAugment operations against torchvision's own implementation (`_apply_op` with the
//! magnitudes of `_augmentation_space`), on RGB and grey, square and non-square images: every
//! operation, every magnitude bin, both signs. The reference runs in the project's `.venv`.
//!
//! Every pixel must be identical, with one counted exception for the geometric operations. A
//! warp's source coordinate is a float32 affine expression; where its exact value lies on a
//! rounding tie (k + ½), nearest-neighbour sampling may pick either neighbour depending on how
//! the float32 arithmetic is evaluated. torchvision builds that grid with a float32 matrix
//! multiply, and BLAS evaluates it differently per CPU (MKL's AVX-512 kernels fuse multiply and
//! add, its AVX2 and SSE kernels do not; OpenBLAS on ARM differs again), so at ties no single
//! answer is "torchvision's". Pinning the reference (`MKL_CBWR=COMPATIBLE`) would only move the
//! problem to CPUs or BLAS builds that ignore that variable. So a differing pixel is accepted
//! only if (a) its source coordinate, on some axis, lies within `TIE_ULPS` float32 ulps (taken at
//! the image size, the scale of the grid's arithmetic) of a tie, and (b) the reference holds the
//! value of the *other* neighbour on that axis. Every other pixel must match exactly.
use crate::common::python;
use robarch::augment::autoaugment::{apply_op, magnitude, source_coordinates, Op};
use robarch::augment::Image;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};

fn op(name: &str) -> Op {
    match name {
        "ShearX" => Op::ShearX,
        "ShearY" => Op::ShearY,
        "TranslateX" => Op::TranslateX,
        "TranslateY" => Op::TranslateY,
        "Rotate" => Op::Rotate,
        "Brightness" => Op::Brightness,
        "Color" => Op::Color,
        "Contrast" => Op::Contrast,
        "Sharpness" => Op::Sharpness,
        "Posterize" => Op::Posterize,
        "Solarize" => Op::Solarize,
        "AutoContrast" => Op::AutoContrast,
        "Equalize" => Op::Equalize,
        "Invert" => Op::Invert,
        other => panic!("unknown op {other}"),
    }
}

/// Smooth gradients plus seeded noise: natural-image-like histograms, some saturated pixels.
fn images(n: i64, c: i64, h: i64, w: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let y = Tensor::arange(h, (Kind::Float, tch::Device::Cpu)).view([1, 1, h, 1]) / h as f64;
    let x = Tensor::arange(w, (Kind::Float, tch::Device::Cpu)).view([1, 1, 1, w]) / w as f64;
    let phase = Tensor::rand([n, c, 1, 1], (Kind::Float, tch::Device::Cpu)) * 6.0;
    let base = ((x * 5.0 + y * 3.0 + phase).sin() + 1.0) * 120.0;
    let noise = Tensor::randn([n, c, h, w], (Kind::Float, tch::Device::Cpu)) * 25.0;
    (base + noise).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// How far (in float32 ulps at the image size) a source coordinate may lie from a rounding tie
/// and still round either way. The grid value is a sum of three float32 products of magnitude
/// ≤ 2, evaluated with or without fused multiply-add and in any order: it differs between
/// evaluations by at most a few ulps of 2, and the unnormalisation `((g + 1)·w − 1)/2` scales
/// that by w/2 — a handful of ulps at the image size. 8 leaves a factor of two on that; the
/// largest distance seen on an AVX-512 CPU is printed by the test.
const TIE_ULPS: f32 = 8.0;

/// The candidates on one axis for source coordinate `s`: its round-half-to-even neighbour, plus
/// the other neighbour when `s` lies within `tol` of a tie. Returns them and the tie distance.
fn neighbours(s: f32, tol: f32) -> (Vec<f32>, Option<f32>) {
    let tie = s.floor() + 0.5;
    let distance = (s - tie).abs();
    if distance <= tol {
        (vec![s.floor(), s.floor() + 1.0], Some(distance))
    } else {
        (vec![s.round_ties_even()], None)
    }
}

/// Compares one transformed batch with the reference pixel by pixel; `sources` are the warp's
/// source coordinates, `None` for pixel-value operations (which must match everywhere). Returns
/// the number of pixels accepted as ties and the largest tie distance, or the mismatches.
fn compare(
    input: &[u8],
    ours: &[u8],
    want: &[u8],
    sources: Option<&[(f32, f32)]>,
    (c, h, w): (usize, usize, usize),
) -> Result<(usize, f32), String> {
    let tol = TIE_ULPS * f32::EPSILON * w.max(h) as f32;
    let (mut ties, mut widest, mut wrong, mut max) = (0, 0f32, 0, 0);
    for (j, (&a, &b)) in ours.iter().zip(want).enumerate() {
        if a == b {
            continue;
        }
        let Some(sources) = sources else {
            wrong += 1;
            max = max.max((a as i32 - b as i32).abs());
            continue;
        };
        let (image, k, i) = (j / (c * h * w), j / (h * w) % c, j % (h * w));
        let (sx, sy) = sources[i];
        let ((xs, dx), (ys, dy)) = (neighbours(sx, tol), neighbours(sy, tol));
        let value = |x: f32, y: f32| {
            let inside = x >= 0.0 && y >= 0.0 && x < w as f32 && y < h as f32;
            if inside {
                input[image * c * h * w + (k * h + y as usize) * w + x as usize]
            } else {
                0
            }
        };
        let tie = (dx.is_some() || dy.is_some())
            && xs.iter().any(|&x| ys.iter().any(|&y| value(x, y) == b));
        if tie {
            ties += 1;
            widest = widest.max(dx.unwrap_or(0.0)).max(dy.unwrap_or(0.0));
        } else {
            wrong += 1;
            max = max.max((a as i32 - b as i32).abs());
        }
    }
    if wrong > 0 {
        return Err(format!(
            "{wrong}/{} pixels differ (max {max}) away from rounding ties",
            want.len()
        ));
    }
    Ok((ties, widest))
}

#[test]
fn tie_rule_accepts_only_the_other_neighbour_at_a_tie() {
    // 1×1×4 row [10, 20, 30, 40]; output pixel 0 sampled at x = 1.5 (a tie) picks 20 (even);
    // the reference may hold 30 (the other neighbour) but not 40, and pixel 1 at x = 2.2 is no tie.
    let input = [10, 20, 30, 40];
    let sources = [(1.5, 0.0), (2.2, 0.0), (0.0, 0.0), (3.0, 0.0)];
    let ours = [20, 20, 10, 40];
    let dims = (1, 1, 4);
    assert_eq!(
        compare(&input, &ours, &[30, 20, 10, 40], Some(&sources), dims),
        Ok((1, 0.0))
    );
    assert!(compare(&input, &ours, &[40, 20, 10, 40], Some(&sources), dims).is_err());
    assert!(compare(&input, &ours, &[20, 30, 10, 40], Some(&sources), dims).is_err());
    // Pixel-value operations have no ties: any difference is a mismatch.
    assert!(compare(&input, &ours, &[30, 20, 10, 40], None, dims).is_err());
    assert_eq!(compare(&input, &ours, &ours, None, dims), Ok((0, 0.0)));
    // Just outside the tolerance is a mismatch; just inside is a tie.
    let tol = TIE_ULPS * f32::EPSILON * 4.0;
    let near = [(1.5 + 0.9 * tol, 0.0), (2.2, 0.0), (0.0, 0.0), (3.0, 0.0)];
    let far = [(1.5 + 2.0 * tol, 0.0), (2.2, 0.0), (0.0, 0.0), (3.0, 0.0)];
    assert!(compare(
        &input,
        &[30, 20, 10, 40],
        &[20, 20, 10, 40],
        Some(&near),
        dims
    )
    .is_ok());
    assert!(compare(
        &input,
        &[30, 20, 10, 40],
        &[20, 20, 10, 40],
        Some(&far),
        dims
    )
    .is_err());
}

#[test]
fn autoaugment_ops_match_torchvision_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    let rgb = images(6, 3, 32, 32, 1);
    let gray = images(4, 1, 20, 28, 2);
    Tensor::write_safetensors(&[("rgb", &rgb), ("gray", &gray)], &src).unwrap();
    let script = PathBuf::from(crate::common::ROOT).join("scripts/crosscheck_autoaugment.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("running the project's .venv python (run the suite through `make test`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: HashMap<String, Tensor> = Tensor::read_safetensors(&dst)
        .unwrap()
        .into_iter()
        .collect();
    let inputs: HashMap<&str, &Tensor> = [("rgb", &rgb), ("gray", &gray)].into();
    let mut checked = 0;
    let (mut ties, mut widest) = (0, 0f32);
    let mut failures = Vec::new();
    for (key, expected) in &reference {
        if key.starts_with("mag/") {
            continue;
        }
        let parts: Vec<&str> = key.split('/').collect();
        let (batch, name, bin, sign) = (
            parts[0],
            parts[1],
            parts[2].parse::<u8>().unwrap(),
            parts[3],
        );
        let input = inputs[batch];
        let s = input.size();
        let (c, h, w) = (s[1] as usize, s[2] as usize, s[3] as usize);
        let (mut m, _) = magnitude(op(name), bin, w, h);
        if sign == "-" {
            m = -m;
        }
        let ref_m = f64::try_from(&reference[&format!("mag/{key}")]).unwrap();
        // torch's float32 linspace kernel rounds differently with the CPU's vector width: allow
        // one float32 ulp (~1.2e-7 relative), then apply torchvision's exact value to compare
        // the operations themselves bit for bit.
        assert!(
            (m as f64 - ref_m).abs() <= 2.5e-7 * ref_m.abs().max(1.0),
            "{key}: magnitude {m} vs {ref_m}"
        );
        let m = ref_m as f32;
        let mut data = Vec::<u8>::try_from(input.contiguous().view([-1])).unwrap();
        for img in data.chunks_exact_mut(c * h * w) {
            apply_op(&mut Image { data: img, c, h, w }, op(name), m);
        }
        let want = Vec::<u8>::try_from(expected.contiguous().view([-1])).unwrap();
        let sources = source_coordinates(op(name), m, w, h);
        let original = Vec::<u8>::try_from(input.contiguous().view([-1])).unwrap();
        match compare(&original, &data, &want, sources.as_deref(), (c, h, w)) {
            Ok((t, d)) => {
                ties += t;
                widest = widest.max(d);
            }
            Err(e) => failures.push(format!("{key}: {e}")),
        }
        checked += 1;
    }
    // 14 ops: 9 signed × 10 bins × 2 signs + 2 unsigned × 10 bins + 3 without magnitude, two batches.
    assert_eq!(checked, 2 * (9 * 20 + 2 * 10 + 3));
    eprintln!(
        "{ties} warped pixels at rounding ties (largest distance from the tie {widest:e} px)"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
