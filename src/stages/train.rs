//! `train`: (adversarial) training of one architecture on one prepared dataset.
use super::{write_json, Stage, StageContext};
use crate::data::prepared;
use crate::models::{ModelIo, ModelParams, Network};
use crate::train::{self, TrainParams};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use tch::Device;

pub const WEIGHTS: &str = "model.safetensors";
pub const MODEL_INFO: &str = "model.json";
pub const HISTORY: &str = "history.json";
/// Weights of the best epoch by `monitor.best_by` (when monitoring is on).
pub const BEST_WEIGHTS: &str = "model_best.safetensors";

pub struct Train {
    pub params: TrainParams,
}

/// What is needed to rebuild a trained network around its weights.
#[derive(Serialize, Deserialize)]
pub struct ModelInfo {
    pub model: ModelParams,
    pub io: ModelIo,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub num_parameters: i64,
}

/// Loads the network stored in a train stage's entry directory (the last epoch's weights).
pub fn load_network(dir: &Path, device: Device) -> Result<Network> {
    load_weights(dir, WEIGHTS, device)
}

/// Loads the best epoch's weights (`model_best.safetensors`) of a train stage's entry.
pub fn load_best_network(dir: &Path, device: Device) -> Result<Network> {
    if !dir.join(BEST_WEIGHTS).exists() {
        anyhow::bail!(
            "{} has no best checkpoint ({BEST_WEIGHTS}): the model was imported or trained without monitoring; set `evaluation.checkpoint: last`",
            dir.display()
        );
    }
    load_weights(dir, BEST_WEIGHTS, device)
}

/// The entry's model.json: the model, its input and the normalisation the network applies.
pub fn model_info(dir: &Path) -> Result<ModelInfo> {
    serde_json::from_slice(&std::fs::read(dir.join(MODEL_INFO))?).context("reading model.json")
}

/// The network described by the entry's model.json with the weights of `file`.
fn load_weights(dir: &Path, file: &str, device: Device) -> Result<Network> {
    let info = model_info(dir)?;
    if info.model.arch == crate::models::torchscript::TORCHSCRIPT.name {
        // An imported TorchScript model: its weights live in the script file itself.
        let model = super::import::with_file(&info.model, dir);
        return Network::new(&model, &info.io, &info.mean, &info.std, device, 0);
    }
    let mut net = Network::new(&info.model, &info.io, &info.mean, &info.std, device, 0)?;
    net.load(&dir.join(file))?;
    Ok(net)
}

impl Stage for Train {
    fn kind(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        serde_json::to_value(&self.params).expect("train params serialise")
    }
    fn uses_device(&self) -> bool {
        true
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let data = prepared::load(&cx.input("data")?.dir)?;
        let (net, history) = train::train(
            &self.params,
            &data,
            cx.device,
            &cx.checkpoints,
            &cx.progress,
            &|_| {},
        )?;
        net.save(&cx.out.join(WEIGHTS))?;
        let info = ModelInfo {
            model: self.params.model.clone(),
            io: self.params.io,
            mean: data.info.mean.clone(),
            std: data.info.std.clone(),
            num_parameters: net.num_parameters(),
        };
        write_json(&cx.out.join(MODEL_INFO), &info)?;
        write_json(&cx.out.join(HISTORY), &history)?;
        let last = history.last();
        let mut summary = json!({
            "num_parameters": info.num_parameters,
            "final_loss": last.map(|h| h.loss),
            "final_train_accuracy": last.map(|h| h.train_accuracy),
            // What `auto` resolved to on this device.
            "amp": match self.params.amp.resolve(cx.device) {
                Some(_) => "bf16",
                None => "off",
            },
            "channels_last": self.params.channels_last.resolve(
                crate::models::find(&self.params.model.arch)
                    .map_or(crate::models::ArchKind::External, |a| a.kind),
            ),
        });
        if let Some(m) = &self.params.monitor {
            let best = train::best_epoch(&history, &m.best_by);
            let best_file = cx.checkpoints.join(train::BEST);
            if best_file.exists() {
                std::fs::copy(&best_file, cx.out.join(BEST_WEIGHTS))
                    .context("copying the best checkpoint")?;
            }
            summary["best_by"] = json!(m.best_by);
            summary["best_epoch"] = json!(best.map(|b| b.0));
            summary["best_value"] = json!(best.map(|b| b.1));
            summary["final_test_robust_accuracy"] =
                json!(last.and_then(|h| h.test_robust_accuracy));
            summary["final_test_clean_accuracy"] = json!(last.and_then(|h| h.test_clean_accuracy));
        }
        Ok(summary)
    }
}
