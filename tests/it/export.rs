//! `robarch export`: every architecture trained in a pipeline, and an imported TorchScript model,
//! leave robarch as safetensors + model.json + load.py; each export loads in PyTorch with its own
//! loader (timm, torchvision or a self-contained module; normalisation included) and gives
//! robarch's logits. Bad targets, uncached stages and a missing best checkpoint fail clearly.
use crate::common::*;
use robarch::models::saved::{self, Checkpoint};
use robarch::models::REGISTRY;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Every trainable architecture at its tiny preset (32 px: CoAtNet's five halvings need it), one
/// epoch on 60 digits, monitored (so each has a best checkpoint), and an imported TorchScript CNN.
fn pipeline() -> String {
    let mut s = String::from(
        "name: export\nseed: 2\ndevice: cpu\ndatasets:\n  digits: {source: embedded:digits, resolution: 32, limit: 60}\nmodels:\n",
    );
    for a in REGISTRY.iter().filter(|a| a.native()) {
        s += &format!("  {}: {{preset: tiny}}\n", a.name);
    }
    // Random weights: at chance, so the import's check is told to accept any clean accuracy.
    s += "  ext: {arch: torchscript, file: m.pt, normalize: true, expect: {clean: 0.5, tolerance: 0.5}}\n";
    s += "training:\n  std:\n    method: standard\n    epochs: 1\n    batch_size: 30\n    optimizer: {name: adamw, lr: 1e-3}\n    monitor: {n: 8}\n";
    s
}

/// robarch's logits of the weights `checkpoint` names in `stage`'s entry, on fixed random inputs,
/// written into the export for the Python side.
fn write_check(p: &Project, stage: &str, checkpoint: Checkpoint, dir: &Path) {
    let doc = json_out(&p.ok(&["explain", "--format", "json", "p.yaml", stage]));
    // Relative to the project directory, where the cache is.
    let entry = p.dir.path().join(doc["entry"].as_str().expect("cached entry"));
    let net = saved::load(&entry, checkpoint, Device::Cpu).unwrap();
    tch::manual_seed(5);
    let x = Tensor::rand([3, 1, 32, 32], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| net.forward_t(&x, false));
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], dir.join("check.safetensors")).unwrap();
}

#[test]
fn every_architecture_exports_to_pytorch_with_robarchs_logits() {
    let p = Project::new();
    p.write("p.yaml", &pipeline());
    crate::torchscript::export(&p.path("m.pt"), 1, 32, 10, 3);

    // Before the run: nothing to export, and the error says what to do.
    let out = p.run(&["export", "p.yaml", "vit", "--to", "out/vit"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("no cache at cache") && e.contains("run `robarch run p.yaml` first"),
        "{e}"
    );
    assert!(!p.path("out/vit").exists(), "a failed export wrote {:?}", p.path("out/vit"));

    p.ok(&["run", "p.yaml"]);
    let mut dirs = Vec::new();
    let archs: Vec<&str> = REGISTRY
        .iter()
        .map(|a| a.name)
        .filter(|&n| robarch::models::find(n).is_some_and(|a| a.native()))
        .collect();
    for (i, arch) in archs.iter().enumerate() {
        // Alternately the last and the best epoch's weights, by model name or by stage id.
        let (flag, checkpoint) = if i % 2 == 0 {
            ("last", Checkpoint::Last)
        } else {
            ("best", Checkpoint::Best)
        };
        let stage = format!("train/digits/{arch}/std");
        let target = if i % 3 == 0 { stage.as_str() } else { arch };
        let to = format!("out/{arch}");
        let out = p.ok(&["export", "p.yaml", target, "--to", &to, "--checkpoint", flag]);
        assert!(stdout(&out).contains(&format!("exported {stage}")), "{}", stdout(&out));
        write_check(&p, &stage, checkpoint, &p.path(&to));
        dirs.push(p.path(&to));
    }
    p.ok(&["export", "p.yaml", "ext", "--to", "out/ext"]);
    assert!(p.path("out/ext/model.pt").is_file());
    write_check(&p, "import/digits/ext", Checkpoint::Last, &p.path("out/ext"));
    dirs.push(p.path("out/ext"));

    // Loaded as a user would: from a directory of their own, nothing of robarch's on the path.
    let script = PathBuf::from(ROOT).join("scripts/check_exports.py");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python())
        .arg(&script)
        .args(&dirs)
        .current_dir(elsewhere.path())
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    let text = stdout(&out);
    println!("{text}{}", stderr(&out));
    assert!(out.status.success(), "exports do not match robarch:\n{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok")).count(),
        archs.len() + 1
    );
    // Each family loads into the library docs/models.md names.
    for (arch, library) in [
        ("resnet18", "torchvision"),
        ("vgg16_bn", "torchvision"),
        ("mobilenetv2", "torchvision"),
        ("vit", "timm"),
        ("coatnet", "timm"),
        ("wrn28_10", "self-contained"),
        ("ext", "torchscript"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("ok   {arch}:")))
            .unwrap();
        assert!(line.contains(&format!(": {library} ")), "{line}");
    }

    // An export into a directory that is not empty needs --force.
    let out = p.run(&["export", "p.yaml", "vit", "--to", "out/vit"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty") && stderr(&out).contains("--force"));
    p.ok(&["export", "p.yaml", "vit", "--to", "out/vit", "--force"]);
    // A stage of the pipeline that is not cached yet (another seed trains anew).
    p.write("q.yaml", &pipeline().replace("seed: 2", "seed: 4"));
    let out = p.run(&["export", "q.yaml", "vit", "--to", "out/q"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("`train/digits/vit/std` is not in the cache")
            && stderr(&out).contains("run `robarch run q.yaml` first"),
        "{}",
        stderr(&out)
    );
    assert!(!p.path("out/q").exists());
    // Not a model stage, an unknown name, and TorchScript's single set of weights.
    for (target, extra, expect) in [
        ("prepare/digits", "", "is a prepare stage; export takes a train or import stage"),
        ("vitt", "", "no train or import stage or model `vitt`"),
        ("ext", "best", "has one set of weights; drop `--checkpoint best`"),
    ] {
        let mut args = vec!["export", "p.yaml", target, "--to", "out/x"];
        if !extra.is_empty() {
            args.extend(["--checkpoint", extra]);
        }
        let out = p.run(&args);
        assert!(!out.status.success(), "{target}");
        assert!(stderr(&out).contains(expect), "{target}: {}", stderr(&out));
    }
}
