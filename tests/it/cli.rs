//! Bad input, failures, and the read-only commands.
use crate::common::*;

/// Every name that becomes a path component is checked before anything runs: `..`, hidden,
/// separators, spaces and over-long names are located errors, and nothing is written anywhere
/// (a pipeline named `..` would otherwise write its report into the project's parent).
#[test]
fn names_that_could_leave_their_directory_are_rejected() {
    let p = Project::new();
    let long = "m".repeat(101);
    let cases = [
        ("name: tiny", "name: .."),
        ("name: tiny", "name: .hidden"),
        ("name: tiny", "name: \"a/b\""),
        ("  digits: {source", "  ..: {source"),
        (
            "  resnet18: {preset: tiny}",
            "  \"a b\": {arch: resnet18, preset: tiny}",
        ),
        ("  at:\n", "  ..:\n"),
        ("    pgd: {eps", "    \".pgd\": {type: pgd, eps"),
    ];
    let before = listing(p.dir.path());
    for (from, to) in cases {
        let yaml = TINY.replacen(from, to, 1);
        assert_ne!(yaml, TINY, "{from}");
        fails(&p, &yaml, &["not start with `.`"]);
    }
    let yaml = TINY.replacen(
        "  resnet18: {preset: tiny}",
        &format!("  {long}: {{arch: resnet18, preset: tiny}}"),
        1,
    );
    fails(&p, &yaml, &["1 to 100 letters"]);
    // Only the spec file the test wrote is new.
    let mut after = listing(p.dir.path());
    after.retain(|f| f != "bad.yaml");
    assert_eq!(after, before);
    assert!(!p.dir.path().parent().unwrap().join("tiny").exists());
}

