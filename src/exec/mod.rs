//! Executes a plan against the cache: decides what must run, schedules ready stages on a rayon
//! pool under resource slots (CPU threads; one stage per CUDA device), and commits results.
use crate::cache::manifest::Manifest;
use crate::cache::{Cache, Entry, EntryMeta, Lookup, Provenance};
use crate::plan::Plan;
use crate::progress::{self, StageProgress};
use crate::stages::StageContext;
use crate::torch::device;
use anyhow::{Context, Result};
use petgraph::graph::NodeIndex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use tch::Device;

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
fn report_line(id: &str, o: &Outcome) {
    let line = match o {
        Outcome::Cached => format!("cached          {id}"),
        Outcome::Ran { seconds } => format!("ran    {seconds:>7.1}s  {id}"),
        Outcome::Pending => format!("would run       {id}"),
        Outcome::Failed(_) => format!("FAILED          {id}"),
        Outcome::Skipped => format!("skipped         {id}"),
    };
    progress::println(&line);
}

struct Slots {
    cpu_free: usize,
    devices_free: Vec<Device>,
    cpu_only: bool,
    threads: usize,
}

impl Slots {
    /// Takes resources for a stage; returns the device it should use.
    fn take(&mut self, uses_device: bool) -> Option<Device> {
        if uses_device && !self.cpu_only {
            let d = self.devices_free.pop()?;
            Some(d)
        } else {
            let need = if uses_device { self.threads } else { 1 };
            if self.cpu_free >= need {
                self.cpu_free -= need;
                Some(Device::Cpu)
            } else {
                None
            }
        }
    }
    fn give(&mut self, uses_device: bool, d: Device) {
        match d {
            Device::Cpu => self.cpu_free += if uses_device { self.threads } else { 1 },
            d => self.devices_free.push(d),
        }
    }
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A stage's error from a full or read-only filesystem, with what to do added: the
/// stage writes its outputs and checkpoints under the cache (io errors are recognised by kind;
/// those libtorch and safetensors pass on only as text, by the operating system's message).
fn name_full_disk(e: anyhow::Error, cache: &std::path::Path) -> anyhow::Error {
    use std::io::ErrorKind::*;
    let by_kind = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                StorageFull | ReadOnlyFilesystem | QuotaExceeded | FileTooLarge
            )
        })
    });
    let text = format!("{e:#}");
    let by_text = [
        "No space left on device",
        "Read-only file system",
        "Disk quota exceeded",
    ]
    .iter()
    .any(|m| text.contains(m));
    if by_kind || by_text {
        e.context(format!(
            "the stage writes its outputs and checkpoints under {} (tmp/, ckpt/): free space \
             there, or point `--cache DIR` at a writable filesystem with room",
            cache.display()
        ))
    } else {
        e
    }
}

