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

#[test]
fn cache_verify_finds_flipped_bytes_and_unlisted_files_and_removes_them() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let out = p.ok(&["cache", "verify"]);
    assert!(
        stdout(&out).contains("verified 10 entries") && stdout(&out).contains(": 0 corrupt"),
        "{}",
        stdout(&out)
    );
    let eval = "eval/digits/resnet18/at/pgd/test";
    let f = entry_dir(&p, "p.yaml", eval).join("metrics.json");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    let sparsity = "sparsity/digits/resnet18/at";
    std::fs::write(
        entry_dir(&p, "p.yaml", sparsity).join("notes.txt"),
        b"slipped in",
    )
    .unwrap();

    // --keep reports, removes nothing, and fails.
    let out = p.run(&["cache", "verify", "--keep"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "({eval}): metrics.json does not match its recorded blake3; kept"
        )) && text.contains(&format!(
            "({sparsity}): notes.txt is not listed in meta.json; kept"
        )) && text.contains("2 corrupt, kept (--keep)"),
        "{text}"
    );
    assert_eq!(p.entries(), 10);
    // Without it the two entries go, and a run recomputes exactly them.
    let out = p.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("2 corrupt, removed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(p.entries(), 8);
    p.ok(&["cache", "verify"]);
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let mut ran = stages(&out, "ran");
    ran.sort();
    assert_eq!(ran, [eval, sparsity]);
    // A run only warns of an unlisted file: nothing reads it, and a stray file (an editor's, a
    // file manager's) must not cost a recompute, for a training hours. `cache verify` removes it.
    std::fs::write(
        entry_dir(&p, "p.yaml", sparsity).join("notes.txt"),
        b"again",
    )
    .unwrap();
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("notes.txt is not listed in meta.json; ignored"),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["cache", "verify"]);
    assert!(
        stdout(&out).contains(": 1 corrupt, removed"),
        "{}",
        stdout(&out)
    );
    let out = p.run(&["cache", "verify"]);
    assert!(stdout(&out).contains(": 0 corrupt"), "{}", stdout(&out));
    let out = p.run(&["--cache", "elsewhere", "cache", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no cache at elsewhere"),
        "{}",
        stderr(&out)
    );
}

/// Runs `script` with `sh` in a private mount namespace in `p`'s directory (`$BIN` is robarch),
/// so that it can mount a small or read-only filesystem over part of the project. Needs root (or
/// CAP_SYS_ADMIN), as `make test` has on this project's machines and CI.
fn in_mount_namespace(p: &Project, script: &str) -> std::process::Output {
    let probe = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .output()
        .expect("unshare (util-linux) runs");
    assert!(
        probe.status.success(),
        "this test mounts filesystems in a private mount namespace and needs root: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .current_dir(p.path(""))
        .env("BIN", crate::common::robarch_bin())
        .env_remove("ROBARCH_CACHE")
        .output()
        .expect("unshare (util-linux) runs");
    out
}

#[test]
fn a_full_reports_directory_and_a_read_only_cache_are_named() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    // The reports directory on a filesystem with no room left.
    let out = in_mount_namespace(
        &p,
        "mkdir -p reports && mount -t tmpfs -o size=16k tmpfs reports && \
         (dd if=/dev/zero of=reports/fill bs=4k 2>/dev/null; true) && \
         \"$BIN\" report p.yaml; echo \"exit=$?\"; ls -A reports/tiny",
    );
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{err}");
    let (head, left) = text
        .split_once("exit=")
        .unwrap_or_else(|| panic!("{text}\n{err}"));
    assert!(
        !left.starts_with('0'),
        "the report succeeded on a full disk: {text}"
    );
    assert!(
        err.contains("reports/tiny") && err.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(left.lines().skip(1).count(), 0, "leftovers: {left}");
    assert!(!head.contains("report:"), "{head}");

    // The cache on a read-only filesystem: the error names the file and says what to do.
    let out = in_mount_namespace(
        &p,
        "mount --bind cache cache && mount -o remount,bind,ro cache && \
         exec \"$BIN\" run --force 'eval/*/fgsm/test' p.yaml",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cache/.lock")
            && err.contains("Read-only file system")
            && err.contains("--cache DIR"),
        "{err}"
    );

    // A cache on a full filesystem: the failing stage says where it was writing.
    let out = in_mount_namespace(
        &p,
        "mkdir -p small && mount -t tmpfs -o size=96k tmpfs small && \
         exec \"$BIN\" --cache small run p.yaml",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("No space left on device")
            && err.contains("under small (tmp/, ckpt/): free space there"),
        "{err}"
    );
}

#[test]
fn the_scheduler_trusts_stamps_and_the_stage_that_loads_an_entry_hashes_it() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    // Bit rot the stamp cannot see: a byte flipped, and meta.json's stamp for the file made to
    // match what the file's stat now says (size, inode and mtime), its blake3 left as it was.
    let eval = "eval/digits/resnet18/at/pgd/test";
    let dir = entry_dir(&p, "p.yaml", eval);
    let f = dir.join("metrics.json");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&f, bytes).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let md = std::fs::metadata(&f).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let stamp = &mut meta["files"]["metrics.json"]["stamp"];
        stamp["mtime_ns"] =
            serde_json::json!(md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128);
        stamp["ino"] = serde_json::json!(md.ino());
    }
    std::fs::write(dir.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();

    // Deciding what is cached compares stamps only: nothing reruns.
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));
    // The stage that reads the entry hashes it, fails naming it, and removes it.
    let out = p.run(&["run", "--format", "json", "p.yaml", "--force", "report"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "input {eval} was corrupt (metrics.json does not match its recorded blake3) and has \
             been removed; run again to recompute it"
        )),
        "{err}"
    );
    // The evaluation is recomputed (the report made from the intact file before stays cached).
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(stages(&out, "ran"), [eval]);
    // A truncated file and a missing meta.json are seen by the stamp check alone.
    let sparsity = "sparsity/digits/resnet18/at";
    let dir = entry_dir(&p, "p.yaml", sparsity);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap() != "meta.json" && p.is_file())
        .unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::remove_file(
        entry_dir(&p, "p.yaml", "eval/digits/resnet18/at/clean/test").join("meta.json"),
    )
    .unwrap();
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(
        stages(&out, "ran"),
        ["eval/digits/resnet18/at/clean/test", sparsity],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("bytes, meta.json recorded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_touched_entry_is_hashed_once_and_its_stamps_refreshed() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    // A copied or touched cache: same bytes, new mtime.
    let dir = entry_dir(&p, "p.yaml", "train/digits/resnet18/at");
    let f = dir.join("model.safetensors");
    let later = std::time::SystemTime::now() - std::time::Duration::from_secs(30);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let stamp = |dir: &std::path::Path| {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        meta["files"]["model.safetensors"]["stamp"]["mtime_ns"].clone()
    };
    let before = stamp(&dir);
    // The lookup hashes the file, finds it unchanged (nothing reruns) and records its new stamp,
    // so the next lookup compares stamps again.
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));
    let after = stamp(&dir);
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&f).unwrap();
    assert_ne!(before, after);
    assert_eq!(after, serde_json::json!(md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128));
    let verify = p.ok(&["cache", "verify"]);
    assert!(stdout(&verify).contains(": 0 corrupt"), "{}", stdout(&verify));
}
