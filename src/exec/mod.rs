//! Executes a plan against the cache: decides what must run, schedules ready stages under
//! resource slots (CPU threads; one stage per GPU), and has each computed and committed. Stages
//! that compute with tensors run in worker processes (`pool`); the report and the correlation,
//! which do not, run here.
pub mod devices;
pub mod failure;
pub mod pool;
pub mod slurm;
pub mod stage;

use crate::cache::manifest::Manifest;
use crate::cache::{Cache, Lookup};
use crate::plan::Plan;
use crate::progress::{self, StageProgress};
use crate::stages::{Stage, StageContext, Work};
use crate::vocab::device::Slot;
use anyhow::Result;
use petgraph::graph::NodeIndex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Concurrent stages at most; on CPU also the number of CPU slots.
    pub jobs: usize,
    /// libtorch intra-op threads per device stage on CPU.
    pub threads: usize,
    pub dry_run: bool,
    /// Stage-id globs to recompute even if cached (their dependents rerun too).
    pub force: Vec<glob::Pattern>,
    pub keep_going: bool,
    /// Overrides the spec's `device`.
    pub device: Option<String>,
    /// Print one line per finished stage on stdout (off for `--format json`).
    pub stage_lines: bool,
    /// The pipeline file: workers load the same plan from it.
    pub spec: PathBuf,
    /// `ROBARCH_LOG`'s filter for the workers, and whether their logs are JSON lines.
    pub log_filter: String,
    pub log_json: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Cached,
    Ran {
        seconds: f64,
    },
    /// Would run (dry run).
    Pending,
    Failed(String),
    /// Not run because an input failed.
    Skipped,
    /// Submitted to Slurm (or adopted from an earlier submission) and not finished: `--detach`.
    Queued {
        job: String,
    },
}

pub struct RunSummary {
    pub outcomes: Vec<(String, Outcome)>,
}

impl RunSummary {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|(_, o)| f(o)).count()
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
}

/// Prints one line per finished stage on stdout (tests and scripts read these).
pub(crate) fn report_line(id: &str, o: &Outcome) {
    let line = match o {
        Outcome::Cached => format!("cached          {id}"),
        Outcome::Ran { seconds } => format!("ran    {seconds:>7.1}s  {id}"),
        Outcome::Pending => format!("would run       {id}"),
        Outcome::Failed(_) => format!("FAILED          {id}"),
        Outcome::Skipped => format!("skipped         {id}"),
        Outcome::Queued { job } => format!("queued {job:>8}  {id}"),
    };
    progress::println(&line);
}

struct Slots {
    cpu_free: usize,
    gpus_free: Vec<Slot>,
    cpu_only: bool,
    threads: usize,
}

impl Slots {
    /// Takes resources for a stage; returns the slot it runs on. A stage that computes on the
    /// device takes a GPU (or, on the CPU, its threads' worth of CPU slots); any other takes one
    /// CPU slot and never holds a GPU.
    fn take(&mut self, uses_device: bool) -> Option<Slot> {
        if uses_device && !self.cpu_only {
            self.gpus_free.pop()
        } else {
            let need = if uses_device { self.threads } else { 1 };
            if self.cpu_free >= need {
                self.cpu_free -= need;
                Some(Slot::Cpu)
            } else {
                None
            }
        }
    }
    fn give(&mut self, uses_device: bool, slot: Slot) {
        match slot {
            Slot::Cpu => self.cpu_free += if uses_device { self.threads } else { 1 },
            gpu => self.gpus_free.push(gpu),
        }
    }
}

/// Stages computed in the control plane: the report and the correlation, which read results
/// and compute no tensors.
struct Here;

