//! ResNet (He et al. 2016) with basic blocks, in the CIFAR variant (3×3 stem, no max-pool) and the
//! ImageNet variant (7×7/2 stem + max-pool). Parameter names follow torchvision/timm.
use super::{build_of, check_of, fits_of, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 stride-1 convolution, no max-pool: the standard CIFAR ResNet.
    Cifar,
    /// 7×7 stride-2 convolution and 3×3 stride-2 max-pool.
    Imagenet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Block {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1 → 3×3 → 1×1 with 4× expansion (ResNet-50/101/152).
    Bottleneck,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Blocks per stage.
    pub layers: Vec<i64>,
    /// Channels per stage (before the bottleneck's 4× expansion); the first also sets the stem.
    pub widths: Vec<i64>,
    pub stem: Stem,
    pub block: Block,
}

impl Family for ResNetConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.layers.is_empty() || self.layers.len() != self.widths.len() {
            return Err(Problem::at(
                "layers",
                "`layers` and `widths` need the same, non-zero length",
            ));
        }
        if self.layers.iter().chain(&self.widths).any(|&x| x < 1) {
            return Err(Problem::at(
                "layers",
                "`layers` and `widths` entries must be at least 1",
            ));
        }
        Ok(())
    }
}

fn preset(block: Block, layers: [i64; 4], p: &str) -> Option<serde_json::Value> {
    let w = [64, 128, 256, 512];
    match p {
        "tiny" => Some(
            json!({"layers": [1, 1, 1], "widths": [16, 32, 64], "stem": "cifar", "block": block}),
        ),
        "cifar" => Some(json!({"layers": layers, "widths": w, "stem": "cifar", "block": block})),
        "imagenet" => {
            Some(json!({"layers": layers, "widths": w, "stem": "imagenet", "block": block}))
        }
        _ => None,
    }
}

pub static RESNET18: Arch = Arch {
    name: "resnet18",
    family: "resnet",
    kind: super::ArchKind::Cnn,
    about: "ResNet-18, basic blocks [2,2,2,2] (He et al. 2016)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| preset(Block::Basic, [2, 2, 2, 2], p),
    check: check_of::<ResNetConfig>,
    fits: fits_of::<ResNetConfig>,
    build: build_of::<ResNetConfig>,
    reference: "timm/torchvision resnet18",
};

