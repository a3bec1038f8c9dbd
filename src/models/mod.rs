//! Architectures: one file per family, a registry with named presets, and [`Network`], which wraps
//! a family's module with the input normalisation layer so every model takes [0,1] pixels.
pub mod cait;
pub mod cct;
pub mod coatnet;
pub mod contract;
pub mod convnext;
pub mod cvt;
pub mod deit;
pub mod densenet;
pub mod export;
pub mod flops;
#[cfg(feature = "torch")]
pub mod layers;
pub mod mixer;
pub mod mobilenetv2;
pub mod mobilevit;
pub mod poolformer;
pub mod preact_resnet;
pub mod pvt_v2;
pub mod regnet;
pub mod resnet;
pub mod saved;
pub mod spec;
pub mod swin;
pub mod timm;
pub mod torchscript;
pub mod vgg;
pub mod vit;
pub mod weights;
pub mod wide_resnet;

use crate::vocab::{typo_hint, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spec::ModelSpec;

/// What a model must fit: input channels, image side, number of classes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ModelIo {
    pub in_channels: i64,
    pub image_size: i64,
    pub num_classes: i64,
}

/// One registry entry: a named architecture with its presets.
pub struct Arch {
    pub name: &'static str,
    pub family: &'static str,
    /// Convolutional, transformer, hybrid, …: how the study groups architectures.
    pub kind: ArchKind,
    pub about: &'static str,
    pub presets: &'static [&'static str],
    /// The full config of a preset, as JSON.
    pub preset: fn(&str) -> Option<Value>,
    /// Parses a config (rejecting unknown fields) and returns its canonical JSON, or the problem
    /// with it, relative to the model entry.
    pub check: fn(&Value) -> Result<Value, Problem>,
    /// Checks a config against the data it will see (e.g. patch size divides the image); the
    /// problem is relative to the model entry.
    pub fits: fn(&Value, &ModelIo) -> Result<(), Problem>,
    /// Builds the network: the worker's half (the family's `Build`). The control plane, built
    /// without libtorch, builds none and holds a placeholder here.
    pub build: BuildFn,
    /// The implementation the `imagenet` preset reproduces (parameter count and names).
    pub reference: &'static str,
}

/// How the study groups architectures. Training `overrides` and recipes can key on it (the authors
/// trained attention-based models with a larger learning rate and weight decay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchKind {
    /// Convolutions only (ResNet, VGG, ConvNeXt, …).
    Cnn,
    /// Attention blocks on patch tokens (ViT, DeiT, Swin, CaiT).
    Transformer,
    /// Convolutions and attention (PVT, CoAtNet, CvT, CCT, MobileViT).
    Hybrid,
    /// Token mixing without attention or convolution stages (MLP-Mixer, PoolFormer).
    Mlp,
    /// An imported TorchScript model (architecture unknown).
    External,
}

impl ArchKind {
    pub const ALL: [ArchKind; 5] = [
        ArchKind::Cnn,
        ArchKind::Transformer,
        ArchKind::Hybrid,
        ArchKind::Mlp,
        ArchKind::External,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArchKind::Cnn => "cnn",
            ArchKind::Transformer => "transformer",
            ArchKind::Hybrid => "hybrid",
            ArchKind::Mlp => "mlp",
            ArchKind::External => "external",
        }
    }
}

/// A family's typed config, as the control plane sees it: `check_of` and `fits_of` turn it into
/// an [`Arch`]'s function pointers. Its problems are relative to the model entry: at the config
/// field they reject ([`Problem::at`]), or at the entry itself (an empty path) when no one field
/// is wrong; `resolve` and the spec's pair check place them under `models.<name>`. Building the
/// network is the worker's half, the torch-only trait `Build`.
pub trait Family: serde::de::DeserializeOwned + Serialize {
    /// Checks the config on its own (positive sizes, divisibility).
    fn validate(&self) -> Result<(), Problem> {
        Ok(())
    }
    /// Checks the config against the data (e.g. the patch size divides the image).
    fn fits(&self, _io: &ModelIo) -> Result<(), Problem> {
        Ok(())
    }
}

