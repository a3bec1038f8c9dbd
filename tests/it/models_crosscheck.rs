//! Every architecture's weights, saved by robarch as safetensors, load into the reference PyTorch
//! implementation (timm, torchvision, or a transcription of the authors' code:
//! scripts/reference_models/) with identical names and shapes, the same parameter count, and
//! eval-mode logits equal to robarch's within 1e-5 of the largest logit and input gradients (what
//! attacks use) within a relative ℓ2 error of 1e-3, or else as close to the float64 gradient as
//! the reference's own float32 one; in training mode the backward pass reaches every parameter.
//! The reasons for both tolerances (float32 op order and MKL's per-CPU kernels; ReLUs at rounding
//! ties) are beside them in scripts/crosscheck_models.py. The reference runs in the project's
//! `.venv`.
use crate::common::python;
use robarch::models::{self, ModelIo, Network, REGISTRY};
use robarch::spec::ModelSpec;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Builds `arch` at `preset`, perturbs every tensor (so a swapped name, a layer-scale or a
/// running statistic that is ignored changes the logits), and writes weights, inputs, logits and
/// the config for the Python side.
fn export(dir: &Path, arch: &str, preset: &str, io: ModelIo, seed: i64) {
    let spec = ModelSpec {
        arch: None,
        preset: preset.into(),
        overrides: Default::default(),
    };
    let p = models::resolve(arch, &spec).unwrap();
    let c = io.in_channels as usize;
    let (mean, std) = (vec![0.45; c], vec![0.22; c]);
    let net = Network::new(&p, &io, &mean, &std, Device::Cpu, seed as u64).unwrap();
    tch::manual_seed(seed);
    tch::no_grad(|| {
        for (name, mut t) in net.named_tensors() {
            if name.starts_with("normalize.") || t.kind() != Kind::Float {
                continue;
            }
            let noise = if name.ends_with("running_var") {
                Tensor::rand_like(&t) * 0.5 + 0.75 - &t
            } else {
                Tensor::randn_like(&t) * 0.05
            };
            let _ = t.g_add_(&noise);
        }
    });
    let name = format!("{arch}-{preset}-{}px", io.image_size);
    net.save(&dir.join(format!("{name}.safetensors"))).unwrap();
    let x = Tensor::rand(
        [2, io.in_channels, io.image_size, io.image_size],
        (Kind::Float, Device::Cpu),
    );
    let y = tch::no_grad(|| net.forward_t(&x, false));
    assert_eq!(y.size(), [2, io.num_classes], "{name}");
    // The input gradient attacks take (eval mode), of Σ w ⊙ logits for a fixed random w.
    let w = Tensor::randn([2, io.num_classes], (Kind::Float, Device::Cpu));
    let input_grad = |train: bool| {
        let xg = x.detach().set_requires_grad(true);
        let out = (net.forward_t(&xg, train) * &w).sum(Kind::Float);
        out.backward();
        xg.grad()
    };
    let g = input_grad(false);
    Tensor::write_safetensors(
        &[("x", &x), ("y", &y), ("w", &w), ("g", &g)],
        dir.join(format!("{name}.io.safetensors")),
    )
    .unwrap();
    // Training mode (batch statistics, as adversarial training runs): the backward pass reaches
    // every parameter with finite gradients (an in-place op that autograd cannot undo fails here).
    for (_, t) in net.named_tensors() {
        if t.requires_grad() {
            let _ = t.grad().zero_();
        }
    }
    let gt = input_grad(true);
    assert!(
        f64::try_from(gt.abs().max()).unwrap().is_finite(),
        "{name}: training-mode input gradient not finite"
    );
    for (n, t) in net.named_tensors() {
        if t.requires_grad() {
            let gr = t.grad();
            assert!(gr.defined(), "{name}: no gradient reaches {n}");
            assert!(
                f64::try_from(gr.abs().max()).unwrap().is_finite(),
                "{name}: gradient of {n} not finite"
            );
        }
    }
    let family = models::find(arch).unwrap().family;
    let meta = serde_json::json!({
        "arch": arch, "family": family, "config": p.config, "io": io,
        "mean": mean, "std": std, "num_parameters": net.num_parameters(),
    });
    std::fs::write(dir.join(format!("{name}.json")), meta.to_string()).unwrap();
}

#[test]
fn every_architecture_matches_its_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    for (i, arch) in REGISTRY.iter().enumerate() {
        if !arch.native() {
            continue;
        }
        for (size, classes) in [(32, 10), (64, 5)] {
            let io = ModelIo {
                in_channels: 3,
                image_size: size,
                num_classes: classes,
            };
            export(dir.path(), arch.name, "tiny", io, 7 + i as i64);
        }
    }
    let script = PathBuf::from(crate::common::ROOT).join("scripts/crosscheck_models.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("running the reference in .venv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "reference mismatch:\n{stdout}");
    let checked = stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert_eq!(
        checked,
        2 * REGISTRY.iter().filter(|a| a.native()).count()
    );
}
