//! The local executor: worker processes on this machine (`pool`), each placed on a slot (the
//! CPU's `-j` slots, a stage's `--threads` of them for one that computes; one stage per GPU).
//! The report and the correlation, which compute no tensors, run in this process.
use super::executor::Executor;
use super::stage::{self, Task};
use super::{devices, log_path, pool, Outcome, RunOptions};
use crate::cache::Cache;
use crate::plan::Plan;
use crate::progress::{self, StageProgress};
use crate::stages::{Stage, StageContext, Work};
use crate::vocab::device::Slot;
use anyhow::Result;
use petgraph::graph::NodeIndex;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

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
    /// How many device stages run at once: one per GPU, or on the CPU as many as the `-j`
    /// slots hold at `threads` each.
    fn stages_at_once(&self) -> usize {
        if self.cpu_only {
            self.cpu_free / self.threads
        } else {
            self.gpus_free.len()
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

/// What a running stage sends back: its place, its slot, and how it ended.
type Ended = (NodeIndex, Slot, Result<Outcome>);

/// The local executor's state during a run.
#[derive(Default)]
pub struct Local {
    run: Option<Running>,
}

struct Running {
    slots: Slots,
    opts: RunOptions,
    threads: rayon::ThreadPool,
    workers: Option<Arc<pool::Pool>>,
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    /// The pipeline's time left, shown on `overall`.
    eta: super::eta::Eta,
    /// The running stages' progress, for their done fractions.
    bars: HashMap<NodeIndex, StageProgress>,
    tx: Sender<Ended>,
    rx: Receiver<Ended>,
}

impl Running {
    fn show_eta(&self) {
        let left = self
            .eta
            .remaining(self.bars.iter().map(|(&ix, b)| (ix, b.fraction(), b.elapsed())));
        self.overall.set_message(super::eta::message(left));
    }
}

impl Local {
    fn running(&mut self) -> &mut Running {
        self.run
            .as_mut()
            .expect("prepared before stages are submitted")
    }
}

impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn label(&self) -> &'static str {
        "local"
    }
    fn uses_local_slots(&self) -> bool {
        true
    }

    /// Resolves the devices (`auto` trusts the driver's GPUs only if libtorch sees them too),
    /// and starts the worker pool when a stage needs one (a missing worker binary fails here,
    /// before anything runs).
    fn prepare(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        opts: &RunOptions,
        todo: &[NodeIndex],
    ) -> Result<()> {
        let choice = opts.device.as_deref().unwrap_or(&plan.device);
        let gpus = devices::gpus();
        let mut slots = devices::resolve(choice, &gpus)?;
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
        let workers = if todo.iter().any(|&ix| plan.graph[ix].stage.in_worker()) {
            let launch = pool::Launch {
                exe: pool::worker_exe()?,
                cache: cache.root().to_path_buf(),
                log_filter: opts.log_filter.clone(),
                relay_filter: opts.relay_filter.clone(),
                log_json: opts.log_json,
                gpus,
                numerics: plan.numerics,
            };
            Some(Arc::new(pool::Pool::new(launch)))
        } else {
            None
        };
        let multi = progress::multi();
        let overall = multi.add(indicatif::ProgressBar::new(todo.len() as u64));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} stages {elapsed} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        overall.set_prefix(plan.name.clone());
        // The clock moves between stage ends.
        overall.enable_steady_tick(std::time::Duration::from_millis(500));
        let free = Slots {
            cpu_free: opts.jobs.max(1),
            gpus_free: slots.iter().rev().copied().collect(),
            cpu_only: slots == [Slot::Cpu],
            threads: opts.threads.clamp(1, opts.jobs.max(1)),
        };
        let eta = super::eta::Eta::new(plan, cache, todo, free.stages_at_once());
        overall.set_message(super::eta::message(eta.remaining([])));
        let (tx, rx) = channel();
        self.run = Some(Running {
            slots: free,
            threads: rayon::ThreadPoolBuilder::new()
                .num_threads(opts.jobs.max(1) + slots.len() + 1)
                .build()?,
            opts: opts.clone(),
            workers,
            multi: multi.clone(),
            overall,
            eta,
            bars: HashMap::new(),
            tx,
            rx,
        });
        Ok(())
    }

    /// Starts each ready stage that a free slot takes, in a worker (tensors) or here.
    fn submit(
        &mut self,
        plan: &Plan,
        cache: &Cache,
        ready: &[NodeIndex],
        forced: &HashSet<NodeIndex>,
    ) -> Result<Vec<NodeIndex>> {
        let r = self.running();
        let mut taken = Vec::new();
        // Stages another process holds (a driver on another node sharing this cache) go last: a
        // slot would only wait for their entries, while other stages can run.
        let (free, held): (Vec<NodeIndex>, Vec<NodeIndex>) = ready
            .iter()
            .partition(|&&ix| cache.stage_holder(&plan.graph[ix].key).is_none());
        for ix in free.into_iter().chain(held) {
            let node = &plan.graph[ix];
            let Some(slot) = r.slots.take(node.stage.uses_device()) else {
                continue;
            };
            taken.push(ix);
            let bar = r.multi.add(indicatif::ProgressBar::new(0));
            bar.set_prefix(node.id.clone());
            let bar = StageProgress::new(bar);
            bar.tick();
            r.bars.insert(ix, bar.clone());
            tracing::info!(stage = %node.id, %slot, "starting");
            let job = pool::Job {
                task: Task::of(plan, ix),
                slot,
                threads: r.opts.threads,
                force: forced.contains(&ix),
                log: log_path(cache, plan, &node.id),
                stall: plan.executor.stall_minutes.for_kind(node.stage.kind()),
            };
            let (tx, cache) = (r.tx.clone(), cache.clone());
            let workers = r.workers.clone().filter(|_| node.stage.in_worker());
            r.threads.spawn(move || {
                let res = stage::catching(|| match &workers {
                    Some(w) => w.run(&job, &bar),
                    None => {
                        let stage = job.task.stage()?;
                        let (task, force) = (&job.task, job.force);
                        stage::run_stage(
                            task,
                            stage.as_ref(),
                            &cache,
                            slot,
                            force,
                            bar.clone(),
                            &Here,
                        )
                    }
                });
                bar.finish();
                let _ = tx.send((ix, slot, res));
            });
        }
        Ok(taken)
    }

    /// Waits for the next stage to end and gives its slot back.
    fn observe(
        &mut self,
        plan: &Plan,
        _cache: &Cache,
        _done: &HashMap<NodeIndex, Outcome>,
    ) -> Result<Vec<(NodeIndex, Outcome)>> {
        let r = self.running();
        // Every second without a stage ending, the time left is estimated again.
        let (ix, slot, res) = loop {
            match r.rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(ended) => break ended,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => r.show_eta(),
                Err(e) => panic!("a running stage holds a sender: {e}"),
            }
        };
        r.bars.remove(&ix);
        r.eta.finished(ix);
        r.overall.inc(1);
        r.show_eta();
        let node = &plan.graph[ix];
        r.slots.give(node.stage.uses_device(), slot);
        let o = match res {
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
        Ok(vec![(ix, o)])
    }

    /// Ends the workers, then sweeps again: a worker of a killed run can outlive it by a moment
    /// and miss the sweep at the start (its staging directory, checkpoints).
    fn finish(&mut self, cache: &Cache) -> Result<()> {
        if let Some(r) = self.run.take() {
            r.overall.finish_and_clear();
        }
        let _ = cache.lock_run(true)?;
        Ok(())
    }
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
