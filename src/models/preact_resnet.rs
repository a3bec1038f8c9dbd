//! Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks"): BN-ReLU
//! before each convolution, a 1×1 projection shortcut taken from the pre-activated input, and a
//! final BN-ReLU before pooling. Layout and names follow the adversarial-training literature's
//! PreActResNet-18 (Wong et al. 2020; Rice et al. 2020, `locuslab/robust_overfitting`), the
//! network RobustBench's PreAct checkpoints use.
use super::resnet::Stem;
use super::{build_of, check_of, fits_of, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreActConfig {
    /// Blocks per stage.
    pub layers: Vec<i64>,
    /// Channels per stage; the first also sets the stem.
    pub widths: Vec<i64>,
    pub stem: Stem,
}

impl Family for PreActConfig {
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

pub static PREACT_RESNET18: Arch = Arch {
    name: "preact_resnet18",
    family: "preact_resnet",
    kind: super::ArchKind::Cnn,
    about:
        "PreAct ResNet-18 (He et al. 2016b), the adversarial-training standard (Rice et al. 2020)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let w = [64, 128, 256, 512];
        match p {
            "tiny" => Some(json!({"layers": [1, 1, 1], "widths": [16, 32, 64], "stem": "cifar"})),
            "cifar" => Some(json!({"layers": [2, 2, 2, 2], "widths": w, "stem": "cifar"})),
            "imagenet" => Some(json!({"layers": [2, 2, 2, 2], "widths": w, "stem": "imagenet"})),
            _ => None,
        }
    },
    check: check_of::<PreActConfig>,
    fits: fits_of::<PreActConfig>,
    build: build_of::<PreActConfig>,
    reference: "locuslab/robust_overfitting PreActResNet18 (ImageNet stem: 7×7/2 + max-pool)",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{bn2d, conv2d_kaiming, linear_default},
        Build, ModelIo,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for PreActConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(PreActResNet::new(p, self, io)))
        }
    }

    #[derive(Debug)]
    struct PreActBlock {
        bn1: nn::BatchNorm,
        conv1: nn::Conv2D,
        bn2: nn::BatchNorm,
        conv2: nn::Conv2D,
        shortcut: Option<nn::Conv2D>,
    }

    impl PreActBlock {
        fn new(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
            Self {
                bn1: bn2d(&p / "bn1", cin),
                conv1: conv2d_kaiming(&p / "conv1", cin, cout, 3, stride, 1, 1, false),
                bn2: bn2d(&p / "bn2", cout),
                conv2: conv2d_kaiming(&p / "conv2", cout, cout, 3, 1, 1, 1, false),
                shortcut: (stride != 1 || cin != cout).then(|| {
                    conv2d_kaiming(&p / "shortcut" / 0, cin, cout, 1, stride, 0, 1, false)
                }),
            }
        }
    }

    impl ModuleT for PreActBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let out = x.apply_t(&self.bn1, train).relu_();
            let short = match &self.shortcut {
                Some(c) => out.apply(c),
                None => x.shallow_clone(),
            };
            let mut y = out
                .apply(&self.conv1)
                .apply_t(&self.bn2, train)
                .relu_()
                .apply(&self.conv2);
            // In place: a convolution's backward needs its input, not its output.
            let _ = y.g_add_(&short);
            y
        }
    }

    #[derive(Debug)]
    pub struct PreActResNet {
        conv1: nn::Conv2D,
        stem: Stem,
        blocks: Vec<PreActBlock>,
        bn: nn::BatchNorm,
        linear: nn::Linear,
    }

    impl PreActResNet {
        pub fn new(p: &nn::Path, c: &PreActConfig, io: &ModelIo) -> Self {
            let w0 = c.widths[0];
            let conv1 = match c.stem {
                Stem::Cifar => conv2d_kaiming(p / "conv1", io.in_channels, w0, 3, 1, 1, 1, false),
                Stem::Imagenet => {
                    conv2d_kaiming(p / "conv1", io.in_channels, w0, 7, 2, 3, 1, false)
                }
            };
            let mut blocks = Vec::new();
            let mut cin = w0;
            for (stage, (&n, &w)) in c.layers.iter().zip(&c.widths).enumerate() {
                for b in 0..n {
                    let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                    let bp = p / format!("layer{}", stage + 1) / b;
                    blocks.push(PreActBlock::new(bp, cin, w, stride));
                    cin = w;
                }
            }
            Self {
                conv1,
                stem: c.stem,
                blocks,
                bn: bn2d(p / "bn", cin),
                linear: linear_default(p / "linear", cin, io.num_classes),
            }
        }
    }

    impl ModuleT for PreActResNet {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.conv1);
            if self.stem == Stem::Imagenet {
                y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
            }
            for b in &self.blocks {
                y = b.forward_t(&y, train);
            }
            y.apply_t(&self.bn, train)
                .relu_()
                .adaptive_avg_pool2d([1, 1])
                .flatten(1, -1)
                .apply(&self.linear)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
