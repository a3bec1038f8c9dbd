//! Wide ResNet (Zagoruyko & Komodakis 2016): depth 6n+4, three stages of pre-activation basic
//! blocks widened by k (16k, 32k, 64k channels), optional dropout between the two convolutions.
//! Layout and names follow the adversarial-training code that defines WRN-28-10/34-10 (Madry et
//! al.'s and TRADES' `wideresnet.py`, used by RobustBench): `block1.layer.0.bn1`, `convShortcut`,
//! a final `bn1` and `fc`. TRADES' file also builds an unused `sub_block1`; it is not part of the
//! network and not counted here.
use super::resnet::Stem;
use super::{build_of, check_of, fits_of, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrnConfig {
    /// Total depth 6n+4 (n blocks per stage).
    pub depth: i64,
    /// Width multiplier k.
    pub widen: i64,
    /// Dropout between a block's convolutions (training only).
    pub dropout: f64,
    pub stem: Stem,
}

impl Family for WrnConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.depth < 10 || (self.depth - 4) % 6 != 0 {
            return Err(Problem::at(
                "depth",
                format!(
                    "`depth` must be 6n+4 with n ≥ 1 (10, 16, 22, 28, 34, 40, …), got {}",
                    self.depth
                ),
            ));
        }
        if self.widen < 1 {
            return Err(Problem::at(
                "widen",
                format!("`widen` must be at least 1, got {}", self.widen),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Problem::at(
                "dropout",
                format!("`dropout` must be in [0, 1), got {}", self.dropout),
            ));
        }
        Ok(())
    }
}

fn preset(depth: i64, p: &str) -> Option<serde_json::Value> {
    match p {
        "tiny" => Some(json!({"depth": 10, "widen": 2, "dropout": 0.0, "stem": "cifar"})),
        "cifar" => Some(json!({"depth": depth, "widen": 10, "dropout": 0.0, "stem": "cifar"})),
        "imagenet" => {
            Some(json!({"depth": depth, "widen": 10, "dropout": 0.0, "stem": "imagenet"}))
        }
        _ => None,
    }
}

pub static WRN28_10: Arch = Arch {
    name: "wrn28_10",
    family: "wide_resnet",
    kind: super::ArchKind::Cnn,
    about: "WideResNet-28-10 (Zagoruyko & Komodakis 2016)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| preset(28, p),
    check: check_of::<WrnConfig>,
    fits: fits_of::<WrnConfig>,
    build: build_of::<WrnConfig>,
    reference: "TRADES/RobustBench wideresnet.py (ImageNet stem: 7×7/2 + max-pool)",
};

pub static WRN34_10: Arch = Arch {
    name: "wrn34_10",
    family: "wide_resnet",
    kind: super::ArchKind::Cnn,
    about: "WideResNet-34-10 (Madry et al. 2018; Zhang et al. 2019)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| preset(34, p),
    check: check_of::<WrnConfig>,
    fits: fits_of::<WrnConfig>,
    build: build_of::<WrnConfig>,
    reference: "TRADES/RobustBench wideresnet.py (ImageNet stem: 7×7/2 + max-pool)",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{bn2d, conv2d_kaiming, dropout, linear_default},
        Build, ModelIo,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for WrnConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(WideResNet::new(p, self, io)))
        }
    }

    #[derive(Debug)]
    struct WrnBlock {
        bn1: nn::BatchNorm,
        conv1: nn::Conv2D,
        bn2: nn::BatchNorm,
        conv2: nn::Conv2D,
        shortcut: Option<nn::Conv2D>,
        dropout: f64,
    }

    impl WrnBlock {
        fn new(p: nn::Path, cin: i64, cout: i64, stride: i64, dropout: f64) -> Self {
            Self {
                bn1: bn2d(&p / "bn1", cin),
                conv1: conv2d_kaiming(&p / "conv1", cin, cout, 3, stride, 1, 1, false),
                bn2: bn2d(&p / "bn2", cout),
                conv2: conv2d_kaiming(&p / "conv2", cout, cout, 3, 1, 1, 1, false),
                shortcut: (cin != cout).then(|| {
                    conv2d_kaiming(&p / "convShortcut", cin, cout, 1, stride, 0, 1, false)
                }),
                dropout,
            }
        }
    }

    impl ModuleT for WrnBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let a = x.apply_t(&self.bn1, train).relu_();
            let y = a.apply(&self.conv1).apply_t(&self.bn2, train).relu_();
            let mut y = dropout(&y, self.dropout, train).apply(&self.conv2);
            // With equal widths the identity takes the raw input; otherwise the projection takes the
            // pre-activated one. Added in place: a convolution's backward needs its input only.
            let _ = match &self.shortcut {
                Some(c) => y.g_add_(&a.apply(c)),
                None => y.g_add_(x),
            };
            y
        }
    }

    #[derive(Debug)]
    pub struct WideResNet {
        conv1: nn::Conv2D,
        stem: Stem,
        blocks: Vec<WrnBlock>,
        bn1: nn::BatchNorm,
        fc: nn::Linear,
    }

    impl WideResNet {
        pub fn new(p: &nn::Path, c: &WrnConfig, io: &ModelIo) -> Self {
            let n = (c.depth - 4) / 6;
            let widths = [16 * c.widen, 32 * c.widen, 64 * c.widen];
            let conv1 = match c.stem {
                Stem::Cifar => conv2d_kaiming(p / "conv1", io.in_channels, 16, 3, 1, 1, 1, false),
                Stem::Imagenet => {
                    conv2d_kaiming(p / "conv1", io.in_channels, 16, 7, 2, 3, 1, false)
                }
            };
            let mut blocks = Vec::new();
            let mut cin = 16;
            for (s, &w) in widths.iter().enumerate() {
                for b in 0..n {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let bp = p / format!("block{}", s + 1) / "layer" / b;
                    blocks.push(WrnBlock::new(bp, cin, w, stride, c.dropout));
                    cin = w;
                }
            }
            Self {
                conv1,
                stem: c.stem,
                blocks,
                bn1: bn2d(p / "bn1", cin),
                fc: linear_default(p / "fc", cin, io.num_classes),
            }
        }
    }

    impl ModuleT for WideResNet {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.conv1);
            if self.stem == Stem::Imagenet {
                y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            }
            for b in &self.blocks {
                y = b.forward_t(&y, train);
            }
            y.apply_t(&self.bn1, train)
                .relu_()
                .adaptive_avg_pool2d([1, 1])
                .flatten(1, -1)
                .apply(&self.fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