pub fn check_of<T: Family>(v: &Value) -> Result<Value, Problem> {
    let (c, canon) = parse_config::<T>(v).map_err(|e| Problem::new(&[], e))?;
    c.validate()?;
    Ok(canon)
}

pub fn fits_of<T: Family>(v: &Value, io: &ModelIo) -> Result<(), Problem> {
    let c: T = serde_json::from_value(v.clone()).map_err(|e| Problem::new(&[], e.to_string()))?;
    c.fits(io)
}

/// Fails at the first field below 1, located at that field ("`depth` must be at least 1, got
/// 0").
pub fn positive(fields: &[(&str, i64)]) -> Result<(), Problem> {
    match fields.iter().find(|(_, v)| *v < 1) {
        Some(&(n, v)) => Err(Problem::at(n, format!("`{n}` must be at least 1, got {v}"))),
        None => Ok(()),
    }
}

/// Every architecture, one line each.
pub static REGISTRY: &[&Arch] = &[
    &resnet::RESNET18,
    &resnet::RESNET50,
    &preact_resnet::PREACT_RESNET18,
    &wide_resnet::WRN28_10,
    &wide_resnet::WRN34_10,
    &vgg::VGG16_BN,
    &densenet::DENSENET121,
    &mobilenetv2::MOBILENETV2,
    &regnet::REGNETX,
    &convnext::CONVNEXT,
    &vit::VIT,
    &deit::DEIT,
    &swin::SWIN,
    &pvt_v2::PVT_V2,
    &cait::CAIT,
    &cct::CCT,
    &coatnet::COATNET,
    &cvt::CVT,
    &mobilevit::MOBILEVIT,
    &mixer::MIXER,
    &poolformer::POOLFORMER,
    &torchscript::TORCHSCRIPT,
    &timm::TIMM,
];

impl Arch {
    /// An architecture robarch defines (not an outside module: a TorchScript file, a timm model).
    pub fn native(&self) -> bool {
        self.kind != ArchKind::External
    }
}

pub fn find(name: &str) -> Option<&'static Arch> {
    REGISTRY.iter().copied().find(|a| a.name == name)
}

/// Canonical model parameters: architecture plus its complete config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelParams {
    pub arch: String,
    pub config: Value,
    /// A published checkpoint the network is loaded from (`weights:`), instead of initialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<weights::Weights>,
}

impl ModelParams {
    /// A model that comes into robarch as a TorchScript module (a file, or a timm model its
    /// `script` stage writes): the plan brings it into the cache with an `import` stage.
    pub fn imported(&self) -> bool {
        self.arch == torchscript::TORCHSCRIPT.name || self.arch == timm::TIMM.name
    }

    /// Whether the pipeline's `training:` entries train this model: every native architecture,
    /// a timm model, and a TorchScript file with `train: true`; other files are evaluated as
    /// they are.
    pub fn trains(&self) -> bool {
        if let Some(w) = &self.weights {
            return w.train == Some(true);
        }
        self.arch != torchscript::TORCHSCRIPT.name
            || self.config.get("train") == Some(&Value::Bool(true))
    }

    /// The architecture alone: these params without a checkpoint to load.
    pub fn bare(&self) -> ModelParams {
        ModelParams {
            weights: None,
            ..self.clone()
        }
    }
}

