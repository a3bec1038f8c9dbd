//! DenseNet-BC (Huang et al. 2017): dense blocks of BN-ReLU-1×1 conv (bottleneck) and
//! BN-ReLU-3×3 conv whose outputs are concatenated, transitions that compress channels by 0.5 and
//! average-pool. Names follow torchvision/timm `densenet121` (`features.denseblock1.denselayer1.
//! norm1`, `features.transition1.conv`, `features.norm5`, `classifier`). The CIFAR stem is a 3×3
//! stride-1 convolution (kuangliu/pytorch-cifar) followed by BN-ReLU, without the max-pool.
use super::resnet::Stem;
use super::{build_of, check_of, fits_of, positive, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseNetConfig {
    pub growth_rate: i64,
    /// Layers per dense block (DenseNet-121: [6,12,24,16]).
    pub blocks: Vec<i64>,
    /// Channels after the stem.
    pub init_features: i64,
    /// Bottleneck width = bn_size × growth_rate.
    pub bn_size: i64,
    /// Dropout after each dense layer (training only).
    pub dropout: f64,
    pub stem: Stem,
}

impl Family for DenseNetConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("growth_rate", self.growth_rate),
            ("init_features", self.init_features),
            ("bn_size", self.bn_size),
        ])?;
        if self.blocks.is_empty() || self.blocks.iter().any(|&b| b < 1) {
            return Err(Problem::at(
                "blocks",
                "`blocks` needs at least one entry, each at least 1",
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

pub static DENSENET121: Arch = Arch {
    name: "densenet121",
    family: "densenet",
    kind: super::ArchKind::Cnn,
    about: "DenseNet-121, growth 32, blocks [6,12,24,16] (Huang et al. 2017)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let b = [6, 12, 24, 16];
        match p {
            "tiny" => Some(
                json!({"growth_rate": 8, "blocks": [2, 2, 2], "init_features": 16, "bn_size": 4, "dropout": 0.0, "stem": "cifar"}),
            ),
            "cifar" => Some(
                json!({"growth_rate": 32, "blocks": b, "init_features": 64, "bn_size": 4, "dropout": 0.0, "stem": "cifar"}),
            ),
            "imagenet" => Some(
                json!({"growth_rate": 32, "blocks": b, "init_features": 64, "bn_size": 4, "dropout": 0.0, "stem": "imagenet"}),
            ),
            _ => None,
        }
    },
    check: check_of::<DenseNetConfig>,
    fits: fits_of::<DenseNetConfig>,
    build: build_of::<DenseNetConfig>,
    reference: "timm/torchvision densenet121",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{bn2d, conv2d_kaiming, dropout},
        Build, ModelIo,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for DenseNetConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(DenseNet::new(p, self, io)))
        }
    }

    #[derive(Debug)]
    struct DenseLayer {
        norm1: nn::BatchNorm,
        conv1: nn::Conv2D,
        norm2: nn::BatchNorm,
        conv2: nn::Conv2D,
        dropout: f64,
    }

    impl DenseLayer {
        fn new(p: nn::Path, cin: i64, growth: i64, bn_size: i64, dropout: f64) -> Self {
            let mid = bn_size * growth;
            Self {
                norm1: bn2d(&p / "norm1", cin),
                conv1: conv2d_kaiming(&p / "conv1", cin, mid, 1, 1, 0, 1, false),
                norm2: bn2d(&p / "norm2", mid),
                conv2: conv2d_kaiming(&p / "conv2", mid, growth, 3, 1, 1, 1, false),
                dropout,
            }
        }
    }

    impl ModuleT for DenseLayer {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = x
                .apply_t(&self.norm1, train)
                .relu()
                .apply(&self.conv1)
                .apply_t(&self.norm2, train)
                .relu()
                .apply(&self.conv2);
            Tensor::cat(&[x, &dropout(&y, self.dropout, train)], 1)
        }
    }

    #[derive(Debug)]
    struct Transition {
        norm: nn::BatchNorm,
        conv: nn::Conv2D,
    }

    #[derive(Debug)]
    pub struct DenseNet {
        conv0: nn::Conv2D,
        norm0: nn::BatchNorm,
        stem: Stem,
        /// Dense layers of each block, each block but the last followed by a transition.
        blocks: Vec<(Vec<DenseLayer>, Option<Transition>)>,
        norm5: nn::BatchNorm,
        classifier: nn::Linear,
    }

    impl DenseNet {
        pub fn new(p: &nn::Path, c: &DenseNetConfig, io: &ModelIo) -> Self {
            let f = p / "features";
            let conv0 = match c.stem {
                Stem::Cifar => conv2d_kaiming(
                    &f / "conv0",
                    io.in_channels,
                    c.init_features,
                    3,
                    1,
                    1,
                    1,
                    false,
                ),
                Stem::Imagenet => conv2d_kaiming(
                    &f / "conv0",
                    io.in_channels,
                    c.init_features,
                    7,
                    2,
                    3,
                    1,
                    false,
                ),
            };
            let mut ch = c.init_features;
            let mut blocks = Vec::new();
            for (i, &n) in c.blocks.iter().enumerate() {
                let bp = &f / format!("denseblock{}", i + 1);
                let layers: Vec<DenseLayer> = (0..n)
                    .map(|j| {
                        let l = DenseLayer::new(
                            &bp / format!("denselayer{}", j + 1),
                            ch + j * c.growth_rate,
                            c.growth_rate,
                            c.bn_size,
                            c.dropout,
                        );
                        l
                    })
                    .collect();
                ch += n * c.growth_rate;
                let trans = (i + 1 < c.blocks.len()).then(|| {
                    let tp = &f / format!("transition{}", i + 1);
                    let t = Transition {
                        norm: bn2d(&tp / "norm", ch),
                        conv: conv2d_kaiming(&tp / "conv", ch, ch / 2, 1, 1, 0, 1, false),
                    };
                    ch /= 2;
                    t
                });
                blocks.push((layers, trans));
            }
            Self {
                conv0,
                norm0: bn2d(&f / "norm0", c.init_features),
                stem: c.stem,
                blocks,
                norm5: bn2d(&f / "norm5", ch),
                classifier: nn::linear(
                    p / "classifier",
                    ch,
                    io.num_classes,
                    nn::LinearConfig {
                        bs_init: Some(nn::Init::Const(0.0)),
                        ..Default::default()
                    },
                ),
            }
        }
    }

    impl ModuleT for DenseNet {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.conv0).apply_t(&self.norm0, train).relu();
            if self.stem == Stem::Imagenet {
                y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            }
            for (layers, trans) in &self.blocks {
                for l in layers {
                    y = l.forward_t(&y, train);
                }
                if let Some(t) = trans {
                    y = y.apply_t(&t.norm, train).relu().apply(&t.conv).avg_pool2d(
                        [2, 2],
                        [2, 2],
                        [0, 0],
                        false,
                        true,
                        None::<i64>,
                    );
                }
            }
            y.apply_t(&self.norm5, train)
                .relu()
                .adaptive_avg_pool2d([1, 1])
                .flatten(1, -1)
                .apply(&self.classifier)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
