//! The saved-model format: what a train or import stage leaves in its cache entry and what
//! evaluation and analysis stages load. An entry holds
//! - `model.json` ([`ModelInfo`]): the architecture and config, the input shape and classes, the
//!   normalisation the network applies, and the parameter count;
//! - `model.safetensors`: the last epoch's weights (timm-style names);
//! - `model_best.safetensors`: the best monitored epoch's weights (trained with monitoring only);
//! - for an imported TorchScript model, the script itself (its config names the file relative to
//!   the entry, so the entry can move).
use super::{ModelIo, ModelParams};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use std::path::PathBuf;

pub const WEIGHTS: &str = "model.safetensors";
pub const MODEL_INFO: &str = "model.json";
/// Weights of the best epoch by `monitor.best_by` (when monitoring is on).
pub const BEST_WEIGHTS: &str = "model_best.safetensors";
/// A TorchScript module in an entry: an import's copy (or a `script` stage's output), a trained
/// module's last epoch.
pub const SCRIPT: &str = "model.pt";
/// A trained TorchScript module's best epoch, as a module (the last epoch's is the entry's
/// `model.pt`).
pub const BEST_SCRIPT: &str = "model_best.pt";

/// Which weights of a saved model to use (`evaluation.checkpoint`, `analysis.*.checkpoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checkpoint {
    /// The last epoch's weights.
    #[default]
    Last,
    /// The best monitored epoch's weights.
    Best,
}

impl Checkpoint {
    pub fn is_last(&self) -> bool {
        *self == Checkpoint::Last
    }
}

/// What is needed to rebuild a trained network around its weights (`model.json`).
#[derive(Serialize, Deserialize)]
pub struct ModelInfo {
    pub model: ModelParams,
    pub io: ModelIo,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub num_parameters: i64,
    /// The input contract (written since the contract was recorded; [`ModelInfo::contract`]
    /// derives it for older entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<super::contract::InputContract>,
}

impl ModelInfo {
    /// The model's input contract: as recorded, or, for entries written before it was, a
    /// native network's (robarch normalises [0, 1] pixels in front of it).
    pub fn contract(&self) -> super::contract::InputContract {
        self.input.clone().unwrap_or_else(|| super::contract::InputContract {
            pixels: [0, 1],
            range: super::contract::PixelRange::Unit,
            normalization: if self.std.iter().all(|s| *s == 1.0) && self.mean.iter().all(|m| *m == 0.0) {
                super::contract::Normalization::None
            } else {
                super::contract::Normalization::Robarch
            },
            mean: self.mean.clone(),
            std: self.std.clone(),
            resolution: self.io.image_size,
            channels: self.io.in_channels,
        })
    }
}

/// A saved model in an entry directory.
pub struct SavedModel {
    /// Read by `network` (the tensor code).
    #[cfg_attr(not(feature = "torch"), allow(dead_code))]
    dir: PathBuf,
    pub info: ModelInfo,
}

impl SavedModel {
    /// Reads the entry's `model.json`.
    pub fn open(dir: &Path) -> Result<SavedModel> {
        let path = dir.join(MODEL_INFO);
        let info = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        Ok(SavedModel {
            dir: dir.to_path_buf(),
            info,
        })
    }

    /// Writes `info` as the entry's `model.json` (the weights are written by the caller).
    pub fn write_info(dir: &Path, info: &ModelInfo) -> Result<()> {
        let path = dir.join(MODEL_INFO);
        std::fs::write(&path, serde_json::to_vec_pretty(info)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// TorchScript params with the script's file name made absolute under `dir` (an entry
/// directory), so the network can be built from it.
pub fn script_in(model: &ModelParams, dir: &Path) -> ModelParams {
    let mut m = model.clone();
    if let Some(f) = m.config.get("file").and_then(|f| f.as_str()) {
        m.config["file"] = json!(dir.join(f).to_string_lossy());
    }
    m
}

/// The tensor half: loading the network, only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::Network;
    use tch::Device;

    impl SavedModel {
        /// The network with the weights `checkpoint` names, on `device`.
        pub fn network(&self, checkpoint: Checkpoint, device: Device) -> Result<Network> {
            let file = match checkpoint {
                Checkpoint::Last => WEIGHTS,
                Checkpoint::Best => {
                    if !self.dir.join(BEST_WEIGHTS).exists() {
                        anyhow::bail!(
                            "{} has no best checkpoint ({BEST_WEIGHTS}): the model was imported or trained without monitoring; set `evaluation.checkpoint: last`",
                            self.dir.display()
                        );
                    }
                    BEST_WEIGHTS
                }
            };
            let info = &self.info;
            if info.model.imported() {
                // A TorchScript model: its weights live in the script file itself, and a trained
                // one's also in its weights file (the last epoch's, or the best's).
                let model = script_in(&info.model, &self.dir);
                let mut net = Network::new(&model, &info.io, &info.mean, &info.std, device, 0)?;
                if self.dir.join(file).exists() {
                    net.load(&self.dir.join(file))?;
                }
                return Ok(net);
            }
            let mut net = Network::new(&info.model, &info.io, &info.mean, &info.std, device, 0)?;
            net.load(&self.dir.join(file))?;
            Ok(net)
        }
    }

    /// Loads the network saved in `dir` with the weights `checkpoint` names.
    pub fn load(dir: &Path, checkpoint: Checkpoint, device: Device) -> Result<Network> {
        SavedModel::open(dir)?.network(checkpoint, device)
    }
}
#[cfg(feature = "torch")]
pub use net::load;