/// Resolves `models.<name>`: registry lookup, preset, overrides, validation.
pub fn resolve(name: &str, m: &ModelSpec) -> std::result::Result<ModelParams, Vec<Problem>> {
    let arch_name = m.arch.clone().unwrap_or_else(|| name.to_string());
    let field = if m.arch.is_some() {
        vec!["models", name, "arch"]
    } else {
        vec!["models", name]
    };
    let Some(arch) = find(&arch_name) else {
        let hint = typo_hint(&arch_name, REGISTRY.iter().map(|a| a.name), || {
            format!(
                "`robarch ls models` lists them: {}",
                REGISTRY
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        let extra = if m.arch.is_none() {
            "; set `arch:` if the key is not a registry name"
        } else {
            ""
        };
        return Err(vec![Problem::new(
            &field,
            format!("unknown architecture `{arch_name}`{extra}"),
        )
        .hint(hint)]);
    };
    let Some(mut config) = (arch.preset)(&m.preset) else {
        return Err(vec![Problem::new(
            &["models", name, "preset"],
            format!("`{}` has no preset `{}`", arch.name, m.preset),
        )
        .hint(format!("presets: {}", arch.presets.join(", ")))]);
    };
    let obj = config.as_object_mut().expect("presets are JSON objects");
    let mut overrides = m.overrides.clone();
    let weights = if arch.native() {
        weights::take(name, arch, &mut overrides).map_err(|p| vec![p])?
    } else {
        None
    };
    for (k, v) in &overrides {
        let v: Value = serde_json::to_value(v)
            .map_err(|e| vec![Problem::new(&["models", name, k], e.to_string())])?;
        if !obj.contains_key(k) {
            let known: Vec<&str> = obj.keys().map(|s| s.as_str()).collect();
            let hint = typo_hint(k, known.iter().copied(), || {
                format!("{} fields: arch, preset, {}", arch.name, known.join(", "))
            });
            return Err(vec![Problem::new(
                &["models", name, k],
                format!("unknown field for `{}`", arch.name),
            )
            .hint(hint)]);
        }
        if let Some(want) = type_mismatch(&obj[k], &v) {
            return Err(vec![Problem::new(
                &["models", name, k],
                format!(
                    "`{}` is not {want}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                ),
            )
            .hint(format!("the `{}` preset has `{k}: {}`", m.preset, obj[k]))]);
        }
        obj.insert(k.clone(), v);
    }
    let config = (arch.check)(&config).map_err(|p| vec![p.under(&["models", name])])?;
    Ok(ModelParams {
        arch: arch.name.to_string(),
        config,
        weights,
    })
}

/// What a model field must be when `new` is not of the preset value `old`'s kind (`None`: it is;
/// a preset `null` takes anything, the family's check decides).
fn type_mismatch(old: &Value, new: &Value) -> Option<&'static str> {
    let want = match old {
        Value::Null => return None,
        Value::Bool(_) => "`true` or `false`",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list, e.g. `[2, 2]`",
        Value::Object(_) => "a mapping",
    };
    let fits = match (old, new) {
        (Value::Bool(_), Value::Bool(_)) => true,
        // Whole or not is the family's check to say (a preset may write `4` for a real field).
        (Value::Number(_), Value::Number(_)) => true,
        (Value::String(_), Value::String(_)) => true,
        (Value::Array(_), Value::Array(_)) => true,
        (Value::Object(_), Value::Object(_)) => true,
        _ => false,
    };
    (!fits).then_some(want)
}

/// Parses a JSON config into a family's typed config, with a readable error.
pub fn parse_config<T: serde::de::DeserializeOwned + Serialize>(
    v: &Value,
) -> Result<(T, Value), String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let canon = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    Ok((t, canon))
}

/// The tensor half: building and running networks, only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::{find, Family, ModelIo, ModelParams};
    use anyhow::Result;
    use serde_json::Value;
    use tch::{
        nn::{self, ModuleT},
        Device, Kind, Tensor,
    };

    pub use super::layers::bn2d;

    /// The worker's half of a family: building its network from its config.
    pub trait Build: Family {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> Result<Box<dyn ModuleT>>;
        /// The network as [`Network`] holds it; an outside module overrides this to keep its
        /// handle (saving it, classifying its parameters by its structure).
        fn body(&self, p: &nn::Path, io: &ModelIo) -> Result<Body> {
            Ok(Body::Native(self.build(p, io)?))
        }
    }

    /// A built network: one robarch defines, or an outside TorchScript module.
    pub enum Body {
        Native(Box<dyn ModuleT>),
        Script(super::torchscript::Script),
    }

    /// An [`Arch`](super::Arch)'s constructor: builds the network of a checked config under `p`.
    pub type BuildFn = fn(&nn::Path, &Value, &ModelIo) -> Result<Body>;

    /// The [`BuildFn`] of a family.
    pub fn build_of<T: Build>(p: &nn::Path, v: &Value, io: &ModelIo) -> Result<Body> {
        let c: T = serde_json::from_value(v.clone())?;
        c.body(p, io)
    }

    /// A model ready to run: [0,1] input → per-channel normalisation → architecture → logits.
    pub struct Network {
        pub vs: nn::VarStore,
        mean: Tensor,
        std: Tensor,
        body: Box<dyn ModuleT>,
        /// The outside module the body is, if it is one.
        script: Option<super::torchscript::Script>,
        /// Forward passes run under autocast to this dtype (none: float32); logits come out float32.
        autocast: Option<Kind>,
        /// Inputs (and 4-D weights, see [`Network::to_channels_last`]) stored channels-last.
        channels_last: bool,
    }

    impl std::fmt::Debug for Network {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.debug_struct("Network").field("body", &self.body).finish()
        }
    }

    impl Network {
        /// Builds a freshly initialised network. Initialisation draws from libtorch's global
        /// generator, so it runs under the seeded-RNG lock to stay reproducible when stages run
        /// concurrently.
        pub fn new(
            params: &ModelParams,
            io: &ModelIo,
            mean: &[f64],
            std: &[f64],
            device: Device,
            seed: u64,
        ) -> Result<Network> {
            let arch = find(&params.arch)
                .ok_or_else(|| anyhow::anyhow!("unknown architecture {}", params.arch))?;
            anyhow::ensure!(
                mean.len() == io.in_channels as usize && std.len() == mean.len(),
                "normalisation needs one mean/std per channel"
            );
            crate::torch::with_seed(seed, || {
                let vs = nn::VarStore::new(device);
                let root = vs.root();
                let norm = root.sub("normalize");
                let shape = [1, io.in_channels, 1, 1];
                let mut m = norm.zeros_no_train("mean", &shape);
                let mut s = norm.ones_no_train("std", &shape);
                tch::no_grad(|| {
                    m.f_copy_(&Tensor::from_slice(mean).to_kind(Kind::Float).view(shape))?;
                    s.f_copy_(&Tensor::from_slice(std).to_kind(Kind::Float).view(shape))
                })?;
                let (body, script): (Box<dyn ModuleT>, _) = match (arch.build)(&root, &params.config, io)? {
                    Body::Native(b) => (b, None),
                    Body::Script(s) => (Box::new(s.clone()), Some(s)),
                };
                Ok(Network {
                    vs,
                    mean: m,
                    std: s,
                    body,
                    script,
                    autocast: None,
                    channels_last: false,
                })
            })
        }

        pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let x = (x - &self.mean) / &self.std;
            let x = if self.channels_last {
                crate::torch::channels_last(&x)
            } else {
                x
            };
            match self.autocast {
                None => self.body.forward_t(&x, train),
                Some(dtype) => crate::torch::autocast(self.vs.device(), dtype, || {
                    self.body.forward_t(&x, train)
                })
                .to_kind(Kind::Float),
            }
        }

        /// Runs later forward passes under autocast to `dtype` (bfloat16), or in float32 (`None`).
        pub fn set_autocast(&mut self, dtype: Option<Kind>) {
            self.autocast = dtype;
        }

        /// Stores every 4-D tensor (convolution weights) channels-last and feeds inputs channels-last,
        /// so convolutions run in NHWC (`model.to(memory_format=torch.channels_last)`). Values and
        /// names are unchanged; saved weights are written in the standard layout.
        pub fn to_channels_last(&mut self) {
            tch::no_grad(|| {
                for (_, mut t) in self.vs.variables() {
                    if t.dim() == 4 {
                        let cl = crate::torch::channels_last(&t);
                        t.set_data(&cl);
                    }
                }
            });
            self.channels_last = true;
        }

        pub fn num_parameters(&self) -> i64 {
            self.vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum()
        }

        /// All tensors (parameters and buffers) by PyTorch-style dotted name.
        pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
            let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }

        pub fn save(&self, path: &std::path::Path) -> Result<()> {
            write_tensors(&self.named_tensors(), path)
        }

        /// The outside module this network runs, if it is one (a TorchScript file).
        pub fn script(&self) -> Option<&super::torchscript::Script> {
            self.script.as_ref()
        }

        pub fn load(&mut self, path: &std::path::Path) -> Result<()> {
            self.vs
                .load(path)
                .map_err(|e| anyhow::anyhow!("loading weights {}: {e}", path.display()))
        }
    }

    /// Writes named tensors as safetensors in the standard (contiguous) layout, whatever their memory
    /// format or device.
    pub fn write_tensors(named: &[(String, Tensor)], path: &std::path::Path) -> Result<()> {
        let dense: Vec<(&str, Tensor)> = named
            .iter()
            .map(|(n, t)| (n.as_str(), t.contiguous()))
            .collect();
        Tensor::write_safetensors(&dense, path)?;
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::models::{resolve, tests::spec, REGISTRY};

        #[test]
        fn channels_last_and_autocast_keep_the_function() {
            let p = resolve("resnet18", &spec(None, "tiny", &[])).unwrap();
            let io = ModelIo {
                in_channels: 3,
                image_size: 16,
                num_classes: 10,
            };
            let mut net = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 7).unwrap();
            let x = Tensor::rand([4, 3, 16, 16], (Kind::Float, Device::Cpu));
            let reference = net.forward_t(&x, false);
            net.to_channels_last();
            let convs: Vec<Tensor> = net
                .named_tensors()
                .into_iter()
                .map(|(_, t)| t)
                .filter(|t| t.dim() == 4)
                .collect();
            assert!(!convs.is_empty());
            for t in &convs {
                assert!(
                    crate::torch::is_channels_last(t),
                    "{:?} {:?}",
                    t.size(),
                    t.stride()
                );
            }
            // NHWC and NCHW convolutions are different oneDNN kernels (different summation order):
            // float32 rounding of logits of order 1, far below 1e-4.
            let cl = net.forward_t(&x, false);
            let diff = f64::try_from((&cl - &reference).abs().max()).unwrap();
            assert!(diff < 1e-4, "channels-last changed the logits by {diff}");
            // Saved in the standard layout: a fresh network loads the same function.
            let dir = tempfile::tempdir().unwrap();
            net.save(&dir.path().join("w.safetensors")).unwrap();
            let mut back = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 8).unwrap();
            back.load(&dir.path().join("w.safetensors")).unwrap();
            let diff = f64::try_from((back.forward_t(&x, false) - &reference).abs().max()).unwrap();
            assert!(diff < 1e-4, "{diff}");
            // bfloat16 autocast: float32 logits close to the float32 ones.
            net.set_autocast(Some(Kind::BFloat16));
            let half = net.forward_t(&x, false);
            assert_eq!(half.kind(), Kind::Float);
            let diff = f64::try_from((&half - &reference).abs().max()).unwrap();
            let scale = f64::try_from(reference.abs().max()).unwrap();
            assert!(
                diff > 0.0 && diff < 0.05 * scale.max(1.0),
                "{diff} vs {scale}"
            );
        }

        #[test]
        fn forward_shapes_and_init_is_seeded() {
            let io = ModelIo {
                in_channels: 3,
                image_size: 32,
                num_classes: 7,
            };
            for arch in REGISTRY.iter().filter(|a| a.native()) {
                let p = resolve(arch.name, &spec(None, "tiny", &[])).unwrap();
                let a = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 1).unwrap();
                let b = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 1).unwrap();
                let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
                let (ya, yb) = (a.forward_t(&x, false), b.forward_t(&x, false));
                assert_eq!(ya.size(), [2, 7], "{}", arch.name);
                assert_eq!(
                    f64::try_from((ya - yb).abs().max()).unwrap(),
                    0.0,
                    "{} init not seeded",
                    arch.name
                );
            }
        }

        #[test]
        fn save_load_roundtrip_uses_dotted_names() {
            let io = ModelIo {
                in_channels: 1,
                image_size: 8,
                num_classes: 3,
            };
            let p = resolve("resnet18", &spec(None, "tiny", &[])).unwrap();
            let a = Network::new(&p, &io, &[0.1], &[0.3], Device::Cpu, 1).unwrap();
            let mut b = Network::new(&p, &io, &[0.0], &[1.0], Device::Cpu, 2).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("w.safetensors");
            a.save(&f).unwrap();
            let names: Vec<String> = Tensor::read_safetensors(&f)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert!(
                names.contains(&"layer1.0.conv1.weight".to_string()),
                "{names:?}"
            );
            assert!(names.contains(&"normalize.mean".to_string()));
            b.load(&f).unwrap();
            let x = Tensor::rand([2, 1, 8, 8], (Kind::Float, Device::Cpu));
            let d = f64::try_from(
                (a.forward_t(&x, false) - b.forward_t(&x, false))
                    .abs()
                    .max(),
            )
            .unwrap();
            assert_eq!(d, 0.0);
        }
    }
}

