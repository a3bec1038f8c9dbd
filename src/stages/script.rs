//! `script`: builds a timm model with the pinned timm (no pretrained download) and scripts it
//! (`torch.jit.script`) into `model.pt`, which the model's `import` stage brings in like a
//! TorchScript file of the user's. It runs the project's Python (the one whose `torch` wheel
//! provides libtorch) in the worker; timm's version, the model, its kwargs, the dataset's shape and
//! the seed of the initialisation are its key.
use super::StageKind;
use crate::models::timm::{TimmConfig, TIMM_VERSION};
use crate::models::{ModelIo, ModelParams};
use serde::{Deserialize, Serialize};
#[cfg(feature = "torch")]
use {super::StageContext, anyhow::Result, serde_json::Value};

#[derive(Serialize, Deserialize)]
pub struct Script {
    pub timm: String,
    pub model: String,
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    pub io: ModelIo,
    /// Seeds timm's initialisation: the initial weights of the training that follows.
    pub seed: u64,
    /// Not part of the key: the model's name in the pipeline, for messages.
    #[serde(skip)]
    pub name: String,
}

impl Script {
    pub fn new(name: &str, mp: &ModelParams, io: ModelIo, seed: u64) -> Script {
        let c: TimmConfig =
            serde_json::from_value(mp.config.clone()).expect("a checked timm config");
        Script {
            timm: TIMM_VERSION.to_string(),
            model: c.model,
            kwargs: c.kwargs,
            io,
            seed,
            name: name.to_string(),
        }
    }
}

impl StageKind for Script {
    fn kind(&self) -> &'static str {
        "script"
    }
    fn version(&self) -> u32 {
        1
    }
    fn locations(&self) -> serde_json::Value {
        serde_json::json!({ "name": self.name })
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Script {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        use anyhow::Context;
        let code = cx.out.join("timm_script.py");
        std::fs::write(&code, include_str!("../models/timm_script.py"))?;
        let request = serde_json::json!({
            "model": self.model,
            "kwargs": self.kwargs,
            "num_classes": self.io.num_classes,
            "in_chans": self.io.in_channels,
            "image_size": self.io.image_size,
            "seed": crate::rng::derive(self.seed, &[0]) % (1 << 62),
            "timm": self.timm,
            "out": cx.out.join(crate::models::saved::SCRIPT),
        });
        let py = crate::torch::python();
        let out = std::process::Command::new(&py)
            .arg(&code)
            .arg(request.to_string())
            .output()
            .with_context(|| format!("running {}", py.display()))?;
        std::fs::remove_file(&code)?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let last = msg.trim().lines().last().unwrap_or("").to_string();
            let field = format!("models.{}.model", self.name);
            match out.status.code() {
                Some(5) => anyhow::bail!(
                    "{field}: timm model `{}` cannot be scripted (torch.jit.script): {last}; trace it in Python instead (torch.jit.trace(model, example).save(path)) and give the file as `arch: torchscript, file: …, train: true`",
                    self.model
                ),
                Some(3 | 4) => anyhow::bail!("{field}: {last}"),
                _ => anyhow::bail!("{field}: building timm model `{}`: {}", self.model, msg.trim()),
            }
        }
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok(serde_json::json!({"timm": self.timm, "parameters": summary["parameters"]}))
    }
}
