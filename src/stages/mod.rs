//! Stage kinds. Each is one file implementing [`Stage`]: its kind name, a version bumped whenever
//! its semantics change, its canonical parameters, and `run`, which writes outputs into a staging
//! directory the executor commits to the cache.
pub mod bounds;
pub mod correlation;
pub mod evaluate;
pub mod import;
pub mod prepare;
pub mod report;
pub mod sparsity;
pub mod train;

use crate::cache::Entry;
use crate::progress::StageProgress;
use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// Everything a running stage may touch.
pub struct StageContext<'a> {
    /// Staging directory for outputs (committed atomically on success).
    pub out: &'a Path,
    /// Verified input entries by role (`data`, `model`, or a stage id for the report).
    pub inputs: &'a BTreeMap<String, Entry>,
    pub device: Device,
    /// Where long stages keep per-epoch checkpoints for resuming.
    pub checkpoints: PathBuf,
    pub progress: StageProgress,
}

impl StageContext<'_> {
    pub fn input(&self, role: &str) -> Result<&Entry> {
        self.inputs
            .get(role)
            .with_context(|| format!("stage input `{role}` is missing"))
    }
}

pub trait Stage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    /// Canonical parameters: every value that determines the output, defaults filled in.
    fn params(&self) -> Value;
    /// Whether the stage runs tensors on the compute device (and so takes a device slot).
    fn uses_device(&self) -> bool {
        false
    }
    /// Produces the outputs; returns a small JSON summary stored in the entry's metadata.
    fn run(&self, cx: &StageContext) -> Result<Value>;
}

/// The network of input `model` with the weights `checkpoint` names, on the CPU (analyses).
pub fn analysed_network(
    cx: &StageContext,
    checkpoint: crate::models::saved::Checkpoint,
) -> Result<crate::models::Network> {
    crate::models::saved::load(&cx.input("model")?.dir, checkpoint, Device::Cpu)
}

/// Writes pretty JSON.
pub fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))
}