impl stage::Compute for Here {
    fn compute(&self, stage: &dyn Stage, cx: &StageContext) -> Result<serde_json::Value> {
        match stage.work() {
            Work::Here(s) => s.run(cx),
            Work::Worker(_) => anyhow::bail!(
                "the {} stage computes with tensors: robarch-worker runs it",
                stage.kind()
            ),
        }
    }
    fn facts(&self, _slot: Slot) -> stage::Facts {
        stage::Facts {
            device: "cpu".into(),
            threads: None,
            kernels: String::new(),
            setting: "cpu".into(),
            cpu: String::new(),
            slot: String::new(),
        }
    }
}

/// Where a stage's log is kept: `<cache>/logs/<pipeline>/<stage id>.log`.
pub fn log_path(cache: &Cache, plan: &Plan, id: &str) -> PathBuf {
    log_path_in(cache.root(), &plan.name, id)
}

/// [`log_path`] for a cache directory that may not exist yet.
pub fn log_path_in(cache: &std::path::Path, pipeline: &str, id: &str) -> PathBuf {
    cache.join("logs").join(pipeline).join(format!("{id}.log"))
}

/// Executes `plan`. Stages whose entry is cached and valid are not run.
pub fn run(plan: &Plan, cache: &Cache, opts: &RunOptions) -> Result<RunSummary> {
    // A dry run writes nothing, not even the lock file (it only reads stamps).
    let _shared = if opts.dry_run {
        None
    } else {
        Some(cache.lock_run(true)?)
    };
    let choice = opts.device.as_deref().unwrap_or(&plan.device);
    let gpus = devices::gpus();
    let mut slots = if opts.dry_run {
        vec![Slot::Cpu]
    } else {
        devices::resolve(choice, &gpus)?
    };
    // `auto` trusts the driver's GPUs only if libtorch sees them too (a CPU build of torch does not).
    let auto = choice.split(',').any(|c| c.trim() == "auto");
    if auto && slots != [Slot::Cpu] && std::env::var_os(devices::FAKE_GPUS).is_none() {
        if let Some(0) = devices::libtorch_gpus(&pool::worker_exe()?) {
            tracing::warn!(
                gpus = slots.len(),
                "the NVIDIA driver shows GPUs but libtorch in robarch-worker sees none (a CPU build \
                 of torch?); `device: auto` runs on the CPU"
            );
            slots = vec![Slot::Cpu];
        }
    }

    let (forced, mut outcome, todo) = what_must_run(plan, cache, &opts.force, opts.dry_run);
    if opts.dry_run {
        for &ix in &todo {
            outcome.insert(ix, Outcome::Pending);
        }
    } else if !todo.is_empty() {
        let launch = pool::Launch {
            exe: PathBuf::new(),
            cache: cache.root().to_path_buf(),
            log_filter: opts.log_filter.clone(),
            log_json: opts.log_json,
            gpus,
            numerics: plan.numerics,
        };
        schedule(
            plan,
            cache,
            opts,
            launch,
            &slots,
            &todo,
            &forced,
            &mut outcome,
        )?;
    }
    let RunSummary { outcomes } = summarize(plan, outcome, opts, |o| {
        matches!(o, Outcome::Cached | Outcome::Pending | Outcome::Skipped)
    });
    if !opts.dry_run {
        remember(plan, cache, &outcomes)?;
        // Sweep again now that this run's workers are gone: a worker of a killed run can outlive
        // it by a moment and miss the sweep at the start (its staging directory, checkpoints).
        drop(_shared);
        let _ = cache.lock_run(true)?;
    }
    Ok(RunSummary { outcomes })
}

/// Every stage's outcome in plan order (a stage without one was skipped); prints the lines of
/// those `at_end` picks (the others were printed as they finished).
pub(crate) fn summarize(
    plan: &Plan,
    mut outcome: HashMap<NodeIndex, Outcome>,
    opts: &RunOptions,
    at_end: impl Fn(&Outcome) -> bool,
) -> RunSummary {
    let outcomes: Vec<(String, Outcome)> = plan
        .order
        .iter()
        .map(|&ix| {
            (
                plan.graph[ix].id.clone(),
                outcome.remove(&ix).unwrap_or(Outcome::Skipped),
            )
        })
        .collect();
    for (id, o) in &outcomes {
        if opts.stage_lines && at_end(o) {
            report_line(id, o);
        }
    }
    RunSummary { outcomes }
}

