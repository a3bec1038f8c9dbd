//! Running one stage against the cache, wherever it runs (a worker process for stages that
//! compute with tensors, the control plane for the report and the correlation): lock it,
//! re-check the cache (another process may have finished it), load and verify its inputs,
//! compute into a staging directory, commit with its provenance.
use super::Outcome;
use crate::cache::{Cache, Entry, EntryMeta, Lookup, Provenance};
use crate::plan::Plan;
use crate::progress::StageProgress;
use crate::stages::{Stage, StageContext};
use crate::vocab::device::Slot;
use anyhow::{Context, Result};
use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// One stage as the control plane planned it: all a process needs to run it. A worker (or a
/// Slurm job) receives this and never reads the pipeline file: it rebuilds the stage from its
/// kind and parameters ([`Task::stage`]) and checks that the rebuilt stage has the planned key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// The stage's id in the plan, e.g. `eval/digits/vit/pgd-linf/fgsm/test`.
    pub id: String,
    pub key: String,
    pub kind: String,
    pub version: u32,
    /// The stage's key parameters (its serialised struct).
    pub params: Value,
    /// What it reads that is not part of its key (`StageKind::locations`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub locations: Value,
    /// Input role → the stage that produces it.
    pub inputs: BTreeMap<String, TaskInput>,
    /// Whether it computes on the compute device (a GPU where there is one).
    pub uses_device: bool,
    /// How CPU kernels are chosen (`numerics:`), applied by the process before any tensor.
    pub numerics: crate::vocab::Numerics,
}

/// A stage's input as its task names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskInput {
    pub id: String,
    pub key: String,
}

impl Task {
    /// The task of the stage at `ix`.
    pub fn of(plan: &Plan, ix: NodeIndex) -> Task {
        let node = &plan.graph[ix];
        let inputs = plan
            .graph
            .edges_directed(ix, petgraph::Direction::Incoming)
            .map(|e| {
                let src = &plan.graph[petgraph::visit::EdgeRef::source(&e)];
                let input = TaskInput {
                    id: src.id.clone(),
                    key: src.key.clone(),
                };
                (e.weight().clone(), input)
            })
            .collect();
        Task {
            id: node.id.clone(),
            key: node.key.clone(),
            kind: node.stage.kind().to_string(),
            version: node.stage.version(),
            params: node.stage.params(),
            locations: node.stage.locations(),
            inputs,
            uses_device: node.stage.uses_device(),
            numerics: plan.numerics,
        }
    }

    /// The input keys by role, as the stage's key holds them.
    pub fn input_keys(&self) -> BTreeMap<String, String> {
        self.inputs
            .iter()
            .map(|(role, i)| (role.clone(), i.key.clone()))
            .collect()
    }

    /// The stage, rebuilt from its kind and parameters; fails unless it has the planned key (a
    /// worker of another robarch version, or a description edited on its way).
    pub fn stage(&self) -> Result<Box<dyn Stage>> {
        let stage = crate::stages::rebuild(&self.kind, &self.params, &self.locations)
            .with_context(|| format!("rebuilding stage {}", self.id))?;
        let key = crate::plan::stage_key(
            stage.kind(),
            stage.version(),
            &stage.params(),
            &self.input_keys(),
        );
        anyhow::ensure!(
            key == self.key && stage.version() == self.version,
            "stage {}: its description rebuilds a stage with key {key} (version {}), not the planned {} (version {}): robarch and robarch-worker differ in version; rebuild both (make build)",
            self.id,
            stage.version(),
            self.key,
            self.version
        );
        Ok(stage)
    }
}

/// What an entry's provenance records of the process that computed it (see
/// `cache::Provenance`), asked once the stage has finished.
pub struct Facts {
    pub device: String,
    pub threads: Option<usize>,
    pub kernels: String,
    /// The setting of the process; a stage's own (`StageContext::set_setting`) wins.
    pub setting: String,
    pub cpu: String,
    pub slot: String,
}

/// How a stage is computed where it runs: the stage's own code, with the process's facts.
pub trait Compute {
    fn compute(&self, stage: &dyn Stage, cx: &StageContext) -> Result<Value>;
    fn facts(&self, slot: Slot) -> Facts;
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

/// Runs `f`, turning a panic into the stage's error (`stage panicked: <message>`), so that one
/// stage's bug fails that stage, in the control plane and in a worker alike.
pub fn catching<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let text = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(anyhow::anyhow!("stage panicked: {text}"))
    })
}

