//! The Slurm executor on a cluster of two nodes: `scripts/slurm-local.sh start DIR --nodes 2` runs
//! the controller and each node's slurmd in network, UTS (host name), mount and PID namespaces of
//! their own on this machine, cabled by veth pairs, all sharing the cache as a cluster shares its
//! filesystem. On it, one pipeline's stages land on both nodes; node2 loses its power while it
//! trains one model and commits another (every process of it killed at once), Slurm requeues both
//! jobs onto node1, whose workers take the dead node's stage locks over after their lease, resume
//! the training from its checkpoint and recompute the half-committed stage; a pilot job runs a
//! local executor on each node of its allocation; and two `robarch run` started at once on the two
//! nodes compute every stage exactly once. Every entry ends equal to the local executor's.
//! Skipped, saying so, only where namespaces cannot be created here, or (unless ROBARCH_SLURM is
//! `required`, as in `scripts/test.sh`) where Slurm is not installed.
use crate::common::*;
use crate::slurm::{entries, jobs, script, start_cluster, stop_cluster, wait_for};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The stage locks' lease in this test: a dead node's locks are taken over after it.
const LEASE_SECS: u64 = 8;
const TRAIN: &str = "train/digits/resnet18/at";
const TRAIN2: &str = "train/digits/resnet18/at2";

struct Nodes {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Nodes {
    fn start() -> Option<Nodes> {
        let dir = tempfile::tempdir().unwrap();
        let conf = start_cluster(dir.path(), &["--nodes", "2"])?;
        Some(Nodes { dir, conf })
    }

    fn slurm_dir(&self) -> PathBuf {
        self.dir.path().join("slurm")
    }

    /// `c`, run on `machine` (`ctl`, `node1`, `node2`) with its program, arguments, environment
    /// and working directory.
    fn on(&self, machine: &str, c: &Command) -> Command {
        let mut w = Command::new("bash");
        w.arg(script())
            .arg("on")
            .arg(self.slurm_dir())
            .arg(machine)
            .arg("--")
            .arg(c.get_program())
            .args(c.get_args());
        if let Some(d) = c.get_current_dir() {
            w.current_dir(d);
        }
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => w.env(k, v),
                None => w.env_remove(k),
            };
        }
        w.env("SLURM_CONF", &self.conf);
        w
    }

    /// `robarch <args>` in `p`, on `machine`.
    fn robarch(&self, machine: &str, p: &Project, args: &[&str]) -> Command {
        let mut c = p.cmd(args);
        c.env("ROBARCH_SLURM_POLL", "0.5")
            .env("ROBARCH_LEASE_SECS", LEASE_SECS.to_string());
        self.on(machine, &c)
    }

    /// A Slurm command on the controller's host; its stdout.
    fn slurm(&self, args: &[&str]) -> String {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        let out = self.on("ctl", &c).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .arg(args[0])
            .arg(self.slurm_dir())
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    /// The nodes a job ran on (`node1`, `node[1-2]`), while the controller remembers it.
    fn nodes_of(&self, job: &str) -> String {
        self.slurm(&["squeue", "-h", "-t", "all", "-j", job, "-o", "%N"])
            .trim()
            .to_string()
    }

    fn node_state(&self, node: &str) -> String {
        self.slurm(&["sinfo", "-h", "-N", "-n", node, "-o", "%T"])
            .trim()
            .to_string()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        stop_cluster(&mut self.dir);
    }
}

/// What the local executor made of the pipeline: every entry, and the report.
struct Reference {
    entries: BTreeMap<String, (String, BTreeMap<String, String>)>,
    report: BTreeMap<String, Vec<u8>>,
}

impl Reference {
    /// `p`'s entries and report equal the local executor's.
    fn check(&self, p: &Project) {
        assert_eq!(entries(p), self.entries);
        assert_eq!(reports_of(p, "tiny"), self.report);
    }
}

/// Two trainings of three epochs (checkpoints to resume from), two evaluations of each.
fn pipeline() -> String {
    let train = |eps: &str| {
        format!(
            "    attack: {{norm: linf, eps: {eps}, steps: 2}}\n    epochs: 3\n    batch_size: 32\n    optimizer: {{name: adamw, lr: 2e-3}}\n"
        )
    };
    format!(
        "name: tiny\nseed: 3\ndevice: cpu\ndatasets:\n  digits: {{source: embedded:digits, resolution: 8, limit: 120}}\n\
         models:\n  resnet18: {{preset: tiny}}\ntraining:\n  at:\n{}  at2:\n{}\
         evaluation:\n  splits: [test]\n  limit: 60\n  attacks:\n    clean: {{}}\n    pgd: {{eps: 8/255, steps: 3}}\n\
         analysis: [sparsity]\n",
        train("8/255"),
        train("4/255")
    )
}

/// The first training takes three seconds more (these stages take a fraction of a second), so
/// that two runs started together overlap however slowly either starts.
const SLOW_TRAIN: &str = "stage-run:train/*/at@1=sleep:3";

