//! Report generation from a warm cache, for a study of the paper's size: 20 architectures ×
//! 10 attacks (one with a 3-point ε curve) × 2 splits, with sparsity, bounds, per-epoch
//! histories (100 epochs) and the correlation stage. The cache is generated: every input entry
//! of the report is written with the formats the real stages write (evaluation summaries and
//! per-sample flags of 10,000 points, sparsity and bounds summaries, `history.json`), then the
//! correlation stage runs on them for real. It then times, as a user runs them:
//! - `robarch report P` with no report entry cached: plan the pipeline, verify and read every
//!   input, build the tables, write them in every format, draw every plot, write the page;
//! - `robarch report P` with the report entry cached: verify and copy it.
//!
//! Run: `scripts/bench-report.sh [--runs 5] [--keep DIR]` (`--keep` copies the generated study's
//! report to DIR, to look at). Prints medians and ratios measured in this run.
use robarch::cache::{Cache, EntryMeta, Lookup};
use robarch::stages::StageContext;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod common;
use common::ARCHS;

const N: usize = 10_000;

fn pipeline() -> String {
    let models: String = ARCHS
        .iter()
        .map(|a| format!("  {a}: {{preset: cifar}}\n"))
        .collect();
    format!(
        r#"name: bench-report
seed: 0
device: cpu
datasets:
  cifar: {{source: synthetic, resolution: 32, synthetic: {{classes: 10, train_size: {N}, test_size: {N}}}}}
models:
{models}training:
  pgd-linf:
    attack: {{norm: linf, eps: 8/255, steps: 10}}
    epochs: 100
    optimizer: {{name: adamw, lr: 1e-4}}
evaluation:
  splits: [train, test]
  attacks:
    clean: {{}}
    fgsm: {{eps: 8/255}}
    pgd-linf: {{norm: linf, eps: 8/255, steps: 20}}
    pgd-l2: {{norm: l2, eps: 0.5, steps: 20}}
    pgd-l1: {{norm: l1, eps: 12, steps: 20}}
    mim: {{eps: 8/255, steps: 20}}
    cw: {{eps: 0.5}}
    square: {{eps: 8/255}}
    aa-linf: {{norm: linf, eps: 8/255, curve: [2/255, 4/255, 16/255]}}
    aa-l2: {{norm: l2, eps: 0.5}}
analysis: [sparsity, bounds, correlation]
"#
    )
}