/// How long a stage waits for an input missing from the cache to appear (0: not at all).
static INPUT_WAIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes this process's stages wait up to `d` for inputs not visible yet: a Slurm job's inputs
/// were committed by other jobs, maybe on other nodes, and a shared filesystem's attribute cache
/// can hide a new entry for a while. (Locally, a missing input is an error at once.)
pub fn wait_for_inputs(d: std::time::Duration) {
    INPUT_WAIT_MS.store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Loads an input entry, waiting as [`wait_for_inputs`] says while it is missing.
fn load_input(cache: &Cache, key: &str) -> Lookup {
    let wait = std::time::Duration::from_millis(
        INPUT_WAIT_MS.load(std::sync::atomic::Ordering::Relaxed),
    );
    let start = Instant::now();
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match cache.load(key) {
            Lookup::Missing if start.elapsed() < wait => {
                // Listing the shard directory makes NFS revalidate it.
                let _ = std::fs::read_dir(cache.entry_dir(key).parent().expect("shard"));
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Runs `stage`, the stage `task` describes, on `slot`: lock, re-check the cache unless `force`,
/// hash the inputs it reads, compute, commit.
pub fn run_stage(
    task: &Task,
    stage: &dyn Stage,
    cache: &Cache,
    slot: Slot,
    force: bool,
    bar: StageProgress,
    how: &dyn Compute,
) -> Result<Outcome> {
    let node = task;
    let _lock = cache.lock_stage(&node.key, &node.id)?;
    // Fault points reached from here on (checkpoints, the commit) count as in this stage.
    let _faults = crate::fault::Scope::enter(&node.id);
    if !force {
        if let Lookup::Hit(_) = cache.lookup(&node.key) {
            return Ok(Outcome::Cached);
        }
    }
    let mut inputs: BTreeMap<String, Entry> = BTreeMap::new();
    for (role, src) in &task.inputs {
        // The files this stage reads are hashed here (the scheduler only compared stamps).
        match load_input(cache, &src.key) {
            Lookup::Hit(entry) => inputs.insert(role.clone(), entry),
            Lookup::Corrupt(why) => anyhow::bail!(
                "input {} was corrupt ({why}) and has been removed; run again to recompute it",
                src.id
            ),
            Lookup::Missing => anyhow::bail!("input {} is not in the cache", src.id),
        };
    }
    if let Ok(n @ 1..) = cache.sweep_stage_leftovers(&node.key) {
        tracing::debug!(stage = %node.id, n, "removed staging leftovers of a killed process");
    }
    let staged = cache.stage_dir_for(&node.key)?;
    let start = Instant::now();
    let cx = StageContext {
        id: &node.id,
        out: staged.path(),
        inputs: &inputs,
        slot,
        checkpoints: cache.checkpoints(&node.key)?,
        progress: bar,
        notes: Default::default(),
        setting: Default::default(),
    };
    crate::fault::point_in("stage-run", &node.id);
    let summary = how
        .compute(stage, &cx)
        .map_err(|e| name_full_disk(e, cache.root()))?;
    let notes = cx.notes.into_inner().unwrap_or_else(|e| e.into_inner());
    let facts = how.facts(slot);
    let own = cx.setting.into_inner().unwrap_or_else(|e| e.into_inner());
    let setting = own.clone().unwrap_or_else(|| facts.setting.clone());
    let seconds = start.elapsed().as_secs_f64();
    let meta = EntryMeta {
        key: node.key.clone(),
        kind: stage.kind().into(),
        version: stage.version(),
        stage: node.id.clone(),
        params: stage.params(),
        inputs: task.input_keys(),
        files: Default::default(),
        summary,
        provenance: Provenance {
            robarch_version: env!("CARGO_PKG_VERSION").into(),
            device: facts.device,
            host: crate::cache::lease::host(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            wall_seconds: seconds,
            // This process's thread count, unless the stage's outputs came from another setting
            // (see `setting`).
            threads: facts.threads.filter(|_| setting == facts.setting),
            kernels: facts.kernels,
            setting,
            cpu: facts.cpu,
            notes,
            slot: facts.slot,
        },
    };
    cache
        .commit(staged, meta)
        .map_err(|e| name_full_disk(e, cache.root()))?;
    let ckpt = cache.checkpoints(&node.key)?;
    if ckpt.exists() {
        std::fs::remove_dir_all(&ckpt).context("removing finished checkpoints")?;
    }
    Ok(Outcome::Ran { seconds })
}