/// Records the run's finished stages (`runs/<pipeline>.json`), from which `status` explains
/// what went stale since.
pub(crate) fn remember(plan: &Plan, cache: &Cache, outcomes: &[(String, Outcome)]) -> Result<()> {
    let mut manifest = Manifest::load(cache.root(), &plan.name);
    for (&ix, (_, o)) in plan.order.iter().zip(outcomes) {
        if matches!(o, Outcome::Cached | Outcome::Ran { .. }) {
            manifest
                .stages
                .insert(plan.graph[ix].id.clone(), plan.graph[ix].record());
        }
    }
    manifest.save(cache.root(), &plan.name)
}

/// What must run: forced stages (and everything downstream), then every stage without a valid
/// entry; the outcome of those cached; the stages to run, in plan order.
#[allow(clippy::type_complexity)]
pub(crate) fn what_must_run(
    plan: &Plan,
    cache: &Cache,
    force: &[glob::Pattern],
    dry_run: bool,
) -> (HashSet<NodeIndex>, HashMap<NodeIndex, Outcome>, Vec<NodeIndex>) {
    let mut forced: HashSet<NodeIndex> = HashSet::new();
    for &ix in &plan.order {
        if force.iter().any(|g| g.matches(&plan.graph[ix].id)) {
            forced.insert(ix);
            forced.extend(plan.descendants(ix));
        }
    }
    let mut outcome: HashMap<NodeIndex, Outcome> = HashMap::new();
    let mut todo: Vec<NodeIndex> = Vec::new();
    for &ix in &plan.order {
        let n = &plan.graph[ix];
        if forced.contains(&ix) {
            todo.push(ix);
            continue;
        }
        // A dry run only looks (a corrupt entry is left where it is, no stamp refreshed).
        let found = if dry_run {
            match cache.inspect(&n.key) {
                crate::cache::Inspect::Cached => Ok(()),
                crate::cache::Inspect::Missing => Err(None),
                crate::cache::Inspect::Corrupt(why) | crate::cache::Inspect::Incomplete(why) => {
                    Err(Some(why))
                }
            }
        } else {
            match cache.lookup(&n.key) {
                Lookup::Hit(_) => Ok(()),
                Lookup::Missing => Err(None),
                Lookup::Corrupt(why) => Err(Some(why)),
            }
        };
        match found {
            Ok(()) => {
                outcome.insert(ix, Outcome::Cached);
            }
            Err(Some(why)) => {
                let verb = if dry_run { "would be recomputed" } else { "recomputing" };
                tracing::warn!(stage = %n.id, "cache entry was corrupt ({why}); {verb}");
                todo.push(ix);
            }
            Err(None) => todo.push(ix),
        }
    }
    (forced, outcome, todo)
}

/// The settings (`Provenance::setting`) the pipeline's cached training and evaluation entries
/// were computed under, each with its stages, in plan order; more than one means their numbers
/// may differ from a run under one setting in the last digits, and a trained model's accuracies
/// by more. Entries that predate the recording are left out.
pub fn settings(plan: &Plan, cache: &Cache) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for &ix in &plan.order {
        let n = &plan.graph[ix];
        if !n.stage.uses_device() {
            continue;
        }
        let Some(setting) = cache.read_meta(&n.key).and_then(|m| m.provenance.setting()) else {
            continue;
        };
        match out.iter_mut().find(|(s, _)| *s == setting) {
            Some((_, ids)) => ids.push(n.id.clone()),
            None => out.push((setting, vec![n.id.clone()])),
        }
    }
    out
}

