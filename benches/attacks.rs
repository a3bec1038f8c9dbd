//! Attack throughput, robarch against the reference libraries on the same model, data, batch and
//! threads: PGD-20 ℓ∞ against torchattacks `PGD`, APGD-CE, APGD-T and AutoAttack `standard`
//! (APGD-CE, APGD-T, FAB-T, Square) against fra31 AutoAttack's code (`pyautoattack`), on several
//! models. Each side runs every attack `--repeats` times, the two sides taking turns run by run (the
//! reference in a Python process started once, idle while robarch runs: never both at once); the
//! table gives the median images/s and the range over the repeats per side, and the median and
//! range of the paired ratios (i-th robarch run over the i-th reference run, which ran right after
//! it).
//!
//! Run: `scripts/bench-attacks.sh [--models resnet18:tiny@16,vit:tiny@16,resnet18:cifar]
//!       [--data DATA] [--n 128] [--batch 128] [--threads 1,2] [--repeats 3]
//!       [--attacks pgd,apgd-ce,apgd-t,aa] [--device cpu|cuda] [--amp off,bf16]
//!       [--channels-last off,on]`
//! A model is `arch:preset[@image size]` (fresh weights, 3 channels, 10 classes) or the path of a
//! `train/...` cache entry; the images are the first `--n` test images of a prepared
//! `data.safetensors` (`--data`), else uniform noise. Labels are the model's own predictions, so
//! every point is attacked on both sides.
//! The PGD row is given twice: evaluation (points leave the batch once broken, the default) and
//! every step (all points take every step, as in training), which isolates the kernels.
//! `--threads`, `--amp` and `--channels-last` take lists: every combination is measured, both
//! sides under the same settings (`--amp bf16`: forward passes under bf16 autocast, logits in
//! float32; `--channels-last on`: weights and inputs channels-last). The last line is the
//! geometric mean of the ratios.
mod common;
use robarch::attacks::{self, AttackConfig, Net, Use};
use robarch::models::{self, ModelIo, Network};
use robarch::spec::{AttackSpec, Norm, Real};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

struct Setup {
    /// A prepared `data.safetensors` whose test images are attacked (else uniform noise).
    data: Option<PathBuf>,
    n: i64,
    batch: i64,
    repeats: usize,
    attacks: Vec<String>,
    device: Device,
}

/// One combination of the list flags: threads, bf16 autocast, channels-last.
#[derive(Clone, Copy)]
struct Variant {
    threads: i32,
    bf16: bool,
    channels_last: bool,
}

impl Variant {
    /// What the row's attack name adds for this variant (nothing for float32, standard layout).
    fn suffix(&self) -> String {
        let mut s = String::new();
        if self.bf16 {
            s.push_str(", bf16");
        }
        if self.channels_last {
            s.push_str(", channels-last");
        }
        s
    }
}

/// A model to attack: its network, the reference's description of it, and a label.
fn model(spec: &str, device: Device) -> (Network, serde_json::Value, String) {
    let dir = Path::new(spec);
    if dir.join("model.json").is_file() {
        let net =
            robarch::models::saved::load(dir, robarch::models::saved::Checkpoint::Last, device)
                .unwrap();
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
        let arch = info["model"]["arch"].as_str().unwrap().to_string();
        let label = format!(
            "{arch} (adv. trained, {}px, {:.2}M params)",
            info["io"]["image_size"],
            net.num_parameters() as f64 / 1e6
        );
        let meta = serde_json::json!({"arch": arch, "family": models::find(&arch).unwrap().family, "config": info["model"]["config"], "io": info["io"], "mean": info["mean"], "std": info["std"]});
        return (net, meta, label);
    }
    let (arch, preset, p, io) = common::model_arg(spec);
    let net = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], device, 0).unwrap();
    let meta = serde_json::json!({"arch": arch, "family": models::find(&arch).unwrap().family, "config": p.config, "io": io, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]});
    let label = format!(
        "{arch} {preset} ({}px, {:.2}M params)",
        io.image_size,
        net.num_parameters() as f64 / 1e6
    );
    (net, meta, label)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

