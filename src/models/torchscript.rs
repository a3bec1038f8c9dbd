//! External models: a TorchScript file (`torch.jit.script(model).save(path)`, or a trace) loaded
//! with libtorch's `CModule`, so robarch evaluates, analyses and trains networks it did not build.
//! Its parameters and buffers are registered under their PyTorch names in the network's var store
//! (sharing storage), so the optimiser, checkpoints, saved weights and the analyses see them as
//! they see a native network's; train/eval mode is switched per forward pass as for native models
//! (BatchNorm statistics move only in training, dropout is off in evaluation).
//!
//! In a pipeline: `models: {ext: {arch: torchscript, file: path/to/model.pt, normalize: false}}`.
//! - `file` is relative to the pipeline file; the cache key holds the file's blake3, not its path.
//! - `normalize: true` applies the dataset's mean/std before the module (for modules that expect
//!   normalised inputs); `false` feeds the pixels as they are (RobustBench models normalise
//!   themselves). `range: [0, 255]` scales robarch's [0, 1] pixels for modules trained on bytes.
//! - `train: true` trains the module with the pipeline's `training:` entries, starting from the
//!   weights in the file (seeds vary data order, augmentation and attacks, not the initial
//!   weights); otherwise it is evaluated as it is.
//! - `expect: {clean: 0.85, tolerance: 0.02}` bounds the clean accuracy the import measures.
//!
//! TorchScript (`torch.jit.script`) is deprecated upstream in favour of `torch.export`; every use of
//! the file goes through [`Script`], so an export-based loader can replace it in one place.
use super::contract::{Expect, PixelRange};
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
    /// The pixel range the module expects (default [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PixelRange>,
    /// Train the module with the pipeline's training entries (default: evaluate it as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<bool>,
    /// The clean accuracy the import must measure (default: at least twice chance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

impl TorchScriptConfig {
    pub fn trains(&self) -> bool {
        self.train == Some(true)
    }
    pub fn pixel_range(&self) -> PixelRange {
        self.range.unwrap_or_default()
    }
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
        if let Some(e) = &self.expect {
            e.validate()?;
            if self.trains() {
                return Err(Problem::at(
                    "expect",
                    "`expect:` checks a model evaluated as it is; this one is trained (`train: true`)",
                )
                .hint("drop `expect:`, or `train:` to evaluate the file's weights"));
            }
        }
        Ok(())
    }
}

pub static TORCHSCRIPT: Arch = Arch {
    name: "torchscript",
    family: "torchscript",
    kind: super::ArchKind::External,
    about: "an external TorchScript model (fields: file, normalize, range, train, expect); evaluated, or trained with `train: true`",
    presets: &["file"],
    preset: |_| {
        Some(json!({"file": "", "normalize": true, "range": null, "train": null, "expect": null}))
    },
    check: check_of::<TorchScriptConfig>,
    fits: fits_of::<TorchScriptConfig>,
    build: build_of::<TorchScriptConfig>,
    reference: "the file itself",
};

/// Where the parameter `name` sits: the layer kind the analyses count it as (`conv`, `linear`,
/// `attention`, `embedding`), or `None` for what they leave out (biases, normalisation layers,
/// vectors), from the class of the module holding it and of that module's ancestors.
pub fn classify(name: &str, dims: usize, owners: &[&str]) -> Option<&'static str> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let owner = owners.last().copied().unwrap_or_default();
    if dims <= 1 || leaf == "bias" || leaf.ends_with("_bias") || owner.contains("Norm") {
        return None;
    }
    let additive = matches!(
        leaf,
        "pos_embed" | "positional_emb" | "pos_embedding" | "cls_token" | "dist_token"
            | "relative_position_bias_table"
    );
    if additive || owners.iter().any(|c| c.contains("Embed")) {
        return Some("embedding");
    }
    if owners
        .iter()
        .any(|c| c.contains("Attention") || c.contains("Attn"))
    {
        return Some("attention");
    }
    if owner.starts_with("Conv") {
        return Some("conv");
    }
    if owner.contains("Linear") {
        return Some("linear");
    }
    match dims {
        4 => Some("conv"),
        2 => Some("linear"),
        _ => None,
    }
}

