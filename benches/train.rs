//! Adversarial-training throughput, robarch's training loop against a plain PyTorch
//! implementation of the same loop (scripts/bench_train.py, with the reference definitions in
//! scripts/reference_models/) on the same machine, threads, batch, model and attack, measured in
//! one run: PGD-AT (ℓ∞, `steps` steps) and TRADES (β = 6, the same inner steps on the KL). Prints
//! images/s of both and the ratio robarch/PyTorch per model and method, what robarch's data loader
//! with the paper's augmentation (random crop with 4 px padding, horizontal flip) costs as a share
//! of the epoch, and the geometric mean of the ratios. With `--scripted on`, also robarch's images/s
//! training the same reference network as a TorchScript module (`arch: torchscript, train: true`)
//! and the ratios scripted/native and scripted/PyTorch.
//!
//! Run: `scripts/bench-train.sh [--models densenet121:tiny@16,swin:tiny@16,resnet18:cifar@16,
//!       convnext:cifar@16] [--methods pgd-at,trades] [--batch 128] [--iters 3] [--steps 10]
//!       [--threads 1,2] [--device cpu|cuda] [--amp auto|bf16|off] [--channels-last auto|on|off]
//!       [--scripted off|on]`
//! A model is `arch:preset[@image size]` (fresh weights, 3 channels, 10 classes); the default is
//! the four models `scripts/bench-attacks.sh` attacks, at their 16 px.
//! The PyTorch side runs the same loop with the precision and memory format robarch resolved
//! (`torch.autocast`, `channels_last`), and plainly (float32, contiguous) when those differ.
//! One PGD-AT step = PGD-ℓ∞ (ε 8/255, `steps` steps of 2/255, random start) in eval mode, then a
//! train-mode forward on the adversarial batch, cross-entropy, backward and an AdamW step. One
//! TRADES step = the clean softmax in eval mode, `steps` signed steps of 2/255 on the KL from
//! x + 0.001·N(0, I), then train-mode forwards on the clean and adversarial batches, CE + 6·KL,
//! backward and an AdamW step. robarch runs `robarch::train::train` (the `train` stage's loop:
//! loader, attack, optimiser, schedule, per-epoch checkpoint) for two epochs of `iters` batches and
//! times the second; PyTorch times `iters` steps after one warm-up step. The loader column: the
//! seconds robarch's loader takes to assemble, augment and hand over one epoch's batches on its
//! own, over the seconds of the row's robarch epoch (the loader runs ahead on a background thread,
//! so this bounds what it can cost the epoch).
mod common;
use robarch::augment::Augment;
use robarch::data::loader::{HostData, Loader};
use robarch::data::prepared::{DatasetInfo, Prepared};
use robarch::models::{self, ModelIo};
use robarch::progress::StageProgress;
use robarch::train::{self, TrainParams};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The benchmark's settings, shared by every row.
struct Setup {
    batch: usize,
    iters: usize,
    steps: usize,
    device: Device,
    amp: String,
    channels_last: String,
    scripted: bool,
}

fn main() {
    let mut models_arg =
        "densenet121:tiny@16,swin:tiny@16,resnet18:cifar@16,convnext:cifar@16".to_string();
    let (mut archs, mut preset) = (None::<String>, "cifar".to_string());
    let mut methods = vec!["pgd-at".to_string(), "trades".to_string()];
    let mut threads = vec![common::default_threads()];
    let mut set = Setup {
        batch: 128,
        iters: 3,
        steps: 10,
        device: Device::cuda_if_available(),
        amp: "auto".into(),
        channels_last: "auto".into(),
        scripted: false,
    };
    for (k, val) in common::flags() {
        match k.as_str() {
            "--models" => models_arg = val,
            "--arch" => archs = Some(val),
            "--preset" => preset = val,
            "--methods" => methods = val.split(',').map(String::from).collect(),
            "--batch" => set.batch = val.parse().expect("--batch N"),
            "--iters" => set.iters = val.parse().expect("--iters N"),
            "--steps" => set.steps = val.parse().expect("--steps N"),
            "--threads" => threads = common::threads(&val),
            "--amp" => set.amp = val,
            "--channels-last" => set.channels_last = val,
            "--scripted" => set.scripted = val == "on",
            "--device" => set.device = common::device(&val),
            other => panic!("unknown argument {other}"),
        }
    }
    // `--arch a,b [--preset p]`: those architectures at the preset's own input size.
    if let Some(a) = archs {
        models_arg = a
            .split(',')
            .map(|a| format!("{a}:{preset}"))
            .collect::<Vec<_>>()
            .join(",");
    }
    for m in &methods {
        assert!(
            m == "pgd-at" || m == "trades",
            "--methods takes pgd-at and trades, not {m}"
        );
    }
    let dev = if set.device == Device::Cpu {
        "cpu"
    } else {
        "cuda"
    };
    println!(
        "ℓ∞ ε 8/255, {} steps of 2/255, eval-mode attack, AdamW; batch {}, {} timed steps, device {dev}",
        set.steps, set.batch, set.iters
    );
    println!(
        "robarch: amp {}, channels_last {} (resolved per row); PyTorch: the same settings, and plain (float32, contiguous)",
        set.amp, set.channels_last
    );
    print!(
        "{:<22} {:>7} {:>7} {:>3} {:>5} {:>4} {:>13} {:>13} {:>6} {:>13} {:>6} {:>7}",
        "model",
        "params",
        "method",
        "thr",
        "amp",
        "cl",
        "robarch img/s",
        "pytorch img/s",
        "ratio",
        "plain img/s",
        "ratio",
        "loader"
    );
    if set.scripted {
        print!(
            " {:>13} {:>10} {:>10}",
            "script img/s", "vs native", "vs pytorch"
        );
    }
    println!();
    let mut ratios = Vec::new();
    for spec in models_arg.split(',') {
        for &t in &threads {
            tch::set_num_threads(t);
            for method in &methods {
                ratios.push(row(spec, method, t, &set));
            }
        }
    }
    common::print_geomean(
        "geometric mean ratio robarch/pytorch (same settings)",
        &ratios,
    );
}

