//! `pipelines/mini-study.yaml` is the study at CPU scale: all 21 architectures at their tiny
//! presets, at least two seeds, the study's whole evaluation suite and every analysis, within the
//! compute that fits an hour on 2 cores; and its layout writes every table and plot of the report.
use crate::common::*;
use crate::report::{PLOTS, TABLES};

const FILE: &str = "mini-study.yaml";

fn mini_study() -> String {
    std::fs::read_to_string(format!("{ROOT}/pipelines/{FILE}")).unwrap()
}

/// The architectures robarch builds (`robarch ls models`: ARCH, FAMILY, KIND, …), not the
/// imported (`external`) kind.
fn architectures(p: &Project) -> Vec<String> {
    stdout(&p.ok(&["ls", "models"]))
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() > 2 && cols[2] != "external")
        .map(|cols| cols[0].to_string())
        .collect()
}

#[test]
fn the_mini_study_plans_every_architecture_seed_attack_and_analysis_within_its_budget() {
    let p = Project::new();
    p.write(FILE, &mini_study());
    let j = json_out(&p.ok(&["status", FILE, "--format", "json"]));
    let ids: std::collections::BTreeSet<&str> = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let archs = architectures(&p);
    assert_eq!(archs.len(), 21, "{archs:?}");
    let mut want = vec![
        "prepare/digits".to_string(),
        "correlation".into(),
        "report".into(),
    ];
    for m in &archs {
        for seed in [0, 1] {
            let chain = format!("digits/{m}/pgd-linf/seed-{seed}");
            for kind in ["train", "sparsity", "bounds", "flatness"] {
                want.push(format!("{kind}/{chain}"));
            }
            // The study's suite on both splits (the gaps), AutoAttack on the test split only,
            // PGD-ℓ∞'s ε curve.
            for a in [
                "clean", "fgsm", "pgd-linf", "mim", "pgd-l2", "pgd-l1", "apgd-l1",
            ] {
                for split in ["train", "test"] {
                    want.push(format!("eval/{chain}/{a}/{split}"));
                }
            }
            for a in ["aa-linf", "aa-l2"] {
                want.push(format!("eval/{chain}/{a}/test"));
            }
            for eps in ["0.007843", "0.015686", "0.062745"] {
                for split in ["train", "test"] {
                    want.push(format!("eval/{chain}/pgd-linf@{eps}/{split}"));
                }
            }
        }
    }
    let want: std::collections::BTreeSet<&str> = want.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        ids,
        want,
        "missing: {:?}",
        want.difference(&ids).collect::<Vec<_>>()
    );
    // The budget: measured, the pipeline's 110 TFLOP (AutoAttack on 16 points) took 51 min from an
    // empty cache (docs/results.md); 125 TFLOP, the bound here, scales that run to 58 minutes.
    // More AutoAttack points, epochs or models exceed it.
    let flops = j["estimate"]["flops"].as_f64().unwrap();
    assert!(flops > 50e12 && flops < 125e12, "{}", j["estimate"]);
}

/// The mini-study's own layout (seeds, `evaluation.only`, the ε curve, the union group, every
/// analysis), shrunk to three architectures of three kinds, one epoch and a few points, writes
/// every table and plot, with one row per seed in the long tables and mean ± std in the study's.
#[test]
fn the_mini_study_layout_writes_every_table_and_plot() {
    let keep = ["resnet18", "vit", "pvt_v2"];
    let mut yaml = String::new();
    let mut in_models = false;
    for line in mini_study().lines() {
        if !line.starts_with(' ') {
            in_models = line == "models:";
        } else if in_models && !keep.iter().any(|m| line.starts_with(&format!("  {m}:"))) {
            continue;
        }
        yaml.push_str(line);
        yaml.push('\n');
    }
    for (from, to) in [
        ("resolution: 16}", "resolution: 16, limit: 150}"),
        ("epochs: 10", "epochs: 1"),
        ("limit: 200", "limit: 24"),
        ("limit: 16}", "limit: 4}"),
    ] {
        assert!(yaml.contains(from), "{FILE} no longer has `{from}`");
        yaml = yaml.replace(from, to);
    }
    let p = Project::new();
    p.write(FILE, &yaml);
    p.ok(&["run", FILE]);
    let files = reports_of(&p, "mini-study");
    for t in TABLES {
        for ext in ["csv", "parquet", "md", "tex"] {
            assert!(
                files.contains_key(&format!("{t}.{ext}")),
                "no {t}.{ext}: {:?}",
                files.keys()
            );
        }
    }
    for plot in PLOTS {
        let plot = plot.replace("digits_at", "digits_pgd-linf");
        for ext in ["png", "svg"] {
            let f = format!("plots/{plot}.{ext}");
            assert!(files.contains_key(&f), "no {f}: {:?}", files.keys());
        }
    }
    let text = |f: &str| String::from_utf8(files[f].clone()).unwrap();
    let ra = text("robust_accuracy.csv");
    assert!(ra.starts_with("dataset,model,training,seed,clean,"), "{ra}");
    assert_eq!(
        ra.lines()
            .filter(|l| l.starts_with("digits,vit,pgd-linf,"))
            .count(),
        2,
        "{ra}"
    );
    assert!(text("accuracy_by_attack.md").contains(" ± "));
}
