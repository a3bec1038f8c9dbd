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