/// Runs one stage: lock, re-check the cache (another process may have finished it), compute, commit.
fn run_stage(
    plan: &Plan,
    cache: &Cache,
    ix: NodeIndex,
    device: Device,
    force: bool,
    bar: StageProgress,
) -> Result<Outcome> {
    let node = &plan.graph[ix];
    let _lock = cache.lock_stage(&node.key)?;
    if !force {
        if let Lookup::Hit(_) = cache.lookup(&node.key) {
            return Ok(Outcome::Cached);
        }
    }
    let mut inputs: BTreeMap<String, Entry> = BTreeMap::new();
    for e in plan.graph.edges_directed(ix, petgraph::Direction::Incoming) {
        let src = &plan.graph[petgraph::visit::EdgeRef::source(&e)];
        // The files this stage reads are hashed here (the scheduler only compared stamps).
        match cache.load(&src.key) {
            Lookup::Hit(entry) => inputs.insert(e.weight().clone(), entry),
            Lookup::Corrupt(why) => anyhow::bail!(
                "input {} was corrupt ({why}) and has been removed; run again to recompute it",
                src.id
            ),
            Lookup::Missing => anyhow::bail!("input {} is not in the cache", src.id),
        };
    }
    let staged = cache.stage_dir()?;
    let start = Instant::now();
    let cx = StageContext {
        out: staged.path(),
        inputs: &inputs,
        device,
        checkpoints: cache.checkpoint_dir(&node.key),
        progress: bar,
        notes: Default::default(),
        setting: Default::default(),
    };
    let summary = node
        .stage
        .run(&cx)
        .map_err(|e| name_full_disk(e, cache.root()))?;
    let notes = cx.notes.into_inner().unwrap_or_else(|e| e.into_inner());
    let here = crate::torch::setting(device);
    let setting = cx
        .setting
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(|| here.clone());
    let seconds = start.elapsed().as_secs_f64();
    let meta = EntryMeta {
        key: node.key.clone(),
        kind: node.stage.kind().into(),
        version: node.stage.version(),
        stage: node.id.clone(),
        params: node.stage.params(),
        inputs: node.inputs.clone(),
        files: Default::default(),
        summary,
        provenance: Provenance {
            robarch_version: env!("CARGO_PKG_VERSION").into(),
            device: device::describe(device),
            host: host(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            wall_seconds: seconds,
            // This process's thread count, unless the stage's outputs came from another setting
            // (see `setting`).
            threads: (device == Device::Cpu && setting == here).then(crate::torch::cpu::threads),
            kernels: crate::torch::cpu::kernel_path(),
            setting,
            cpu: crate::torch::cpu::model_name(),
            notes,
        },
    };
    cache
        .commit(staged, meta)
        .map_err(|e| name_full_disk(e, cache.root()))?;
    let ckpt = cache.checkpoint_dir(&node.key);
    if ckpt.exists() {
        std::fs::remove_dir_all(&ckpt).context("removing finished checkpoints")?;
    }
    Ok(Outcome::Ran { seconds })
}

/// Executes `plan`. Stages whose entry is cached and valid are not run.
pub fn run(plan: &Plan, cache: &Cache, opts: &RunOptions) -> Result<RunSummary> {
    let _shared = cache.lock_run(!opts.dry_run)?;
    let choice = device::parse_device(opts.device.as_deref().unwrap_or(&plan.device))
        .map_err(|e| anyhow::anyhow!("{e}; use auto, cpu, cuda or cuda:N"))?;
    let devices = if opts.dry_run {
        vec![Device::Cpu]
    } else {
        device::resolve(choice)?
    };
    tch::set_num_threads(opts.threads as i32);

    // What must run: forced stages (and everything downstream), then every stage without a valid entry.
    let mut forced: HashSet<NodeIndex> = HashSet::new();
    for &ix in &plan.order {
        if opts.force.iter().any(|g| g.matches(&plan.graph[ix].id)) {
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
        match cache.lookup(&n.key) {
            Lookup::Hit(_) => {
                outcome.insert(ix, Outcome::Cached);
            }
            Lookup::Corrupt(why) => {
                tracing::warn!(stage = %n.id, "cache entry was corrupt ({why}); recomputing");
                todo.push(ix);
            }
            Lookup::Missing => todo.push(ix),
        }
    }
    if opts.dry_run {
        for &ix in &todo {
            outcome.insert(ix, Outcome::Pending);
        }
    } else if !todo.is_empty() {
        schedule(plan, cache, opts, &devices, &todo, &forced, &mut outcome)?;
    }
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
        if opts.stage_lines && matches!(o, Outcome::Cached | Outcome::Pending | Outcome::Skipped) {
            report_line(id, o);
        }
    }
    if !opts.dry_run {
        let mut manifest = Manifest::load(cache.root(), &plan.name);
        for (&ix, (_, o)) in plan.order.iter().zip(&outcomes) {
            if matches!(o, Outcome::Cached | Outcome::Ran { .. }) {
                manifest
                    .stages
                    .insert(plan.graph[ix].id.clone(), plan.graph[ix].record());
            }
        }
        manifest.save(cache.root(), &plan.name)?;
    }
    Ok(RunSummary { outcomes })
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

fn schedule(
    plan: &Plan,
    cache: &Cache,
    opts: &RunOptions,
    devices: &[Device],
    todo: &[NodeIndex],
    forced: &HashSet<NodeIndex>,
    outcome: &mut HashMap<NodeIndex, Outcome>,
) -> Result<()> {
    let cpu_only = devices == [Device::Cpu];
    let mut slots = Slots {
        cpu_free: opts.jobs.max(1),
        devices_free: devices.iter().rev().copied().collect(),
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
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1) + devices.len() + 1)
        .build()?;
    let (tx, rx) = std::sync::mpsc::channel::<(NodeIndex, Device, Result<Outcome>)>();
    let mut running = 0usize;
    let mut stop = false;
    pool.in_place_scope(|scope| {
        loop {
            if !stop {
                for &ix in todo {
                    if waiting.get(&ix) != Some(&0) || outcome.contains_key(&ix) {
                        continue;
                    }
                    let uses_device = plan.graph[ix].stage.uses_device();
                    let Some(device) = slots.take(uses_device) else { continue };
                    waiting.remove(&ix);
                    running += 1;
                    let tx = tx.clone();
                    let bar = multi.add(indicatif::ProgressBar::new(0));
                    bar.set_prefix(plan.graph[ix].id.clone());
                    let bar = StageProgress::new(bar);
                    let force = forced.contains(&ix);
                    tracing::info!(stage = %plan.graph[ix].id, device = %device::describe(device), "starting");
                    scope.spawn(move |_| {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_stage(plan, cache, ix, device, force, bar.clone())))
                            .unwrap_or_else(|p| Err(anyhow::anyhow!("stage panicked: {}", p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())));
                        bar.finish();
                        let _ = tx.send((ix, device, r));
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
                    progress::eprintln(&format!("error: stage {} failed: {e:#}\n  params: {params}", node.id));
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
        }
    });
    overall.finish_and_clear();
    Ok(())
}