/// The warning when a pipeline asks for portable numerics but some of its CPU entries were
/// computed without them (the setting enters no key, so a cache filled before reuses them).
pub fn unportable_warning(plan: &Plan, settings: &[(String, Vec<String>)]) -> Option<String> {
    if plan.numerics != crate::vocab::Numerics::Portable {
        return None;
    }
    let other: Vec<&(String, Vec<String>)> = settings
        .iter()
        .filter(|(s, _)| s.starts_with("cpu, ") && !s.contains(" portable "))
        .collect();
    let n: usize = other.iter().map(|(_, ids)| ids.len()).sum();
    let first = other.first()?;
    Some(format!(
        "`{}` asks for `numerics: portable`, but {n} of its training and evaluation entries were \
         computed without it (e.g. {} under `{}`): they were cached before, and the setting \
         enters no key; `robarch run --force 'train/*'` recomputes them under it",
        plan.name, first.1[0], first.0
    ))
}

/// The warning for a pipeline whose entries were computed under more than one setting.
pub fn mixed_settings_warning(plan: &Plan, settings: &[(String, Vec<String>)]) -> Option<String> {
    if settings.len() < 2 {
        return None;
    }
    let parts: Vec<String> = settings
        .iter()
        .map(|(s, ids)| format!("{} under `{s}` (e.g. {})", ids.len(), ids[0]))
        .collect();
    Some(format!(
        "the training and evaluation entries of `{}` were computed under different settings: {}. \
         Thread count and CPU kernel path change float rounding, so these numbers may differ \
         from a run under one setting; `robarch run --force 'train/*' --threads N` recomputes \
         them all under one (`robarch explain` shows an entry's)",
        plan.name,
        parts.join(", ")
    ))
}