/// The control plane builds no networks: [`Arch::build`] holds this placeholder there.
#[cfg(not(feature = "torch"))]
mod net {
    /// Stands for the worker's constructor.
    pub type BuildFn = fn();
    /// The placeholder each [`Arch`](super::Arch) names as `build_of::<Config>`.
    #[allow(clippy::extra_unused_type_parameters)]
    pub fn build_of<T>() {}
}

pub use net::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(super) fn spec(arch: Option<&str>, preset: &str, over: &[(&str, &str)]) -> ModelSpec {
        let overrides: BTreeMap<String, serde_yaml::Value> = over
            .iter()
            .map(|(k, v)| (k.to_string(), serde_yaml::from_str(v).unwrap()))
            .collect();
        ModelSpec {
            arch: arch.map(String::from),
            preset: preset.into(),
            overrides,
        }
    }

    #[test]
    fn family_problems_are_placed_at_their_field() {
        // A family's check names the field it rejects; `resolve` places it under the entry.
        let e = resolve("vit", &spec(None, "tiny", &[("depth", "0")])).unwrap_err();
        assert_eq!(e[0].path, ["models", "vit", "depth"]);
        assert_eq!(e[0].message, "`depth` must be at least 1, got 0");
        // A problem of the config as a whole stays at the entry.
        let e = resolve("vit", &spec(None, "tiny", &[("heads", "3")])).unwrap_err();
        assert_eq!(e[0].path, ["models", "vit"]);
        assert_eq!(e[0].message, "dim 64 is not divisible by heads 3");
        // Against the data: relative to the entry, for the caller to place.
        let p = resolve("vit", &spec(None, "tiny", &[])).unwrap();
        let io = ModelIo {
            in_channels: 3,
            image_size: 30,
            num_classes: 10,
        };
        let e = (find("vit").unwrap().fits)(&p.config, &io).unwrap_err();
        assert!(e.path.is_empty(), "{e:?}");
        assert_eq!(e.message, "patch_size 4 does not divide the image size 30");
    }

    #[test]
    fn overrides_apply_and_unknown_fields_are_named() {
        let p = resolve("vit", &spec(None, "tiny", &[("depth", "3")])).unwrap();
        assert_eq!(p.config["depth"], 3);
        let e = resolve("vit", &spec(None, "tiny", &[("dept", "3")])).unwrap_err();
        assert_eq!(e[0].path, ["models", "vit", "dept"]);
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `depth`?"));
        let e = resolve("resnet19", &spec(None, "tiny", &[])).unwrap_err();
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `resnet18`?"));
        assert!(resolve("x", &spec(Some("vit"), "huge", &[])).is_err());
    }
}