pub static RESNET50: Arch = Arch {
    name: "resnet50",
    family: "resnet",
    kind: super::ArchKind::Cnn,
    about: "ResNet-50, bottleneck blocks [3,4,6,3] (He et al. 2016)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| preset(Block::Bottleneck, [3, 4, 6, 3], p),
    check: check_of::<ResNetConfig>,
    fits: fits_of::<ResNetConfig>,
    build: build_of::<ResNetConfig>,
    reference: "timm/torchvision resnet50",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{bn2d, Build, ModelIo};
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for ResNetConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(ResNet::new(p, self, io)))
        }
    }

    /// A bias-free convolution with PyTorch's default init.
    fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
        crate::models::layers::conv2d(p, i, o, k, stride, padding, 1, false)
    }

    #[derive(Debug)]
    struct Bottleneck {
        conv1: nn::Conv2D,
        bn1: nn::BatchNorm,
        conv2: nn::Conv2D,
        bn2: nn::BatchNorm,
        conv3: nn::Conv2D,
        bn3: nn::BatchNorm,
        downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
    }

    impl Bottleneck {
        fn new(p: nn::Path, cin: i64, width: i64, stride: i64) -> Self {
            let cout = 4 * width;
            let downsample = (stride != 1 || cin != cout).then(|| {
                (
                    conv(&p / "downsample" / 0, cin, cout, 1, stride, 0),
                    bn2d(&p / "downsample" / 1, cout),
                )
            });
            Self {
                conv1: conv(&p / "conv1", cin, width, 1, 1, 0),
                bn1: bn2d(&p / "bn1", width),
                conv2: conv(&p / "conv2", width, width, 3, stride, 1),
                bn2: bn2d(&p / "bn2", width),
                conv3: conv(&p / "conv3", width, cout, 1, 1, 0),
                bn3: bn2d(&p / "bn3", cout),
                downsample,
            }
        }
    }

    impl ModuleT for Bottleneck {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x
                .apply(&self.conv1)
                .apply_t(&self.bn1, train)
                .relu_()
                .apply(&self.conv2)
                .apply_t(&self.bn2, train)
                .relu_()
                .apply(&self.conv3)
                .apply_t(&self.bn3, train);
            let short = match &self.downsample {
                Some((c, b)) => x.apply(c).apply_t(b, train),
                None => x.shallow_clone(),
            };
            // In place, as torchvision (`out += identity; relu(inplace)`): no fresh activation
            // buffers; batch norm's backward needs its input, not its output.
            let _ = y.g_add_(&short);
            y.relu_()
        }
    }

    #[derive(Debug)]
    struct BasicBlock {
        conv1: nn::Conv2D,
        bn1: nn::BatchNorm,
        conv2: nn::Conv2D,
        bn2: nn::BatchNorm,
        downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
    }

    impl BasicBlock {
        fn new(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
            let downsample = (stride != 1 || cin != cout).then(|| {
                (
                    conv(&p / "downsample" / 0, cin, cout, 1, stride, 0),
                    bn2d(&p / "downsample" / 1, cout),
                )
            });
            Self {
                conv1: conv(&p / "conv1", cin, cout, 3, stride, 1),
                bn1: bn2d(&p / "bn1", cout),
                conv2: conv(&p / "conv2", cout, cout, 3, 1, 1),
                bn2: bn2d(&p / "bn2", cout),
                downsample,
            }
        }
    }

    impl ModuleT for BasicBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x
                .apply(&self.conv1)
                .apply_t(&self.bn1, train)
                .relu_()
                .apply(&self.conv2)
                .apply_t(&self.bn2, train);
            let short = match &self.downsample {
                Some((c, b)) => x.apply(c).apply_t(b, train),
                None => x.shallow_clone(),
            };
            let _ = y.g_add_(&short);
            y.relu_()
        }
    }

    #[derive(Debug)]
    pub struct ResNet {
        conv1: nn::Conv2D,
        bn1: nn::BatchNorm,
        stem: Stem,
        blocks: Vec<Box<dyn ModuleT>>,
        fc: nn::Linear,
    }

    impl ResNet {
        pub fn new(p: &nn::Path, c: &ResNetConfig, io: &ModelIo) -> Self {
            let w0 = c.widths[0];
            let conv1 = match c.stem {
                Stem::Cifar => conv(p / "conv1", io.in_channels, w0, 3, 1, 1),
                Stem::Imagenet => conv(p / "conv1", io.in_channels, w0, 7, 2, 3),
            };
            let mut blocks: Vec<Box<dyn ModuleT>> = Vec::new();
            let mut cin = w0;
            for (stage, (&n, &w)) in c.layers.iter().zip(&c.widths).enumerate() {
                for b in 0..n {
                    let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                    let bp = p / format!("layer{}", stage + 1) / b;
                    match c.block {
                        Block::Basic => {
                            blocks.push(Box::new(BasicBlock::new(bp, cin, w, stride)));
                            cin = w;
                        }
                        Block::Bottleneck => {
                            blocks.push(Box::new(Bottleneck::new(bp, cin, w, stride)));
                            cin = 4 * w;
                        }
                    }
                }
            }
            Self {
                conv1,
                bn1: bn2d(p / "bn1", w0),
                stem: c.stem,
                blocks,
                fc: nn::linear(p / "fc", cin, io.num_classes, Default::default()),
            }
        }
    }

    impl ModuleT for ResNet {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu_();
            if self.stem == Stem::Imagenet {
                y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            }
            for b in &self.blocks {
                y = b.forward_t(&y, train);
            }
            y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
