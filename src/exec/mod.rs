//! Executes a plan against the cache: decides what must run, offers stages to an executor
//! (`executor::Executor`: `local` worker processes under resource slots, or `slurm` jobs) as
//! they become ready, and records the run. Stages that compute with tensors run in worker
//! processes (`pool`); locally, the report and the correlation, which do not, run here.
pub mod devices;
pub mod eta;
pub mod executor;
pub mod failure;
pub mod local;
pub mod pool;
pub mod slurm;
pub mod stage;

use crate::cache::manifest::Manifest;
use crate::cache::{Cache, Lookup};
use crate::plan::Plan;
use crate::spec::executor::ExecutorKind;
use crate::progress;
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
    /// The pipeline file (a Slurm pilot runs `robarch run` on a copy of it).
    pub spec: PathBuf,
    /// `ROBARCH_LOG`'s filter for the workers, and whether their logs are JSON lines.
    pub log_filter: String,
    /// The filter of the worker log lines shown on stderr (`-v`, `-q`).
    pub relay_filter: String,
    pub log_json: bool,
    /// Print a line for cached stages too (`-v`), not only their count.
    pub cached_lines: bool,
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
    /// What the executor adds to a dry run (how it would submit the stages).
    pub note: Option<String>,
}

impl RunSummary {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|(_, o)| f(o)).count()
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }
}

