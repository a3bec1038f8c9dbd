//! VGG with batch norm (Simonyan & Zisserman 2015; BN variant as in torchvision `vgg16_bn`).
//! Stages of 3×3 conv-BN-ReLU followed by 2×2 max-pool. Two heads: torchvision's three-layer MLP
//! on a 7×7 adaptive pool (`classifier.0/3/6`, the 224px reference), and the CIFAR variant's
//! single linear layer on the pooled features (`classifier`, kuangliu/pytorch-cifar).
//! Names follow torchvision (`features.N`).
use super::{build_of, check_of, fits_of, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VggHead {
    /// Global pool + one linear layer (CIFAR VGG).
    Linear,
    /// 7×7 adaptive pool + Linear-ReLU-Dropout ×2 + Linear (ImageNet VGG).
    Mlp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VggConfig {
    /// Convolutions per stage (VGG-16: [2,2,3,3,3]).
    pub layers: Vec<i64>,
    /// Channels per stage.
    pub widths: Vec<i64>,
    pub head: VggHead,
    /// Hidden width of the MLP head.
    pub hidden: i64,
    /// Dropout in the MLP head.
    pub dropout: f64,
}

impl Family for VggConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.layers.is_empty() || self.layers.len() != self.widths.len() {
            return Err(Problem::at(
                "layers",
                "`layers` and `widths` need the same, non-zero length",
            ));
        }
        if self
            .layers
            .iter()
            .chain(&self.widths)
            .chain([&self.hidden])
            .any(|&x| x < 1)
        {
            return Err(Problem::at(
                "layers",
                "`layers`, `widths` and `hidden` must be at least 1",
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
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        let down = 1i64 << self.layers.len();
        if io.image_size < down {
            return Err(Problem::new(
                &[],
                format!(
                    "{} max-pools need images of at least {down}px, got {}",
                    self.layers.len(),
                    io.image_size
                ),
            ));
        }
        Ok(())
    }
}

pub static VGG16_BN: Arch = Arch {
    name: "vgg16_bn",
    family: "vgg",
    kind: super::ArchKind::Cnn,
    about: "VGG-16 with batch norm (Simonyan & Zisserman 2015)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let (l, w) = ([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]);
        match p {
            "tiny" => Some(
                json!({"layers": [1, 1, 1], "widths": [16, 32, 64], "head": "linear", "hidden": 4096, "dropout": 0.5}),
            ),
            "cifar" => Some(
                json!({"layers": l, "widths": w, "head": "linear", "hidden": 4096, "dropout": 0.5}),
            ),
            "imagenet" => Some(
                json!({"layers": l, "widths": w, "head": "mlp", "hidden": 4096, "dropout": 0.5}),
            ),
            _ => None,
        }
    },
    check: check_of::<VggConfig>,
    fits: fits_of::<VggConfig>,
    build: build_of::<VggConfig>,
    reference: "timm/torchvision vgg16_bn",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{bn2d, conv2d_kaiming, dropout},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for VggConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Vgg::new(p, self, io)))
        }
    }

    #[derive(Debug)]
    pub struct Vgg {
        /// (conv, bn, pool after) per convolution.
        convs: Vec<(nn::Conv2D, nn::BatchNorm, bool)>,
        head: VggHead,
        fcs: Vec<nn::Linear>,
        dropout: f64,
    }

    impl Vgg {
        pub fn new(p: &nn::Path, c: &VggConfig, io: &ModelIo) -> Self {
            let f = p / "features";
            let mut convs = Vec::new();
            let (mut i, mut cin) = (0i64, io.in_channels);
            for (&n, &w) in c.layers.iter().zip(&c.widths) {
                for j in 0..n {
                    let conv = conv2d_kaiming(&f / i, cin, w, 3, 1, 1, 1, true);
                    let bn = bn2d(&f / (i + 1), w);
                    convs.push((conv, bn, j == n - 1));
                    i += if j == n - 1 { 4 } else { 3 };
                    cin = w;
                }
            }
            let cls = p / "classifier";
            let init = nn::LinearConfig {
                ws_init: nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
                bs_init: Some(nn::Init::Const(0.0)),
                bias: true,
            };
            let fcs = match c.head {
                VggHead::Linear => vec![nn::linear(&cls, cin, io.num_classes, init)],
                VggHead::Mlp => vec![
                    nn::linear(&cls / 0, cin * 49, c.hidden, init),
                    nn::linear(&cls / 3, c.hidden, c.hidden, init),
                    nn::linear(&cls / 6, c.hidden, io.num_classes, init),
                ],
            };
            Self {
                convs,
                head: c.head,
                fcs,
                dropout: c.dropout,
            }
        }
    }

    impl ModuleT for Vgg {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.shallow_clone();
            for (conv, bn, pool) in &self.convs {
                y = y.apply(conv).apply_t(bn, train).relu();
                if *pool {
                    y = y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
                }
            }
            match self.head {
                VggHead::Linear => y
                    .adaptive_avg_pool2d([1, 1])
                    .flatten(1, -1)
                    .apply(&self.fcs[0]),
                VggHead::Mlp => {
                    let mut h = y.adaptive_avg_pool2d([7, 7]).flatten(1, -1);
                    for fc in &self.fcs[..2] {
                        h = dropout(&h.apply(fc).relu(), self.dropout, train);
                    }
                    h.apply(&self.fcs[2])
                }
            }
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
