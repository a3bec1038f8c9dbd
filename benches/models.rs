//! Forward + backward throughput of every architecture's paper presets, robarch against the same
//! network in PyTorch (the reference definitions in scripts/reference_models/) on the same machine,
//! threads and batch, measured in one run. Prints images/s of both and the ratio robarch/PyTorch.
//!
//! Run: `scripts/bench-models.sh [--arch resnet18,vit] [--preset cifar|imagenet|all]
//!       [--batch 128] [--iters 3] [--threads N] [--device cpu|cuda] [--channels-last on|off]`
//! One step = forward in train mode, cross-entropy, backward (no optimiser). The first step of each
//! side is a warm-up and is not timed.
mod common;
use robarch::models::{self, Network, REGISTRY};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

struct Args {
    archs: Vec<String>,
    presets: Vec<&'static str>,
    batch: i64,
    iters: usize,
    threads: i32,
    device: Device,
    channels_last: bool,
}

fn args() -> Args {
    let mut a = Args {
        archs: REGISTRY
            .iter()
            .filter(|a| a.native())
            .map(|a| a.name.to_string())
            .collect(),
        presets: vec!["cifar", "imagenet"],
        batch: 128,
        iters: 3,
        threads: common::default_threads(),
        device: Device::cuda_if_available(),
        channels_last: false,
    };
    for (k, val) in common::flags() {
        match k.as_str() {
            "--arch" => a.archs = val.split(',').map(String::from).collect(),
            "--preset" => {
                a.presets = match val.as_str() {
                    "cifar" => vec!["cifar"],
                    "imagenet" => vec!["imagenet"],
                    _ => vec!["cifar", "imagenet"],
                }
            }
            "--batch" => a.batch = val.parse().expect("--batch N"),
            "--iters" => a.iters = val.parse().expect("--iters N"),
            "--threads" => a.threads = val.parse().expect("--threads N"),
            "--channels-last" => a.channels_last = val == "on",
            "--device" => a.device = common::device(&val),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

fn main() {
    let a = args();
    tch::set_num_threads(a.threads);
    let dev = if a.device == Device::Cpu {
        "cpu"
    } else {
        "cuda"
    };
    let python = common::python();
    let script =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("scripts/bench_models.py");
    println!(
        "forward+backward, batch {}, {} timed steps, {} threads, device {dev}",
        a.batch, a.iters, a.threads
    );
    println!(
        "{:<16} {:<9} {:>5} {:>12} {:>14} {:>14} {:>7}",
        "arch", "preset", "px", "params", "robarch img/s", "pytorch img/s", "ratio"
    );
    let mut ratios = Vec::new();
    for name in &a.archs {
        for &preset in &a.presets {
            let (p, io) = common::paper_model(name, preset);
            let (size, classes) = (io.image_size, io.num_classes);
            let mut net = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], a.device, 0).unwrap();
            if a.channels_last {
                net.to_channels_last();
            }
            let x = Tensor::rand([a.batch, 3, size, size], (Kind::Float, a.device));
            let y = Tensor::randint(classes, [a.batch], (Kind::Int64, a.device));
            let step = || {
                let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
                loss.backward();
            };
            step();
            sync(a.device);
            let t = Instant::now();
            for _ in 0..a.iters {
                step();
            }
            sync(a.device);
            let ours = (a.batch as usize * a.iters) as f64 / t.elapsed().as_secs_f64();
            drop(net);
            let family = models::find(name).unwrap().family;
            let req = serde_json::json!({
                "family": family, "config": p.config, "io": io, "batch": a.batch,
                "iters": a.iters, "threads": a.threads, "device": dev,
                "channels_last": a.channels_last,
            });
            let out = std::process::Command::new(&python)
                .arg(&script)
                .arg(req.to_string())
                .output()
                .expect("running the PyTorch side");
            let theirs: Option<f64> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
            let params = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 0)
                .map(|n| n.num_parameters())
                .unwrap_or(0);
            match theirs {
                Some(t) => {
                    ratios.push(ours / t);
                    println!(
                        "{name:<16} {preset:<9} {size:>5} {params:>12} {ours:>14.1} {t:>14.1} {:>7.2}",
                        ours / t
                    );
                }
                None => println!(
                    "{name:<16} {preset:<9} {size:>5} {params:>12} {ours:>14.1} {:>14} {:>7}   ({})",
                    "failed",
                    "-",
                    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
                ),
            }
        }
    }
    if !ratios.is_empty() {
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        let min = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
        println!(
            "geometric mean ratio {geo:.2}, worst {min:.2} over {} models",
            ratios.len()
        );
    }
}
