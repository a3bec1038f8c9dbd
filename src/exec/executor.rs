//! The executor interface: where a plan's stages run. The scheduler (`exec::run`) owns the run:
//! what must run, which stages are ready, what a failure skips, the record of the run; an
//! executor submits ready stages, reports their completions, cancels, and adopts what an earlier
//! run left in flight. `local` (worker processes on this machine) and `slurm` (jobs on a shared
//! cache) are its two implementations; a third is a file implementing [`Executor`], an
//! `ExecutorKind` variant and a line in `exec::executor_of`.
use super::{Outcome, RunOptions};
use crate::cache::Cache;
use crate::plan::Plan;
use anyhow::Result;
use petgraph::graph::NodeIndex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// Options of `robarch run` that only some executors take.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// Submit and return: the stages go on without this process (`--detach`).
    pub detach: bool,
    /// One allocation runs every stage (`--pilot`).
    pub pilot: bool,
    /// Where a pilot writes the report (`--reports`).
    pub reports: PathBuf,
}

/// A stage in flight in an executor's records (for `status`).
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The job that runs it.
    pub job: String,
    /// The job's state as the executor knows it (`None`: no longer known).
    pub state: Option<String>,
    /// Why it waits, where the executor says.
    pub reason: Option<String>,
    /// The state in words, e.g. `PENDING (Resources)`.
    pub describe: Option<String>,
    /// The job's own output file.
    pub output: PathBuf,
}

/// Where a plan's stages run.
pub trait Executor {
    /// Its `executor.kind` (the key of its records in `status --format json`).
    fn name(&self) -> &'static str;
    /// How messages name it (`Slurm job 12`).
    fn label(&self) -> &'static str;
    /// Whether it shares this machine's CPU slots (`-j`) among the stages it runs.
    fn uses_local_slots(&self) -> bool {
        false
    }
    /// Whether it takes `--detach` and `--pilot`.
    fn submits_jobs(&self) -> bool {
        false
    }
    /// Whether it takes a stage whose inputs are submitted but not done (it orders them itself,
    /// e.g. by job dependencies); otherwise a stage is ready once its inputs are done.
    fn chains(&self) -> bool {
        false
    }
    /// What a dry run prints after its `would run` lines, if anything.
    fn dry_run(&self, _plan: &Plan, _todo: &[NodeIndex]) -> Result<Option<String>> {
        Ok(None)
    }
    /// Gets ready to run `todo` (devices, worker processes, records).
    fn prepare(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        opts: &RunOptions,
        todo: &[NodeIndex],
    ) -> Result<()>;
    /// The stages of `todo` an earlier run left in flight and still valid (not in `forced`): the
    /// scheduler follows them instead of submitting them again.
    fn adopt(
        &mut self,
        _plan: &Plan,
        _cache: &Cache,
        _todo: &[NodeIndex],
        _forced: &HashSet<NodeIndex>,
    ) -> Result<Vec<NodeIndex>> {
        Ok(Vec::new())
    }
    /// Stops stages in flight (adopted stages whose input is submitted again).
    fn cancel(&mut self, _plan: &Plan, _stages: &[NodeIndex]) -> Result<()> {
        Ok(())
    }
    /// Submits stages that are ready, in plan order; returns those it took (the others wait for
    /// capacity and are offered again).
    fn submit(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        ready: &[NodeIndex],
        forced: &HashSet<NodeIndex>,
    ) -> Result<Vec<NodeIndex>>;
    /// Waits for stages in flight to end; returns those that did, with their outcomes (`done`:
    /// the outcomes so far, to tell a stage skipped for a failed input from a failed one).
    fn observe(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        done: &HashMap<NodeIndex, Outcome>,
    ) -> Result<Vec<(NodeIndex, Outcome)>>;
    /// With `--detach`: the stages in flight go on without this process; their job ids.
    fn detached(&self) -> Option<HashMap<NodeIndex, String>> {
        None
    }
    /// After the run: what this executor leaves behind.
    fn finish(&mut self, _cache: &Cache) -> Result<()> {
        Ok(())
    }
    /// Stages of `plan` in flight in this executor's records, by stage id (`status`); `None`
    /// where it keeps none.
    fn in_flight(&self, _plan: &Plan, _cache: &Cache) -> Option<HashMap<String, InFlight>> {
        None
    }
    /// Jobs of any pipeline of `cache` still queued or running, as (pipeline, job): `gc` waits
    /// for them.
    fn busy(&self, _cache: &Cache) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    /// Its records in `cache` of pipelines other than `pipelines` (`gc` removes them).
    fn records_beside(&self, _cache: &Cache, _pipelines: &HashSet<String>) -> Vec<PathBuf> {
        Vec::new()
    }
}
