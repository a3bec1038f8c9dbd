//! The Slurm executor: each stage that must run becomes a Slurm job running the same stage
//! worker as the local executor (`robarch-worker job`), against the cache on a shared
//! filesystem. Dependents are submitted at once with `--dependency=afterok:…`, so the chain runs
//! without this process; stages with the same resources and dependencies go as one job array;
//! `--pilot` instead submits one job that runs the local executor inside its allocation.
//!
//! What was submitted lives in the cache (`slurm/<pipeline>/state.json`), so a later `run` or
//! `status` adopts jobs still queued or running instead of submitting them again, picks up the
//! entries of those that finished, and resubmits only what failed. Polling asks Slurm once per
//! interval about every job (one `squeue`, then one `sacct` for jobs that left the queue), backed
//! off while nothing changes. A job near its time limit is signalled (`--signal`) and requeues
//! itself if its stage wrote a checkpoint since it started: the next run resumes from it.
pub mod queue;

use super::executor::{Executor, InFlight, Submission};
use super::{Outcome, RunOptions};
use crate::cache::lease::Lease;
use crate::cache::{Cache, Lookup};
use crate::plan::Plan;
use crate::spec::executor::Resources;
use anyhow::{Context, Result};
use petgraph::graph::NodeIndex;
use queue::JobState;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable with the shortest poll interval in seconds (default 5).
pub const POLL_SECS: &str = "ROBARCH_SLURM_POLL";

/// How long a job that completed may take to show its entry here (a shared filesystem's
/// attribute cache can hide a new directory from other nodes for up to a minute).
const VISIBLE: Duration = Duration::from_secs(60);


/// What one Slurm job (or each task of an array) runs: read by `robarch-worker job`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub cache: PathBuf,
    /// The device choice (the spec's `device` or `--device`).
    pub device: String,
    pub log_filter: String,
    pub log_json: bool,
    /// One per array task (`SLURM_ARRAY_TASK_ID`), or one.
    pub stages: Vec<BatchStage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchStage {
    /// The stage, resolved when submitted: editing the pipeline while jobs wait in the queue
    /// changes nothing they run.
    pub task: super::stage::Task,
    pub force: bool,
    pub log: PathBuf,
}

/// The jobs submitted for a pipeline, by stage id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub jobs: BTreeMap<String, JobRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRec {
    /// `123`, or `123_4` for a task of an array.
    pub job: String,
    /// The stage's key when submitted: a job for another key is not adopted.
    pub key: String,
    /// Slurm's own output file of the job (what the batch step printed before the stage log
    /// took over, and slurmstepd's messages: out of memory, time limit).
    pub output: PathBuf,
    pub submitted_unix: u64,
    #[serde(default)]
    pub force: bool,
    /// Part of one pilot job running every stage.
    #[serde(default)]
    pub pilot: bool,
}

/// `<cache>/slurm/<pipeline>/`.
pub fn dir(cache: &Path, pipeline: &str) -> PathBuf {
    cache.join("slurm").join(pipeline)
}