#[allow(clippy::too_many_arguments)]
fn schedule(
    plan: &Plan,
    cache: &Cache,
    opts: &RunOptions,
    mut launch: pool::Launch,
    devices: &[Slot],
    todo: &[NodeIndex],
    forced: &HashSet<NodeIndex>,
    outcome: &mut HashMap<NodeIndex, Outcome>,
) -> Result<()> {
    let cpu_only = devices == [Slot::Cpu];
    let mut slots = Slots {
        cpu_free: opts.jobs.max(1),
        gpus_free: devices.iter().rev().copied().collect(),
        cpu_only,
        threads: opts.threads.clamp(1, opts.jobs.max(1)),
    };
    let todo_set: HashSet<NodeIndex> = todo.iter().copied().collect();
    let mut waiting: HashMap<NodeIndex, usize> = todo
        .iter()
        .map(|&ix| {
            (
                ix,
                plan.deps(ix)
                    .iter()
                    .filter(|d| todo_set.contains(d))
                    .count(),
            )
        })
        .collect();
    let multi = progress::multi();
    let overall = multi.add(indicatif::ProgressBar::new(todo.len() as u64));
    overall.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {pos}/{len} stages {elapsed}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    overall.set_prefix(plan.name.clone());
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1) + devices.len() + 1)
        .build()?;
    // Workers are started only when a stage needs one; a missing worker binary fails here,
    // before anything runs.
    let workers = if todo.iter().any(|&ix| plan.graph[ix].stage.in_worker()) {
        launch.exe = pool::worker_exe()?;
        Some(pool::Pool::new(launch))
    } else {
        None
    };
    let workers = workers.as_ref();
    let (tx, rx) = std::sync::mpsc::channel::<(NodeIndex, Slot, Result<Outcome>)>();
    let mut running = 0usize;
    let mut stop = false;
    threads.in_place_scope(|scope| loop {
        if !stop {
            for &ix in todo {
                if waiting.get(&ix) != Some(&0) || outcome.contains_key(&ix) {
                    continue;
                }
                let uses_device = plan.graph[ix].stage.uses_device();
                let Some(slot) = slots.take(uses_device) else {
                    continue;
                };
                waiting.remove(&ix);
                running += 1;
                let tx = tx.clone();
                let bar = multi.add(indicatif::ProgressBar::new(0));
                bar.set_prefix(plan.graph[ix].id.clone());
                let bar = StageProgress::new(bar);
                let force = forced.contains(&ix);
                let node = &plan.graph[ix];
                tracing::info!(stage = %node.id, %slot, "starting");
                let job = pool::Job {
                    task: stage::Task::of(plan, ix),
                    slot,
                    threads: opts.threads,
                    force,
                    log: log_path(cache, plan, &node.id),
                    stall: plan.executor.stall_minutes.for_kind(node.stage.kind()),
                };
                scope.spawn(move |_| {
                    let r = stage::catching(|| match workers {
                        Some(w) if node.stage.in_worker() => w.run(&job, &bar),
                        _ => stage::run_stage(
                            &job.task,
                            node.stage.as_ref(),
                            cache,
                            slot,
                            force,
                            bar.clone(),
                            &Here,
                        ),
                    });
                    bar.finish();
                    let _ = tx.send((ix, slot, r));
                });
            }
        }
        if running == 0 {
            break;
        }
        let (ix, dev, r) = rx.recv().expect("workers hold a sender while running");
        running -= 1;
        overall.inc(1);
        slots.give(plan.graph[ix].stage.uses_device(), dev);
        let node = &plan.graph[ix];
        let o = match r {
            Ok(o) => o,
            Err(e) => {
                let params = serde_json::to_string(&node.stage.params()).unwrap_or_default();
                progress::eprintln(&format!(
                    "error: stage {} failed: {e:#}\n  params: {params}",
                    node.id
                ));
                Outcome::Failed(format!("{e:#}"))
            }
        };
        if opts.stage_lines {
            report_line(&node.id, &o);
        }
        let failed = matches!(o, Outcome::Failed(_));
        for d in plan.descendants(ix) {
            if failed {
                if waiting.remove(&d).is_some() {
                    outcome.insert(d, Outcome::Skipped);
                }
            } else if plan.deps(d).contains(&ix) {
                if let Some(w) = waiting.get_mut(&d) {
                    *w -= 1;
                }
            }
        }
        if failed && !opts.keep_going {
            stop = true;
        }
        outcome.insert(ix, o);
    });
    overall.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gpu_runs_one_stage_and_cpu_stages_take_their_threads() {
        let mut s = Slots {
            cpu_free: 2,
            gpus_free: vec![Slot::Cuda(1), Slot::Cuda(0)],
            cpu_only: false,
            threads: 1,
        };
        assert_eq!(s.take(true), Some(Slot::Cuda(0)));
        assert_eq!(s.take(true), Some(Slot::Cuda(1)));
        assert_eq!(s.take(true), None, "one stage per GPU");
        // Stages without tensors on the device never hold a GPU.
        assert_eq!(s.take(false), Some(Slot::Cpu));
        assert_eq!(s.take(false), Some(Slot::Cpu));
        assert_eq!(s.take(false), None);
        s.give(true, Slot::Cuda(1));
        assert_eq!(s.take(true), Some(Slot::Cuda(1)));

        // On the CPU, a device stage takes its threads' worth of the -j slots: their thread
        // counts never add up to more than -j.
        let mut c = Slots {
            cpu_free: 4,
            gpus_free: Vec::new(),
            cpu_only: true,
            threads: 2,
        };
        assert_eq!(c.take(true), Some(Slot::Cpu));
        assert_eq!(c.take(true), Some(Slot::Cpu));
        assert_eq!(c.take(true), None);
        assert_eq!(c.take(false), None);
        c.give(true, Slot::Cpu);
        assert_eq!(c.take(false), Some(Slot::Cpu));
        assert_eq!(c.take(false), Some(Slot::Cpu));
        assert_eq!(c.take(false), None);
    }
}
