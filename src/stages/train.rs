//! `train`: (adversarial) training of one architecture on one prepared dataset.
use super::StageKind;
#[cfg(feature = "torch")]
use {
    anyhow::{Context, Result},
    crate::{data::prepared, models::{contract::{InputContract, PixelRange}, saved::{script_in, BEST_SCRIPT, BEST_WEIGHTS, ModelInfo, SavedModel, WEIGHTS}}},
    serde_json::{json, Value},
    super::{write_json, StageContext},
};
use crate::train::{self, TrainParams};
use serde::{Deserialize, Serialize};

pub const HISTORY: &str = "history.json";

/// The per-epoch records of a train entry ([`HISTORY`]).
pub fn read_history(e: &crate::cache::Entry) -> anyhow::Result<Vec<crate::train::EpochRecord>> {
    use anyhow::Context;
    let file = e.dir.join(HISTORY);
    serde_json::from_slice(
        &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("reading {}", file.display()))
}

#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Train {
    pub params: TrainParams,
}

impl Train {
    /// Trains `model` on data of shape `io` with the training entry as it applies to the model,
    /// resolved (every default already applied: this only copies).
    pub fn new(
        model: crate::models::ModelParams,
        io: crate::models::ModelIo,
        t: &train::resolve::TrainSettings,
        seed: u64,
    ) -> Self {
        Self {
            params: TrainParams {
                model,
                io,
                method: t.method,
                attack: t.attack.clone(),
                attack_mode: t.attack_mode,
                epochs: t.epochs,
                batch_size: t.batch_size,
                optimizer: t.optimizer.clone(),
                schedule: t.schedule.clone(),
                augment: t.augment.clone(),
                seed,
                beta: t.beta,
                label_smoothing: t.label_smoothing,
                grad_clip: t.grad_clip,
                monitor: t.monitor.clone(),
                amp: t.amp,
                channels_last: t.channels_last,
            },
        }
    }
}

impl StageKind for Train {
    fn kind(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn model_cost(&self) -> Option<super::cost::ModelCost> {
        let p = &self.params;
        let f = crate::models::flops::forward(&p.model, &p.io)?;
        Some(super::cost::ModelCost {
            forward: f.flops,
            classes: p.io.num_classes as usize,
            scaled: f.scaled,
        })
    }
    fn flops(&self, inputs: &super::cost::CostInputs) -> Option<f64> {
        // Every epoch: each training image through the inner attack and the update, and the
        // monitor's points of both splits through its attack.
        let p = &self.params;
        let m = self.model_cost()?;
        let images = inputs.images?;
        let step = super::cost::training_step(p.method, p.attack.as_ref(), &m);
        let monitor = p.monitor.as_ref().map_or(0.0, |mo| {
            let n = mo.n.min(images.train) + mo.n.min(images.test);
            mo.attack.as_ref().map_or(
                n as f64 * m.forward,
                |a| super::cost::evaluation(a, n, &m),
            )
        });
        Some(p.epochs as f64 * (images.train as f64 * step + monitor))
    }
    fn uses_device(&self) -> bool {
        true
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Train {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let data = prepared::load(&cx.input("data")?.dir)?;
        // An imported module starts from the file its import stage holds; the contract it was
        // imported under is the one it is trained and saved under.
        let mut params = self.params.clone();
        let mut saved = self.params.model.clone();
        let mut contract = InputContract::new(
            PixelRange::Unit,
            true,
            &data.info.mean,
            &data.info.std,
            &self.params.io,
        );
        let mut weights = None;
        if self.params.model.imported() {
            let init = cx.input("init")?;
            let imported = SavedModel::open(&init.dir)?.info;
            params.model = script_in(&imported.model, &init.dir);
            contract = imported.contract();
            saved = imported.model;
        } else if self.params.model.weights.is_some() {
            // Fine-tuning a loaded checkpoint: its weights, under its contract.
            let init = cx.input("init")?;
            contract = SavedModel::open(&init.dir)?.info.contract();
            weights = Some(init.dir.join(WEIGHTS));
        }
        let start = train::Start {
            mean: &contract.mean,
            std: &contract.std,
            weights: weights.as_deref(),
        };
        let trained = train::train_from(
            &params,
            &start,
            &data,
            cx.device(),
            &cx.checkpoints,
            &cx.progress,
            &|_| {},
        )?;
        if let Some(spans) = trained.mixed_settings() {
            cx.note(format!("resumed under another setting: {spans}"));
        }
        cx.set_setting(trained.setting());
        let (mut net, history) = (trained.net, trained.history);
        net.save(&cx.out.join(WEIGHTS))?;
        if let Some(script) = net.script() {
            // The trained module, with its buffers, as a file that leaves robarch on its own
            // (`robarch export`); the import's config names it relative to the entry.
            script.save(&cx.out.join(crate::models::saved::SCRIPT))?;
        }
        let info = ModelInfo {
            model: saved,
            io: self.params.io,
            mean: contract.mean.clone(),
            std: contract.std.clone(),
            num_parameters: net.num_parameters(),
            input: Some(contract),
        };
        SavedModel::write_info(cx.out, &info)?;
        write_json(&cx.out.join(HISTORY), &history)?;
        let last = history.last();
        let mut summary = json!({
            "num_parameters": info.num_parameters,
            "final_loss": last.map(|h| h.loss),
            "final_train_accuracy": last.map(|h| h.train_accuracy),
            // What `auto` resolved to on this device.
            "amp": match self.params.amp.resolve(cx.device()) {
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
                if net.script().is_some() {
                    net.load(&best_file)?;
                    if let Some(script) = net.script() {
                        script.save(&cx.out.join(BEST_SCRIPT))?;
                    }
                }
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