const EXECUTOR: &str = "executor:\n  kind: slurm\n  slurm:\n    time: \"10\"\n    grace_seconds: 30\n    resources:\n      default: {cpus: 1, mem: 1G}\n    pilot: {nodes: 2, cpus: 1, mem: 1G}\n";

/// Stage id → the host that computed its entry (`provenance.host`).
fn hosts_by_stage(p: &Project) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for shard in std::fs::read_dir(p.path("cache/objects")).unwrap() {
        for e in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(e.unwrap().path().join("meta.json")).unwrap(),
            )
            .unwrap();
            out.insert(
                meta["stage"].as_str().unwrap().to_string(),
                meta["provenance"]["host"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    out
}

/// The hosts that computed `p`'s entries.
fn hosts(p: &Project) -> BTreeSet<String> {
    hosts_by_stage(p).into_values().collect()
}

fn log(p: &Project, stage: &str) -> String {
    std::fs::read_to_string(p.path(&format!("cache/logs/tiny/{stage}.log"))).unwrap_or_default()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn two_nodes_survive_a_lost_node_and_share_one_cache() {
    let Some(c) = Nodes::start() else { return };
    let t = Instant::now();
    let local = Project::new();
    local.write("p.yaml", &pipeline());
    local.ok(&["run", "--format", "json", "p.yaml"]);
    let reference = Reference {
        entries: entries(&local),
        report: reports_of(&local, "tiny"),
    };
    eprintln!("local reference: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    node2_loses_its_power(&c, &reference);
    eprintln!("node loss: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    c.script(&["power-on", "node2"]);
    wait_for("node2 to rejoin", 60, || c.node_state("node2") == "idle");
    a_pilot_uses_every_node(&c, &reference);
    eprintln!("pilot: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    two_drivers_compute_each_stage_once(&c, &reference);
    eprintln!("two drivers: {:.1} s", t.elapsed().as_secs_f64());
}

/// node2 trains both models (node1 is drained); once one training has its first epoch's
/// checkpoint and the other is committing its entry, every process of node2 is killed. Slurm
/// marks it down and requeues both jobs onto node1, where they wait out the dead node's locks.
fn node2_loses_its_power(c: &Nodes, reference: &Reference) {
    let p = Project::new();
    p.write("p.yaml", &format!("{}{EXECUTOR}", pipeline()));
    c.slurm(&[
        "scontrol",
        "update",
        "NodeName=node1",
        "State=DRAIN",
        "Reason=robarch-test",
    ]);
    let out = c
        .robarch(
            "ctl",
            &p,
            &["run", "--detach", "--format", "json", "p.yaml"],
        )
        // On node2 only: the first training stalls as it writes its second checkpoint, the
        // second as it commits its entry (staged and synced, not yet renamed into place).
        .env(
            "ROBARCH_WORKER_FAULT",
            format!("checkpoint-rename:{TRAIN}@2=sleep:300,commit-rename:{TRAIN2}@1=sleep:300"),
        )
        .env("ROBARCH_FAULT_HOST", "node2")
        .output()
        .unwrap();
    ok(&out, "the detached run");
    let submitted = jobs(&p);
    let (key, key2) = (&reference.entries[TRAIN].0, &reference.entries[TRAIN2].0);
    let staged = |k: &str| {
        std::fs::read_dir(p.path("cache/tmp"))
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("entry-{k}"))
                        && e.path().join("meta.json").exists()
                })
            })
            .unwrap_or(false)
    };
    wait_for(
        "the first epoch's checkpoint and the second training's commit",
        180,
        || p.path(&format!("cache/ckpt/{key}/epoch-00001")).exists() && staged(key2),
    );
    for s in [TRAIN, TRAIN2] {
        assert_eq!(c.nodes_of(&submitted[s]), "node2", "{s}");
    }
    c.slurm(&["scontrol", "update", "NodeName=node1", "State=RESUME"]);
    let lost = Instant::now();
    c.script(&["power-off", "node2"]);
    wait_for("Slurm to mark node2 down", 60, || {
        c.node_state("node2").starts_with("down")
    });
    eprintln!("node2 down after {:.1} s", lost.elapsed().as_secs_f64());
    for s in [TRAIN, TRAIN2] {
        let job = &submitted[s];
        wait_for("the requeue", 60, || {
            c.slurm(&["scontrol", "show", "job", job])
                .contains("Restarts=1")
                && c.slurm(&["squeue", "-h", "-j", job, "-o", "%T"]).trim() == "PENDING"
        });
    }
    // A requeued job waits two minutes before it may start again; not in a test.
    std::thread::sleep(Duration::from_secs(2));
    for s in [TRAIN, TRAIN2] {
        c.slurm(&[
            "scontrol",
            "update",
            &format!("JobId={}", submitted[s]),
            "StartTime=now",
        ]);
    }
    let out = c
        .robarch("ctl", &p, &["run", "--format", "json", "p.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\ntraining logs:\n{}\n{}",
        stderr(&out),
        log(&p, TRAIN),
        log(&p, TRAIN2)
    );
    let done = lost.elapsed().as_secs();
    for s in [TRAIN, TRAIN2] {
        assert_eq!(
            c.nodes_of(&submitted[s]),
            "node1",
            "{s} was not requeued onto node1"
        );
        let l = log(&p, s);
        // Taken over from the dead node only once its lease ran out.
        let took = l
            .lines()
            .find(|l| l.contains("taking over a stale lock"))
            .unwrap_or_else(|| panic!("{s}: no lock taken over:\n{l}"));
        eprintln!("{s}: {}", took.trim());
        assert!(
            took.contains("on node2")
                && (took.contains(&format!("while this process waited (lease {LEASE_SECS} s)"))
                    || took.contains("has not renewed it for")),
            "{took}"
        );
    }
    assert!(done >= LEASE_SECS);
    assert!(
        log(&p, TRAIN).contains("resuming from checkpoint epoch=1"),
        "{}",
        log(&p, TRAIN)
    );
    // The half-committed training resumes from its last checkpoint (its entry is made anew).
    assert!(
        log(&p, TRAIN2).contains("resuming from checkpoint epoch=3"),
        "{}",
        log(&p, TRAIN2)
    );
    eprintln!("node loss to the end of the run: {done} s");
    // The half-committed entry of node2 was never trusted: its staging directory is gone, the
    // stage's entry was committed again on node1.
    assert!(
        !staged(key2),
        "node2's staging directory of {TRAIN2} is left"
    );
    let by = hosts_by_stage(&p);
    assert_eq!(by[TRAIN], "node1");
    assert_eq!(by[TRAIN2], "node1");
    let where_: BTreeSet<&str> = by.values().map(|h| h.as_str()).collect();
    assert!(
        where_.contains("node1") && where_.contains("node2"),
        "the stages did not land on both nodes: {where_:?}"
    );
    reference.check(&p);
}

/// A pilot of two nodes: one local executor on each, every stage computed by one of them.
fn a_pilot_uses_every_node(c: &Nodes, reference: &Reference) {
    let p = Project::new();
    p.write("p.yaml", &format!("{}{EXECUTOR}", pipeline()));
    let out = c
        .robarch("ctl", &p, &["run", "--pilot", "--format", "json", "p.yaml"])
        .env("ROBARCH_WORKER_FAULT", SLOW_TRAIN)
        .output()
        .unwrap();
    ok(&out, "the pilot");
    let pj = jobs(&p);
    let job = &pj["report"];
    assert!(pj.values().all(|j| j == job), "{pj:?}");
    assert_eq!(c.nodes_of(job), "node[1-2]");
    let out = std::fs::read_to_string(p.path(&format!("cache/slurm/tiny/out/{job}.out"))).unwrap();
    assert_eq!(
        hosts(&p),
        BTreeSet::from(["node1".to_string(), "node2".to_string()]),
        "pilot output:\n{out}"
    );
    reference.check(&p);
}

/// `robarch run` on node1 and node2 at once, one cache: each stage is computed by one of them
/// (`ran` there, `cached` on the other), and both write the same report.
fn two_drivers_compute_each_stage_once(c: &Nodes, reference: &Reference) {
    let p = Project::new();
    p.write("p.yaml", &pipeline());
    let run = |node: &str, reports: &str| {
        c.robarch(
            node,
            &p,
            &[
                "run",
                "--format",
                "json",
                "-j",
                "1",
                "--reports",
                reports,
                "p.yaml",
            ],
        )
        .env("ROBARCH_WORKER_FAULT", SLOW_TRAIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (run("node1", "reports-1"), run("node2", "reports-2"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    ok(&a, "the run on node1");
    ok(&b, "the run on node2");
    let (ran_a, ran_b) = (stages(&a, "ran"), stages(&b, "ran"));
    let all: BTreeSet<&String> = reference.entries.keys().collect();
    let both: BTreeSet<&String> = ran_a.iter().filter(|s| ran_b.contains(s)).collect();
    assert!(both.is_empty(), "computed twice: {both:?}");
    let either: BTreeSet<&String> = ran_a.iter().chain(&ran_b).collect();
    assert_eq!(either, all, "node1 ran {ran_a:?}, node2 ran {ran_b:?}");
    assert!(
        !ran_a.is_empty() && !ran_b.is_empty(),
        "one node did everything"
    );
    for (s, h) in hosts_by_stage(&p) {
        let by = if ran_a.contains(&s) { "node1" } else { "node2" };
        assert_eq!(h, by, "{s}");
    }
    assert_eq!(entries(&p), reference.entries);
    for r in ["reports-1", "reports-2"] {
        assert_eq!(
            &reports_in(&p.path(&format!("{r}/tiny"))),
            &reference.report,
            "{r}"
        );
    }
}
