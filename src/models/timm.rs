//! Any timm architecture in one line: `{arch: timm, model: <timm name>, kwargs: {...}}`. The model
//! is built with the project's pinned timm (no pretrained download) and scripted by a `script`
//! stage of its own (`stages::script`, timm's version and the kwargs in its key); from there it is
//! an imported TorchScript module trained like one (`models::torchscript`, `train: true`): its
//! initial weights are timm's initialisation under the pipeline's seed.
//!
//! timm's `num_classes` and `in_chans` come from the dataset; everything else the model's
//! constructor takes goes in `kwargs` (`img_size: 32, patch_size: 4` for a ViT on CIFAR-sized
//! images). A model timm cannot script fails its `script` stage with timm's message.
use super::contract::PixelRange;
use super::{build_of, check_of, fits_of, Arch, Family};
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The timm release the `script` stage builds models with (scripts/env.sh installs it); part of
/// the stage's key, and checked against the installed one when it runs.
pub const TIMM_VERSION: &str = "1.0.31";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimmConfig {
    /// timm's model name (`timm.list_models()`), e.g. `resnet18`, `vit_tiny_patch16_224`.
    pub model: String,
    /// Further arguments of `timm.create_model`.
    pub kwargs: Map<String, Value>,
    /// Apply the dataset's mean/std before the module.
    pub normalize: bool,
    /// The pixel range the module expects (default [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PixelRange>,
}

/// The `create_model` arguments robarch sets from the dataset.
pub const SET_BY_ROBARCH: &[&str] = &["num_classes", "in_chans", "pretrained"];

impl Family for TimmConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.model.is_empty() {
            return Err(Problem::new(
                &[],
                "set `model:` to a timm model name (e.g. `resnet18`; `timm.list_models()` lists them)",
            ));
        }
        if let Some(k) = self
            .kwargs
            .keys()
            .find(|k| SET_BY_ROBARCH.contains(&k.as_str()))
        {
            return Err(Problem::at(
                "kwargs",
                format!("`{k}` is set by robarch (classes and channels from the dataset, no pretrained download)"),
            )
            .hint(format!("drop `{k}` from `kwargs`")));
        }
        Ok(())
    }
}

pub static TIMM: Arch = Arch {
    name: "timm",
    family: "timm",
    kind: super::ArchKind::External,
    about: "any timm model, scripted and trained (fields: model, kwargs, normalize, range)",
    presets: &["model"],
    preset: |_| Some(json!({"model": "", "kwargs": {}, "normalize": true, "range": null})),
    check: check_of::<TimmConfig>,
    fits: fits_of::<TimmConfig>,
    build: build_of::<TimmConfig>,
    reference: "timm.create_model",
};

/// The tensor half: a timm model is built by its `script` stage and loaded as the TorchScript
/// module that stage writes, never from this config.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{Build, ModelIo};
    use tch::nn::{self, ModuleT};

    impl Build for TimmConfig {
        fn build(&self, _: &nn::Path, _: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            anyhow::bail!(
                "timm model `{}`: built by its `script` stage and loaded from the module it writes",
                self.model
            )
        }
    }
}
