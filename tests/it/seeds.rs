//! `seeds:`: each training seed is its own chain of stages with its own keys; the seed equal to
//! the pipeline's `seed` keeps the keys a pipeline without `seeds:` has, so adding seeds reuses it
//! and adding one more computes only that seed's chain (and what reads every chain).
use crate::common::{entry_dir, explain, stages, Project, TINY};

/// `TINY` with the correlation, and `seeds` when given.
fn pipeline(seeds: Option<&str>, over: Option<&str>) -> String {
    let mut s = TINY.replace(
        "analysis: [sparsity]\n",
        &match over {
            Some(o) => format!("analysis:\n  sparsity: {{}}\n  correlation: {{over: {o}}}\n"),
            None => "analysis: [sparsity, correlation]\n".into(),
        },
    );
    if let Some(seeds) = seeds {
        s = s.replace("seed: 3\n", &format!("seed: 3\nseeds: {seeds}\n"));
    }
    s
}

/// The stages of one chain: the training, its 6 evaluations and its sparsity.
fn chain(seed: u64) -> Vec<String> {
    let base = format!("digits/resnet18/at/seed-{seed}");
    let mut v = vec![format!("train/{base}"), format!("sparsity/{base}")];
    for a in ["clean", "fgsm", "pgd"] {
        for s in ["train", "test"] {
            v.push(format!("eval/{base}/{a}/{s}"));
        }
    }
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn each_seed_is_a_chain_and_adding_one_computes_only_it() {
    let p = Project::new();
    p.write("p.yaml", &pipeline(None, None));
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let single = explain(&p, "p.yaml", "train/digits/resnet18/at")["key"].clone();
    // seeds [3, 4]: seed 3 is the pipeline's seed, so its chain is the cached one under new ids;
    // seed 4's chain runs, and so do the correlation and the report, which read every chain.
    p.write("p.yaml", &pipeline(Some("[3, 4]"), None));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let mut want = chain(4);
    want.extend(["correlation".to_string(), "report".to_string()]);
    assert_eq!(stages(&out, "ran"), sorted(want));
    let mut cached = chain(3);
    cached.push("prepare/digits".into());
    assert_eq!(stages(&out, "cached"), sorted(cached));
    assert_eq!(explain(&p, "p.yaml", "train/digits/resnet18/at/seed-3")["key"], single);
    // The seeds train different models.
    let weights = |s: u64| {
        let dir = entry_dir(&p, "p.yaml", &format!("train/digits/resnet18/at/seed-{s}"));
        std::fs::read(dir.join("model.safetensors")).unwrap()
    };
    assert_ne!(weights(3), weights(4));
    // One more seed: only its chain, the correlation and the report.
    p.write("p.yaml", &pipeline(Some("[3, 4, 5]"), None));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let mut want = chain(5);
    want.extend(["correlation".to_string(), "report".to_string()]);
    assert_eq!(stages(&out, "ran"), sorted(want));
    // Tables: mean ± std over the three seeds; the correlation says what a point is.
    let tables = p.path("reports/tiny");
    let csv = std::fs::read_to_string(tables.join("accuracy_by_attack.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.contains("pgd/test_std") && header.ends_with(",seeds"), "{header}");
    assert!(csv.lines().nth(1).unwrap().ends_with(",3"), "{csv}");
    let md = std::fs::read_to_string(tables.join("accuracy_by_attack.md")).unwrap();
    assert!(md.contains(" ± "), "{md}");
    let corr = std::fs::read_to_string(tables.join("correlation_matrix.md")).unwrap();
    assert!(
        corr.contains("an architecture's mean over its training seeds (3, 4, 5); n counts architectures"),
        "{corr}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(entry_dir(&p, "p.yaml", "correlation").join("correlation.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["over"], "means");
    assert_eq!(json["seeds"], serde_json::json!([3, 4, 5]));
    assert_eq!(json["rows"][0]["n"], 1);
    // Per-seed points: the correlation alone reruns, one point per (architecture, seed).
    p.write("p.yaml", &pipeline(Some("[3, 4, 5]"), Some("seeds")));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(stages(&out, "ran"), ["correlation", "report"]);
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(entry_dir(&p, "p.yaml", "correlation").join("correlation.json")).unwrap(),
    )
    .unwrap();
    let row = &json["rows"][0];
    assert_eq!(row["n"], 3);
    assert_eq!(row["seeds"], serde_json::json!([3, 4, 5]));
    assert_eq!(row["models"], serde_json::json!(["resnet18", "resnet18", "resnet18"]));
}
