//! Cache integrity: corruption, concurrent runs, garbage collection.
use crate::common::*;

#[test]
fn corrupt_entry_is_detected_and_recomputed() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let dir = entry_dir(&p, "p.yaml", "eval/digits/resnet18/at/pgd/test");
    let f = dir.join("metrics.json");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[5] ^= 0x20;
    std::fs::write(&f, bytes).unwrap();
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(
        stages(&out, "ran"),
        ["eval/digits/resnet18/at/pgd/test"],
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
}

#[test]
fn partial_entries_left_by_a_crash_are_ignored() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    // A commit interrupted before meta.json was written: the directory alone is not an entry.
    let dir = entry_dir(&p, "p.yaml", "sparsity/digits/resnet18/at");
    std::fs::remove_file(dir.join("meta.json")).unwrap();
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(stages(&out, "ran"), ["sparsity/digits/resnet18/at"]);
}

/// What killed runs leave behind is swept by the next run: staging directories in `cache/tmp`
/// (unless another run holds the cache: its live ones are not touched), and partial report
/// files whose process is gone. A file an entry does not list is never published.
#[test]
fn leftovers_of_killed_runs_are_swept_and_unlisted_files_never_published() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let staged = p.path("cache/tmp/entry-killed");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("model.safetensors"), b"half").unwrap();
    // A partial report copy of a process that no longer exists (Linux pids stay below 2^22 = 4194304).
    let partial = p.path("reports/tiny/.robarch-partial-4194304-x1y2z3");
    std::fs::write(&partial, b"half a table").unwrap();
    // A file slipped into the report entry without being listed in its meta.json.
    let report = entry_dir(&p, "p.yaml", "report");
    std::fs::write(report.join("tables/extra.csv"), b"not ours").unwrap();

    // Another run holds the cache: its staging directories are live, so nothing is swept.
    let lock = std::fs::File::create(p.path("cache/.lock")).unwrap();
    lock.lock_shared().unwrap();
    p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(staged.exists(), "a concurrent run's staging was swept");
    drop(lock);

    p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(!staged.exists(), "staging leftovers survived a run");
    assert!(
        !partial.exists(),
        "a dead process's partial report survived"
    );
    assert!(p.path("reports/tiny/robust_accuracy.csv").exists());
    assert!(
        !p.path("reports/tiny/extra.csv").exists(),
        "an unlisted file was published"
    );
}

#[test]
fn two_concurrent_runs_compute_each_stage_once() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let a = p
        .cmd(&["run", "--format", "json", "p.yaml", "-j", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = p
        .cmd(&["run", "--format", "json", "p.yaml", "-j", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let mut ran = stages(&a, "ran");
    ran.extend(stages(&b, "ran"));
    let total = ran.len();
    ran.sort();
    ran.dedup();
    assert_eq!(
        total,
        ran.len(),
        "a stage was computed twice: {}\n{}",
        stdout(&a),
        stdout(&b)
    );
    assert_eq!(total, 10);
    assert_eq!(p.entries(), 10);
    let third = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&third, "ran").is_empty());
}

#[test]
fn gc_keeps_only_entries_of_the_given_pipelines() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    p.write(
        "q.yaml",
        &TINY.replace("pgd: {eps: 8/255, steps: 3}", "pgd: {eps: 8/255, steps: 4}"),
    );
    p.ok(&["run", "--format", "json", "q.yaml"]);
    assert_eq!(p.entries(), 10 + 3);
    let dry = p.ok(&["gc", "q.yaml", "--dry-run"]);
    assert!(
        stdout(&dry).contains("3 entries would be removed"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(p.entries(), 13);
    p.ok(&["gc", "q.yaml"]);
    assert_eq!(p.entries(), 10);
    assert!(stages(&p.ok(&["run", "--format", "json", "q.yaml"]), "ran").is_empty());
    assert_eq!(
        stages(&p.ok(&["run", "--format", "json", "p.yaml"]), "ran").len(),
        3
    );
}
