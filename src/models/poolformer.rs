//! PoolFormer (Yu et al. 2022, "MetaFormer Is Actually What You Need for Vision") in timm's
//! layout (`timm.models.metaformer.MetaFormer` with `poolformer_s12`'s arguments): a 7×7 stride-4
//! stem convolution (padding 2), four stages of MetaFormer blocks — GroupNorm with one group →
//! pooling token mixer `avgpool3×3(x) − x` (stride 1, padding excluded from the average) → layer
//! scale, then GroupNorm → 1×1-conv MLP (4×, exact GELU) → layer scale, both residual with
//! stochastic depth — 3×3 stride-2 convolutions between stages, global average pool, LayerNorm
//! (eps 1e-6) and a linear head. Names follow timm `poolformer_s12` (`stem.conv`,
//! `stages.1.downsample.conv`, `stages.0.blocks.0.norm1`, `.layer_scale1.scale`, `.mlp.fc1`,
//! `head.norm`, `head.fc`). GroupNorm eps 1e-5. As in timm, a stage whose width equals the
//! previous one has no downsampling convolution; the MLP ratio is fixed at 4 as in timm.
//!
//! The CIFAR variant keeps PoolFormer-S12's stages with a 3×3 stride-1 stem, so a 32px image gives
//! 32/16/8/4 feature maps (224px PoolFormer: 56/28/14/7).
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFormerConfig {
    /// Blocks per stage (S12: [2, 2, 6, 2]).
    pub depths: Vec<i64>,
    /// Channels per stage (S12: [64, 128, 320, 512]).
    pub dims: Vec<i64>,
    /// Side of the average-pooling token mixer (odd; 3 in PoolFormer).
    pub pool_size: i64,
    /// Stem convolution kernel, stride and padding (PoolFormer: 7, 4, 2).
    pub stem_kernel: i64,
    pub stem_stride: i64,
    pub stem_padding: i64,
    /// Initial layer-scale value (PoolFormer: 1e-5).
    pub layer_scale_init: f64,
    /// Stochastic depth, rising linearly to this rate over all blocks.
    pub drop_path_rate: f64,
    /// Dropout in the MLPs and before the head.
    pub dropout: f64,
}

impl Family for PoolFormerConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.depths.is_empty() || self.depths.len() != self.dims.len() {
            return Err(Problem::at(
                "depths",
                "`depths` and `dims` need the same, non-zero length",
            ));
        }
        for (name, v) in [("depths", &self.depths), ("dims", &self.dims)] {
            if v.iter().any(|&x| x < 1) {
                return Err(Problem::at(
                    name,
                    format!("`{name}` entries must be at least 1, got {v:?}"),
                ));
            }
        }
        positive(&[
            ("pool_size", self.pool_size),
            ("stem_kernel", self.stem_kernel),
            ("stem_stride", self.stem_stride),
        ])?;
        if self.pool_size % 2 == 0 {
            return Err(Problem::at(
                "pool_size",
                format!(
                    "`pool_size` must be odd (the pooled map keeps its size), got {}",
                    self.pool_size
                ),
            ));
        }
        if self.stem_padding < 0 {
            return Err(Problem::at(
                "stem_padding",
                format!(
                    "`stem_padding` must be at least 0, got {}",
                    self.stem_padding
                ),
            ));
        }
        for (n, v) in [
            ("drop_path_rate", self.drop_path_rate),
            ("dropout", self.dropout),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(Problem::at(n, format!("`{n}` must be in [0, 1), got {v}")));
            }
        }
        Ok(())
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        if io.image_size + 2 * self.stem_padding < self.stem_kernel {
            return Err(Problem::new(
                &[],
                format!(
                    "the {}×{} stem (padding {}) does not fit a {}px image",
                    self.stem_kernel, self.stem_kernel, self.stem_padding, io.image_size
                ),
            ));
        }
        Ok(())
    }
}

