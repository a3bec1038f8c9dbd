//! The Slurm executor against a real Slurm: a single-node cluster (Debian's slurmctld, slurmd
//! and munge) that `scripts/slurm-local.sh` configures on localhost for this test. A pipeline runs
//! through it detached, is followed with `status`, loses one job to `scancel` and its training to
//! a time-limit signal (requeued, resumed from its epoch checkpoint), is reconnected to, and ends
//! with every entry byte-identical to the local executor's; a failing job is reported with its
//! id, Slurm state and log, and only it is resubmitted; a pilot job runs a whole pipeline in one
//! allocation; a sharded AutoAttack evaluation runs as one job array, and a shard requeued at its
//! time-limit signal resumes from its point checkpoint. Skipped, saying so, only where Slurm is not installed and cannot be
//! (`scripts/test.sh` installs it and then requires it: ROBARCH_SLURM=required).
use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TRAIN: &str = "train/digits/resnet18/at";

struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// A directory first on PATH with an `squeue` that counts its calls.
    shim: PathBuf,
}

/// `scripts/slurm-local.sh`, which starts and stops the test clusters.
pub(crate) fn script() -> PathBuf {
    Path::new(ROOT).join("scripts/slurm-local.sh")
}

/// Starts a test cluster in `dir/slurm` (`scripts/slurm-local.sh start`, then `extra`); its
/// slurm.conf, or None, saying why, where this machine cannot run one: no namespaces (exit 4),
/// or Slurm not installed (exit 3) unless ROBARCH_SLURM is `required`.
pub(crate) fn start_cluster(dir: &Path, extra: &[&str]) -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(dir.join("slurm"))
        .args(extra)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Some(PathBuf::from(stdout(&out).trim())),
        Some(4) => {
            eprintln!(
                "SKIPPED: a cluster of namespaces cannot be created here: {}",
                stderr(&out).trim()
            );
            None
        }
        Some(3) if std::env::var("ROBARCH_SLURM").as_deref() != Ok("required") => {
            eprintln!(
                "SKIPPED: Slurm is not installed here and could not be: {} (scripts/slurm-local.sh install)",
                stderr(&out).trim()
            );
            None
        }
        _ => panic!(
            "starting the test cluster failed ({}):\n{}\n{}",
            out.status,
            stdout(&out),
            stderr(&out)
        ),
    }
}