fn main() {
    let mut models_arg = "resnet18:tiny@16,vit:tiny@16,resnet18:cifar".to_string();
    let mut set = Setup {
        data: None,
        n: 128,
        batch: 128,
        repeats: 3,
        attacks: ["pgd", "apgd-ce", "apgd-t", "aa"]
            .map(String::from)
            .to_vec(),
        device: Device::Cpu,
    };
    let mut threads = vec![common::default_threads()];
    let (mut bf16, mut channels_last) = (vec![false], vec![false]);
    // `off`/`on` (and `bf16` for --amp) lists.
    let switches = |flag: &str, val: &str, on: &str| -> Vec<bool> {
        val.split(',')
            .map(|v| match v {
                "off" => false,
                v if v == on => true,
                v => panic!("{flag} takes off and {on}, not {v}"),
            })
            .collect()
    };
    for (k, val) in common::flags() {
        match k.as_str() {
            "--models" => models_arg = val,
            "--data" => set.data = Some(PathBuf::from(val)),
            "--n" => set.n = val.parse().expect("--n N"),
            "--batch" => set.batch = val.parse().expect("--batch N"),
            "--threads" => threads = common::threads(&val),
            "--repeats" => set.repeats = val.parse().expect("--repeats N"),
            "--attacks" => set.attacks = val.split(',').map(String::from).collect(),
            "--device" => set.device = common::device(&val),
            "--amp" => bf16 = switches("--amp", &val, "bf16"),
            "--channels-last" => channels_last = switches("--channels-last", &val, "on"),
            other => panic!("unknown argument {other}"),
        }
    }
    println!(
        "{} images per model, batch {} on both sides, device {:?}, ε = 8/255, {} repeats per side; images/s: median (min–max)\n",
        set.n, set.batch, set.device, set.repeats
    );
    println!("| model | attack | threads | robarch img/s | reference img/s | ratio (per-repeat range) | robust acc. robarch / reference |");
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for spec in models_arg.split(',') {
        for &t in &threads {
            for &b in &bf16 {
                for &c in &channels_last {
                    let v = Variant {
                        threads: t,
                        bf16: b,
                        channels_last: c,
                    };
                    ratios.extend(bench(spec, &set, v));
                }
            }
        }
    }
    println!();
    common::print_geomean("geometric mean of the paired ratios", &ratios);
}