/// Prints one line per finished stage on stdout (a cached one only with `cached_lines`).
pub(crate) fn report_line(opts: &RunOptions, id: &str, o: &Outcome) {
    if !opts.stage_lines || (matches!(o, Outcome::Cached) && !opts.cached_lines) {
        return;
    }
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

/// Where a stage's log is kept: `<cache>/logs/<pipeline>/<stage id>.log`.
pub fn log_path(cache: &Cache, plan: &Plan, id: &str) -> PathBuf {
    log_path_in(cache.root(), &plan.name, id)
}

/// [`log_path`] for a cache directory that may not exist yet.
pub fn log_path_in(cache: &std::path::Path, pipeline: &str, id: &str) -> PathBuf {
    cache.join("logs").join(pipeline).join(format!("{id}.log"))
}

/// The executor of `kind`.
pub fn executor_of(kind: ExecutorKind, sub: executor::Submission) -> Box<dyn executor::Executor> {
    match kind {
        ExecutorKind::Local => Box::new(local::Local::default()),
        ExecutorKind::Slurm => Box::new(slurm::Slurm::new(sub)),
    }
}

/// Every executor, for what asks all of them (`status`, `gc`).
pub fn executors() -> Vec<Box<dyn executor::Executor>> {
    use clap::ValueEnum;
    ExecutorKind::value_variants()
        .iter()
        .map(|&k| executor_of(k, Default::default()))
        .collect()
}

/// Executes `plan` with `ex`: what must run (forced stages and everything downstream, then
/// every stage without a valid entry), then stages are offered to the executor as they become
/// ready, their completions recorded, and the descendants of a failed stage skipped. Stages
/// whose entry is cached and valid are not run.
pub fn run(
    plan: &Plan,
    cache: &Cache,
    opts: &RunOptions,
    ex: &mut dyn executor::Executor,
) -> Result<RunSummary> {
    // A dry run writes nothing, not even the lock file (it only reads stamps).
    let shared = if opts.dry_run {
        None
    } else {
        Some(cache.lock_run(true)?)
    };
    let (forced, mut outcome, todo) = what_must_run(plan, cache, &opts.force, opts.dry_run);
    if opts.dry_run {
        for &ix in &todo {
            outcome.insert(ix, Outcome::Pending);
        }
        let mut summary = summarize(plan, outcome, opts, &HashSet::new());
        summary.note = ex.dry_run(plan, &todo)?;
        return Ok(summary);
    }
    let mut printed = HashSet::new();
    // Prepared even with nothing to run: a device that is not there fails every run alike.
    ex.prepare(plan, cache, opts, &todo)?;
    drive(plan, cache, opts, ex, &todo, &forced, &mut outcome, &mut printed)?;
    let detached = ex.detached();
    if let Some(jobs) = &detached {
        for &ix in &todo {
            if !outcome.contains_key(&ix) {
                let job = jobs.get(&ix).cloned().unwrap_or_default();
                outcome.insert(ix, Outcome::Queued { job });
            }
        }
    }
    let RunSummary { outcomes, .. } = summarize(plan, outcome, opts, &printed);
    if detached.is_none() {
        remember(plan, cache, &outcomes)?;
    }
    drop(shared);
    ex.finish(cache)?;
    Ok(RunSummary {
        outcomes,
        note: None,
    })
}

/// The scheduler's loop: adopt what an earlier run left in flight (cancelling an adopted stage
/// whose input must run again), then offer ready stages to the executor and record what ends,
/// until every stage of `todo` has an outcome (or, detached, was submitted). Each stage that
/// ends prints its line (`printed`).
#[allow(clippy::too_many_arguments)]
fn drive(
    plan: &Plan,
    cache: &Cache,
    opts: &RunOptions,
    ex: &mut dyn executor::Executor,
    todo: &[NodeIndex],
    forced: &HashSet<NodeIndex>,
    outcome: &mut HashMap<NodeIndex, Outcome>,
    printed: &mut HashSet<NodeIndex>,
) -> Result<()> {
    let mut submitted: HashSet<NodeIndex> = ex.adopt(plan, cache, todo, forced)?.into_iter().collect();
    let in_todo: HashSet<NodeIndex> = todo.iter().copied().collect();
    // An adopted stage whose input is submitted again would wait on the old, dead job: it is
    // cancelled and submitted again too, after its input.
    let stale: Vec<NodeIndex> = todo
        .iter()
        .copied()
        .filter(|ix| submitted.contains(ix))
        .filter(|&ix| {
            plan.deps(ix)
                .iter()
                .any(|d| in_todo.contains(d) && !submitted.contains(d))
        })
        .collect();
    if !stale.is_empty() {
        for ix in &stale {
            submitted.remove(ix);
        }
        if let Err(e) = ex.cancel(plan, &stale) {
            tracing::warn!("cancelling jobs that wait on resubmitted inputs: {e:#}");
        }
    }
    let mut stop = false;
    loop {
        if !stop {
            let ready = ready(plan, todo, &in_todo, &submitted, outcome, ex.chains());
            if !ready.is_empty() {
                submitted.extend(ex.submit(plan, cache, &ready, forced)?);
            }
        }
        let in_flight = submitted.iter().any(|ix| !outcome.contains_key(ix));
        if !in_flight || ex.detached().is_some() {
            break;
        }
        for (ix, o) in ex.observe(plan, cache, outcome)? {
            report_line(opts, &plan.graph[ix].id, &o);
            printed.insert(ix);
            if matches!(o, Outcome::Failed(_)) {
                stop |= !opts.keep_going;
                for d in plan.descendants(ix) {
                    if in_todo.contains(&d) && !submitted.contains(&d) && !outcome.contains_key(&d) {
                        outcome.insert(d, Outcome::Skipped);
                    }
                }
            }
            outcome.insert(ix, o);
        }
    }
    Ok(())
}

/// The stages of `todo` not submitted and without an outcome whose inputs in `todo` have
/// succeeded (or, where the executor `chains` them, were submitted), in plan order (`in_todo`:
/// `todo` as a set).
fn ready(
    plan: &Plan,
    todo: &[NodeIndex],
    in_todo: &HashSet<NodeIndex>,
    submitted: &HashSet<NodeIndex>,
    outcome: &HashMap<NodeIndex, Outcome>,
    chains: bool,
) -> Vec<NodeIndex> {
    let mut taken: HashSet<NodeIndex> = HashSet::new();
    let mut out = Vec::new();
    for &ix in todo {
        if submitted.contains(&ix) || outcome.contains_key(&ix) {
            continue;
        }
        let ok = plan.deps(ix).iter().all(|d| {
            !in_todo.contains(d)
                || matches!(outcome.get(d), Some(Outcome::Ran { .. } | Outcome::Cached))
                || (chains
                    && (submitted.contains(d) || taken.contains(d))
                    && !matches!(outcome.get(d), Some(Outcome::Failed(_) | Outcome::Skipped)))
        });
        if ok {
            taken.insert(ix);
            out.push(ix);
        }
    }
    out
}

/// Every stage's outcome in plan order (a stage without one was skipped); prints the lines of
/// those not `printed` as they finished.
pub(crate) fn summarize(
    plan: &Plan,
    mut outcome: HashMap<NodeIndex, Outcome>,
    opts: &RunOptions,
    printed: &HashSet<NodeIndex>,
) -> RunSummary {
    let mut outcomes = Vec::new();
    for &ix in &plan.order {
        let id = plan.graph[ix].id.clone();
        let o = outcome.remove(&ix).unwrap_or(Outcome::Skipped);
        if !printed.contains(&ix) {
            report_line(opts, &id, &o);
        }
        outcomes.push((id, o));
    }
    RunSummary {
        outcomes,
        note: None,
    }
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
