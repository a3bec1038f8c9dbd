//! `load`: brings a published checkpoint into one of robarch's architectures (`weights:` on a
//! native model, `models::weights`), in place of a training stage (evaluated as it is) or before
//! one (`train: true`: the fine-tuning's initial network). The entry is a saved model like a
//! training's: `model.safetensors` in robarch's names, and `model.json` with the input contract
//! the checkpoint is used under. Like an import evaluated as it is, its clean accuracy on the first
//! test points must reach twice chance, or `expect:`.
use super::StageKind;
use crate::data::fingerprint::HashState;
use crate::models::{ModelIo, ModelParams};
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
#[cfg(feature = "torch")]
use {
    super::StageContext,
    crate::{
        data::prepared,
        models::{
            contract::InputContract,
            saved::{ModelInfo, SavedModel, WEIGHTS},
            Network,
        },
    },
    anyhow::{Context, Result},
    serde_json::{json, Value},
};

#[derive(Serialize, Deserialize)]
pub struct Load {
    /// Canonical model params: the checkpoint's name and hash, never its location.
    pub model: ModelParams,
    pub io: ModelIo,
    /// Not part of the key: where the checkpoint is now (its name and hash are, in `model`).
    #[serde(skip)]
    pub file: PathBuf,
    /// Not part of the key: the model's name in the pipeline, for messages.
    #[serde(skip)]
    pub name: String,
}

impl Load {
    /// Resolves `models.<name>.weights.file` against the pipeline's directory and fingerprints it.
    pub fn plan(
        pipeline: &Path,
        name: &str,
        mp: &ModelParams,
        io: ModelIo,
        hashes: &mut HashState,
    ) -> std::result::Result<Load, Problem> {
        let field = ["models", name, "weights", "file"];
        let mut w = mp.weights.clone().expect("a model with weights");
        let file = super::OutsideFile::pin(
            pipeline,
            &w.file,
            &field,
            "paths are relative to the pipeline file; save one with torch.save(model.state_dict(), path)",
            hashes,
        )?;
        w.file = file.name;
        w.blake3 = Some(file.blake3);
        Ok(Load {
            model: ModelParams {
                weights: Some(w),
                ..mp.clone()
            },
            io,
            file: file.path,
            name: name.to_string(),
        })
    }
}

impl StageKind for Load {
    fn kind(&self) -> &'static str {
        "load"
    }
    fn version(&self) -> u32 {
        1
    }
    fn locations(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.file, "name": self.name })
    }
    fn model_cost(&self) -> Option<super::cost::ModelCost> {
        let f = crate::models::flops::forward(&self.model, &self.io)?;
        Some(super::cost::ModelCost {
            forward: f.flops,
            classes: self.io.num_classes as usize,
            scaled: f.scaled,
        })
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

/// The checkpoint's tensors by name: a safetensors file read directly, a pickle through the
/// project's Python, weights-only (`staging` holds the converted copy while it is read).
#[cfg(feature = "torch")]
fn read_checkpoint(file: &Path, staging: &Path) -> Result<Vec<(String, tch::Tensor)>> {
    let is_safetensors = file.extension().is_some_and(|e| e == "safetensors");
    if is_safetensors {
        return tch::Tensor::read_safetensors(file)
            .with_context(|| format!("{}: not a readable safetensors file", file.display()));
    }
    let converted = staging.join("checkpoint.safetensors");
    let code = staging.join("checkpoint_to_safetensors.py");
    std::fs::write(
        &code,
        include_str!("../models/checkpoint_to_safetensors.py"),
    )?;
    let py = crate::torch::python();
    let out = std::process::Command::new(&py)
        .arg(&code)
        .arg(file)
        .arg(&converted)
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    std::fs::remove_file(&code)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(
            "{}: {}; save the weights alone (torch.save(model.state_dict(), path), or safetensors)",
            file.display(),
            msg.trim().lines().last().unwrap_or("cannot read it")
        );
    }
    let tensors = tch::Tensor::read_safetensors(&converted)?;
    std::fs::remove_file(&converted)?;
    Ok(tensors)
}

#[cfg(feature = "torch")]
impl super::TensorStage for Load {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let w = self
            .model
            .weights
            .clone()
            .context("a load stage without weights")?;
        let at = |msg: String| anyhow::anyhow!("models.{}.weights: {msg}", self.name);
        let data = prepared::load(&cx.input("data")?.dir)?;
        let contract = InputContract::new(
            w.range.unwrap_or_default(),
            w.normalize,
            &data.info.mean,
            &data.info.std,
            &self.io,
        );
        let mut net = Network::new(
            &self.model.bare(),
            &self.io,
            &contract.mean,
            &contract.std,
            tch::Device::Cpu,
            0,
        )?;
        let ckpt = read_checkpoint(&self.file, cx.out).map_err(|e| at(format!("{e:#}")))?;
        let own: Vec<(String, tch::Tensor)> = net
            .named_tensors()
            .into_iter()
            .filter(|(n, _)| !n.starts_with("normalize."))
            .collect();
        let want: Vec<(String, Vec<i64>)> =
            own.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        let (matched, set_aside) =
            crate::models::weights::match_names(ckpt, |t| t.size(), &want, w.names).map_err(
                |e| {
                    at(format!(
                        "{} does not fit `{}` as configured ({} names): {e}",
                        self.file.display(),
                        self.model.arch,
                        w.names.as_str()
                    ))
                },
            )?;
        let by_name: std::collections::BTreeMap<String, tch::Tensor> =
            matched.into_iter().collect();
        tch::no_grad(|| -> Result<()> {
            for (n, mut t) in own {
                t.f_copy_(&by_name[&n].to_kind(t.kind()))?;
            }
            Ok(())
        })?;
        let mut summary = json!({"tensors": by_name.len(), "set_aside": set_aside});
        if !self.model.trains() {
            let n = crate::models::contract::CHECK_POINTS.min(data.test_x.size()[0]);
            let acc = crate::models::contract::clean_accuracy(
                &net,
                &data.test_x.narrow(0, 0, n),
                &data.test_y.narrow(0, 0, n),
            );
            if let Some(why) = crate::models::contract::problem(
                acc,
                n,
                self.io.num_classes,
                w.expect.as_ref(),
                &contract,
            ) {
                return Err(anyhow::anyhow!("models.{}: {why}", self.name));
            }
            summary["clean_accuracy_check"] = json!({"points": n, "accuracy": acc});
        }
        net.save(&cx.out.join(WEIGHTS))?;
        let info = ModelInfo {
            model: self.model.clone(),
            io: self.io,
            mean: contract.mean.clone(),
            std: contract.std.clone(),
            num_parameters: net.num_parameters(),
            input: Some(contract),
        };
        SavedModel::write_info(cx.out, &info)?;
        let _ = &mut net;
        Ok(summary)
    }
}
