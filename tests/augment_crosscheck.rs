//! AutoAugment operations against torchvision's own implementation (`_apply_op` with the
//! magnitudes of `_augmentation_space`), on RGB and grey, square and non-square images: every
//! operation, every magnitude bin, both signs. The reference runs in the project's `.venv`.
mod common;
use common::python;
use robarch::augment::autoaugment::{apply_op, magnitude, Op};
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
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/crosscheck_autoaugment.py");
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
        let wrong = data.iter().zip(&want).filter(|(a, b)| a != b).count();
        if wrong > 0 {
            let max = data
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap();
            failures.push(format!(
                "{key}: {wrong}/{} pixels differ (max {max})",
                want.len()
            ));
        }
        checked += 1;
    }
    // 14 ops: 9 signed × 10 bins × 2 signs + 2 unsigned × 10 bins + 3 without magnitude, two batches.
    assert_eq!(checked, 2 * (9 * 20 + 2 * 10 + 3));
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
