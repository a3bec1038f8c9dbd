//! End-to-end incremental behaviour: no-op reruns, minimal recomputation, resume after kill -9.
use crate::common::*;

#[test]
fn second_run_computes_nothing() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let first = p.ok(&["run", "--format", "json", "p.yaml", "--log-json"]);
    assert_eq!(stages(&first, "ran").len(), 10, "{}", stdout(&first));
    let logs: Vec<serde_json::Value> = stderr(&first)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        logs.iter()
            .any(|v| v["fields"]["message"] == "checkpoint saved"),
        "{logs:?}"
    );
    assert!(p.path("reports/tiny/robust_accuracy.md").exists());
    assert_eq!(json_out(&first)["report"], "reports/tiny");
    let start = std::time::Instant::now();
    let second = p.ok(&["run", "--format", "json", "p.yaml"]);
    let secs = start.elapsed().as_secs_f64();
    assert!(stages(&second, "ran").is_empty(), "{}", stdout(&second));
    assert_eq!(stages(&second, "cached").len(), 10);
    // Loose guard only (the measured figure is in the README, from scripts/bench-noop.sh).
    assert!(secs < 5.0, "no-op run took {secs:.2}s");
    // For people: the counts (no line per cached stage), then where the report is, last.
    let text = stdout(&p.ok(&["run", "p.yaml"]));
    let (counts, report) = (
        text.find("10 stages: 0 ran, 10 cached, 0 failed, 0 skipped"),
        text.find("report: reports/tiny"),
    );
    assert!(
        text.starts_with("10 stages") && counts.is_some() && counts < report,
        "{text}"
    );
    assert!(text.trim_end().ends_with("report: reports/tiny/index.html"), "{text}");
}

#[test]
fn changing_one_eps_reruns_exactly_that_attack_and_the_report() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    p.write(
        "p.yaml",
        &TINY.replace("fgsm: {eps: 8/255}", "fgsm: {eps: 4/255}"),
    );
    let status = status(&p, "p.yaml");
    let fgsm = &status["eval/digits/resnet18/at/fgsm/test"];
    assert_eq!(fgsm["state"], "stale", "{fgsm}");
    assert_eq!(
        fgsm["reasons"],
        serde_json::json!([{"reason": "param", "path": "attack.eps",
            "old": "0.03137254901960784", "new": "0.01568627450980392"}]),
    );
    assert_eq!(status["train/digits/resnet18/at"]["state"], "cached");
    // As text: one short line per cause, the changed value inline, the report's causes under it.
    let text = stdout(&p.ok(&["status", "p.yaml"]));
    assert!(
        text.lines().any(|l| l.starts_with("stale")
            && l.ends_with("eval/digits/resnet18/at/fgsm/test  (`attack.eps` 0.03137254901960784 → 0.01568627450980392)")),
        "{text}"
    );
    // A new attack: the report says what was added, not the lists before and after.
    p.write(
        "p.yaml",
        &TINY.replace("fgsm: {eps: 8/255}", "fgsm: {eps: 4/255}\n    mim: {eps: 8/255, steps: 2}"),
    );
    let text = stdout(&p.ok(&["status", "p.yaml"]));
    let report = text.lines().skip_while(|l| !l.ends_with("  report")).collect::<Vec<_>>();
    assert!(
        report
            .iter()
            .any(|l| l.starts_with("     ") && l.trim() == "- attack `mim` added: 2 new evaluations"),
        "{text}"
    );
    assert!(report.iter().all(|l| l.len() < 200), "{text}");
    p.write(
        "p.yaml",
        &TINY.replace("fgsm: {eps: 8/255}", "fgsm: {eps: 4/255}"),
    );
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(
        stages(&out, "ran"),
        [
            "eval/digits/resnet18/at/fgsm/test",
            "eval/digits/resnet18/at/fgsm/train",
            "report"
        ]
    );
}