/// A deterministic pseudo-random number in [0, 1) from a few integers.
fn unit(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn flags_tensor(n: usize, p: f64, seed: u64) -> Vec<u8> {
    (0..n).map(|i| u8::from(unit(seed, i as u64) < p)).collect()
}

/// Runs a control-plane stage (correlation, report) on its cached inputs and commits its entry.
fn run_in_process(cache: &Cache, node: &robarch::plan::Node, root: &Path) {
    let mut inputs = BTreeMap::new();
    for (role, key) in &node.inputs {
        let Lookup::Hit(e) = cache.load(key) else {
            panic!("{role} is not generated")
        };
        inputs.insert(role.clone(), e);
    }
    let staged = cache.stage_dir_for(&node.key).unwrap();
    let cx = StageContext {
        id: &node.id,
        out: staged.path(),
        inputs: &inputs,
        slot: robarch::vocab::device::Slot::Cpu,
        checkpoints: root.join("checkpoints"),
        progress: robarch::progress::StageProgress::hidden(),
        notes: Default::default(),
        setting: Default::default(),
    };
    let summary = match node.stage.work() {
        robarch::stages::Work::Here(s) => s.run(&cx).unwrap(),
        robarch::stages::Work::Worker(_) => panic!("{} runs in a worker", node.id),
    };
    commit(cache, node, staged, summary);
}

/// Commits a staged entry for `node` with `summary`.
fn commit(
    cache: &Cache,
    node: &robarch::plan::Node,
    staged: tempfile::TempDir,
    summary: serde_json::Value,
) {
    let meta = EntryMeta {
        key: node.key.clone(),
        kind: node.stage.kind().into(),
        version: node.stage.version(),
        stage: node.id.clone(),
        params: node.stage.params(),
        inputs: node.inputs.clone(),
        files: Default::default(),
        summary,
        provenance: Default::default(),
    };
    cache.commit(staged, meta).unwrap();
}

fn write_entry(
    cache: &Cache,
    node: &robarch::plan::Node,
    summary: serde_json::Value,
    files: &[(&str, Vec<u8>)],
) {
    let staged = cache.stage_dir_for(&node.key).unwrap();
    for (name, bytes) in files {
        std::fs::write(staged.path().join(name), bytes).unwrap();
    }
    commit(cache, node, staged, summary);
}

fn generate(root: &Path) {
    let plan = robarch::plan::load(&root.join("study.yaml"), &root.join("cache"), false).unwrap();
    let cache = Cache::open(&root.join("cache")).unwrap();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, &ix) in plan.order.iter().enumerate() {
        let node = &plan.graph[ix];
        let seed = i as u64;
        let params = node.stage.params();
        match node.stage.kind() {
            "evaluate" => {
                let attack = &params["attack"];
                let eps = attack["eps"].as_f64().unwrap_or(0.0);
                let clean = 0.6 + 0.3 * unit(seed, 1);
                let robust = if eps == 0.0 {
                    clean
                } else {
                    clean * (0.2 + 0.5 * unit(seed, 2))
                };
                let cc = flags_tensor(N, clean, seed);
                let rc: Vec<u8> = cc
                    .iter()
                    .enumerate()
                    .map(|(j, &c)| c & u8::from(unit(seed + 7, j as u64) < robust / clean))
                    .collect();
                let mean = |v: &[u8]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
                let st = safetensors::serialize(
                    [
                        (
                            "clean_correct",
                            safetensors::tensor::TensorView::new(
                                safetensors::Dtype::U8,
                                vec![N],
                                &cc,
                            )
                            .unwrap(),
                        ),
                        (
                            "robust_correct",
                            safetensors::tensor::TensorView::new(
                                safetensors::Dtype::U8,
                                vec![N],
                                &rc,
                            )
                            .unwrap(),
                        ),
                    ],
                    &None,
                )
                .unwrap();
                let norm = attack["norm"].clone();
                let class = match attack["type"].as_str() {
                    Some("clean") => "clean",
                    Some("fgsm") => "single-step",
                    Some("square") => "black-box",
                    _ => "iterative",
                };
                write_entry(
                    &cache,
                    node,
                    json!({"n": N, "clean_accuracy": mean(&cc), "robust_accuracy": mean(&rc), "eps": eps,
                           "norm": norm, "class": class, "members": [], "notes": [], "seconds": 1.0}),
                    &[
                        ("metrics.json", b"{}".to_vec()),
                        ("per_sample.safetensors", st),
                    ],
                );
            }
            "sparsity" => {
                let agg = |k: u64| {
                    json!({"numel": 1_000_000, "tensors": 40, "hoyer": 0.2 + 0.3 * unit(seed, k),
                    "l1_over_l2": 100.0 * unit(seed, k + 1), "below": {"abs<0.001": unit(seed, k + 2), "rel<0.01": unit(seed, k + 3)}})
                };
                write_entry(
                    &cache,
                    node,
                    json!({"overall": agg(0), "by_type": {"conv": agg(10), "linear": agg(20), "attention": agg(30)}}),
                    &[("sparsity.json", b"{}".to_vec())],
                );
            }
            "bounds" => {
                let log10: BTreeMap<String, f64> = robarch::analysis::bounds::PRODUCTS
                    .iter()
                    .chain(robarch::analysis::bounds::BOUNDS)
                    .enumerate()
                    .map(|(k, n)| (n.to_string(), 5.0 + 20.0 * unit(seed, k as u64)))
                    .collect();
                write_entry(
                    &cache,
                    node,
                    json!({"data": {"n": N, "d": 3072, "max_l2": 40.0, "frobenius": 3000.0, "max_linf": 2.5},
                           "threat": {"norm": "linf", "eps": 0.03}, "layers": 20, "log10": log10}),
                    &[("bounds.json", b"{}".to_vec())],
                );
            }
            "train" => {
                let history: Vec<serde_json::Value> = (1..=100)
                    .map(|e| {
                        let t = e as f64 / 100.0;
                        json!({"epoch": e, "loss": 2.0 - t, "train_accuracy": 0.3 + 0.5 * t, "lr": 1e-4,
                               "train_clean_accuracy": 0.5 + 0.4 * t, "test_clean_accuracy": 0.5 + 0.3 * t,
                               "train_robust_accuracy": 0.2 + 0.6 * t, "test_robust_accuracy": 0.2 + 0.3 * t - 0.2 * (t - 0.5).max(0.0)})
                    })
                    .collect();
                write_entry(
                    &cache,
                    node,
                    json!({}),
                    &[("history.json", serde_json::to_vec(&history).unwrap())],
                );
            }
            "correlation" => run_in_process(&cache, node, root),
            _ => continue,
        }
        *counts.entry(node.stage.kind()).or_default() += 1;
    }
    println!("generated cache entries: {counts:?}");
}

