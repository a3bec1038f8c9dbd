//! The `flatness` analysis (robust flatness: Stutz, Hein & Schiele, ICCV 2021, "Relating
//! Adversarially Robust Generalization to Flat Minima") against an independent PyTorch
//! transcription (scripts/crosscheck_flatness.py) on the same weights and points: the robust loss,
//! every average-case loss and the worst-case loss agree; and its settings enter the flatness
//! stage's key only. The reference runs in the project's `.venv`.
use crate::common::*;
use serde_json::{json, Value};
use std::path::PathBuf;

/// One small CNN with BatchNorm, one epoch of PGD-AT on 8×8 digits. The flatness threat is the
/// evaluation attack `pgd` (ε = 6/255, not training's 8/255) and its PGD runs `attack_steps: 3`,
/// not the attack's 5 steps, so a threat or a step count taken from the wrong place shows; 48
/// points in batches of 32 leave a smaller last batch.
const PIPELINE: &str = r#"name: flat
seed: 4
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8, limit: 120}
models:
  resnet18: {preset: tiny}
training:
  at:
    attack: {norm: linf, eps: 8/255, steps: 2}
    epochs: 1
    batch_size: 40
    optimizer: {name: adamw, lr: 2e-3}
evaluation:
  splits: [test]
  limit: 20
  attacks:
    pgd: {norm: linf, eps: 6/255, steps: 5}
analysis:
  flatness: {points: 48, batch_size: 32, attack: pgd, attack_steps: 3, average: {radius: 0.5, samples: 2}, worst: {radius: 0.003, steps: 2}}
"#;

const STAGE: &str = "flatness/digits/resnet18/at";
const EPS: f64 = 6.0 / 255.0;

/// Losses of the two implementations may differ by this much, relative to max(1, |loss|). Both
/// run the same libtorch on one thread and draw the same Gaussian noise, so what differs is
/// float32 op order (torchvision's ResNet against robarch's, reductions over batches): ~1e-6 on
/// the logits (scripts/crosscheck_models.py). PGD's ℓ∞ steps take sign(∇ₓ): a gradient coordinate
/// within rounding of 0 may flip its sign on one side, move that pixel by 2α and change the later
/// steps. On this tiny ResNet in PyTorch (losses ≈ 2), perturbing every weight by a relative 1e-6
/// moved these losses by at most 3.3e-5 over six draws; 1e-3 leaves a factor of 30 over that and
/// stays well below what a slip does there (another noise draw moves an average-case loss by
/// ~5e-2; dropping the worst case's projection onto ξ‖w_l‖ moves the worst loss by ~3e-2).
const TOL: f64 = 1e-3;

