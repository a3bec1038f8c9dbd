//! Helpers for integration tests: a temporary project directory and the real `robarch` binary.
#![allow(dead_code)]
pub mod http;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tiny, fast pipeline: 120/120 digits at 8×8, tiny ResNet, 2 epochs of PGD-AT with 2 steps,
/// with augmentation (so resume tests also cover the seeded augmentation).
pub const TINY: &str = r#"name: tiny
seed: 3
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8, limit: 120}
models:
  resnet18: {preset: tiny}
training:
  at:
    attack: {norm: linf, eps: 8/255, steps: 2}
    epochs: 2
    batch_size: 32
    optimizer: {name: adamw, lr: 2e-3}
    augment: [random_crop: {padding: 1}, autoaugment: cifar10]
evaluation:
  limit: 60
  attacks:
    clean: {}
    fgsm: {eps: 8/255}
    pgd: {eps: 8/255, steps: 3}
analysis: [sparsity]
"#;

/// TINY with a short stall limit (`executor.stall_minutes`: 12 s), for tests that stop workers.
pub fn stalling() -> String {
    format!("{TINY}executor: {{stall_minutes: 0.2}}\n")
}

/// The process ids of `parent`'s children that are stage workers (`robarch-worker`).
pub fn workers_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // The command name is cut to 15 bytes: `robarch-worker` fits.
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 2..].split(' ').nth(1).and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(parent) && comm == "robarch-worker" {
            out.push(pid);
        }
    }
    out
}

/// The repository's root (the tests belong to the worker package, in `worker/`).
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The control plane, `robarch`, built beside the worker (scripts/build.sh builds both; it is
/// another package's binary, so cargo does not build it for these tests).
pub fn robarch_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_robarch-worker")).with_file_name("robarch");
    assert!(
        bin.is_file(),
        "{} is missing: build the control plane first (scripts/build.sh, or cargo build --release -p robarch)",
        bin.display()
    );
    bin
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, text).unwrap();
        p
    }
    /// `robarch <args>` in the project directory, with its own cache.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(robarch_bin());
        c.current_dir(self.dir.path())
            .env_remove("ROBARCH_CACHE")
            .env_remove("ROBARCH_DATA")
            .env_remove("ROBARCH_DATA_MIRROR")
            .env("ROBARCH_LOG", "robarch=info")
            .args(args);
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "robarch {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }
    /// Committed cache entries.
    pub fn entries(&self) -> usize {
        let objects = self.path("cache/objects");
        if !objects.exists() {
            return 0;
        }
        std::fs::read_dir(objects)
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum()
    }
}

/// Runs `p.yaml` and kills it (SIGKILL) once the trainer reports epoch `epoch`'s checkpoint (the
/// log line it writes once the checkpoint is on disk); `extra` follows `run p.yaml`.
pub fn kill_after_checkpoint(p: &Project, epoch: usize, extra: &[&str]) {
    let mut args = vec!["run", "--format", "json", "p.yaml"];
    args.extend_from_slice(extra);
    let mut child = p
        .cmd(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let tag = format!("epoch={epoch}");
    let seen = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("checkpoint saved") && l.contains(&tag));
    assert!(seen, "training never reported epoch {epoch}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs `p.yaml` with a fault armed and checks that it fired. `fault` is `ROBARCH_FAULT`'s value
/// for the control plane (it dies of SIGKILL there), or `worker:<value>` for the stage workers
/// (`ROBARCH_WORKER_FAULT`): the worker dies, and the run fails that stage naming the signal.
pub fn killed_at(p: &Project, fault: &str, extra: &[&str]) {
    let mut args = vec!["run", "--format", "json", "p.yaml"];
    args.extend_from_slice(extra);
    let (var, value) = match fault.strip_prefix("worker:") {
        Some(f) => ("ROBARCH_WORKER_FAULT", f),
        None => ("ROBARCH_FAULT", fault),
    };
    let out = p.cmd(&args).env(var, value).output().unwrap();
    let signal = signal(&out);
    if var == "ROBARCH_FAULT" {
        assert_eq!(
            signal,
            Some(libc::SIGKILL),
            "{fault}: the run was not killed there ({:?}):\n{}",
            out.status,
            stderr(&out)
        );
    } else {
        assert!(
            signal.is_none()
                && !out.status.success()
                && stderr(&out).contains("killed by SIGKILL (signal 9)"),
            "{fault}: no worker was killed there ({:?}):\n{}",
            out.status,
            stderr(&out)
        );
    }
}

/// The signal that ended the process, if one did.
pub fn signal(o: &Output) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&o.status)
}

/// The `.venv` interpreter that holds the reference implementations (torch, timm, scipy, …).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ROOT).join(".venv"));
    venv.join("bin/python")
}