/// Stops the cluster in `dir/slurm`; in a failing test, keeps `dir` (the daemons' state and
/// logs) and says where, for whoever reads the failure.
pub(crate) fn stop_cluster(dir: &mut tempfile::TempDir) {
    let _ = Command::new("bash")
        .arg(script())
        .arg("stop")
        .arg(dir.path().join("slurm"))
        .status();
    if std::thread::panicking() {
        let keep = std::mem::replace(dir, tempfile::tempdir().unwrap()).keep();
        eprintln!("the test cluster's state and logs are kept in {}", keep.display());
    }
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let conf = start_cluster(dir.path(), &[])?;
        let shim = dir.path().join("shim");
        std::fs::create_dir_all(&shim).unwrap();
        let real = String::from_utf8(
            Command::new("bash")
                .args(["-c", "command -v squeue"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let calls = shim.join("calls");
        std::fs::write(
            shim.join("squeue"),
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                calls.display(),
                real.trim()
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("755")
            .arg(shim.join("squeue"))
            .status()
            .unwrap();
        Some(Cluster { dir, conf, shim })
    }

    fn path(&self) -> String {
        format!(
            "{}:{}:/usr/sbin",
            self.shim.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `robarch <args>` in `p` against this cluster, polling every half second.
    fn robarch(&self, p: &Project, args: &[&str]) -> Command {
        let mut c = p.cmd(args);
        c.env("SLURM_CONF", &self.conf)
            .env("PATH", self.path())
            .env("ROBARCH_SLURM_POLL", "0.5");
        c
    }

    /// A Slurm command (`scancel`, `scontrol`, …) against this cluster; its stdout.
    fn slurm(&self, args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("SLURM_CONF", &self.conf)
            .env("PATH", self.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn squeue_calls(&self) -> usize {
        std::fs::read_to_string(self.shim.join("calls"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_cluster(&mut self.dir);
    }
}

/// TINY with three epochs (a checkpoint to resume from mid-training).
fn pipeline() -> String {
    TINY.replace("epochs: 2", "epochs: 3")
}

/// Stage id → (key, file → blake3) of every entry a pipeline's run committed.
pub(crate) fn entries(p: &Project) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let mut out = BTreeMap::new();
    for shard in std::fs::read_dir(p.path("cache/objects")).unwrap() {
        for e in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(e.as_ref().unwrap().path().join("meta.json")).unwrap(),
            )
            .unwrap();
            let dir = e.as_ref().unwrap().path();
            let files = meta["files"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(f, m)| {
                    // An evaluation's metrics record its wall time; everything else must match.
                    let v = if f == "metrics.json" {
                        let mut v: serde_json::Value =
                            serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap();
                        v.as_object_mut().unwrap().remove("seconds");
                        v.to_string()
                    } else {
                        m["blake3"].as_str().unwrap().to_string()
                    };
                    (f.clone(), v)
                })
                .collect();
            out.insert(
                meta["stage"].as_str().unwrap().to_string(),
                (meta["key"].as_str().unwrap().to_string(), files),
            );
        }
    }
    out
}

/// Stage id → the Slurm job the pipeline `tiny` submitted it in.
pub(crate) fn jobs(p: &Project) -> BTreeMap<String, String> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("cache/slurm/tiny/state.json")).unwrap())
            .unwrap();
    state["jobs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(s, j)| (s.clone(), j["job"].as_str().unwrap().to_string()))
        .collect()
}

pub(crate) fn wait_for(what: &str, limit: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(limit),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_pipeline_runs_through_a_real_slurm_as_it_runs_here() {
    let Some(c) = Cluster::start() else { return };
    // The reference: the local executor.
    let local = Project::new();
    local.write("p.yaml", &pipeline());
    local.ok(&["run", "--format", "json", "p.yaml"]);
    let reference = entries(&local);

    // Detached: every stage submitted, with its dependencies, and the command returns. The
    // training stalls at its second checkpoint (the fault, exported to the jobs by sbatch) so
    // that it is caught mid-way.
    let p = Project::new();
    p.write(
        "p.yaml",
        &format!(
            "{}executor:\n  kind: slurm\n  slurm:\n    time: \"10\"\n    grace_seconds: 30\n    resources:\n      default: {{cpus: 1, mem: 1G}}\n",
            pipeline()
        ),
    );
    let out = c
        .robarch(&p, &["run", "--detach", "--format", "json", "p.yaml"])
        .env("ROBARCH_WORKER_FAULT", "checkpoint-rename@2=sleep:8")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first = outcomes(&out);
    assert!(
        first.values().all(|s| s["outcome"] == "queued"),
        "{first:#?}"
    );
    let submitted = jobs(&p);
    assert_eq!(submitted.len(), 10);
    assert_eq!(first[TRAIN]["job"], submitted[TRAIN]);
    // The six evaluations share their resources and dependency: one job array.
    let evals: Vec<&String> = submitted
        .iter()
        .filter(|(s, _)| s.starts_with("eval/"))
        .map(|(_, j)| j)
        .collect();
    assert!(
        evals.iter().all(|j| j.split('_').next() == evals[0].split('_').next() && j.contains('_')),
        "{evals:?}"
    );

    // `status` follows the jobs (one squeue for all of them).
    let before = c.squeue_calls();
    let st = json_out(
        &c.robarch(&p, &["status", "p.yaml", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(c.squeue_calls() - before, 1);
    let st: BTreeMap<String, serde_json::Value> = st["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
        .collect();
    assert_eq!(st["report"]["slurm"]["job"], submitted["report"], "{:#?}", st["report"]);
    assert_eq!(st["report"]["slurm"]["state"], "PENDING");

    // `gc` refuses while the jobs wait: they read entries it could delete.
    let out = c.robarch(&p, &["gc", "p.yaml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Slurm job(s) of this cache are queued or running")
            && stderr(&out).contains(&format!("{} (tiny)", submitted["report"])),
        "{}",
        stderr(&out)
    );

    // One job cancelled by hand (the sparsity analysis, waiting on the training); the report
    // that depends on it can then never run.
    let sparsity = "sparsity/digits/resnet18/at";
    c.slurm(&["scancel", &submitted[sparsity]]);

    // The training reaches its time-limit warning after its first epoch: it requeues itself.
    let key = &reference[TRAIN].0;
    wait_for("the first epoch's checkpoint", 120, || {
        p.path(&format!("cache/ckpt/{key}/epoch-00001")).exists()
    });
    let train_job = &submitted[TRAIN];
    c.slurm(&["scancel", "--signal=USR1", "--batch", train_job]);
    wait_for("the requeue", 60, || {
        c.slurm(&["scontrol", "show", "job", train_job])
            .contains("Restarts=1")
    });
    // A requeued job waits two minutes before it may start again; not in a test. (Not at once
    // either: slurmd refuses a job credential made in the second its last one was revoked.)
    wait_for("the requeued job to be pending", 60, || {
        c.slurm(&["squeue", "-h", "-j", train_job, "-o", "%T"]).trim() == "PENDING"
    });
    std::thread::sleep(Duration::from_secs(2));
    c.slurm(&["scontrol", "update", &format!("JobId={train_job}"), "StartTime=now"]);

    // Reconnect: the jobs still queued are adopted, the cancelled ones submitted again, and the
    // run waits for all of them with one squeue per poll.
    let before = c.squeue_calls();
    let start = Instant::now();
    let out = c
        .robarch(&p, &["run", "--format", "json", "p.yaml"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "{err}\ntraining log:\n{}\nSlurm output:\n{}",
        std::fs::read_to_string(p.path(&format!("cache/logs/tiny/{TRAIN}.log"))).unwrap_or_default(),
        std::fs::read_to_string(p.path(&format!("cache/slurm/tiny/out/{}.out", submitted[TRAIN])))
            .unwrap_or_default()
    );
    let polls = c.squeue_calls() - before;
    let most = (start.elapsed().as_secs_f64() / 0.5) as usize + 2;
    assert!(polls <= most, "{polls} squeue calls in {:?}", start.elapsed());
    let second = outcomes(&out);
    assert!(
        second.values().all(|s| s["outcome"] == "ran" || s["outcome"] == "cached"),
        "{second:#?}\n{err}"
    );
    assert!(
        err.contains(&format!("adopting the job already submitted stage={TRAIN} job={train_job}")),
        "{err}"
    );
    assert!(err.contains(&format!("stage={sparsity} job={}", submitted[sparsity])) && err.contains("ended CANCELLED"), "{err}");
    let resubmitted = jobs(&p);
    assert_eq!(resubmitted[TRAIN], submitted[TRAIN], "adopted, not resubmitted");
    assert_ne!(resubmitted[sparsity], submitted[sparsity]);
    assert_ne!(resubmitted["report"], submitted["report"]);
    for (s, j) in &submitted {
        if !["report", sparsity].contains(&s.as_str()) {
            assert_eq!(&resubmitted[s], j, "{s}");
        }
    }
    let log = std::fs::read_to_string(p.path(&format!("cache/logs/tiny/{TRAIN}.log"))).unwrap();
    assert!(
        log.contains(&format!("requeueing job {train_job}")) && log.contains("resuming from checkpoint epoch=1"),
        "{log}"
    );
    // Every entry, the resumed training's included, as the local executor made it; same keys,
    // though this pipeline has an executor block.
    assert_eq!(entries(&p), reference);
    assert_eq!(reports_of(&p, "tiny"), reports_of(&local, "tiny"));

    // A failing job: named with its job id, Slurm state and log; its dependents skipped; a
    // rerun submits only it and them.
    let f = Project::new();
    f.write("p.yaml", &pipeline());
    let out = c
        .robarch(&f, &["run", "--executor", "slurm", "--format", "json", "p.yaml"])
        .env("ROBARCH_WORKER_FAULT", format!("stage-run:{sparsity}@1=segv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let o = outcomes(&out);
    let failed_job = jobs(&f)[sparsity].clone();
    let e = o[sparsity]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains(&format!("Slurm job {failed_job} ended FAILED"))
            && e.contains(&format!("stage log: cache/logs/tiny/{sparsity}.log"))
            && e.contains(&format!("cache/slurm/tiny/out/{failed_job}.out")),
        "{e}"
    );
    assert_eq!(o["report"]["outcome"], "skipped", "{o:#?}");
    let out = c
        .robarch(&f, &["run", "--executor", "slurm", "--format", "json", "p.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stages(&out, "ran"), vec!["report".to_string(), sparsity.to_string()]);
    assert_eq!(entries(&f), reference);

    // A pilot: one job runs the whole pipeline inside its allocation.
    let pl = Project::new();
    pl.write("p.yaml", &pipeline());
    let out = c
        .robarch(
            &pl,
            &["run", "--executor", "slurm", "--pilot", "--format", "json", "p.yaml"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pj = jobs(&pl);
    assert!(pj.values().all(|j| *j == pj["report"]), "{pj:?}");
    assert_eq!(entries(&pl), reference);
    assert_eq!(reports_of(&pl, "tiny"), reports_of(&local, "tiny"));

    sharded_evaluation_resumes_after_a_requeue(&c);
}

/// An AutoAttack evaluation in two shards (one job array): the first shard, told its time limit
/// is near (USR1) while it attacks, saves its points, is requeued and resumes from them; every
/// entry ends as the local executor made it.
fn sharded_evaluation_resumes_after_a_requeue(c: &Cluster) {
    let text = TINY
        .replace("  limit: 60\n", "  splits: [test]\n  limit: 24\n  batch_size: 6\n  shard: 12\n")
        .split("  attacks:\n")
        .next()
        .unwrap()
        .to_string()
        + "  attacks:\n    aa: {type: autoattack, eps: 12/255}\nanalysis: []\n";
    let shard = "eval/digits/resnet18/at/aa/test/points-0-12";
    let local = Project::new();
    local.write("p.yaml", &text);
    local.ok(&["run", "p.yaml"]);
    let reference = entries(&local);
    let key = reference[shard].0.clone();
    let p = Project::new();
    p.write(
        "p.yaml",
        &format!("{text}executor:\n  kind: slurm\n  slurm:\n    time: \"10\"\n    grace_seconds: 30\n    resources:\n      default: {{cpus: 1, mem: 1G}}\n"),
    );
    let out = c
        .robarch(&p, &["run", "--detach", "--format", "json", "p.yaml"])
        .env("ROBARCH_WORKER_FAULT", format!("eval-checkpoint:{shard}@3=sleep:8"))
        .env("ROBARCH_EVAL_CHECKPOINT_SECONDS", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let submitted = jobs(&p);
    let job = &submitted[shard];
    let other = &submitted["eval/digits/resnet18/at/aa/test/points-12-24"];
    assert!(
        job.contains('_') && job.split('_').next() == other.split('_').next(),
        "the shards are not one array: {job} {other}"
    );
    wait_for("the shard's first checkpoint", 180, || {
        p.path(&format!("cache/ckpt/{key}/sweep")).exists()
    });
    c.slurm(&["scancel", "--signal=USR1", "--batch", job]);
    wait_for("the requeue", 90, || {
        c.slurm(&["scontrol", "show", "job", job]).contains("Restarts=1")
    });
    wait_for("the requeued job to be pending", 60, || {
        c.slurm(&["squeue", "-h", "-j", job, "-o", "%T"]).trim() == "PENDING"
    });
    std::thread::sleep(Duration::from_secs(2));
    c.slurm(&["scontrol", "update", &format!("JobId={job}"), "StartTime=now"]);
    let out = c
        .robarch(&p, &["run", "--format", "json", "p.yaml"])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(p.path(&format!("cache/logs/tiny/{shard}.log"))).unwrap_or_default();
    assert!(out.status.success(), "{}\n{log}", stderr(&out));
    assert!(
        // The worker names the array task by its own job id (SLURM_JOB_ID).
        log.contains("the stage saved its progress")
            && log.contains("requeueing job ")
            && log.contains("resuming the evaluation from its checkpoint"),
        "{log}"
    );
    assert_eq!(entries(&p), reference);
}
