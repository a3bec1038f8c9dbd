//! ConvNeXt (Liu et al. 2022): a patchify stem, stages of 7×7 depthwise conv → LayerNorm →
//! 4× MLP with GELU → layer scale, with stochastic depth; LayerNorm + 2×2 stride-2 conv between
//! stages; pooled LayerNorm head. Names follow timm `convnext_tiny` (`stem.0`, `stages.1.
//! downsample.1`, `stages.0.blocks.0.conv_dw`, `.gamma`, `head.norm`, `head.fc`). The CIFAR
//! variant uses a 2×2 stem so a 32px image keeps 16×16 tokens in the first stage.
use super::{build_of, check_of, fits_of, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNextConfig {
    /// Blocks per stage (tiny: [3,3,9,3]).
    pub depths: Vec<i64>,
    /// Channels per stage (tiny: [96,192,384,768]).
    pub dims: Vec<i64>,
    /// Stem patch size (= stride): 4 at 224px.
    pub stem_patch: i64,
    pub drop_path_rate: f64,
    /// Initial layer-scale value (timm: 1e-6).
    pub layer_scale_init: f64,
}

impl Family for ConvNextConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.depths.is_empty() || self.depths.len() != self.dims.len() {
            return Err(Problem::at(
                "depths",
                "`depths` and `dims` need the same, non-zero length",
            ));
        }
        if self
            .depths
            .iter()
            .chain(&self.dims)
            .chain([&self.stem_patch])
            .any(|&x| x < 1)
        {
            return Err(Problem::at(
                "depths",
                "`depths`, `dims` and `stem_patch` must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(Problem::at(
                "drop_path_rate",
                format!(
                    "`drop_path_rate` must be in [0, 1), got {}",
                    self.drop_path_rate
                ),
            ));
        }
        Ok(())
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        let stride = self.stem_patch << (self.depths.len() - 1);
        if io.image_size < stride {
            return Err(Problem::new(
                &[],
                format!(
                    "total stride {stride} exceeds the image size {}",
                    io.image_size
                ),
            ));
        }
        Ok(())
    }
}

pub static CONVNEXT: Arch = Arch {
    name: "convnext",
    family: "convnext",
    kind: super::ArchKind::Cnn,
    about: "ConvNeXt (Liu et al. 2022); cifar/imagenet = ConvNeXt-T",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let (d, w) = ([3, 3, 9, 3], [96, 192, 384, 768]);
        match p {
            "tiny" => Some(
                json!({"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "stem_patch": 2, "drop_path_rate": 0.0, "layer_scale_init": 1e-6}),
            ),
            "cifar" => Some(
                json!({"depths": d, "dims": w, "stem_patch": 2, "drop_path_rate": 0.1, "layer_scale_init": 1e-6}),
            ),
            "imagenet" => Some(
                json!({"depths": d, "dims": w, "stem_patch": 4, "drop_path_rate": 0.1, "layer_scale_init": 1e-6}),
            ),
            _ => None,
        }
    },
    check: check_of::<ConvNextConfig>,
    fits: fits_of::<ConvNextConfig>,
    build: build_of::<ConvNextConfig>,
    reference: "timm convnext_tiny",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, conv2d_trunc_normal as conv, drop_path, drop_path_rates, LayerNorm2d},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for ConvNextConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(ConvNext::new(p, self, io)))
        }
    }

    #[derive(Debug)]
    struct Block {
        conv_dw: nn::Conv2D,
        norm: nn::LayerNorm,
        fc1: nn::Linear,
        fc2: nn::Linear,
        gamma: Tensor,
        drop_path: f64,
    }

    impl Block {
        fn new(p: nn::Path, dim: i64, ls: f64, drop_path: f64) -> Self {
            Self {
                conv_dw: conv(&p / "conv_dw", dim, dim, 7, 1, 3, dim),
                norm: layers::layer_norm(&p / "norm", dim, 1e-6),
                fc1: layers::linear(&p / "mlp" / "fc1", dim, 4 * dim, true),
                fc2: layers::linear(&p / "mlp" / "fc2", 4 * dim, dim, true),
                gamma: layers::layer_scale(&p, "gamma", dim, ls),
                drop_path,
            }
        }
    }

    impl ModuleT for Block {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = x
                .apply(&self.conv_dw)
                .permute([0, 2, 3, 1])
                .apply(&self.norm)
                .apply(&self.fc1)
                .gelu("none")
                .apply(&self.fc2);
            let y = (y * &self.gamma).permute([0, 3, 1, 2]);
            x + drop_path(&y, self.drop_path, train)
        }
    }

    #[derive(Debug)]
    struct Stage {
        downsample: Option<(LayerNorm2d, nn::Conv2D)>,
        blocks: Vec<Block>,
    }

    #[derive(Debug)]
    pub struct ConvNext {
        stem: (nn::Conv2D, LayerNorm2d),
        stages: Vec<Stage>,
        head_norm: LayerNorm2d,
        head_fc: nn::Linear,
    }

    impl ConvNext {
        pub fn new(p: &nn::Path, c: &ConvNextConfig, io: &ModelIo) -> Self {
            let total: i64 = c.depths.iter().sum();
            let dpr = drop_path_rates(c.drop_path_rate, total);
            let mut k = 0;
            let mut stages = Vec::new();
            let mut cin = c.dims[0];
            for (i, (&d, &w)) in c.depths.iter().zip(&c.dims).enumerate() {
                let sp = p / "stages" / i as i64;
                let downsample = (i > 0).then(|| {
                    (
                        LayerNorm2d::new(&sp / "downsample" / 0, cin, 1e-6),
                        conv(&sp / "downsample" / 1, cin, w, 2, 2, 0, 1),
                    )
                });
                let blocks = (0..d)
                    .map(|j| {
                        k += 1;
                        Block::new(&sp / "blocks" / j, w, c.layer_scale_init, dpr[k - 1])
                    })
                    .collect();
                stages.push(Stage { downsample, blocks });
                cin = w;
            }
            Self {
                stem: (
                    conv(
                        p / "stem" / 0,
                        io.in_channels,
                        c.dims[0],
                        c.stem_patch,
                        c.stem_patch,
                        0,
                        1,
                    ),
                    LayerNorm2d::new(p / "stem" / 1, c.dims[0], 1e-6),
                ),
                stages,
                head_norm: LayerNorm2d::new(p / "head" / "norm", cin, 1e-6),
                head_fc: layers::linear(p / "head" / "fc", cin, io.num_classes, true),
            }
        }
    }

    impl ModuleT for ConvNext {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.stem.0).apply(&self.stem.1);
            for s in &self.stages {
                if let Some((n, c)) = &s.downsample {
                    y = y.apply(n).apply(c);
                }
                for b in &s.blocks {
                    y = b.forward_t(&y, train);
                }
            }
            y.adaptive_avg_pool2d([1, 1])
                .apply(&self.head_norm)
                .flatten(1, -1)
                .apply(&self.head_fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