/// scripts/bench_train.py on one request: its standard output.
fn reference(req: serde_json::Value) -> String {
    let script =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("scripts/bench_train.py");
    let out = std::process::Command::new(common::python())
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
}

/// Random uint8 images (as the prepare stage stores them) and labels: `n` of `io`'s shape.
fn random_data(io: &ModelIo, n: i64, batch: i64) -> Prepared {
    tch::manual_seed(0);
    let size = io.image_size;
    let x = Tensor::randint(256, [n, 3, size, size], (Kind::Uint8, Device::Cpu));
    let y = Tensor::randint(io.num_classes, [n], (Kind::Int64, Device::Cpu));
    Prepared {
        train_x: x.shallow_clone(),
        train_y: y.shallow_clone(),
        val: None,
        test_x: x.narrow(0, 0, batch),
        test_y: y.narrow(0, 0, batch),
        info: DatasetInfo {
            classes: (0..io.num_classes).map(|c| c.to_string()).collect(),
            channels: 3,
            resolution: size as u32,
            train_size: n as usize,
            val_size: None,
            test_size: batch as usize,
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
            resampled: None,
        },
    }
}

/// Seconds robarch's loader takes, on its own, to assemble one epoch of `data` with random crop
/// (4 px padding) and flip and hand each batch over as float tensors on `device`.
fn loader_seconds(data: &Prepared, batch: usize, device: Device) -> f64 {
    let host = HostData::from_tensors(&data.train_x, &data.train_y).unwrap();
    let steps = Arc::new(vec![
        Augment::RandomCrop { padding: 4 },
        Augment::Hflip { p: 0.5 },
    ]);
    let order: Vec<usize> = (0..host.len()).collect();
    let t0 = Instant::now();
    for b in Loader::start(host, order, batch, steps, 0, 3) {
        let (x, _) = b.to_device(device);
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        drop(x);
    }
    t0.elapsed().as_secs_f64()
}

/// One model and method at `threads` threads: prints its row and returns the ratio robarch/PyTorch
/// under the same settings.
fn row(spec: &str, method: &str, threads: i32, set: &Setup) -> f64 {
    let (arch, _, mp, io) = common::model_arg(spec);
    let arch = arch.as_str();
    let (batch, iters, steps, device) = (set.batch, set.iters, set.steps, set.device);
    let n = (batch * iters) as i64;
    let data = random_data(&io, n, batch as i64);
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let params: TrainParams = serde_json::from_value(serde_json::json!({
        "model": mp, "io": io, "method": method,
        "attack": {"type": "pgd", "norm": "linf", "eps": 8.0 / 255.0, "steps": steps,
                   "step_size": 2.0 / 255.0, "random_start": method == "pgd-at", "restarts": 1,
                   "loss": {"name": "ce"}, "l1_step": null},
        "beta": if method == "trades" { Some(6.0) } else { None },
        "attack_mode": "eval", "epochs": 2, "batch_size": batch,
        "optimizer": {"name": "adamw", "lr": 1e-4, "weight_decay": 0.01,
                      "momentum": 0.9, "betas": [0.9, 0.999]},
        "schedule": {"name": "constant", "warmup_epochs": 0, "min_lr": 0.0},
        "seed": 0, "amp": set.amp, "channels_last": set.channels_last,
    }))
    .expect("benchmark training parameters");
    // Images/s of the second of two epochs (and its seconds) and the parameter count.
    let run = |params: &TrainParams| -> (f64, f64, i64) {
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
        (n as f64 / (s[1] - s[0]), s[1] - s[0], net.num_parameters())
    };
    let (ours, epoch_s, count) = run(&params);
    let loader = loader_seconds(&data, batch, device) / epoch_s;
    let entry = models::find(arch).unwrap();
    let (kind, family) = (entry.kind, entry.family);
    let amp_on = params.amp.resolve(device).is_some();
    let cl_on = params.channels_last.resolve(kind);
    let pytorch = |amp: bool, cl: bool| -> f64 {
        reference(serde_json::json!({
            "family": family, "config": mp.config, "io": io, "method": method,
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
    print!(
        "{:<22} {:>6.2}M {:>7} {:>3} {:>5} {:>4} {:>13.1} {:>13.1} {:>6.2} {:>13.1} {:>6.2} {:>6.1}%",
        spec,
        count as f64 / 1e6,
        method,
        threads,
        if amp_on { "bf16" } else { "off" },
        if cl_on { "on" } else { "off" },
        ours,
        same,
        ours / same,
        plain,
        ours / plain,
        100.0 * loader
    );
    if set.scripted {
        // The same reference network, scripted, trained by the same loop under the settings the
        // native one resolved to.
        let dir = tempfile::tempdir().unwrap();
        let scripted_file = dir.path().join(format!("{arch}.pt"));
        reference(serde_json::json!({
            "family": family, "config": mp.config, "io": io, "script_to": scripted_file,
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
        let (scripted, _, _) = run(&scripted_params);
        print!(
            " {:>13.1} {:>10.2} {:>10.2}",
            scripted,
            scripted / ours,
            scripted / same
        );
    }
    println!();
    ours / same
}