/// The tensor half: the module itself, loaded only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{Body, Build, ModelIo};
    use anyhow::Context;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use tch::{
        nn::{self, ModuleT},
        CModule, Tensor,
    };

    impl Build for TorchScriptConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Script::load(p, std::path::Path::new(&self.file), io)?))
        }
        fn body(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Body> {
            Ok(Body::Script(Script::load(p, std::path::Path::new(&self.file), io)?))
        }
    }

    struct Inner {
        module: Mutex<Mode>,
        /// Parameter name → layer kind, from the module's structure ([`classify`]).
        layers: BTreeMap<String, Option<&'static str>>,
    }

    struct Mode {
        module: CModule,
        training: bool,
    }

    /// A loaded TorchScript module: a cheap handle, shared by the network's body and the
    /// [`Network`](crate::models::Network) that saves it.
    #[derive(Clone)]
    pub struct Script {
        inner: Arc<Inner>,
    }

    impl std::fmt::Debug for Script {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.debug_struct("Script")
                .field("parameters", &self.inner.layers.len())
                .finish()
        }
    }

    /// The var-store path of a dotted PyTorch name's parent, and its leaf.
    fn under<'a>(p: &nn::Path<'a>, name: &str) -> (nn::Path<'a>, String) {
        let mut parts: Vec<&str> = name.split('.').collect();
        let leaf = parts.pop().unwrap_or("weight").to_string();
        (parts.iter().fold(p.clone(), |acc, part| acc.sub(*part)), leaf)
    }

    impl Script {
        /// Loads the module on the path's device, registers its parameters (trainable) and buffers
        /// in the path's var store (sharing storage), and checks it maps an `io`-shaped batch to
        /// `[batch, classes]` logits.
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
            let buffers = crate::torch::script::named_buffers(&module)
                .with_context(|| format!("{}: reading buffers", file.display()))?;
            let types: BTreeMap<String, String> = crate::torch::script::module_types(&module)
                .with_context(|| format!("{}: reading the module's structure", file.display()))?
                .into_iter()
                .collect();
            let mut layers = BTreeMap::new();
            for (name, t) in params {
                let owners: Vec<&str> = owners(&name, &types);
                layers.insert(name.clone(), classify(&name, t.dim(), &owners));
                let (sub, leaf) = under(p, &name);
                let _ = sub.add(&leaf, t, true);
            }
            for (name, t) in buffers {
                let (sub, leaf) = under(p, &name);
                let _ = sub.add(&leaf, t, false);
            }
            let x = Tensor::zeros(
                [2, io.in_channels, io.image_size, io.image_size],
                (tch::Kind::Float, p.device()),
            );
            let y = tch::no_grad(|| module.forward_ts(&[x])).with_context(|| {
                format!(
                    "{}: forward on a [2, {}, {}, {}] batch failed; the module must take the dataset's images at this size and channel count (set the dataset's `resolution`, or build the module for it)",
                    file.display(),
                    io.in_channels,
                    io.image_size,
                    io.image_size
                )
            })?;
            anyhow::ensure!(
                y.size() == [2, io.num_classes],
                "{}: the module returns shape {:?} for a batch of 2, expected [2, {}] logits (one per class); give it a last layer of {} outputs, the dataset's classes, and return the logits alone (not a tuple or a dict)",
                file.display(),
                y.size(),
                io.num_classes,
                io.num_classes
            );
            Ok(Script {
                inner: Arc::new(Inner {
                    module: Mutex::new(Mode {
                        module,
                        training: false,
                    }),
                    layers,
                }),
            })
        }

        /// The layer kind of the parameter `name` (`None` for what the analyses leave out, and
        /// for names that are not the module's parameters).
        pub fn layer_type(&self, name: &str) -> Option<&'static str> {
            self.inner.layers.get(name).copied().flatten()
        }

        /// Writes the module, with its current weights and buffers, in eval mode.
        pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
            let mut m = self.inner.module.lock().expect("the module's lock");
            m.module.set_eval();
            m.training = false;
            m.module
                .save(path)
                .with_context(|| format!("writing {}", path.display()))
        }
    }

    /// The classes of the modules holding `name`, outermost first, the owner last.
    fn owners<'a>(name: &str, types: &'a BTreeMap<String, String>) -> Vec<&'a str> {
        let parts: Vec<&str> = name.split('.').collect();
        (0..parts.len())
            .filter_map(|i| types.get(&parts[..i].join(".")).map(String::as_str))
            .collect()
    }

    impl ModuleT for Script {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut m = self.inner.module.lock().expect("the module's lock");
            if m.training != train {
                if train {
                    m.module.set_train();
                } else {
                    m.module.set_eval();
                }
                m.training = train;
            }
            m.module
                .forward_ts(&[x])
                .expect("TorchScript forward (its input shape was checked at load)")
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
