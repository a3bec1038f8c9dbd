//! PGD-AT training throughput, robarch's training loop against a plain PyTorch implementation of
//! the same loop (scripts/bench_train.py, with the reference definitions in
//! scripts/reference_models/) on the same machine, threads, batch and model, measured in one run.
//! Prints images/s of both and the ratio robarch/PyTorch, and robarch's images/s training the
//! same reference network as a TorchScript module (`arch: torchscript, train: true`) with the
//! ratios scripted/native and scripted/PyTorch.
//!
//! Run: `scripts/bench-train.sh [--arch resnet18,vit] [--preset tiny|cifar|imagenet] [--batch 128]
//!       [--iters 3] [--steps 10] [--threads N] [--device cpu|cuda] [--amp auto|bf16|off]
//!       [--channels-last auto|on|off]`
//! The PyTorch side runs the same loop with the precision and memory format robarch resolved
//! (`torch.autocast`, `channels_last`), and plainly (float32, contiguous) when those differ.
//! One step = PGD-ℓ∞ (ε 8/255, `steps` steps of 2/255, random start) in eval mode, then a
//! train-mode forward on the adversarial batch, cross-entropy, backward and an AdamW step. robarch
//! runs `robarch::train::train` (the `train` stage's loop: loader, attack, optimiser, schedule,
//! per-epoch checkpoint) for two epochs of `iters` batches and times the second; PyTorch times
//! `iters` steps after one warm-up step.
mod common;
use robarch::data::prepared::{DatasetInfo, Prepared};
use robarch::models::{self, ModelIo};
use robarch::progress::StageProgress;
use robarch::spec::ModelSpec;
use robarch::train::{self, TrainParams};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let mut archs = vec!["resnet18".to_string(), "vit".to_string()];
    let mut preset = "cifar".to_string();
    let (mut batch, mut iters, mut steps) = (128usize, 3usize, 10usize);
    let mut threads = common::default_threads();
    let mut device = Device::cuda_if_available();
    let (mut amp, mut cl) = ("auto".to_string(), "auto".to_string());
    for (k, val) in common::flags() {
        match k.as_str() {
            "--arch" => archs = val.split(',').map(String::from).collect(),
            "--preset" => preset = val,
            "--batch" => batch = val.parse().expect("--batch N"),
            "--iters" => iters = val.parse().expect("--iters N"),
            "--steps" => steps = val.parse().expect("--steps N"),
            "--threads" => threads = val.parse().expect("--threads N"),
            "--amp" => amp = val,
            "--channels-last" => cl = val,
            "--device" => {
                device = match val.as_str() {
                    "cpu" => Device::Cpu,
                    _ => Device::Cuda(0),
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    tch::set_num_threads(threads);
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let (size, classes) = match preset.as_str() {
        "imagenet" => (224, 1000),
        "tiny" => (8, 10),
        _ => (32, 10),
    };
    let python = common::python();
    let script =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("scripts/bench_train.py");
    // scripts/bench_train.py on one request: its standard output.
    let reference = |req: serde_json::Value| -> String {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(req.to_string())
            .output()
            .expect("running scripts/bench_train.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    println!(
        "PGD-AT (ℓ∞ 8/255, {steps} steps, eval-mode attack) + AdamW, {preset} preset {size}px, batch {batch}, {iters} timed steps, {threads} threads, device {dev}"
    );
    println!(
        "robarch: amp {amp}, channels_last {cl} (resolved per row); PyTorch: the same settings, and plain (float32, contiguous)"
    );
    println!(
        "{:<12} {:>9} {:>5} {:>4} {:>14} {:>14} {:>7} {:>14} {:>7} {:>13} {:>10} {:>10}",
        "arch",
        "params",
        "amp",
        "cl",
        "robarch img/s",
        "pytorch img/s",
        "ratio",
        "plain img/s",
        "ratio",
        "script img/s",
        "vs native",
        "vs pytorch"
    );
    // Random uint8 images, as the prepare stage stores them.
    tch::manual_seed(0);
    let n = (batch * iters) as i64;
    let x = Tensor::randint(256, [n, 3, size, size], (Kind::Uint8, Device::Cpu));
    let y = Tensor::randint(classes, [n], (Kind::Int64, Device::Cpu));
    let data = Prepared {
        train_x: x.shallow_clone(),
        train_y: y.shallow_clone(),
        val: None,
        test_x: x.narrow(0, 0, batch as i64),
        test_y: y.narrow(0, 0, batch as i64),
        info: DatasetInfo {
            classes: (0..classes).map(|c| c.to_string()).collect(),
            channels: 3,
            resolution: size as u32,
            train_size: n as usize,
            val_size: None,
            test_size: batch,
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
            resampled: None,
        },
    };
    let mut ratios = Vec::new();
    let ckpt_dir = tempfile::tempdir().unwrap();
    for arch in &archs {
        let spec = ModelSpec {
            arch: Some(arch.clone()),
            preset: preset.clone(),
            overrides: Default::default(),
        };
        let mp = models::resolve(arch, &spec).unwrap_or_else(|e| panic!("{arch}: {e:?}"));
        let io = ModelIo {
            in_channels: 3,
            image_size: size,
            num_classes: classes,
        };
        let params: TrainParams = serde_json::from_value(serde_json::json!({
            "model": mp, "io": io, "method": "pgd-at",
            "attack": {"type": "pgd", "norm": "linf", "eps": 8.0 / 255.0, "steps": steps,
                       "step_size": 2.0 / 255.0, "random_start": true, "restarts": 1,
                       "loss": {"name": "ce"}, "l1_step": null},
            "attack_mode": "eval", "epochs": 2, "batch_size": batch,
            "optimizer": {"name": "adamw", "lr": 1e-4, "weight_decay": 0.01,
                          "momentum": 0.9, "betas": [0.9, 0.999]},
            "schedule": {"name": "constant", "warmup_epochs": 0, "min_lr": 0.0},
            "seed": 0, "amp": amp, "channels_last": cl,
        }))
        .expect("benchmark training parameters");
        // Images/s of the second of two epochs and the parameter count.
        let run = |params: &TrainParams| -> (f64, i64) {
            let ckpt = tempfile::tempdir().unwrap();
            let stamps = Mutex::new(Vec::new());
            let sync = || {
                if let Device::Cuda(i) = device {
                    tch::Cuda::synchronize(i as i64);
                }
            };
            let t0 = Instant::now();
            let net = train::train(
                params,
                &data,
                device,
                ckpt.path(),
                &StageProgress::hidden(),
                &|_| {
                    sync();
                    stamps.lock().unwrap().push(t0.elapsed().as_secs_f64());
                },
            )
            .expect("robarch training")
            .net;
            let s = stamps.into_inner().unwrap();
            (n as f64 / (s[1] - s[0]), net.num_parameters())
        };
        let (ours, count) = run(&params);
        let kind = models::find(arch).unwrap().kind;
        let amp_on = params.amp.resolve(device).is_some();
        let cl_on = params.channels_last.resolve(kind);
        // The same reference network, scripted, trained by the same loop under the settings the
        // native one resolved to.
        let scripted_file = ckpt_dir.path().join(format!("{arch}.pt"));
        reference(serde_json::json!({
            "family": models::find(arch).unwrap().family, "config": mp.config, "io": io,
            "script_to": scripted_file,
        }));
        let mut scripted_params = params.clone();
        scripted_params.model = serde_json::from_value(serde_json::json!({
            "arch": "torchscript",
            "config": {"file": scripted_file, "normalize": true, "train": true},
        }))
        .expect("a TorchScript model");
        scripted_params.amp =
            serde_json::from_value(serde_json::json!(if amp_on { "bf16" } else { "off" })).unwrap();
        scripted_params.channels_last =
            serde_json::from_value(serde_json::json!(if cl_on { "on" } else { "off" })).unwrap();
        let (scripted, _) = run(&scripted_params);
        let pytorch = |amp: bool, cl: bool| -> f64 {
            reference(serde_json::json!({
                "family": models::find(arch).unwrap().family, "config": mp.config, "io": io,
                "batch": batch, "iters": iters, "steps": steps, "threads": threads, "device": dev,
                "amp": amp, "channels_last": cl,
            }))
            .trim()
            .parse()
            .unwrap()
        };
        let same = pytorch(amp_on, cl_on);
        let plain = if amp_on || cl_on {
            pytorch(false, false)
        } else {
            same
        };
        ratios.push(ours / same);
        println!(
            "{:<12} {:>8.2}M {:>5} {:>4} {:>14.1} {:>14.1} {:>7.2} {:>14.1} {:>7.2} {:>13.1} {:>10.2} {:>10.2}",
            arch,
            count as f64 / 1e6,
            if amp_on { "bf16" } else { "off" },
            if cl_on { "on" } else { "off" },
            ours,
            same,
            ours / same,
            plain,
            ours / plain,
            scripted,
            scripted / ours,
            scripted / same
        );
    }
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!("geometric mean ratio robarch/pytorch (same settings): {geo:.2}");
}
