//! The analysis stages end to end: sparsity, norms and bounds per trained model, the correlation
//! across architectures, their report tables, what reruns when their settings change, and bad
//! settings. The norms and correlations are cross-checked against numpy/scipy in the `.venv`.
use crate::common::*;
use serde_json::Value;
use std::path::PathBuf;

/// Four architectures (CNN, ViT, MLP-Mixer, PVT) on 8×8 digits, one epoch of PGD-AT each.
const PIPELINE: &str = r#"name: analysed
seed: 1
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8, limit: 120}
models:
  resnet18: {preset: tiny}
  vit: {preset: tiny}
  mixer: {preset: tiny}
  pvt_v2: {preset: tiny}
training:
  at:
    attack: {norm: linf, eps: 8/255, steps: 2}
    epochs: 1
    batch_size: 40
    optimizer: {name: adamw, lr: 2e-3}
evaluation:
  limit: 60
  attacks:
    clean: {}
    pgd: {eps: 8/255, steps: 3}
    pgd-l2: {norm: l2, eps: 0.5, steps: 3}
analysis:
  sparsity: {absolute: [1e-3, 1e-2], relative: [0.01]}
  bounds: {conv_grid: 8}
  correlation: {bootstrap: 300}
"#;

const MODELS: &[&str] = &["mixer", "pvt_v2", "resnet18", "vit"];