/// Flags that would run nothing (or crash libtorch) are errors naming the flag, before anything
/// is computed.
#[test]
fn counts_of_zero_and_force_patterns_matching_nothing_are_rejected() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    for (args, flag) in [
        (&["run", "p.yaml", "--threads", "0"][..], "--threads"),
        (&["run", "p.yaml", "-j", "0"][..], "--jobs"),
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
    }
    let out = p.run(&["run", "p.yaml", "--force", "tarin/*"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--force tarin/*: matches no stage"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.entries(), 0);
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_input_gets_located_hinted_errors_and_writes_nothing() {
    let p = Project::new();
    fails(
        &p,
        &TINY.replace("resnet18: {preset: tiny}", "resnet19: {preset: tiny}"),
        &[
            "bad.yaml:7:3: models.resnet19: unknown architecture",
            "did you mean `resnet18`?",
        ],
    );
    fails(
        &p,
        &TINY.replace("fgsm: {eps: 8/255}", "fgsm: {eps: -8/255}"),
        &[
            "bad.yaml:19:12: evaluation.attacks.fgsm.eps",
            "is not a radius",
        ],
    );
    // A field a check rejects is located at the field, not at its entry: a model's config
    // field, an attack's own field (typo or wrong type).
    fails(
        &p,
        &TINY.replace("resnet18: {preset: tiny}", "vit: {preset: tiny, depth: 0}"),
        &["bad.yaml:7:23: models.vit.depth", "must be at least 1"],
    );
    fails(
        &p,
        &TINY.replace("pgd: {eps: 8/255, steps: 3}", "pgd: {eps: 8/255, stpes: 3}"),
        &[
            "bad.yaml:20:23: evaluation.attacks.pgd.stpes: unknown field",
            "did you mean `steps`?",
        ],
    );
    fails(
        &p,
        &TINY.replace(
            "pgd: {eps: 8/255, steps: 3}",
            "pgd: {eps: 8/255, steps: many}",
        ),
        &["bad.yaml:20:23: evaluation.attacks.pgd.steps: cannot read `many`"],
    );
    fails(
        &p,
        &TINY.replace("fgsm: {eps: 8/255}", "fgsm: {eps: 8}"),
        &[
            "bad.yaml:19:12: evaluation.attacks.fgsm.eps: 8 is beyond the pixel range",
            "write `8/255`",
        ],
    );
    fails(
        &p,
        &TINY.replace("    epochs: 2", "    epochs: -3"),
        &["training.at.epochs", "write a whole number ≥ 0"],
    );
    fails(
        &p,
        &TINY.replace("embedded:digits", "embedded:digts"),
        &[
            "datasets.digits.source",
            "not found",
            "did you mean `embedded:digits`?",
        ],
    );
    fails(
        &p,
        &TINY.replace("    epochs: 2", "    epocs: 2"),
        &[
            "bad.yaml:11:5",
            "unknown field `epocs`",
            "did you mean `epochs`?",
        ],
    );
    fails(
        &p,
        &TINY.replace("pgd: {eps", "pdg: {eps"),
        &["evaluation.attacks.pdg", "did you mean `pgd`?"],
    );
    fails(
        &p,
        &TINY.replace("models:\n", "models: {oops: [\n"),
        &["bad.yaml:"],
    );
    fails(
        &p,
        &TINY.replace(
            "resnet18: {preset: tiny}",
            "resnet18: {preset: tiny, widht: 3}",
        ),
        &["models.resnet18.widht", "did you mean `widths`?"],
    );
    fails(
        &p,
        &TINY.replace(
            "resnet18: {preset: tiny}",
            "vit: {preset: tiny, patch_size: 3}",
        ),
        &["patch_size 3 does not divide the image size 8"],
    );
    fails(
        &p,
        &TINY.replace("autoaugment: cifar10", "autoaugment: mnist"),
        &["training.at.augment.1", "unknown variant `mnist`"],
    );
    fails(
        &p,
        &TINY.replace("random_crop: {padding: 1}", "hfilp"),
        &[
            "training.at.augment.0",
            "unknown variant `hfilp`",
            "steps: random_crop, hflip",
        ],
    );
    fails(
        &p,
        &TINY.replace(
            "{source: embedded:digits, resolution: 8, limit: 120}",
            "{source: cifar10, path: nowhere, test_fraction: 0.5}",
        ),
        &[
            "datasets.digits.path: directory nowhere not found",
            "robarch data fetch cifar10",
        ],
    );
    fails(
        &p,
        &TINY.replace(
            "{source: embedded:digits, resolution: 8, limit: 120}",
            "{source: imagefolder}",
        ),
        &["datasets.digits.source: `imagefolder` needs a `path`"],
    );
    fails(
        &p,
        &TINY.replace("evaluation:\n", "evaluation:\n  splits: [train, val]\n"),
        &[
            "evaluation.splits: `val` needs a val split",
            "set datasets.digits.val_fraction",
        ],
    );
    let out = p.run(&["run", "--format", "json", "missing.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read pipeline file missing.yaml"),
        "{}",
        stderr(&out)
    );
    assert!(!p.path("cache").exists());
}

#[test]
fn a_diverging_stage_fails_cleanly_and_keep_going_finishes_the_rest() {
    let p = Project::new();
    let two = TINY.replace(
        "training:\n",
        "training:\n  boom:\n    method: standard\n    epochs: 1\n    optimizer: {name: sgd, lr: 1e300}\n",
    );
    p.write("p.yaml", &two);
    let out = p.run(&["run", "--format", "json", "p.yaml", "--keep-going"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("stage train/digits/resnet18/boom failed") && err.contains("diverged"),
        "{err}"
    );
    assert!(
        err.contains("\"lr\":1e+300"),
        "the failing stage's params are shown: {err}"
    );
    assert_eq!(stages(&out, "failed"), ["train/digits/resnet18/boom"]);
    assert_eq!(
        stages(&out, "skipped").len(),
        8,
        "its evals, sparsity and the report: {}",
        stdout(&out)
    );
    assert!(stages(&out, "ran").contains(&"train/digits/resnet18/at".to_string()));
    assert!(stages(&out, "ran")
        .iter()
        .any(|s| s.starts_with("eval/digits/resnet18/at/")));
    assert_eq!(
        status(&p, "p.yaml")["train/digits/resnet18/boom"]["state"],
        "missing"
    );
}

#[test]
fn dag_renders_text_dot_and_mermaid() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let dot = stdout(&p.ok(&["dag", "p.yaml", "--format", "dot"]));
    assert!(
        dot.contains("\"prepare/digits\" -> \"train/digits/resnet18/at\";"),
        "{dot}"
    );
    let mermaid = stdout(&p.ok(&["dag", "p.yaml", "--format", "mermaid"]));
    assert!(
        mermaid.starts_with("graph LR") && mermaid.matches("-->").count() == 1 + 6 * 2 + 1 + 7 + 1,
        "{mermaid}"
    );
    let text = stdout(&p.ok(&["dag", "p.yaml"]));
    assert_eq!(text.lines().filter(|l| !l.starts_with(" ")).count(), 10);
}

#[test]
fn reformatted_pipeline_has_identical_keys() {
    let p = Project::new();
    p.write("a.yaml", TINY);
    let reordered = format!(
        "# the same pipeline, reformatted\n{}",
        TINY.replace(
            "fgsm: {eps: 8/255}",
            "fgsm:\n      eps: 0.03137254901960784  # 8/255"
        )
        .replace("seed: 3\ndevice: cpu\n", "device: cpu\nseed: 3\n")
    );
    p.write("b.yaml", &reordered);
    assert_eq!(
        stdout(&p.ok(&["dag", "a.yaml"])),
        stdout(&p.ok(&["dag", "b.yaml"]))
    );
}

#[test]
fn explain_and_ls_describe_stages_and_registries() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let ex = stdout(&p.ok(&["explain", "p.yaml", "eval/digits/resnet18/at/pgd/test"]));
    assert!(
        ex.contains("kind:    evaluate (version 3)")
            && ex.contains("\"steps\": 3")
            && ex.contains("status:  missing"),
        "{ex}"
    );
    let j = explain(&p, "p.yaml", "eval/digits/resnet18/at/pgd/test");
    assert_eq!(
        (&j["kind"], &j["version"], &j["state"], &j["entry"]),
        (
            &serde_json::json!("evaluate"),
            &serde_json::json!(3),
            &serde_json::json!("missing"),
            &serde_json::Value::Null
        ),
        "{j}"
    );
    assert_eq!(j["params"]["attack"]["steps"], 3);
    assert_eq!(j["inputs"].as_array().unwrap().len(), 2, "{j}");
    let bad = p.run(&["explain", "p.yaml", "eval/digits/resnet18/at/pgd/tset"]);
    assert!(stderr(&bad).contains("did you mean `eval/digits/resnet18/at/pgd/test`?"));
    let models = stdout(&p.ok(&["ls", "models"]));
    for a in ["resnet18", "vit", "pvt_v2", "coatnet", "torchscript"] {
        assert!(models.contains(a), "{a} not in:\n{models}");
    }
    assert_eq!(models.lines().count(), 1 + robarch::models::REGISTRY.len());
    assert!(stdout(&p.ok(&["ls", "attacks"])).contains("pgd"));
}

#[test]
fn model_describes_an_architecture_and_rejects_bad_fields() {
    let p = Project::new();
    let out = stdout(&p.ok(&["model", "pvt_v2", "--preset", "b0", "--tensors"]));
    assert!(out.contains("parameters: 3666760"), "{out}");
    assert!(
        out.contains("stages.0.blocks.0.attn.sr.weight [32, 32, 8, 8]"),
        "{out}"
    );
    let out = stdout(&p.ok(&[
        "model",
        "vit",
        "--set",
        "depth=3",
        "--image-size",
        "32",
        "--classes",
        "10",
    ]));
    assert!(out.contains("\"depth\":3"), "{out}");
    let bad = p.run(&["model", "vit", "--set", "dept=3"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("did you mean `depth`?"),
        "{}",
        stderr(&bad)
    );
    let bad = p.run(&[
        "model",
        "vit",
        "--set",
        "patch_size=5",
        "--image-size",
        "32",
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("patch_size 5 does not divide the image size 32"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn shipped_pipelines_validate() {
    let root = crate::common::ROOT;
    for f in std::fs::read_dir(format!("{root}/pipelines")).unwrap() {
        let f = f.unwrap().path();
        let p = Project::new();
        // File-backed sources need their data where the pipelines look by default.
        crate::common::cifar_fixture(&p.path("datasets/cifar-10-batches-bin"));
        crate::common::imagenette_fixture(&p.path("datasets/imagenette2-320"), 2);
        let out = p.run(&["dag", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", f.display(), stderr(&out));
    }
}

#[test]
fn output_cut_short_by_a_pipe_ends_quietly() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    // The reader is gone before robarch (which takes a while to start) prints a line.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "\"$BIN\" dag p.yaml | true; \"$BIN\" ls attacks | true",
        ])
        .current_dir(p.path(""))
        .env("BIN", crate::common::robarch_bin())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
