//! The fault campaign: a small pipeline is killed (SIGKILL, as the OOM killer or a power cut
//! would end it) at every rename of its commits, checkpoints and report files, and at random
//! times, then run again. Commits of stages computed in a worker kill that worker (the run fails
//! the stage); the report's files and the report stage's commit are the control plane's own, and
//! the random kills hit the control plane, whose workers die with it. Every final report must equal an uninterrupted run's byte for byte, and
//! nothing may be left behind: no staging directory, checkpoint, partial report file, or extra or
//! corrupt entry.
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
    }
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
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