/// Runs the `.venv` interpreter with `args`, which must succeed.
pub fn py(args: &[&str]) {
    let out = Command::new(python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The resolved parameters of a `torchscript` model entry for the module saved at `file`.
pub fn torchscript_params(file: &Path) -> robarch::models::ModelParams {
    let mut over = BTreeMap::new();
    over.insert(
        "file".to_string(),
        serde_yaml::Value::from(file.to_string_lossy().as_ref()),
    );
    let spec = robarch::spec::ModelSpec {
        arch: Some("torchscript".into()),
        preset: "file".into(),
        overrides: over,
    };
    robarch::models::resolve("m", &spec).unwrap()
}

/// Runs `yaml` as `bad.yaml`, which must fail with every string of `expect` on stderr and write
/// no cache entry.
pub fn fails(p: &Project, yaml: &str, expect: &[&str]) {
    p.write("bad.yaml", yaml);
    let out = p.run(&["run", "--format", "json", "bad.yaml"]);
    assert!(!out.status.success(), "should fail: {yaml}");
    let err = stderr(&out);
    for e in expect {
        assert!(err.contains(e), "expected `{e}` in:\n{err}");
    }
    assert_eq!(p.entries(), 0, "bad input must not write cache entries");
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON document a `--format json` command printed on stdout.
pub fn json_out(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(o)))
}

/// Stage ids of a `run --format json` with the given outcome (`ran`, `cached`, `failed`,
/// `skipped`, `pending`), sorted.
pub fn stages(o: &Output, outcome: &str) -> Vec<String> {
    let mut v: Vec<String> = json_out(o)["stages"]
        .as_array()
        .expect("a run's JSON lists its stages")
        .iter()
        .filter(|s| s["outcome"] == outcome)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The files of `reports/<name>/`, by file name.
pub fn reports_of(p: &Project, name: &str) -> BTreeMap<String, Vec<u8>> {
    reports_in(&p.path(&format!("reports/{name}")))
}

/// The files of one pipeline's reports directory, by path below it (not `runs/`).
pub fn reports_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.path().is_dir() {
                // `runs/` records when each report was written: not the report's content.
                if name != "runs" {
                    walk(&e.path(), &format!("{name}/"), out);
                }
            } else {
                out.insert(name, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

/// Stage id → its object in a `run --format json` document.
pub fn outcomes(o: &Output) -> BTreeMap<String, serde_json::Value> {
    json_out(o)["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

/// `robarch status --format json`: stage id → `{"kind", "key", "state", "reasons"?}`.
pub fn status(p: &Project, pipeline: &str) -> BTreeMap<String, serde_json::Value> {
    json_out(&p.ok(&["status", pipeline, "--format", "json"]))["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

/// `robarch explain --format json` of one stage.
pub fn explain(p: &Project, pipeline: &str, stage: &str) -> serde_json::Value {
    json_out(&p.ok(&["explain", pipeline, stage, "--format", "json"]))
}

/// Directory of the cached entry of `stage`, from `robarch explain`.
pub fn entry_dir(p: &Project, pipeline: &str, stage: &str) -> PathBuf {
    let ex = explain(p, pipeline, stage);
    let rel = ex["entry"]
        .as_str()
        .unwrap_or_else(|| panic!("{stage} is not cached: {ex}"))
        .to_string();
    let path = Path::new(&rel);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        p.path(&rel)
    }
}

/// A small CIFAR-10 in the official binary layout: 30 train and 10 test images whose pixels
/// depend on the class, so a model can learn something.
pub fn cifar_fixture(dir: &Path) {
    let img = |class: u8, k: u8| -> Vec<u8> {
        (0..3072u32)
            .map(|i| ((i / 1024) as u8 * 40 + class * 20 + k).wrapping_add((i % 32) as u8))
            .collect()
    };
    let train: Vec<(u8, Vec<u8>)> = (0..30u8).map(|k| (k % 10, img(k % 10, k))).collect();
    let test: Vec<(u8, Vec<u8>)> = (0..10u8).map(|k| (k, img(k, 100))).collect();
    robarch::data::cifar10::write_fixture(dir, &train, &test).unwrap();
}

/// A `w`×`h` JPEG whose colour depends on `class`.
pub fn write_jpeg(path: &Path, w: u32, h: u32, class: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 6) as u8, class * 120])
    })
    .save_with_format(path, image::ImageFormat::Jpeg)
    .unwrap();
}

/// ImageNette's layout under `root` with two classes and `n` small JPEGs per class and split.
pub fn imagenette_fixture(root: &Path, n: u32) {
    for split in ["train", "val"] {
        for (c, wnid) in ["n01440764", "n02102040"].iter().enumerate() {
            for i in 0..n {
                write_jpeg(
                    &root.join(split).join(wnid).join(format!("{wnid}_{i}.JPEG")),
                    40 + i,
                    30,
                    c as u8,
                );
            }
        }
    }
}