fn robarch_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/report-… → target/release/robarch (scripts/build.sh builds it).
    let bin = exe.parent().unwrap().parent().unwrap().join("robarch");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/build.sh",
        bin.display()
    );
    bin
}

fn time_report(root: &Path) -> f64 {
    let t = Instant::now();
    let out = Command::new(robarch_bin())
        .args(["report", "study.yaml"])
        .current_dir(root)
        .output()
        .unwrap();
    let s = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut runs = 5usize;
    let mut keep: Option<std::path::PathBuf> = None;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    for pair in args.chunks(2) {
        match pair {
            [k, v] if k == "--runs" => runs = v.parse().expect("--runs N"),
            [k, v] if k == "--keep" => keep = Some(v.into()),
            _ => panic!("usage: bench-report [--runs N] [--keep DIR]"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("study.yaml"), pipeline()).unwrap();
    let t = Instant::now();
    generate(root);
    println!("generating the cache: {:.1} s", t.elapsed().as_secs_f64());
    // The report entry is not cached: every `robarch report` renders it from the inputs.
    let render: Vec<f64> = (0..runs).map(|_| time_report(root)).collect();
    let report_dir = root.join("reports/bench-report");
    let files = walk(&report_dir);
    let pngs = files.iter().filter(|f| f.ends_with(".png")).count();
    println!(
        "report written: {} files ({} tables × 4 formats, {} plots as PNG and SVG, index.html {:.1} MB)",
        files.len(),
        files.iter().filter(|f| f.ends_with(".parquet")).count(),
        pngs,
        std::fs::metadata(report_dir.join("index.html")).unwrap().len() as f64 / 1e6
    );
    // Cache the report entry as `robarch run` does, then time the copy.
    let plan = robarch::plan::load(&root.join("study.yaml"), &root.join("cache"), false).unwrap();
    let cache = Cache::open(&root.join("cache")).unwrap();
    let ix = plan.report().unwrap();
    let node = &plan.graph[ix];
    run_in_process(&cache, node, root);
    let copy: Vec<f64> = (0..runs).map(|_| time_report(root)).collect();
    let (r, c) = (median(render), median(copy));
    println!(
        "\n{} report inputs ({} evaluations), {runs} runs each, medians:",
        node.inputs.len(),
        node.inputs
            .keys()
            .filter(|k| k.starts_with("eval/"))
            .count()
    );
    println!(
        "  robarch report, rendered from the cached inputs: {r:.3} s  ({:.2} × the 1 s budget)",
        r / 1.0
    );
    println!("  robarch report, report entry cached (copy):      {c:.3} s");
    println!("  render / copy: {:.2}", r / c);
    if let Some(to) = keep {
        std::fs::create_dir_all(&to).unwrap();
        for f in &files {
            let rel = Path::new(f).strip_prefix(&report_dir).unwrap();
            let dest = to.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(f, dest).unwrap();
        }
        println!("the generated study's report: {}", to.display());
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().to_string_lossy().into_owned());
        }
    }
    out
}
