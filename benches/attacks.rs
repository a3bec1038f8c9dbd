//! Attack throughput, robarch against the reference libraries on the same model, data, batch and
//! threads, measured in one run: PGD-20 ℓ∞ against torchattacks `PGD`, APGD-CE, APGD-T and
//! AutoAttack `standard` (APGD-CE, APGD-T, FAB-T, Square) against fra31 AutoAttack's code
//! (`pyautoattack`). Prints images/s of both and the ratio robarch/reference.
//!
//! Run: `scripts/bench-attacks.sh [--preset tiny|cifar] [--n 128] [--batch 128] [--threads N]
//!       [--trained DIR]` (DIR: a `train/...` cache entry to attack instead of a fresh model)
//! robarch's rows are given twice: evaluation (points leave the batch once broken, the default)
//! and every-step (all points take every step, as in training), which isolates the kernels.
mod common;
use robarch::attacks::{self, AttackConfig, Net, Use};
use robarch::models::{self, ModelIo, Network};
use robarch::spec::{AttackSpec, ModelSpec, Norm, Real};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let mut preset = "cifar".to_string();
    let (mut n, mut batch, mut repeats) = (128i64, 128i64, 2usize);
    let mut threads = common::default_threads();
    let mut trained: Option<PathBuf> = None;
    for (k, val) in common::flags() {
        match k.as_str() {
            "--preset" => preset = val,
            "--n" => n = val.parse().expect("--n N"),
            "--batch" => batch = val.parse().expect("--batch N"),
            "--threads" => threads = val.parse().expect("--threads N"),
            "--repeats" => repeats = val.parse().expect("--repeats N"),
            "--trained" => trained = Some(PathBuf::from(val)),
            other => panic!("unknown argument {other}"),
        }
    }
    tch::set_num_threads(threads);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (net, meta) = match &trained {
        Some(t) => {
            let net = robarch::models::saved::load(
                t,
                robarch::models::saved::Checkpoint::Last,
                Device::Cpu,
            )
            .unwrap();
            let info: serde_json::Value =
                serde_json::from_slice(&std::fs::read(t.join("model.json")).unwrap()).unwrap();
            let arch = info["model"]["arch"].as_str().unwrap().to_string();
            let meta = serde_json::json!({"arch": arch, "family": models::find(&arch).unwrap().family, "config": info["model"]["config"], "io": info["io"], "mean": info["mean"], "std": info["std"]});
            (net, meta)
        }
        None => {
            let spec = ModelSpec {
                arch: None,
                preset: preset.clone(),
                overrides: Default::default(),
            };
            let p = models::resolve("resnet18", &spec).unwrap();
            let io = ModelIo {
                in_channels: 3,
                image_size: 32,
                num_classes: 10,
            };
            let net = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 0).unwrap();
            let meta = serde_json::json!({"arch": "resnet18", "family": models::find("resnet18").unwrap().family, "config": p.config, "io": io, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]});
            (net, meta)
        }
    };
    let io: ModelIo = serde_json::from_value(meta["io"].clone()).unwrap();
    let model = Net {
        net: &net,
        train: false,
    };
    tch::manual_seed(0);
    let x = Tensor::rand(
        [n, io.in_channels, io.image_size, io.image_size],
        (Kind::Float, Device::Cpu),
    );
    // Labels = the model's predictions, so every point is attacked.
    let y = tch::no_grad(|| net.forward_t(&x, false)).argmax(1, false);
    let (eps, alpha, steps, apgd_steps) = (8.0 / 255.0, 2.0 / 255.0, 20, 100);
    std::fs::write(d.join("model.json"), meta.to_string()).unwrap();
    net.save(&d.join("model.safetensors")).unwrap();
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], d.join("data.safetensors")).unwrap();
    let req = serde_json::json!({"threads": threads, "batch_size": batch, "eps": eps, "alpha": alpha, "steps": steps, "apgd_steps": apgd_steps, "repeats": repeats});
    std::fs::write(d.join("request.json"), req.to_string()).unwrap();
    let cfg = |kind: &str, f: &dyn Fn(&mut AttackSpec)| {
        let mut a = AttackSpec {
            norm: Some(Norm::Linf),
            eps: Some(Real(eps)),
            ..Default::default()
        };
        f(&mut a);
        AttackConfig::resolve(kind, &a).unwrap()
    };
    let pgd = cfg("pgd", &|a| {
        a.set("steps", steps).set("step_size", alpha);
    });
    let apgd_ce = cfg("apgd-ce", &|a| {
        a.set("steps", apgd_steps);
    });
    let apgd_t = cfg("apgd-t", &|a| {
        a.set("steps", apgd_steps);
    });
    let aa = cfg("autoattack", &|_| {});
    let time = |c: &AttackConfig, usage: Use| -> (f64, f64) {
        let mut best = f64::INFINITY;
        let mut robust = 0.0;
        let _ = c.perturb(
            &model,
            &x.narrow(0, 0, batch.min(n)),
            &y.narrow(0, 0, batch.min(n)),
            0,
            usage,
        );
        for _ in 0..repeats {
            // Only the attack is timed (as on the reference side), not the accuracy check.
            let t0 = Instant::now();
            let advs: Vec<Tensor> = (0..n)
                .step_by(batch as usize)
                .map(|lo| {
                    let len = batch.min(n - lo);
                    c.perturb(
                        &model,
                        &x.narrow(0, lo, len),
                        &y.narrow(0, lo, len),
                        lo as u64,
                        usage,
                    )
                })
                .collect();
            best = best.min(t0.elapsed().as_secs_f64());
            let ok = attacks::correct(&model, &Tensor::cat(&advs, 0), &y);
            robust = f64::try_from(ok.to_kind(Kind::Double).mean(Kind::Double)).unwrap();
        }
        (n as f64 / best, robust)
    };
    let python = common::python();
    let script =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("scripts/bench_attacks.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(d)
        .output()
        .expect("reference benchmark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    println!(
        "resnet18 {} ({}), {n} images {}px, batch {batch}, {threads} threads, ε = 8/255, best of {repeats}",
        if trained.is_some() { "trained" } else { preset.as_str() },
        if trained.is_some() { "cache entry" } else { "fresh weights" },
        io.image_size
    );
    println!(
        "{:<30} {:>14} {:>14} {:>7} {:>10}",
        "attack", "robarch img/s", "reference img/s", "ratio", "robust acc"
    );
    println!(
        "reference AutoAttack standard robust accuracy: {:.1}%",
        100.0 * reference["aa_robust"].as_f64().unwrap()
    );
    for (name, c, key) in [
        ("PGD-20 (torchattacks)", &pgd, "pgd"),
        ("APGD-CE 100 (fra31)", &apgd_ce, "apgd-ce"),
        ("APGD-T 100 (fra31)", &apgd_t, "apgd-t"),
        ("AutoAttack standard (fra31)", &aa, "aa"),
    ] {
        let r = reference[key].as_f64().unwrap();
        for (usage, label) in [(Use::Evaluation, ""), (Use::Training, ", every step")] {
            if usage == Use::Training && key != "pgd" {
                continue;
            }
            let (ours, acc) = time(c, usage);
            println!(
                "{:<30} {:>14.1} {:>14.1} {:>7.2} {:>9.1}%",
                format!("{name}{label}"),
                ours,
                r,
                ours / r,
                100.0 * acc
            );
        }
    }
}
