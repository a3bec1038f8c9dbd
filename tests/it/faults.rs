//! The fault campaign: a small pipeline is killed (SIGKILL, as the OOM killer or a power cut
//! would end it) at every rename of its commits, checkpoints and report files, and at random
//! times, then run again. Commits of stages computed in a worker kill that worker (the run fails
//! the stage); the report's files and the report stage's commit are the control plane's own, and
//! the random kills hit the control plane, whose workers die with it. Workers are also killed
//! (SIGKILL) and stopped (SIGSTOP: the run must end by itself, the worker reported and killed)
//! at random moments, and a run killed at random meets symbolic links planted in its cache
//! (every entry, checkpoint directory and lock) to a canary directory that must stay untouched.
//! Every final report must equal an uninterrupted run's byte for byte, and nothing may be left
//! behind: no staging directory, checkpoint, partial report file, or extra or corrupt entry.
use crate::common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every file under `dir` (relative name → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // `runs/` records when each report was written, not what it holds.
                if p != dir.join("runs") {
                    stack.push(p);
                }
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// How a trial interrupts the first run.
#[derive(Debug, Clone)]
enum Fault {
    /// A fault point (`killed_at`'s form: `worker:` for the workers): SIGKILL at its n-th pass.
    At(String),
    /// SIGKILL from outside after this long.
    After(Duration),
    /// SIGKILL of a worker (the first one running) after this long.
    KillWorker(Duration),
    /// SIGSTOP of a worker after this long, under a 12-second stall limit.
    StopWorker(Duration),
    /// SIGKILL of the run after this long; then every entry, checkpoint directory and stage
    /// lock of the cache is replaced by a link to a canary directory outside it.
    Links(Duration),
}

/// The first worker of the run `child` once one runs (None if the run ended first).
fn a_worker(child: &mut std::process::Child) -> Option<u32> {
    loop {
        if let Some(&w) = workers_of(child.id()).first() {
            return Some(w);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces every entry, checkpoint directory and stage lock under `cache` by a link to `canary`.
fn plant_links(cache: &Path, canary: &Path) {
    let mut planted = 0;
    for shard in std::fs::read_dir(cache.join("objects")).unwrap().flatten() {
        for e in std::fs::read_dir(shard.path()).unwrap().flatten() {
            std::fs::remove_dir_all(e.path()).unwrap();
            std::os::unix::fs::symlink(canary, e.path()).unwrap();
            planted += 1;
        }
    }
    for sub in ["ckpt", "locks"] {
        for e in std::fs::read_dir(cache.join(sub)).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
            std::os::unix::fs::symlink(canary, &p).unwrap();
            planted += 1;
        }
    }
    // A checkpoint directory and a lock of stages that have none yet.
    let (a, b) = ("0".repeat(64), "1".repeat(64));
    for name in [format!("ckpt/{a}"), format!("locks/{b}.lease")] {
        let p = cache.join(name);
        if std::fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(canary, &p).unwrap();
            planted += 1;
        }
    }
    assert!(planted > 0);
}

struct Reference {
    report: BTreeMap<String, Vec<u8>>,
    entries: usize,
    /// What the cache holds besides entries and locks (`runs/`, `state/`).
    records: Vec<String>,
}

fn records(p: &Project) -> Vec<String> {
    let mut out: Vec<String> = ["runs", "state"]
        .iter()
        .flat_map(|d| names(&p.path(&format!("cache/{d}"))).into_iter().map(move |n| format!("{d}/{n}")))
        .collect();
    out.sort();
    out
}

fn trial(fault: &Fault, reference: &Reference) {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let canary = p.path("canary");
    std::fs::create_dir_all(canary.join("epoch-00001")).unwrap();
    std::fs::write(canary.join("epoch-00001/state.json"), b"{}").unwrap();
    std::fs::write(canary.join("meta.json"), b"{}").unwrap();
    let untouched = files(&canary);
    let spawn = |p: &Project| {
        p.cmd(&["run", "--format", "json", "p.yaml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    match fault {
        // One worker, so that its n-th commit is the pipeline's n-th worker stage.
        Fault::At(point) => killed_at(&p, point, &["-j", "1"]),
        Fault::After(delay) => {
            let mut child = p
                .cmd(&["run", "--format", "json", "p.yaml"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(*delay);
            let _ = child.kill();
            child.wait().unwrap();
        }
        Fault::KillWorker(delay) => {
            let mut child = spawn(&p);
            std::thread::sleep(*delay);
            if let Some(w) = a_worker(&mut child) {
                // SAFETY: signals a process this test's child started.
                unsafe { libc::kill(w as i32, libc::SIGKILL) };
            }
            child.wait().unwrap();
        }
        Fault::StopWorker(delay) => {
            p.write("p.yaml", &stalling());
            let mut child = spawn(&p);
            std::thread::sleep(*delay);
            if let Some(w) = a_worker(&mut child) {
                // SAFETY: as above.
                unsafe { libc::kill(w as i32, libc::SIGSTOP) };
            }
            // The run ends by itself: the stopped worker is found and killed.
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() {
                assert!(
                    start.elapsed() < Duration::from_secs(90),
                    "{fault:?}: the run did not end with a stopped worker"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Fault::Links(delay) => {
            let mut child = spawn(&p);
            std::thread::sleep(*delay);
            let _ = child.kill();
            child.wait().unwrap();
            plant_links(&p.path("cache"), &canary);
        }
    }
    if !matches!(fault, Fault::StopWorker(_)) {
        assert_eq!(files(&canary), untouched, "{fault:?}: the canary outside the cache changed");
    }
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert_eq!(files(&canary), untouched, "{fault:?}: the canary outside the cache changed");
    let report = files(&p.path("reports/tiny"));
    assert!(
        report == reference.report,
        "{fault:?}: the report differs from an uninterrupted run's: {:?} vs {:?}\n{}",
        report.keys().collect::<Vec<_>>(),
        reference.report.keys().collect::<Vec<_>>(),
        stdout(&out)
    );
    assert_eq!(p.entries(), reference.entries, "{fault:?}: entries");
    assert_eq!(records(&p), reference.records, "{fault:?}: cache/runs, cache/state");
    assert_eq!(names(&p.path("cache/tmp")), Vec::<String>::new(), "{fault:?}: cache/tmp");
    assert_eq!(names(&p.path("cache/ckpt")), Vec::<String>::new(), "{fault:?}: cache/ckpt");
    let verify = p.ok(&["cache", "verify"]);
    assert!(stdout(&verify).contains(": 0 corrupt"), "{fault:?}: {}", stdout(&verify));
}

#[test]
fn kills_at_every_rename_and_at_random_times_end_as_an_uninterrupted_run() {
    let r = Project::new();
    r.write("p.yaml", TINY);
    let start = Instant::now();
    let out = r.ok(&["run", "--format", "json", "p.yaml"]);
    let took = start.elapsed();
    // The stages the control plane computes itself (no tensors).
    let here = json_out(&out)["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"] == "report" || s["id"].as_str().unwrap().starts_with("correlation"))
        .count();
    assert_eq!(here, 1, "TINY's report");
    let reference = Reference {
        report: files(&r.path("reports/tiny")),
        entries: r.entries(),
        records: records(&r),
    };
    let mut faults = Vec::new();
    // Each commit of the ten stages, just before and just after its rename: nine in the worker,
    // the report's in the control plane.
    for n in 1..=reference.entries - here {
        faults.push(Fault::At(format!("worker:commit-rename@{n}=kill")));
        faults.push(Fault::At(format!("worker:commit-renamed@{n}=kill")));
    }
    for n in 1..=here {
        faults.push(Fault::At(format!("commit-rename@{n}=kill")));
        faults.push(Fault::At(format!("commit-renamed@{n}=kill")));
    }
    // Each epoch's checkpoint (two epochs), and each report file's replacement.
    for n in 1..=2 {
        faults.push(Fault::At(format!("worker:checkpoint-rename@{n}=kill")));
    }
    for n in 1..=reference.report.len() {
        faults.push(Fault::At(format!("report-rename@{n}=kill")));
    }
    // Ten random moments of the run (a fixed LCG, so a failure can be repeated).
    let mut x: u64 = 0x5eed_2026;
    for _ in 0..10 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        faults.push(Fault::After(took.mul_f64(0.05 + 0.9 * u)));
    }
    // Workers killed and stopped at random moments, and links met after a random kill.
    let mut draw = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        took.mul_f64(0.05 + 0.85 * ((x >> 11) as f64 / (1u64 << 53) as f64))
    };
    for _ in 0..4 {
        faults.push(Fault::KillWorker(draw()));
    }
    for _ in 0..2 {
        faults.push(Fault::StopWorker(draw()));
    }
    for _ in 0..2 {
        faults.push(Fault::Links(draw()));
    }
    println!(
        "{} trials; an uninterrupted run takes {:.2} s",
        faults.len(),
        took.as_secs_f64()
    );
    // Two trials at a time.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(f) = faults.get(i) else { break };
                trial(f, &reference);
            });
        }
    });
}