fn json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every layer's norms recomputed with numpy from the trained weights (SVDs, FFT + per-frequency
/// SVDs for the operator norm); returns the largest relative difference and the layer count.
fn numpy_norms(weights: &PathBuf, norms: &PathBuf, grid: i64) -> (f64, usize) {
    let script = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file
w = load_file(sys.argv[1]); layers = json.load(open(sys.argv[2])); g = int(sys.argv[3])
worst = 0.0
for l in layers:
    t = w[l["name"]].astype(np.float64)
    m = t.reshape(t.shape[0], -1)
    ref = {
        "fro": np.sqrt((m ** 2).sum()),
        "spectral": np.linalg.svd(m, compute_uv=False)[0],
        "l1": np.abs(m).sum(),
        "l21": np.sqrt((m ** 2).sum(1)).sum(),
        "l1inf": np.abs(m).sum(1).max(),
    }
    if t.ndim == 4 and t.shape[2] * t.shape[3] > 1:
        n = max(g, t.shape[2], t.shape[3])
        f = np.fft.fft2(t, s=(n, n), axes=(2, 3))
        blocks = f.transpose(2, 3, 0, 1).reshape(n * n, t.shape[0], t.shape[1])
        ref["spectral_op"] = np.linalg.svd(blocks, compute_uv=False).max()
    else:
        ref["spectral_op"] = ref["spectral"]
    for k, v in ref.items():
        worst = max(worst, abs(l[k] - v) / max(abs(v), 1e-12))
print(worst, len(layers))
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(weights)
        .arg(norms)
        .arg(grid.to_string())
        .output()
        .expect("running numpy in .venv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = s.split_whitespace();
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

/// scipy's Kendall τ (τ_b) and Spearman ρ of each (x, y) pair, in one interpreter.
fn scipy_tau_rho(pairs: &[(Vec<f64>, Vec<f64>)]) -> Vec<(f64, f64)> {
    let script = "import json, sys\nfrom scipy import stats\nfor x, y in json.loads(sys.argv[1]):\n    print(stats.kendalltau(x, y)[0], stats.spearmanr(x, y)[0])";
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(serde_json::to_string(pairs).unwrap())
        .output()
        .expect("running scipy in .venv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|t| t.parse().unwrap()).collect();
            (v[0], v[1])
        })
        .collect()
}

#[test]
fn analyses_measure_every_model_and_correlate_across_them() {
    let p = Project::new();
    p.write("a.yaml", PIPELINE);
    let first = p.ok(&["run", "--format", "json", "a.yaml"]);
    let ran = stages(&first, "ran");
    for m in MODELS {
        for kind in ["sparsity", "bounds"] {
            let id = format!("{kind}/digits/{m}/at");
            assert!(ran.contains(&id), "{id} did not run: {ran:?}");
        }
    }
    assert!(ran.contains(&"correlation".to_string()), "{ran:?}");

    // Sparsity: thresholds as configured, layer types per architecture.
    let sp = json(entry_dir(&p, "a.yaml", "sparsity/digits/vit/at").join("sparsity.json"));
    let below = sp["overall"]["below"].as_object().unwrap();
    let keys: Vec<&str> = below.keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["abs<0.001", "abs<0.01", "rel<0.01"]);
    assert!(below["abs<0.001"].as_f64().unwrap() <= below["abs<0.01"].as_f64().unwrap());
    for t in ["attention", "linear", "embedding"] {
        assert!(
            sp["by_type"][t]["numel"].as_i64().unwrap() > 0,
            "vit lacks {t}"
        );
    }
    let cnn = json(entry_dir(&p, "a.yaml", "sparsity/digits/resnet18/at").join("sparsity.json"));
    assert!(cnn["by_type"]["conv"]["numel"].as_i64().unwrap() > 0);
    assert!(cnn["by_type"]["attention"].is_null());

    // Norms against numpy, and bounds defined for every model.
    for m in MODELS {
        let dir = entry_dir(&p, "a.yaml", &format!("bounds/digits/{m}/at"));
        let train = entry_dir(&p, "a.yaml", &format!("train/digits/{m}/at"));
        let (worst, layers) =
            numpy_norms(&train.join("model.safetensors"), &dir.join("norms.json"), 8);
        assert!(layers > 3, "{m}: {layers} layers");
        // Both sides work in float64 (BLAS differences ~1e-15); the bound is set by our Lanczos
        // stopping rule (relative change < 1e-6), not by the CPU.
        assert!(
            worst < 1e-5,
            "{m}: norms differ from numpy by {worst:e} (relative)"
        );
        let b = json(dir.join("bounds.json"));
        assert_eq!(b["data"]["n"], 120);
        assert_eq!(b["data"]["d"].as_u64().unwrap() % 64, 0);
        // Trained with ℓ∞ 8/255: the threat in normalised units is ε / min std > ε.
        assert_eq!(b["threat"]["norm"], "linf");
        assert!(b["threat"]["eps"].as_f64().unwrap() > 8.0 / 255.0);
        for (name, v) in b["log10"].as_object().unwrap() {
            assert!(v.as_f64().is_some_and(f64::is_finite), "{m}: {name} = {v}");
        }
        let l = &b["log10"];
        // An attack only enlarges the adversarial ℓ1,∞ measure.
        assert!(l["adv_l1inf"].as_f64() > l["golowich_l1inf"].as_f64());
    }
    let resnet_norms =
        json(entry_dir(&p, "a.yaml", "bounds/digits/resnet18/at").join("norms.json"));
    assert!(
        resnet_norms
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kernel"][0] == 3 && l["spectral_op"] != l["spectral"]),
        "3×3 convolutions are measured as operators"
    );

    // Correlation: both gaps, every measure, τ and ρ as scipy computes them.
    let c = json(entry_dir(&p, "a.yaml", "correlation").join("correlation.json"));
    let rows = c["rows"].as_array().unwrap();
    let gaps: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["gap"].as_str().unwrap()).collect();
    assert_eq!(
        gaps.into_iter().collect::<Vec<_>>(),
        ["robust_gap:pgd", "unseen_drop:pgd-l2"]
    );
    let measures: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["measure"].as_str().unwrap())
        .collect();
    for m in [
        "hoyer",
        "below_abs<0.01",
        "log10_bartlett",
        "log10_adv_l1inf",
    ] {
        assert!(measures.contains(m), "{m} missing from {measures:?}");
    }
    // The gap of each model is the report's train − test robust accuracy.
    let gap_csv =
        std::fs::read_to_string(p.path("reports/analysed/generalization_gap.csv")).unwrap();
    let hoyer_row = rows
        .iter()
        .find(|r| r["measure"] == "hoyer" && r["gap"] == "robust_gap:pgd")
        .unwrap();
    assert_eq!(hoyer_row["n"], 4);
    let models: Vec<&str> = hoyer_row["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(models, MODELS);
    let x: Vec<f64> = hoyer_row["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let y: Vec<f64> = hoyer_row["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (i, m) in models.iter().enumerate() {
        let line = gap_csv
            .lines()
            .find(|l| l.contains(&format!(",{m},at,pgd,")))
            .unwrap_or_else(|| panic!("{m} missing from\n{gap_csv}"));
        let gap: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
        assert!((gap - y[i]).abs() < 1e-6, "{m}: {gap} vs {}", y[i]);
        let s =
            json(entry_dir(&p, "a.yaml", &format!("sparsity/digits/{m}/at")).join("sparsity.json"));
        assert!((s["overall"]["hoyer"].as_f64().unwrap() - x[i]).abs() < 1e-12);
    }
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let pairs: Vec<(Vec<f64>, Vec<f64>)> = rows
        .iter()
        .map(|r| (floats(&r["x"]), floats(&r["y"])))
        .collect();
    let reference = scipy_tau_rho(&pairs);
    assert_eq!(reference.len(), rows.len());
    for (r, (tau, rho)) in rows.iter().zip(reference) {
        let ours = (
            r["kendall_tau"]["value"].as_f64(),
            r["spearman_rho"]["value"].as_f64(),
        );
        if tau.is_nan() {
            assert_eq!(ours.0, None, "{r}");
        } else {
            assert!((ours.0.unwrap() - tau).abs() < 1e-12, "{r}: τ {tau}");
            assert!((ours.1.unwrap() - rho).abs() < 1e-12, "{r}: ρ {rho}");
            let (lo, hi) = (
                r["kendall_tau"]["lo"].as_f64().unwrap(),
                r["kendall_tau"]["hi"].as_f64().unwrap(),
            );
            assert!((-1.0..=hi).contains(&lo) && hi <= 1.0, "{r}");
        }
    }
    // Report tables.
    let analysis = std::fs::read_to_string(p.path("reports/analysed/analysis.csv")).unwrap();
    let header = analysis.lines().next().unwrap();
    for col in [
        "hoyer",
        "hoyer_attention",
        "log10_bartlett",
        "log10_golowich_l1inf",
    ] {
        assert!(header.split(',').any(|h| h == col), "{col} not in {header}");
    }
    assert_eq!(analysis.lines().count(), 1 + 4);
    let corr = std::fs::read_to_string(p.path("reports/analysed/correlation.md")).unwrap();
    assert!(
        corr.contains("Kendall τ") && corr.contains("robust_gap:pgd"),
        "{corr}"
    );

    // What reruns: the bootstrap only touches the correlation (and the report) …
    p.write(
        "a.yaml",
        &PIPELINE.replace("bootstrap: 300", "bootstrap: 400"),
    );
    let out = p.ok(&["run", "--format", "json", "a.yaml"]);
    assert_eq!(stages(&out, "ran"), ["correlation", "report"]);
    // … a sparsity threshold the sparsity stages, the correlation and the report …
    p.write(
        "a.yaml",
        &PIPELINE
            .replace("bootstrap: 300", "bootstrap: 400")
            .replace("relative: [0.01]", "relative: [0.1]"),
    );
    let out = p.ok(&["run", "--format", "json", "a.yaml"]);
    let mut expect: Vec<String> = MODELS
        .iter()
        .map(|m| format!("sparsity/digits/{m}/at"))
        .collect();
    expect.extend(["correlation".to_string(), "report".to_string()]);
    expect.sort();
    assert_eq!(stages(&out, "ran"), expect);
    // … and the operator grid the bounds stages, the correlation and the report.
    p.write(
        "a.yaml",
        &PIPELINE
            .replace("bootstrap: 300", "bootstrap: 400")
            .replace("relative: [0.01]", "relative: [0.1]")
            .replace("conv_grid: 8", "conv_grid: 12"),
    );
    let out = p.ok(&["run", "--format", "json", "a.yaml"]);
    let ran = stages(&out, "ran");
    assert_eq!(
        ran.iter().filter(|s| s.starts_with("bounds/")).count(),
        4,
        "{ran:?}"
    );
    assert_eq!(ran.len(), 4 + 2, "{ran:?}");
    let (worst, _) = numpy_norms(
        &entry_dir(&p, "a.yaml", "train/digits/resnet18/at").join("model.safetensors"),
        &entry_dir(&p, "a.yaml", "bounds/digits/resnet18/at").join("norms.json"),
        12,
    );
    assert!(worst < 1e-5, "{worst}"); // as above: Lanczos' stopping rule, not the CPU
}

#[test]
fn bad_analysis_settings_get_located_hinted_errors() {
    let p = Project::new();
    let with = |analysis: &str| {
        let i = PIPELINE.find("analysis:").unwrap();
        format!("{}{analysis}\n", &PIPELINE[..i])
    };
    fails(
        &p,
        &with("analysis: [sparsity, bound]"),
        &[
            "bad.yaml",
            "analysis: unknown analysis `bound`",
            "did you mean `bounds`?",
        ],
    );
    fails(
        &p,
        &with("analysis:\n  bounds: {conv_grd: 8}"),
        &[
            "bad.yaml:24:",
            "unknown field `conv_grd`",
            "did you mean `conv_grid`?",
        ],
    );
    fails(
        &p,
        &with("analysis:\n  sparsity: {relative: [1.5]}"),
        &["bad.yaml:24:", "analysis.sparsity.relative", "in (0, 1]"],
    );
    fails(
        &p,
        &with("analysis:\n  sparsity:\n  correlation: {gap: [pgd-lnf]}"),
        &[
            "analysis.correlation.gap",
            "`pgd-lnf` is no evaluation attack",
            "did you mean `pgd-l2`?",
        ],
    );
    fails(
        &p,
        &with("analysis: [correlation]"),
        &[
            "analysis.correlation",
            "no measures",
            "add `sparsity` and/or `bounds`",
        ],
    );
    fails(
        &p,
        &with("analysis: [sparsity]\nreport: {tables: [correlation]}"),
        &[
            "report.tables",
            "the `correlation` table needs the `correlation` analysis",
        ],
    );
    fails(
        &p,
        &with("analysis: [sparsity, correlation]")
            .replace("evaluation:\n", "evaluation:\n  splits: [test]\n"),
        &["analysis.correlation", "needs the `train` split"],
    );
}
