//! DeiT (Touvron et al. 2021), the distilled variant: ViT plus a distillation token with its own
//! head; outside distillation training both heads see the labels and their logits are averaged
//! (timm's `VisionTransformerDistilled`). Names follow timm (`dist_token`, `head_dist`).
use super::vit::VitConfig;
use super::{build_of, check_of, fits_of, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeitConfig(pub VitConfig);

impl Family for DeitConfig {
    fn validate(&self) -> Result<(), Problem> {
        self.0.validate()
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        self.0.fits(io)
    }
}

pub static DEIT: Arch = Arch {
    name: "deit",
    family: "deit",
    kind: super::ArchKind::Transformer,
    about: "DeiT, distilled (Touvron et al. 2021); cifar = DeiT-S/4, imagenet = DeiT-S/16",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => Some(
            json!({"patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0, "drop_path_rate": 0.0, "dropout": 0.0}),
        ),
        "cifar" => Some(
            json!({"patch_size": 4, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0, "drop_path_rate": 0.1, "dropout": 0.0}),
        ),
        "imagenet" => Some(
            json!({"patch_size": 16, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0, "drop_path_rate": 0.1, "dropout": 0.0}),
        ),
        _ => None,
    },
    check: check_of::<DeitConfig>,
    fits: fits_of::<DeitConfig>,
    build: build_of::<DeitConfig>,
    reference: "timm deit_small_distilled_patch16_224",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{vit::Vit, Build};
    use tch::nn::{self, ModuleT};

    impl Build for DeitConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Vit::new(p, &self.0, io, true)))
        }
    }
}