pub static POOLFORMER: Arch = Arch {
    name: "poolformer",
    family: "poolformer",
    kind: super::ArchKind::Mlp,
    about: "PoolFormer (Yu et al. 2022); imagenet = PoolFormer-S12, cifar = S12 with a 3×3/1 stem",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let (d, w) = ([2, 2, 6, 2], [64, 128, 320, 512]);
        match p {
            "tiny" => Some(
                json!({"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32], "pool_size": 3,
                       "stem_kernel": 3, "stem_stride": 2, "stem_padding": 1,
                       "layer_scale_init": 1e-5, "drop_path_rate": 0.0, "dropout": 0.0}),
            ),
            "cifar" => Some(
                json!({"depths": d, "dims": w, "pool_size": 3, "stem_kernel": 3,
                       "stem_stride": 1, "stem_padding": 1, "layer_scale_init": 1e-5,
                       "drop_path_rate": 0.1, "dropout": 0.0}),
            ),
            "imagenet" => Some(
                json!({"depths": d, "dims": w, "pool_size": 3, "stem_kernel": 7,
                       "stem_stride": 4, "stem_padding": 2, "layer_scale_init": 1e-5,
                       "drop_path_rate": 0.1, "dropout": 0.0}),
            ),
            _ => None,
        }
    },
    check: check_of::<PoolFormerConfig>,
    fits: fits_of::<PoolFormerConfig>,
    build: build_of::<PoolFormerConfig>,
    reference: "timm poolformer_s12",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, conv2d_trunc_normal, drop_path, drop_path_rates, LayerNorm2d},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for PoolFormerConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(PoolFormer::new(p, self, io)))
        }
    }

    /// timm's `GroupNorm1`: GroupNorm with a single group (eps 1e-5).
    fn group_norm1(p: nn::Path, c: i64) -> nn::GroupNorm {
        nn::group_norm(p, 1, c, Default::default())
    }

    #[derive(Debug)]
    struct Block {
        norm1: nn::GroupNorm,
        layer_scale1: Tensor,
        norm2: nn::GroupNorm,
        fc1: nn::Conv2D,
        fc2: nn::Conv2D,
        layer_scale2: Tensor,
        pool_size: i64,
        dropout: f64,
        drop_path: f64,
    }

    impl Block {
        fn new(p: nn::Path, dim: i64, c: &PoolFormerConfig, drop_path: f64) -> Self {
            let ls = c.layer_scale_init;
            Self {
                norm1: group_norm1(&p / "norm1", dim),
                layer_scale1: layers::layer_scale(&(&p / "layer_scale1"), "scale", dim, ls),
                norm2: group_norm1(&p / "norm2", dim),
                fc1: conv2d_trunc_normal(&p / "mlp" / "fc1", dim, 4 * dim, 1, 1, 0, 1),
                fc2: conv2d_trunc_normal(&p / "mlp" / "fc2", 4 * dim, dim, 1, 1, 0, 1),
                layer_scale2: layers::layer_scale(&(&p / "layer_scale2"), "scale", dim, ls),
                pool_size: c.pool_size,
                dropout: c.dropout,
                drop_path,
            }
        }
    }

    impl ModuleT for Block {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let (k, pad) = (self.pool_size, self.pool_size / 2);
            let y = x.apply(&self.norm1);
            let mixed = y.avg_pool2d([k, k], [1, 1], [pad, pad], false, false, None::<i64>) - &y;
            let mixed = mixed * self.layer_scale1.view([-1, 1, 1]);
            let x = x + drop_path(&mixed, self.drop_path, train);
            let h = layers::dropout(
                &x.apply(&self.norm2).apply(&self.fc1).gelu("none"),
                self.dropout,
                train,
            );
            let h = layers::dropout(&h.apply(&self.fc2), self.dropout, train);
            let h = h * self.layer_scale2.view([-1, 1, 1]);
            &x + drop_path(&h, self.drop_path, train)
        }
    }

    #[derive(Debug)]
    struct Stage {
        downsample: Option<nn::Conv2D>,
        blocks: Vec<Block>,
    }

    #[derive(Debug)]
    pub struct PoolFormer {
        stem: nn::Conv2D,
        stages: Vec<Stage>,
        head_norm: LayerNorm2d,
        head_fc: nn::Linear,
        dropout: f64,
    }

    impl PoolFormer {
        pub fn new(p: &nn::Path, c: &PoolFormerConfig, io: &ModelIo) -> Self {
            let total: i64 = c.depths.iter().sum();
            let dpr = drop_path_rates(c.drop_path_rate, total);
            let mut k = 0;
            let mut stages = Vec::new();
            let mut cin = c.dims[0];
            for (i, (&d, &w)) in c.depths.iter().zip(&c.dims).enumerate() {
                let sp = p / "stages" / i as i64;
                // timm: no downsampling where the width does not change.
                let downsample = (cin != w)
                    .then(|| conv2d_trunc_normal(&sp / "downsample" / "conv", cin, w, 3, 2, 1, 1));
                let blocks = (0..d)
                    .map(|j| {
                        k += 1;
                        Block::new(&sp / "blocks" / j, w, c, dpr[k - 1])
                    })
                    .collect();
                stages.push(Stage { downsample, blocks });
                cin = w;
            }
            Self {
                stem: conv2d_trunc_normal(
                    p / "stem" / "conv",
                    io.in_channels,
                    c.dims[0],
                    c.stem_kernel,
                    c.stem_stride,
                    c.stem_padding,
                    1,
                ),
                stages,
                head_norm: LayerNorm2d::new(p / "head" / "norm", cin, 1e-6),
                head_fc: layers::linear(p / "head" / "fc", cin, io.num_classes, true),
                dropout: c.dropout,
            }
        }
    }

    impl ModuleT for PoolFormer {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.stem);
            for s in &self.stages {
                if let Some(d) = &s.downsample {
                    y = y.apply(d);
                }
                for b in &s.blocks {
                    y = b.forward_t(&y, train);
                }
            }
            let y = y
                .adaptive_avg_pool2d([1, 1])
                .apply(&self.head_norm)
                .flatten(1, -1);
            layers::dropout(&y, self.dropout, train).apply(&self.head_fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