#[test]
fn evaluation_seed_reruns_the_attacks_on_the_same_models() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    // The default is the pipeline's seed: naming it changes no key.
    p.write("p.yaml", &TINY.replace("  limit: 60\n", "  limit: 60\n  seed: 3\n"));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{:?}", stages(&out, "ran"));
    // Another seed: every evaluation again, on the cached trained model.
    p.write("p.yaml", &TINY.replace("  limit: 60\n", "  limit: 60\n  seed: 4\n"));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let mut want: Vec<String> = ["clean", "fgsm", "pgd"]
        .iter()
        .flat_map(|a| {
            ["test", "train"].map(|s| format!("eval/digits/resnet18/at/{a}/{s}"))
        })
        .collect();
    want.push("report".into());
    assert_eq!(stages(&out, "ran"), want);
}

#[test]
fn adding_a_model_trains_only_that_model() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    p.write(
        "p.yaml",
        &TINY.replace(
            "  resnet18: {preset: tiny}\n",
            "  resnet18: {preset: tiny}\n  vit: {preset: tiny, patch_size: 2}\n",
        ),
    );
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    assert!(
        ran.iter().all(|s| s.contains("/vit/") || s == "report"),
        "{ran:?}"
    );
    assert_eq!(ran.iter().filter(|s| s.starts_with("train/")).count(), 1);
    assert_eq!(ran.len(), 1 + 6 + 1 + 1, "{ran:?}");
}

#[test]
fn kill_9_during_training_resumes_to_the_same_result() {
    let text = TINY
        .replace("epochs: 2", "epochs: 4")
        .replace("evaluation:\n", "evaluation:\n  splits: [test]\n");
    // Reference: an uninterrupted run.
    let reference = Project::new();
    reference.write("p.yaml", &text);
    reference.ok(&["run", "--format", "json", "p.yaml"]);

    let p = Project::new();
    p.write("p.yaml", &text);
    // Synchronise on the log line the trainer writes once epoch 2's checkpoint is on disk.
    kill_after_checkpoint(&p, 2, &[]);
    assert!(
        p.entries() <= 1,
        "only prepare may be committed before training finished"
    );

    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("epoch=3") && !stderr(&out).contains("epoch=1 "),
        "{}",
        stderr(&out)
    );
    let stage = "train/digits/resnet18/at";
    let a = std::fs::read(entry_dir(&p, "p.yaml", stage).join("model.safetensors")).unwrap();
    let b =
        std::fs::read(entry_dir(&reference, "p.yaml", stage).join("model.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from an uninterrupted run");
    for f in ["robust_accuracy.csv", "generalization_gap.csv"] {
        assert_eq!(
            std::fs::read_to_string(p.path("reports/tiny").join(f)).unwrap(),
            std::fs::read_to_string(reference.path("reports/tiny").join(f)).unwrap()
        );
    }
    assert!(
        !p.path("cache/ckpt").read_dir().unwrap().any(|_| true),
        "finished checkpoints are removed"
    );
}

/// Checkpoint directories (`epoch-*`) under `dir`, sorted.
fn checkpoints(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("epoch-") {
            out.push(path);
        } else if path.is_dir() {
            out.extend(checkpoints(&path));
        }
    }
    out.sort();
    out
}

