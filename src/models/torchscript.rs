//! External models: a TorchScript file (`torch.jit.script`/`torch.jit.trace` + `.save`, e.g. a
//! timm or RobustBench model) loaded with libtorch's `CModule`, so robarch's attacks and analyses
//! run on networks it did not build. The module is used in eval mode; its parameters are exposed
//! under their PyTorch names, so sparsity and norm analyses see them.
//!
//! In a pipeline: `models: {ext: {arch: torchscript, file: path/to/model.pt, normalize: false}}`.
//! `file` is relative to the pipeline file; the cache key holds the file's blake3, not its path.
//! `normalize: true` applies the dataset's mean/std before the module (for modules that expect
//! normalised inputs); `false` feeds [0,1] pixels (RobustBench models normalise themselves).
use super::{build_of, check_of, fits_of, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchScriptConfig {
    /// Path of the TorchScript file (the plan resolves it against the pipeline's directory).
    pub file: String,
    /// Apply the dataset's mean/std before the module.
    pub normalize: bool,
    /// blake3 of the file's bytes, filled in by the plan; the cache key depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl Family for TorchScriptConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.file.is_empty() {
            // At the entry, not at `file`: an empty file is one the entry does not set.
            return Err(Problem::new(
                &[],
                "set `file:` to the TorchScript model (.pt), relative to the pipeline",
            ));
        }
        Ok(())
    }
}

pub static TORCHSCRIPT: Arch = Arch {
    name: "torchscript",
    family: "torchscript",
    kind: super::ArchKind::External,
    about: "an external TorchScript model (fields: file, normalize); evaluated, not trained",
    presets: &["file"],
    preset: |_| Some(json!({"file": "", "normalize": true})),
    check: check_of::<TorchScriptConfig>,
    fits: fits_of::<TorchScriptConfig>,
    build: build_of::<TorchScriptConfig>,
    reference: "the file itself",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{Build, ModelIo};
    use anyhow::Context;
    use tch::{
        nn::{self, ModuleT},
        CModule, Tensor,
    };

    impl Build for TorchScriptConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Script::load(
                p,
                std::path::Path::new(&self.file),
                io,
            )?))
        }
    }

    #[derive(Debug)]
    pub struct Script {
        module: CModule,
    }

    impl Script {
        /// Loads the module on the path's device, registers its parameters in the path's var store
        /// (sharing storage) and checks it maps an `io`-shaped batch to `[batch, classes]` logits.
        pub fn load(p: &nn::Path, file: &std::path::Path, io: &ModelIo) -> anyhow::Result<Script> {
            let mut module = CModule::load_on_device(file, p.device()).with_context(|| {
                format!(
                    "{}: not a loadable TorchScript file (save one with torch.jit.script(model).save(path) or torch.jit.trace)",
                    file.display()
                )
            })?;
            module.set_eval();
            let params = module
                .named_parameters()
                .with_context(|| format!("{}: reading parameters", file.display()))?;
            for (name, t) in params {
                let mut parts: Vec<&str> = name.split('.').collect();
                let leaf = parts.pop().unwrap_or("weight");
                let sub = parts.iter().fold(None::<nn::Path>, |acc, part| {
                    Some(match acc {
                        None => p.sub(*part),
                        Some(s) => s.sub(*part),
                    })
                });
                let _ = match sub {
                    Some(s) => s.add(leaf, t, true),
                    None => p.add(leaf, t, true),
                };
            }
            let x = Tensor::zeros(
                [2, io.in_channels, io.image_size, io.image_size],
                (tch::Kind::Float, p.device()),
            );
            let y = tch::no_grad(|| module.forward_ts(&[x])).with_context(|| {
                format!(
                    "{}: forward on a [2, {}, {}, {}] batch failed",
                    file.display(),
                    io.in_channels,
                    io.image_size,
                    io.image_size
                )
            })?;
            anyhow::ensure!(
                y.size() == [2, io.num_classes],
                "{}: the module returns shape {:?} for a batch of 2, expected [2, {}] logits (one per class)",
                file.display(),
                y.size(),
                io.num_classes
            );
            Ok(Script { module })
        }
    }

    impl ModuleT for Script {
        fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
            self.module
                .forward_ts(&[x])
                .expect("TorchScript forward (its input shape was checked at load)")
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
