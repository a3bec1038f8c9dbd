//! `train`: (adversarial) training of one architecture on one prepared dataset.
use super::{write_json, StageContext, StageKind};
use crate::data::prepared;
use crate::models::saved::{ModelInfo, SavedModel, BEST_WEIGHTS, WEIGHTS};
use crate::train::{self, TrainParams};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

pub const HISTORY: &str = "history.json";

#[derive(Serialize)]
#[serde(transparent)]
pub struct Train {
    pub params: TrainParams,
}

impl StageKind for Train {
    fn kind(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
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
        SavedModel::write_info(cx.out, &info)?;
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
            "channels_last": self.params.uses_channels_last(),
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