/// A damaged checkpoint is never trusted and never blocks a rerun: a flipped byte, a truncated
/// tensor file or a garbled state file is discarded with a warning naming it, and training resumes
/// from the previous epoch's checkpoint (or, with both damaged, starts afresh), ending at the
/// weights of an uninterrupted run.
#[test]
fn damaged_checkpoints_are_discarded_for_the_previous_epoch() {
    let text = TINY
        .replace("epochs: 2", "epochs: 6")
        .replace("evaluation:\n", "evaluation:\n  splits: [test]\n");
    let reference = Project::new();
    reference.write("p.yaml", &text);
    reference.ok(&["run", "--format", "json", "p.yaml"]);
    let stage = "train/digits/resnet18/at";
    let want =
        std::fs::read(entry_dir(&reference, "p.yaml", stage).join("model.safetensors")).unwrap();
    // The best epoch's weights (monitoring is on) follow the epoch resumed from.
    let want_best =
        std::fs::read(entry_dir(&reference, "p.yaml", stage).join("model_best.safetensors"))
            .unwrap();
    let flip = |f: &std::path::Path| {
        let mut b = std::fs::read(f).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0x01;
        std::fs::write(f, b).unwrap();
    };
    let truncate = |f: &std::path::Path| {
        let n = std::fs::metadata(f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(n / 2)
            .unwrap();
    };
    let garble = |f: &std::path::Path| std::fs::write(f, "{\"epoch\": ").unwrap();
    // A checkpoint from before checksums: its tensors are read and checked by name and shape.
    let unhashed_truncated = |f: &std::path::Path| {
        let state = f.with_file_name("state.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("tensors_blake3");
        std::fs::write(&state, v.to_string()).unwrap();
        truncate(f);
    };
    type Damage<'a> = (&'a str, &'a dyn Fn(&std::path::Path), &'a str, bool);
    let cases: [Damage; 5] = [
        ("flipped byte", &flip, "state.safetensors", false),
        ("truncated", &truncate, "state.safetensors", false),
        (
            "truncated, no checksum",
            &unhashed_truncated,
            "state.safetensors",
            false,
        ),
        ("garbled", &garble, "state.json", false),
        ("both epochs garbled", &garble, "state.json", true),
    ];
    for (what, damage, file, both) in cases {
        let p = Project::new();
        p.write("p.yaml", &text);
        kill_after_checkpoint(&p, 3, &[]);
        // The two newest checkpoints are kept: epochs k − 1 and k (k = 3, or later if training
        // got further before the kill landed).
        let kept = checkpoints(&p.path("cache/ckpt"));
        let epoch = |d: &std::path::Path| -> usize {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            name.trim_start_matches("epoch-").parse().unwrap()
        };
        assert_eq!(kept.len(), 2, "{what}: {kept:?}");
        let (previous, newest) = (epoch(&kept[0]), epoch(&kept[1]));
        assert!(newest >= 3 && previous + 1 == newest, "{what}: {kept:?}");
        for d in if both { &kept[..] } else { &kept[1..] } {
            damage(&d.join(file));
        }
        let out = p.ok(&["run", "--format", "json", "p.yaml"]);
        let err = stderr(&out);
        let warned = err
            .lines()
            .filter(|l| l.contains("discarding a damaged checkpoint"))
            .collect::<Vec<_>>();
        assert_eq!(warned.len(), if both { 2 } else { 1 }, "{what}: {err}");
        assert!(
            warned[0].contains(&format!("epoch-{newest:05}")),
            "{what}: {err}"
        );
        let tag = format!("epoch={previous}");
        let resumed = err
            .lines()
            .any(|l| l.contains("resuming from checkpoint") && l.contains(&tag));
        assert_eq!(resumed, !both, "{what}: {err}");
        let got = std::fs::read(entry_dir(&p, "p.yaml", stage).join("model.safetensors")).unwrap();
        assert!(
            got == want,
            "{what}: weights differ from an uninterrupted run"
        );
        let best =
            std::fs::read(entry_dir(&p, "p.yaml", stage).join("model_best.safetensors")).unwrap();
        assert!(
            best == want_best,
            "{what}: best weights differ from an uninterrupted run"
        );
    }
}

#[test]
fn force_reruns_matching_stages_and_downstream_only() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let out = p.ok(&["run", "--format", "json", "p.yaml", "--force", "sparsity/*"]);
    assert_eq!(
        stages(&out, "ran"),
        ["report", "sparsity/digits/resnet18/at"]
    );
}

#[test]
fn dry_run_lists_work_and_writes_nothing() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let out = p.ok(&["run", "--format", "json", "p.yaml", "--dry-run"]);
    assert_eq!(stages(&out, "pending").len(), 10, "{}", stdout(&out));
    assert_eq!(p.entries(), 0);
    assert!(!p.path("reports").exists());
}