/// Times every attack of `set` on model `spec` under `v`, on both sides; prints a row per attack
/// and returns their ratios (the medians of the paired ratios).
fn bench(spec: &str, set: &Setup, v: Variant) -> Vec<f64> {
    // Long because: set-up, both sides' warm-ups and paired runs, and the rows, in one place.
    let (n, batch, repeats, device) = (set.n, set.batch, set.repeats, set.device);
    tch::set_num_threads(v.threads);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut net, meta, label) = model(spec, device);
    let io: ModelIo = serde_json::from_value(meta["io"].clone()).unwrap();
    let x = match &set.data {
        // The first n test images: an attack on a trained model spends its time where real
        // points stay robust (on noise images every point breaks at once).
        Some(f) => {
            let t: Vec<(String, Tensor)> = Tensor::read_safetensors(f).unwrap();
            let test = &t.iter().find(|(k, _)| k == "test_x").expect("test_x").1;
            assert_eq!(
                &test.size()[1..],
                &[io.in_channels, io.image_size, io.image_size],
                "{}: images of another shape than the model's",
                f.display()
            );
            test.narrow(0, 0, n.min(test.size()[0]))
                .to_kind(Kind::Float)
                / 255.0
        }
        None => {
            tch::manual_seed(0);
            Tensor::rand(
                [n, io.in_channels, io.image_size, io.image_size],
                (Kind::Float, Device::Cpu),
            )
        }
    };
    let n = x.size()[0];
    // Labels = the model's predictions in float32, so every point is attacked (the same points on
    // both sides).
    let x_cpu = x;
    let x = x_cpu.to_device(device);
    let y = tch::no_grad(|| net.forward_t(&x, false)).argmax(1, false);
    let (eps, alpha, steps, apgd_steps) = (8.0 / 255.0, 2.0 / 255.0, 20, 100);
    std::fs::write(d.join("model.json"), meta.to_string()).unwrap();
    net.save(&d.join("model.safetensors")).unwrap();
    let y_cpu = y.to_device(Device::Cpu);
    Tensor::write_safetensors(&[("x", &x_cpu), ("y", &y_cpu)], d.join("data.safetensors")).unwrap();
    let dev = if device == Device::Cpu { "cpu" } else { "cuda" };
    let req = serde_json::json!({"threads": v.threads, "batch_size": batch, "eps": eps, "alpha": alpha, "steps": steps, "apgd_steps": apgd_steps, "repeats": repeats, "attacks": set.attacks, "device": dev, "amp": v.bf16, "channels_last": v.channels_last});
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
    if v.bf16 {
        net.set_autocast(Some(Kind::BFloat16));
    }
    if v.channels_last {
        net.to_channels_last();
    }
    let model = Net {
        net: &net,
        train: false,
    };
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    // Evaluation draws from per-point streams (as the evaluate stage does), training per batch.
    let streams = |usage: Use, lo: i64, len: i64| match usage {
        Use::Evaluation => attacks::Streams::range(0, lo as u64, len as usize),
        Use::Training => attacks::Streams::Batch(lo as u64),
    };
    // The perturbation of all n points by `c` (batch by batch) and its images/s; only the attack
    // is timed, as on the reference side.
    let once = |c: &AttackConfig, usage: Use| -> (f64, Tensor) {
        let t0 = Instant::now();
        let advs: Vec<Tensor> = (0..n)
            .step_by(batch as usize)
            .map(|lo| {
                let len = batch.min(n - lo);
                c.perturb(
                    &model,
                    &x.narrow(0, lo, len),
                    &y.narrow(0, lo, len),
                    &streams(usage, lo, len),
                    usage,
                )
            })
            .collect();
        sync();
        (n as f64 / t0.elapsed().as_secs_f64(), Tensor::cat(&advs, 0))
    };
    let rows = [
        ("PGD-20 (torchattacks)", &pgd, "pgd"),
        ("APGD-CE 100 (fra31)", &apgd_ce, "apgd-ce"),
        ("APGD-T 100 (fra31)", &apgd_t, "apgd-t"),
        ("AutoAttack standard (fra31)", &aa, "aa"),
    ];
    // The reference runs in its own process, started once and idle while robarch runs: the two
    // sides take turns, repeat by repeat, never both at once, so a machine that slows down or
    // speeds up during the benchmark does so for both sides of each pair.
    let mut reference = Reference::start(d);
    let mut ours = Vec::new();
    for (name, c, key) in rows {
        if !set.attacks.iter().any(|a| a == key) {
            continue;
        }
        let usages: &[(Use, &str)] = if key == "pgd" {
            &[(Use::Evaluation, ""), (Use::Training, ", every step")]
        } else {
            &[(Use::Evaluation, "")]
        };
        // Warm-ups: one batch on each side.
        for (usage, _) in usages {
            let _ = c.perturb(
                &model,
                &x.narrow(0, 0, batch.min(n)),
                &y.narrow(0, 0, batch.min(n)),
                &streams(*usage, 0, batch.min(n)),
                *usage,
            );
        }
        reference.call(&format!("warm {key}"));
        let mut rates = vec![Vec::new(); usages.len()];
        let mut robust = vec![0.0; usages.len()];
        let (mut ref_rates, mut ref_robust) = (Vec::new(), 0.0);
        for _ in 0..repeats {
            for (k, (usage, _)) in usages.iter().enumerate() {
                let (rate, adv) = once(c, *usage);
                rates[k].push(rate);
                let ok = attacks::correct(&model, &adv, &y);
                robust[k] = f64::try_from(ok.to_kind(Kind::Double).mean(Kind::Double)).unwrap();
            }
            let r = reference.call(&format!("run {key}"));
            ref_rates.push(r["rate"].as_f64().unwrap());
            ref_robust = r["robust"].as_f64().unwrap();
        }
        for (k, (_, suffix)) in usages.iter().enumerate() {
            ours.push((
                format!("{name}{suffix}{}", v.suffix()),
                rates[k].clone(),
                robust[k],
                ref_rates.clone(),
                ref_robust,
            ));
        }
    }
    reference.call("quit");
    let mut medians = Vec::new();
    for (name, rates, acc, r, ref_acc) in ours {
        let ratios: Vec<f64> = rates.iter().zip(&r).map(|(a, b)| a / b).collect();
        let ((olo, ohi), (rlo, rhi), (qlo, qhi)) = (range(&rates), range(&r), range(&ratios));
        println!(
            "| {label} | {name} | {} | {:.1} ({olo:.1}–{ohi:.1}) | {:.1} ({rlo:.1}–{rhi:.1}) | {:.2} ({qlo:.2}–{qhi:.2}) | {:.1}% / {:.1}% |",
            v.threads,
            median(&rates),
            median(&r),
            median(&ratios),
            100.0 * acc,
            100.0 * ref_acc
        );
        medians.push(median(&ratios));
    }
    medians
}

/// scripts/bench_attacks.py, started on a benchmark directory and driven line by line: `warm KEY`,
/// `run KEY` (one timed run of attack KEY on all points: its images/s and robust accuracy) and
/// `quit`, each answered with one JSON line.
struct Reference {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Reference {
    fn start(dir: &Path) -> Reference {
        use std::process::{Command, Stdio};
        let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .join("scripts/bench_attacks.py");
        let mut child = Command::new(common::python())
            .arg(script)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting scripts/bench_attacks.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut r = Reference {
            child,
            stdin,
            stdout,
        };
        r.read(); // {"ready": true} once the model and data are loaded
        r
    }

    fn read(&mut self) -> serde_json::Value {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        if line.is_empty() {
            let status = self.child.wait().unwrap();
            panic!("scripts/bench_attacks.py ended ({status}); its error is above");
        }
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn call(&mut self, command: &str) -> serde_json::Value {
        use std::io::Write;
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.read()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.wait();
    }
}
