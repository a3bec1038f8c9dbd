//! The attack suite end to end: a standard-trained model on the embedded digits, evaluated by every
//! attack family through the pipeline, with the sanity checks of Carlini et al. (2019): ε = 0 gives
//! clean accuracy, robust accuracy falls with ε and reaches 0 at large ε, more steps never help the
//! defender, a worst case over attacks is below each member, and no gradient-masking warning on an
//! undefended model.
use crate::common::{stdout, Project};
use std::collections::BTreeMap;

const SPEC: &str = r#"name: atk
seed: 1
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8}
models:
  resnet18: {preset: tiny}
training:
  std:
    method: standard
    epochs: 3
    batch_size: 64
    optimizer: {name: adamw, lr: 3e-3}
evaluation:
  splits: [test]
  limit: 100
  attacks:
    clean: {}
    fgsm: {eps: 0.05, curve: [0, 0.02]}
    pgd-linf: {norm: linf, eps: 0.05, steps: 10, curve: [0, 0.02, 0.1, 0.5]}
    pgd-1step: {type: pgd, eps: 0.05, steps: 1}
    pgd-5: {type: pgd, eps: 0.05, steps: 5, step_size: 0.0125}
    pgd-20: {type: pgd, eps: 0.05, steps: 20, step_size: 0.0125}
    pgd-l2: {norm: l2, eps: 0.5, steps: 10, curve: [0, 10]}
    pgd-l1: {norm: l1, eps: 2, steps: 10}
    pgd-l1-dense: {type: pgd, norm: l1, l1_step: dense, eps: 2, steps: 10}
    pgd-cw: {type: pgd, loss: cw, eps: 0.05, steps: 10}
    mim: {eps: 0.05}
    cw: {eps: 0.5, steps: 30, binary_search_steps: 3}
    apgd-ce: {norm: linf, eps: 0.05, steps: 20}
    apgd-t: {norm: linf, eps: 0.05, steps: 20, targets: 3}
    apgd-l1: {type: apgd, norm: l1, eps: 2, steps: 20}
    fab-t: {norm: linf, eps: 0.05, steps: 20, targets: 3}
    fab-l2: {type: fab, norm: l2, eps: 0.5, steps: 20}
    square: {norm: linf, eps: 0.05, queries: 300}
    square-l1: {type: square, norm: l1, eps: 2, queries: 300}
    aa: {norm: linf, eps: 0.05}
  groups:
    linf-worst: [fgsm, pgd-linf, mim, apgd-ce, apgd-t, fab-t, square, aa]
    union: [pgd-linf, pgd-l2, pgd-l1]
report: {tables: [robust_accuracy], formats: [csv, md]}
"#;

/// `attack → robust accuracy (%)` from the robust-accuracy table (one model, test split).
fn table(p: &Project) -> BTreeMap<String, f64> {
    let csv = std::fs::read_to_string(p.path("reports/atk/robust_accuracy.csv")).unwrap();
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    head.iter()
        .zip(row)
        .skip(3)
        .filter_map(|(h, v)| v.parse().ok().map(|v| (h.to_string(), v)))
        .collect()
}

/// `(attack, ε) → robust accuracy (%)` from the ε-curve table.
fn curve(p: &Project) -> Vec<(String, f64, f64)> {
    let csv = std::fs::read_to_string(p.path("reports/atk/eps_curve.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (
                c[3].to_string(),
                c[5].parse().unwrap(),
                c[6].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_attack_family_passes_the_sanity_checks() {
    let p = Project::new();
    p.write("atk.yaml", SPEC);
    let out = p.ok(&["run", "--format", "json", "atk.yaml"]);
    let t = table(&p);
    let clean = t["clean"];
    assert!(
        clean > 60.0,
        "the model must learn the digits: clean {clean}% ({t:?})"
    );
    for (a, v) in &t {
        assert!(*v <= clean + 1e-9, "{a}: robust {v}% above clean {clean}%");
    }
    // A worst case over attacks is at most each member; the union over norms at most each norm.
    for m in [
        "fgsm", "pgd-linf", "mim", "apgd-ce", "apgd-t", "fab-t", "square", "aa",
    ] {
        assert!(t["linf-worst"] <= t[m], "{t:?}");
    }
    for m in ["pgd-linf", "pgd-l2", "pgd-l1"] {
        assert!(t["union"] <= t[m], "{t:?}");
    }
    // Iterative beats single-step; AutoAttack is at least as strong as its first member.
    assert!(
        t["pgd-linf"] <= t["fgsm"] && t["pgd-linf"] <= t["pgd-1step"],
        "{t:?}"
    );
    // More steps never help the defender: same seed and step size (pgd-linf's default 2.5·ε/10),
    // so 5, 10 and 20 steps follow one trajectory.
    assert!(
        t["pgd-20"] <= t["pgd-linf"] && t["pgd-linf"] <= t["pgd-5"],
        "robust accuracy rose with steps: {t:?}"
    );
    assert!(t["aa"] <= t["apgd-ce"] + 1.0, "{t:?}");
    assert!(
        t["apgd-ce"] < clean,
        "APGD must break something at ε = 0.05 on an undefended model"
    );
    // ε-curves: ε = 0 is clean accuracy, non-increasing in ε, 0 at a radius that can grey out
    // any image.
    let c = curve(&p);
    for attack in ["fgsm", "pgd-linf", "pgd-l2"] {
        let pts: Vec<(f64, f64)> = c
            .iter()
            .filter(|r| r.0 == attack)
            .map(|r| (r.1, r.2))
            .collect();
        assert!(pts.len() >= 3, "{attack}: {c:?}");
        assert_eq!(
            pts[0],
            (0.0, clean),
            "{attack} at ε = 0 must equal clean accuracy"
        );
        for w in pts.windows(2) {
            assert!(
                w[1].1 <= w[0].1,
                "{attack}: robust accuracy rose with ε: {pts:?}"
            );
        }
        if attack != "fgsm" {
            assert_eq!(pts.last().unwrap().1, 0.0, "{attack} at large ε: {pts:?}");
        }
    }
    // FAB, FAB-T and Square break points of an undefended model too.
    for m in ["fab-t", "fab-l2", "square", "square-l1"] {
        assert!(t[m] < clean, "{m} broke nothing: {t:?}");
    }
    // An undefended model shows no gradient-masking sign.
    let warnings = std::fs::read_to_string(p.path("reports/atk/warnings.md")).unwrap_or_default();
    assert!(!warnings.contains("gradient masking"), "{warnings}");
    // Adding an attack runs only that attack's evaluation and the report.
    let more = SPEC.replace(
        "    clean: {}\n",
        "    clean: {}\n    apgd-dlr: {eps: 0.05, steps: 10}\n",
    );
    p.write("atk.yaml", &more);
    let again = p.ok(&["run", "--format", "json", "atk.yaml"]);
    let ran = crate::common::stages(&again, "ran");
    assert_eq!(
        ran,
        vec!["eval/digits/resnet18/std/apgd-dlr/test", "report"],
        "{}",
        stdout(&again)
    );
    let _ = out;
}