impl State {
    pub fn load(cache: &Path, pipeline: &str) -> State {
        let path = dir(cache, pipeline).join("state.json");
        let Ok(bytes) = std::fs::read(&path) else {
            return State::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                "{} is not a record of Slurm jobs ({e}): jobs it listed are not adopted, and their stages are submitted again (`scancel --name=robarch:{pipeline}:…` cancels the old ones)",
                path.display()
            );
            State::default()
        })
    }

    fn save(&self, cache: &Path, pipeline: &str) -> Result<()> {
        let d = dir(cache, pipeline);
        let mut tmp = tempfile::NamedTempFile::new_in(&d)
            .with_context(|| format!("writing into {}", d.display()))?;
        std::io::Write::write_all(&mut tmp, &serde_json::to_vec_pretty(self)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(d.join("state.json"))
            .with_context(|| format!("writing {}", d.join("state.json").display()))?;
        Ok(())
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `s` quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` made safe for a `#` comment in a shell script: one line, whatever it holds (a path or a
/// name with a newline would otherwise start a command on the next line).
fn sh_comment(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

/// The `sbatch` options for a job with `r`'s resources.
fn resource_args(plan: &Plan, r: &Resources) -> Vec<String> {
    let s = &plan.executor.slurm;
    let mut a = Vec::new();
    if let Some(p) = r.partition.as_ref().or(s.partition.as_ref()) {
        a.push(format!("--partition={p}"));
    }
    if let Some(x) = &s.account {
        a.push(format!("--account={x}"));
    }
    if let Some(x) = &s.qos {
        a.push(format!("--qos={x}"));
    }
    if let Some(t) = r.time.as_ref().or(s.time.as_ref()) {
        a.push(format!("--time={t}"));
    }
    if let Some(n) = r.nodes {
        a.push(format!("--nodes={n}"));
        a.push("--ntasks-per-node=1".into());
    }
    if let Some(c) = r.cpus {
        a.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = &r.mem {
        a.push(format!("--mem={m}"));
    }
    if let Some(g) = &r.gres {
        a.push(format!("--gres={g}"));
    }
    a.extend(s.sbatch_args.iter().cloned());
    a.extend(r.sbatch_args.iter().cloned());
    a
}

/// One submission: stages that share resources and dependencies.
struct Group {
    kind: String,
    resources: Resources,
    after: Vec<String>,
    stages: Vec<NodeIndex>,
}

/// Splits what must be submitted into groups, level by level: a stage's level is one more than
/// that of its deepest input still to run, so each group's dependencies were submitted before it.
/// `job_of` holds the jobs of stages already queued (adopted); it is completed as groups are
/// submitted by `submit`.
fn submit_groups(
    plan: &Plan,
    todo: &[NodeIndex],
    job_of: &mut HashMap<NodeIndex, String>,
    mut submit: impl FnMut(&Group) -> Result<Vec<String>>,
) -> Result<()> {
    let pending: HashSet<NodeIndex> = todo
        .iter()
        .copied()
        .filter(|ix| !job_of.contains_key(ix))
        .collect();
    let mut level: HashMap<NodeIndex, usize> = HashMap::new();
    for &ix in todo {
        if !pending.contains(&ix) {
            continue;
        }
        let l = plan
            .deps(ix)
            .iter()
            .filter_map(|d| level.get(d))
            .max()
            .map_or(0, |l| l + 1);
        level.insert(ix, l);
    }
    let top = level.values().copied().max().unwrap_or(0);
    for l in 0..=top {
        let mut groups: Vec<Group> = Vec::new();
        for &ix in todo {
            if level.get(&ix) != Some(&l) {
                continue;
            }
            let kind = plan.graph[ix].stage.kind().to_string();
            let resources = plan.executor.slurm.resources_for(&kind);
            let mut after: Vec<String> = plan
                .deps(ix)
                .iter()
                .filter_map(|d| job_of.get(d).cloned())
                .collect();
            after.sort();
            after.dedup();
            let arrays = plan.executor.slurm.arrays;
            match groups.iter_mut().find(|g| {
                arrays && g.kind == kind && g.resources == resources && g.after == after
            }) {
                Some(g) => g.stages.push(ix),
                None => groups.push(Group {
                    kind,
                    resources,
                    after,
                    stages: vec![ix],
                }),
            }
        }
        for g in &groups {
            let jobs = submit(g)?;
            for (&ix, job) in g.stages.iter().zip(jobs) {
                job_of.insert(ix, job);
            }
        }
    }
    Ok(())
}

/// Writes the pipeline's text into the cache (once per content); returns the copy's path.
fn snapshot(plan_file: &Path, root: &Path) -> Result<PathBuf> {
    let text = std::fs::read(plan_file)
        .with_context(|| format!("reading {}", plan_file.display()))?;
    let hash = blake3::hash(&text).to_hex();
    let p = root.join(format!("spec-{}.yaml", &hash[..16]));
    if !p.exists() {
        let mut tmp = tempfile::NamedTempFile::new_in(root)?;
        std::io::Write::write_all(&mut tmp, &text)?;
        tmp.persist(&p)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(p)
}

/// What the executor needs to submit jobs.
struct Submitter<'a> {
    plan: &'a Plan,
    cache: &'a Cache,
    opts: &'a RunOptions,
    /// `<cache>/slurm/<pipeline>`, absolute (the jobs' scripts and files name it).
    root: PathBuf,
    /// Its `out/` as the user named the cache (messages).
    shown: PathBuf,
    spec: PathBuf,
    cwd: PathBuf,
    worker: PathBuf,
    forced: &'a HashSet<NodeIndex>,
}

impl Submitter<'_> {
    fn files(&self, stem: &str) -> (PathBuf, PathBuf) {
        let jobs = self.root.join("jobs");
        (
            jobs.join(format!("{stem}.json")),
            jobs.join(format!("{stem}.sh")),
        )
    }

    fn stem(&self) -> String {
        format!("{}-{:08x}", now_unix(), rand::random::<u32>())
    }

    /// The options every job gets: its name, working directory, output file (`output`, a Slurm
    /// filename pattern under `out/`), requeueing, and its dependencies (`after`).
    fn common_args(&self, name: &str, output: &str, after: &[String]) -> Vec<String> {
        let mut a = vec![
            format!("--job-name=robarch:{}:{name}", self.plan.name),
            format!("--chdir={}", self.cwd.display()),
            format!("--output={}", self.root.join("out").join(output).display()),
            "--kill-on-invalid-dep=yes".into(),
            "--requeue".into(),
            // A requeued job's output adds to its earlier runs'.
            "--open-mode=append".into(),
        ];
        if !after.is_empty() {
            a.push(format!("--dependency=afterok:{}", after.join(":")));
        }
        a
    }

    /// Records that the stage at `ix` runs in `job`.
    fn record(&self, state: &mut State, ix: NodeIndex, job: &str, pilot: bool) {
        let n = &self.plan.graph[ix];
        state.jobs.insert(
            n.id.clone(),
            JobRec {
                job: job.to_string(),
                key: n.key.clone(),
                output: self.shown.join(format!("{job}.out")),
                submitted_unix: now_unix(),
                force: self.forced.contains(&ix),
                pilot,
            },
        );
    }

    /// Submits `g` as one job, or an array of one task per stage; returns each stage's job id.
    fn submit(&self, g: &Group, state: &mut State) -> Result<Vec<String>> {
        let stem = self.stem();
        let (batch_file, script) = self.files(&stem);
        let batch = Batch {
            cache: absolute(self.cache.root())?,
            device: self
                .opts
                .device
                .clone()
                .unwrap_or_else(|| self.plan.device.clone()),
            log_filter: self.opts.log_filter.clone(),
            log_json: self.opts.log_json,
            stages: g
                .stages
                .iter()
                .map(|&ix| {
                    let n = &self.plan.graph[ix];
                    Ok(BatchStage {
                        task: super::stage::Task::of(self.plan, ix),
                        force: self.forced.contains(&ix),
                        log: absolute(&super::log_path(self.cache, self.plan, &n.id))?,
                    })
                })
                .collect::<Result<_>>()?,
        };
        std::fs::write(&batch_file, serde_json::to_vec_pretty(&batch)?)
            .with_context(|| format!("writing {}", batch_file.display()))?;
        let first = &self.plan.graph[g.stages[0]].id;
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# robarch: {} stage(s) of pipeline `{}`, from {}; see {}\nexec {} job --batch {}\n",
                g.stages.len(),
                sh_comment(&self.plan.name),
                sh_comment(first),
                sh_comment(&batch_file.to_string_lossy()),
                sh_quote(&self.worker.to_string_lossy()),
                sh_quote(&batch_file.to_string_lossy()),
            ),
        )
        .with_context(|| format!("writing {}", script.display()))?;
        let array = g.stages.len() > 1;
        let output = if array { "%A_%a.out" } else { "%j.out" };
        let mut args = self.common_args(&g.kind, output, &g.after);
        args.push(format!(
            "--signal=B:USR1@{}",
            self.plan.executor.slurm.grace_seconds
        ));
        if array {
            args.push(format!("--array=0-{}", g.stages.len() - 1));
        }
        args.extend(resource_args(self.plan, &g.resources));
        let id = queue::sbatch(&args, &script)?;
        let mut jobs = Vec::new();
        for (i, &ix) in g.stages.iter().enumerate() {
            let job = if array { format!("{id}_{i}") } else { id.clone() };
            self.record(state, ix, &job, false);
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Submits one job that runs the local executor on every stage inside its allocation.
    fn submit_pilot(
        &self,
        todo: &[NodeIndex],
        after: Vec<String>,
        reports: &Path,
        state: &mut State,
    ) -> Result<String> {
        let stem = self.stem();
        let (_, script) = self.files(&stem);
        let robarch = std::env::current_exe().context("locating the robarch executable")?;
        let mut cmd = vec![
            sh_quote(&robarch.to_string_lossy()),
            "--cache".into(),
            sh_quote(&absolute(self.cache.root())?.to_string_lossy()),
            "run".into(),
            sh_quote(&self.spec.to_string_lossy()),
            "--executor".into(),
            "local".into(),
            "--keep-going".into(),
            "--jobs".into(),
            "\"${SLURM_CPUS_PER_TASK:-1}\"".into(),
            "--reports".into(),
            sh_quote(&absolute(reports)?.to_string_lossy()),
        ];
        if let Some(d) = &self.opts.device {
            cmd.push("--device".into());
            cmd.push(sh_quote(d));
        }
        for f in &self.opts.force {
            cmd.push("--force".into());
            cmd.push(sh_quote(f.as_str()));
        }
        let resources = self.plan.executor.slurm.pilot_resources();
        // On several nodes, one local executor runs on each (one srun task per node): they share
        // the cache, and its stage locks hand every stage to exactly one of them.
        let nodes = resources.nodes.unwrap_or(1);
        let launch = if nodes > 1 {
            format!(
                "srun --nodes={nodes} --ntasks-per-node=1 --cpus-per-task=\"${{SLURM_CPUS_PER_TASK:-1}}\" --kill-on-bad-exit=0 "
            )
        } else {
            String::new()
        };
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# robarch: pilot job of pipeline `{}` ({} stages, {nodes} node(s))\nexec {launch}{}\n",
                sh_comment(&self.plan.name),
                todo.len(),
                cmd.join(" ")
            ),
        )
        .with_context(|| format!("writing {}", script.display()))?;
        let mut args = self.common_args("pilot", "%j.out", &after);
        args.extend(resource_args(self.plan, &resources));
        let id = queue::sbatch(&args, &script)?;
        for &ix in todo {
            self.record(state, ix, &id, true);
        }
        Ok(id)
    }
}

/// Whether the stage of `rec` has its entry: computed by its job (or by anyone, unless forced).
fn finished(cache: &Cache, rec: &JobRec) -> Option<f64> {
    let Lookup::Hit(e) = cache.lookup(&rec.key) else {
        return None;
    };
    let p = &e.meta.provenance;
    (!rec.force || p.created_unix + 1 >= rec.submitted_unix).then_some(p.wall_seconds)
}

/// The error for a stage whose job ended without its entry.
fn failure(plan: &Plan, cache: &Cache, ix: NodeIndex, rec: &JobRec, st: Option<&JobState>) -> String {
    let n = &plan.graph[ix];
    let log = super::log_path(cache, plan, &n.id);
    let how = st.map_or_else(
        || "left the queue (its state is unknown: the cluster keeps no accounting)".to_string(),
        |s| format!("ended {}", s.describe()),
    );
    let kind = n.stage.kind();
    let hint = match st.map(|s| s.state.as_str()) {
        Some("OUT_OF_MEMORY") => format!(
            "; give it more memory (executor.slurm.resources.{kind}.mem)"
        ),
        Some("TIMEOUT") => format!(
            "; give it more time (executor.slurm.resources.{kind}.time); a training resumes from its last epoch checkpoint when run again"
        ),
        Some("CANCELLED") => "; `robarch run` submits it again".to_string(),
        Some("NODE_FAIL" | "BOOT_FAIL" | "PREEMPTED") => {
            "; `robarch run` submits it again (a training resumes from its checkpoint)".to_string()
        }
        _ => String::new(),
    };
    format!(
        "Slurm job {} {how}{hint}; stage log: {}; Slurm output: {}",
        rec.job,
        log.display(),
        rec.output.display()
    )
}

/// The Slurm executor: stages as jobs (job arrays of like stages, `afterok` dependencies on
/// their inputs' jobs, or one pilot allocation) on a cache every node shares.
pub struct Slurm {
    sub: Submission,
    /// `<cache>/slurm/<pipeline>`.
    root: PathBuf,
    /// One driver at a time submits for a pipeline (another waits, then adopts its jobs): held
    /// from adopting to the end of submitting.
    driver: Option<Lease>,
    state: State,
    /// The job of each stage submitted or adopted.
    job_of: HashMap<NodeIndex, String>,
    /// Polling: the current interval, failed queries in a row, and when each stage's job was
    /// seen completed (its entry may show here later).
    interval: f64,
    failures: usize,
    completed_at: HashMap<NodeIndex, Instant>,
    announced: bool,
    opts: Option<RunOptions>,
}

impl Slurm {
    pub fn new(sub: Submission) -> Self {
        Slurm {
            sub,
            root: PathBuf::new(),
            driver: None,
            state: State::default(),
            job_of: HashMap::new(),
            interval: 0.0,
            failures: 0,
            completed_at: HashMap::new(),
            announced: false,
            opts: None,
        }
    }
}

/// The shortest and longest poll intervals in seconds (`ROBARCH_SLURM_POLL`, default 5).
fn poll_interval() -> (f64, f64) {
    let min = std::env::var(POLL_SECS)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(5.0);
    (min, (min * 12.0).max(60.0))
}

impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }
    fn label(&self) -> &'static str {
        "Slurm"
    }
    fn submits_jobs(&self) -> bool {
        true
    }
    fn chains(&self) -> bool {
        true
    }

    fn dry_run(&self, plan: &Plan, todo: &[NodeIndex]) -> Result<Option<String>> {
        if todo.is_empty() {
            return Ok(None);
        }
        let mut job_of = HashMap::new();
        let mut n = 0usize;
        submit_groups(plan, todo, &mut job_of, |g| {
            n += 1;
            let array = g.stages.len() > 1;
            Ok((0..g.stages.len())
                .map(|i| if array { format!("{n}_{i}") } else { n.to_string() })
                .collect())
        })?;
        let how = if self.sub.pilot {
            match plan.executor.slurm.pilot_resources().nodes {
                Some(n @ 2..) => format!("1 pilot job on {n} nodes"),
                _ => "1 pilot job".to_string(),
            }
        } else {
            format!("{n} job(s) or job array(s)")
        };
        Ok(Some(format!(
            "would submit {} stage(s) to Slurm as {how}",
            todo.len()
        )))
    }

    fn prepare(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        opts: &RunOptions,
        _: &[NodeIndex],
    ) -> Result<()> {
        self.opts = Some(opts.clone());
        for sub in ["jobs", "out"] {
            // Not through a symbolic link planted in the shared cache.
            crate::cache::links::real_dir(
                cache.root(),
                &Path::new("slurm").join(&plan.name).join(sub),
                "the Slurm executor's records (slurm/<pipeline>/…)",
            )?;
        }
        self.root = dir(cache.root(), &plan.name);
        self.interval = poll_interval().0;
        self.driver = Some(Lease::acquire(
            &self.root.join("driver.lease"),
            &format!("slurm:{}", plan.name),
        )?);
        self.state = State::load(cache.root(), &plan.name);
        Ok(())
    }

    /// The recorded jobs of `todo` still queued or running, by id, key and name (an id the
    /// controller reused for another job is not ours).
    fn adopt(
        &mut self,
        plan: &Plan,
        _cache: &Cache,
        todo: &[NodeIndex],
        forced: &HashSet<NodeIndex>,
    ) -> Result<Vec<NodeIndex>> {
        let recorded: Vec<String> = todo
            .iter()
            .filter_map(|ix| self.state.jobs.get(&plan.graph[*ix].id))
            .map(|r| r.job.clone())
            .collect();
        let states = if recorded.is_empty() {
            HashMap::new()
        } else {
            queue::query(&recorded)?
        };
        let ours = format!("robarch:{}:", plan.name);
        let mut adopted = Vec::new();
        for &ix in todo {
            let n = &plan.graph[ix];
            let Some(rec) = self.state.jobs.get(&n.id) else {
                continue;
            };
            let st = states.get(&rec.job);
            let active = st.is_some_and(|s| !s.terminal() && s.name.starts_with(&ours));
            if active && rec.key == n.key && !forced.contains(&ix) {
                tracing::info!(stage = %n.id, job = %rec.job, state = %st.map(|s| s.describe()).unwrap_or_default(), "adopting the job already submitted");
                self.job_of.insert(ix, rec.job.clone());
                adopted.push(ix);
            } else if rec.key == n.key {
                let why = st.map_or_else(|| "left the queue".into(), |s| format!("ended {}", s.describe()));
                tracing::info!(stage = %n.id, job = %rec.job, "submitting again: its last job {why}");
            }
        }
        Ok(adopted)
    }

    fn cancel(&mut self, plan: &Plan, stages: &[NodeIndex]) -> Result<()> {
        let mut jobs = Vec::new();
        for ix in stages {
            if let Some(job) = self.job_of.remove(ix) {
                tracing::info!(stage = %plan.graph[*ix].id, %job, "cancelling the job: an input of its stage is submitted again");
                jobs.push(job);
            }
        }
        queue::scancel(&jobs)
    }

    /// Submits every stage offered (inputs' jobs first: `afterok`), as groups or one pilot;
    /// what was submitted before a failed sbatch is recorded, to be adopted next time.
    fn submit(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        ready: &[NodeIndex],
        forced: &HashSet<NodeIndex>,
    ) -> Result<Vec<NodeIndex>> {
        let opts = self.opts.clone().expect("prepared before stages are submitted");
        let sub = Submitter {
            plan,
            cache,
            opts: &opts,
            root: absolute(&self.root)?,
            shown: self.root.join("out"),
            spec: absolute(&snapshot(&opts.spec, &self.root)?)?,
            cwd: std::env::current_dir().context("reading the working directory")?,
            worker: absolute(&super::pool::worker_exe()?)?,
            forced,
        };
        let mut state = std::mem::take(&mut self.state);
        let r = if self.sub.pilot {
            let mut after: Vec<String> = self.job_of.values().cloned().collect();
            after.sort();
            after.dedup();
            sub.submit_pilot(ready, after, &self.sub.reports, &mut state)
                .map(|id| {
                    for &ix in ready {
                        self.job_of.insert(ix, id.clone());
                    }
                })
        } else {
            submit_groups(plan, ready, &mut self.job_of, |g| sub.submit(g, &mut state))
        };
        let saved = state.save(cache.root(), &plan.name);
        self.state = state;
        r?;
        saved?;
        // Submitted: another driver may adopt these jobs from here on.
        self.driver = None;
        Ok(ready.to_vec())
    }

    fn detached(&self) -> Option<HashMap<NodeIndex, String>> {
        self.sub.detach.then(|| self.job_of.clone())
    }

    /// Polls Slurm until some job in flight has ended.
    fn observe(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        done: &HashMap<NodeIndex, Outcome>,
    ) -> Result<Vec<(NodeIndex, Outcome)>> {
        let (min, max) = poll_interval();
        let mut waiting: Vec<NodeIndex> = plan
            .order
            .iter()
            .copied()
            .filter(|ix| self.job_of.contains_key(ix) && !done.contains_key(ix))
            .collect();
        if !self.announced {
            self.announced = true;
            tracing::info!(
                "{} stage(s) in Slurm jobs; waiting for them (Ctrl-C leaves them running: `robarch status` shows them, `robarch run` picks them up)",
                waiting.len()
            );
        }
        loop {
            let jobs: Vec<String> = waiting
                .iter()
                .filter_map(|ix| self.state.jobs.get(&plan.graph[*ix].id))
                .map(|r| r.job.clone())
                .collect();
            let states = match queue::query(&jobs) {
                Ok(s) => {
                    self.failures = 0;
                    s
                }
                Err(e) => {
                    self.failures += 1;
                    anyhow::ensure!(self.failures < 10, "asking Slurm about the jobs failed 10 times: {e:#}");
                    tracing::warn!("asking Slurm about the jobs: {e:#}; trying again");
                    std::thread::sleep(Duration::from_secs_f64(self.interval));
                    self.interval = (self.interval * 1.5).min(max);
                    continue;
                }
            };
            let mut ended: Vec<(NodeIndex, Outcome)> = Vec::new();
            let mut still = Vec::new();
            for &ix in &waiting {
                match self.ended(plan, cache, ix, &states, done, &ended) {
                    Some(o) => ended.push((ix, o)),
                    None => still.push(ix),
                }
            }
            waiting = still;
            let changed = !ended.is_empty();
            self.interval = if changed { min } else { (self.interval * 1.5).min(max) };
            if changed {
                return Ok(ended);
            }
            std::thread::sleep(Duration::from_secs_f64(self.interval));
        }
    }

    fn in_flight(&self, plan: &Plan, cache: &Cache) -> Option<HashMap<String, InFlight>> {
        jobs_of(plan, cache).map(|m| {
            m.into_iter()
                .map(|(id, (r, st))| {
                    let f = InFlight {
                        job: r.job,
                        state: st.as_ref().map(|s| s.state.clone()),
                        reason: st.as_ref().map(|s| s.reason.clone()),
                        describe: st.as_ref().map(|s| s.describe()),
                        output: r.output,
                    };
                    (id, f)
                })
                .collect()
        })
    }

    fn busy(&self, cache: &Cache) -> Result<Vec<(String, String)>> {
        active_jobs(cache)
    }

    /// The records (jobs, scripts, output, pipeline copies) of other pipelines.
    fn records_beside(&self, cache: &Cache, pipelines: &HashSet<String>) -> Vec<PathBuf> {
        std::fs::read_dir(cache.root().join("slurm"))
            .map(|d| {
                d.flatten()
                    .filter(|e| !pipelines.contains(&*e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Slurm {
    /// The outcome of the stage at `ix` if its job ended (`states`: the jobs' states Slurm
    /// knows; `earlier`: what ended before it in this poll).
    fn ended(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        ix: NodeIndex,
        states: &HashMap<String, JobState>,
        done: &HashMap<NodeIndex, Outcome>,
        earlier: &[(NodeIndex, Outcome)],
    ) -> Option<Outcome> {
        let n = &plan.graph[ix];
        let Some(rec) = self.state.jobs.get(&n.id) else {
            return Some(Outcome::Failed("no Slurm job was recorded for it".into()));
        };
        let st = states.get(&rec.job);
        let failed_input = |d: &NodeIndex| {
            let o = done
                .get(d)
                .or_else(|| earlier.iter().find(|(e, _)| e == d).map(|(_, o)| o));
            matches!(o, Some(Outcome::Failed(_) | Outcome::Skipped))
        };
        Some(if let Some(seconds) = finished(cache, rec) {
            Outcome::Ran { seconds }
        } else if st.is_some_and(|s| s.held()) {
            let s = st.expect("checked");
            let msg = format!(
                "Slurm job {} is held ({}): it runs once released (`scontrol release {}`), and `robarch run` follows it again",
                rec.job,
                s.describe(),
                rec.job
            );
            crate::progress::eprintln(&format!("error: stage {} is not running: {msg}", n.id));
            Outcome::Failed(msg)
        } else if st.is_some_and(|s| !s.terminal()) {
            return None;
        } else if st.is_some_and(|s| s.state == "COMPLETED")
            && self.completed_at.entry(ix).or_insert_with(Instant::now).elapsed() < VISIBLE
        {
            // Its entry may not be visible here yet (a shared filesystem's attribute cache).
            return None;
        } else if plan.deps(ix).iter().any(failed_input) {
            Outcome::Skipped
        } else {
            let msg = failure(plan, cache, ix, rec, st);
            crate::progress::eprintln(&format!("error: stage {} failed: {msg}", n.id));
            Outcome::Failed(msg)
        })
    }
}

/// The Slurm jobs recorded in the cache (any pipeline) that are still queued or running, as
/// (pipeline, job): `gc` waits for them, as their inputs must stay. One query for all.
pub fn active_jobs(cache: &Cache) -> Result<Vec<(String, String)>> {
    let mut recs = Vec::new();
    let Ok(dirs) = std::fs::read_dir(cache.root().join("slurm")) else {
        return Ok(recs);
    };
    for d in dirs.flatten() {
        let pipeline = d.file_name().to_string_lossy().into_owned();
        for rec in State::load(cache.root(), &pipeline).jobs.into_values() {
            if !matches!(cache.lookup(&rec.key), Lookup::Hit(_)) {
                recs.push((pipeline.clone(), rec.job));
            }
        }
    }
    if recs.is_empty() {
        return Ok(recs);
    }
    let jobs: Vec<String> = recs.iter().map(|(_, j)| j.clone()).collect();
    let states = queue::query(&jobs)?;
    recs.retain(|(p, j)| {
        states
            .get(j)
            .is_some_and(|s| !s.terminal() && s.name.starts_with(&format!("robarch:{p}:")))
    });
    recs.sort();
    recs.dedup();
    Ok(recs)
}

/// For `robarch status`: the recorded job of each stage not cached, with its Slurm state (one
/// query for all). None when nothing was submitted for the pipeline.
pub fn jobs_of(plan: &Plan, cache: &Cache) -> Option<HashMap<String, (JobRec, Option<JobState>)>> {
    let state = State::load(cache.root(), &plan.name);
    let recs: Vec<(String, JobRec)> = plan
        .order
        .iter()
        .map(|&ix| &plan.graph[ix])
        .filter_map(|n| {
            let rec = state.jobs.get(&n.id)?;
            (rec.key == n.key && cache.inspect(&n.key) != crate::cache::Inspect::Cached)
                .then(|| (n.id.clone(), rec.clone()))
        })
        .collect();
    if recs.is_empty() {
        return None;
    }
    let jobs: Vec<String> = recs.iter().map(|(_, r)| r.job.clone()).collect();
    let states = match queue::query(&jobs) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("asking Slurm about the pipeline's jobs: {e:#}");
            HashMap::new()
        }
    };
    Some(
        recs.into_iter()
            .map(|(id, r)| {
                let st = states.get(&r.job).cloned();
                (id, (r, st))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "name: t\nseed: 1\ndatasets:\n  d: {source: synthetic, resolution: 8, synthetic: {classes: 3, train_size: 30, test_size: 9}}\nmodels:\n  resnet18: {preset: tiny}\n  vgg16_bn: {preset: tiny}\ntraining:\n  at:\n    attack: {norm: linf, eps: 8/255, steps: 2}\n    epochs: 1\n    optimizer: {name: adamw, lr: 1e-3}\nevaluation:\n  attacks:\n    clean: {}\n    fgsm: {eps: 8/255}\nanalysis: [sparsity]\n";

    fn plan(extra: &str) -> Plan {
        let l = crate::spec::load_str(Path::new("t.yaml"), format!("{P}{extra}")).unwrap();
        Plan::build(&l).unwrap()
    }

    /// Submits `plan` with fake job ids; returns each submission as (kind, stages, after).
    fn groups(plan: &Plan) -> Vec<(String, usize, Vec<String>)> {
        let mut job_of = HashMap::new();
        let mut out = Vec::new();
        submit_groups(plan, &plan.order, &mut job_of, |g| {
            let n = out.len();
            out.push((g.kind.clone(), g.stages.len(), g.after.clone()));
            Ok((0..g.stages.len())
                .map(|i| if g.stages.len() > 1 { format!("{n}_{i}") } else { n.to_string() })
                .collect())
        })
        .unwrap();
        out
    }

    #[test]
    fn stages_with_the_same_kind_resources_and_inputs_go_as_one_array() {
        let g = groups(&plan(""));
        let kinds: Vec<(&str, usize)> = g.iter().map(|(k, n, _)| (k.as_str(), *n)).collect();
        // One data stage; both trainings as one array (same input); each model's four
        // evaluations as one array after its own training task; each sparsity alone; the report.
        assert_eq!(
            kinds,
            [
                ("prepare", 1),
                ("train", 2),
                ("evaluate", 4),
                ("sparsity", 1),
                ("evaluate", 4),
                ("sparsity", 1),
                ("report", 1)
            ]
        );
        assert_eq!(g[1].2, ["0"], "trainings wait for the data");
        assert_eq!(g[2].2, ["0", "1_0"], "evaluations wait for their own training task");
        assert_eq!(g[3].2, ["1_0"]);
        assert_eq!(g[4].2, ["0", "1_1"]);
        let report = &g[6].2;
        for job in ["2_0", "2_3", "3", "4_0", "4_3", "5"] {
            assert!(report.contains(&job.to_string()), "the report waits for {job}: {report:?}");
        }
        // Other resources for one kind split nothing else; arrays off: one job per stage.
        let g = groups(&plan("executor:\n  slurm:\n    arrays: false\n"));
        assert_eq!(g.len(), plan("").order.len());
        assert!(g.iter().all(|(_, n, _)| *n == 1));
    }

    #[test]
    fn a_kinds_resources_become_sbatch_options() {
        let p = plan("executor:\n  slurm:\n    partition: gpu\n    account: proj\n    time: \"60\"\n    sbatch_args: [--constraint=a100]\n    resources:\n      default: {cpus: 2, mem: 4G}\n      train: {gres: 'gpu:1', time: '2-00:00:00', partition: long}\n");
        let args = resource_args(&p, &p.executor.slurm.resources_for("train"));
        assert_eq!(
            args,
            [
                "--partition=long",
                "--account=proj",
                "--time=2-00:00:00",
                "--cpus-per-task=2",
                "--mem=4G",
                "--gres=gpu:1",
                "--constraint=a100"
            ]
        );
        let args = resource_args(&p, &p.executor.slurm.resources_for("report"));
        assert_eq!(
            args,
            [
                "--partition=gpu",
                "--account=proj",
                "--time=60",
                "--cpus-per-task=2",
                "--mem=4G",
                "--constraint=a100"
            ]
        );
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