fn read_json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn flatness_matches_a_pytorch_transcription_on_shared_weights() {
    let p = Project::new();
    p.write("f.yaml", PIPELINE);
    // One libtorch thread, as the reference sets: the same kernels with the same blocking.
    let run = p.ok(&["run", "--format", "json", "f.yaml", "--threads", "1"]);
    assert!(
        stages(&run, "ran").contains(&STAGE.to_string()),
        "{}",
        stdout(&run)
    );

    let entry = entry_dir(&p, "f.yaml", STAGE);
    let ours = read_json(entry.join("flatness.json"));
    let meta = read_json(entry.join("meta.json"));
    assert_eq!(
        meta["summary"], ours,
        "the entry's summary is flatness.json"
    );
    // The noise seeds derive from the stage's evaluation seed: the pipeline's `seed` here.
    let seed = meta["params"]["seed"]
        .as_u64()
        .expect("the key holds the seed");
    assert_eq!(seed, 4, "{}", meta["params"]);

    // What robarch says it measured.
    assert_eq!(ours["points"], 48);
    assert_eq!(ours["threat"]["norm"], "linf", "{ours}");
    assert!((f(&ours["threat"]["eps"]) - EPS).abs() < 1e-12, "{ours}");
    assert_eq!(ours["average"]["samples"], 2);
    assert_eq!(ours["average"]["losses"].as_array().unwrap().len(), 2);
    assert_eq!(f(&ours["average"]["radius"]), 0.5);
    assert_eq!(ours["worst"]["steps"], 2);
    assert_eq!(f(&ours["worst"]["radius"]), 0.003);

    // The reference: the exported weights (robarch's names; the export only drops the
    // `normalize.*` buffers, whose values load.py applies) and the prepared data.
    p.ok(&[
        "export",
        "f.yaml",
        "train/digits/resnet18/at",
        "--to",
        "out/m",
        "--checkpoint",
        "last",
    ]);
    let prep = entry_dir(&p, "f.yaml", "prepare/digits");
    let request = json!({
        "points": 48, "batch_size": 32, "attack_steps": 3, "seed": seed,
        "threat": {"norm": "linf", "eps": EPS},
        "average": {"radius": 0.5, "samples": 2},
        "worst": {"radius": 0.003, "steps": 2},
    });
    let out = std::process::Command::new(python())
        .arg(PathBuf::from(ROOT).join("scripts/crosscheck_flatness.py"))
        .arg(p.path("out/m"))
        .arg(&prep)
        .arg(request.to_string())
        .output()
        .expect("running the reference in .venv");
    assert!(out.status.success(), "reference failed:\n{}", stderr(&out));
    let theirs = json_out(&out);
    println!("robarch:  {ours}\nreference: {theirs}");

    // The same tensors perturbed: convolution and linear weights and the classifier's bias,
    // no BatchNorm (torchvision names them bn* and downsample.1).
    let names: Vec<&str> = theirs["perturbed_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"fc.bias") && names.contains(&"conv1.weight"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| !n.contains("bn") && !n.contains("downsample.1")),
        "{names:?}"
    );
    assert_eq!(ours["perturbed"], theirs["perturbed"], "{names:?}");

    let close = |what: &str, a: &Value, b: &Value| {
        let (a, b) = (f(a), f(b));
        assert!(
            (a - b).abs() <= TOL * b.abs().max(1.0),
            "{what}: robarch {a} vs PyTorch {b}"
        );
    };
    close("robust_loss", &ours["robust_loss"], &theirs["robust_loss"]);
    for k in 0..2 {
        close(
            &format!("average.losses[{k}]"),
            &ours["average"]["losses"][k],
            &theirs["average"]["losses"][k],
        );
    }
    close(
        "worst.loss",
        &ours["worst"]["loss"],
        &theirs["worst"]["loss"],
    );

    // The flatness values are the differences they claim to be …
    let robust = f(&ours["robust_loss"]);
    let losses: Vec<f64> = ours["average"]["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect();
    let mean = losses.iter().sum::<f64>() / losses.len() as f64;
    assert!(
        (f(&ours["average"]["flatness"]) - (mean - robust)).abs() < 1e-9,
        "{ours}"
    );
    assert!(
        (f(&ours["worst"]["flatness"]) - (f(&ours["worst"]["loss"]) - robust)).abs() < 1e-9,
        "{ours}"
    );
    // … and not degenerate: the attack raises the loss above the clean one, each sample draws
    // its own noise, the noise moves the loss, and ascent on the weights raises it.
    assert!(
        robust > f(&theirs["clean_loss"]),
        "PGD did nothing: {ours} {theirs}"
    );
    assert_ne!(losses[0], losses[1], "both samples drew the same noise");
    assert_ne!(f(&ours["average"]["flatness"]), 0.0, "{ours}");
    assert!(f(&ours["worst"]["flatness"]) > 0.0, "{ours}");
}

#[test]
fn flatness_settings_change_only_the_flatness_key() {
    let p = Project::new();
    p.write("f.yaml", PIPELINE);
    let before = status(&p, "f.yaml");
    assert!(before.contains_key(STAGE), "{:?}", before.keys());
    p.write("f.yaml", &PIPELINE.replace("points: 48", "points: 40"));
    let after = status(&p, "f.yaml");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert_ne!(
        before[STAGE]["key"], after[STAGE]["key"],
        "points is in the key"
    );
    for (id, s) in &before {
        // The report reads every analysis, so it follows the flatness stage.
        if id != STAGE && id != "report" {
            assert_eq!(
                s["key"], after[id]["key"],
                "{id} changed with the flatness points"
            );
        }
    }
    assert!(before.contains_key("train/digits/resnet18/at"));
}

/// A new analysis reaches the correlation, the `analysis` table and the scatter plots through the
/// registry alone: two architectures, flatness beside sparsity, correlated against the gap.
#[test]
fn flatness_enters_the_correlation_the_tables_and_the_plots() {
    let p = Project::new();
    let spec = PIPELINE
        .replace(
            "  resnet18: {preset: tiny}\n",
            "  resnet18: {preset: tiny}\n  mixer: {preset: tiny}\n",
        )
        .replace("  splits: [test]\n", "  splits: [train, test]\n")
        .replace(
            "analysis:\n  flatness:",
            "analysis:\n  sparsity:\n  correlation: {bootstrap: 100, gap: [pgd]}\n  flatness:",
        )
        .replace(
            "samples: 2}, worst: {radius: 0.003, steps: 2}",
            "samples: 1}, worst: {radius: 0.003, steps: 1}",
        );
    p.write("f.yaml", &spec);
    p.ok(&["run", "f.yaml"]);
    let analysis = std::fs::read_to_string(p.path("reports/flat/analysis.csv")).unwrap();
    let header = analysis.lines().next().unwrap();
    // Registry order: sparsity's columns, then flatness's.
    let (hoyer, flat) = (
        header.find("hoyer").expect(header),
        header.find("flatness_average").expect(header),
    );
    assert!(
        hoyer < flat && header.contains("flatness_worst"),
        "{header}"
    );
    assert_eq!(analysis.lines().count(), 3, "{analysis}");
    let corr = std::fs::read_to_string(p.path("reports/flat/correlation.csv")).unwrap();
    for m in ["flatness_average", "flatness_worst", "hoyer"] {
        assert!(
            corr.lines()
                .any(|l| l.contains(m) && l.contains("robust_gap:pgd")),
            "{m} is not correlated with the gap:\n{corr}"
        );
    }
    assert!(
        p.path("reports/flat/plots/flatness_vs_gap_digits_at.png")
            .exists(),
        "{:?}",
        std::fs::read_dir(p.path("reports/flat/plots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    let ls = p.ok(&["ls", "analyses"]);
    assert!(stdout(&ls).contains("flatness"), "{}", stdout(&ls));
}
