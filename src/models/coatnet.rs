//! CoAtNet (Dai et al. 2021, "CoAtNet: Marrying Convolution and Attention for All Data Sizes"):
//! a two-conv stem (3×3 stride 2 → BatchNorm + GELU → 3×3), then stages that each halve the
//! resolution in their first block, built from MBConv blocks (C) or relative-attention
//! transformer blocks (T), C-C-T-T for CoAtNet-0.
//!
//! * MBConv (pre-norm): BatchNorm → 1×1 expansion (4× the output width) → BatchNorm + GELU →
//!   3×3 depthwise (stride 2 in a stage's first block) → BatchNorm + GELU → squeeze-excitation
//!   (reduction to 0.25 × output width, SiLU, sigmoid gate) → 1×1 projection with bias; the
//!   shortcut of a strided block is a 2×2 average pool followed by a 1×1 conv (with bias) when
//!   the width changes.
//! * Transformer (pre-norm, NCHW): LayerNorm2d (eps 1e-6) → (2×2 average pool in a stage's first
//!   block) → multi-head self-attention over the whole feature map with 1×1 conv qkv/projection
//!   (32-channel heads, the attention width is the output width) and a learned 2-D relative
//!   position bias table of `(2H−1)(2W−1)` entries per head; residual; LayerNorm2d → 1×1 conv MLP
//!   (4×, GELU); residual. The shortcut of a strided block is a 2×2 average pool + 1×1 conv with
//!   bias.
//! * Head (CoAtNet-0 in timm): global average pool → LayerNorm (eps 1e-6) → `pre_logits.fc`
//!   linear + tanh → `fc`. With `head_hidden_size` 0, a LayerNorm2d (`norm`) on the final map,
//!   pool and `head.fc`.
//!
//! Reference implementation: timm's `MaxxVit` (timm.models.maxxvit) with the `coatnet_0` config
//! (timm `coatnet_0_224`, 25,036,820 parameters at 224px). GELU is exact (`gelu`, not
//! `gelu_tanh`); the relative-position index is a non-persistent buffer in timm, a plain tensor
//! here. As in timm the model is built for one image size: the bias table of a transformer stage
//! covers that stage's feature map at `ModelIo::image_size`, so the parameter count depends on
//! the image size, and every stage must see an even resolution: the image side must be divisible
//! by `stem_stride · 2^stages`. Initialisation as timm's `vit_eff` scheme: convolutions of the
//! stem and MBConv blocks normal with std √(2/fan-out), transformer convolutions Xavier-uniform
//! with zero biases (MLP biases normal std 1e-6), bias tables truncated normal (std 0.02), the
//! head's linears PyTorch's default.
//!
//! The CIFAR variant is CoAtNet-0 with a stride-1 stem: a 32px image gives stages at 16, 8, 4 and
//! 2 pixels (the transformer stages attend over 4×4 and 2×2 maps), total stride 16.
use super::vit::check_rates;
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockType {
    /// MBConv block.
    #[serde(rename = "C")]
    Conv,
    /// Transformer block with relative attention.
    #[serde(rename = "T")]
    Transformer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoAtNetConfig {
    /// Output width of each stage (CoAtNet-0: [96, 192, 384, 768]).
    pub embed_dims: Vec<i64>,
    /// Blocks per stage (CoAtNet-0: [2, 3, 5, 2]).
    pub depths: Vec<i64>,
    /// Block type of each stage, "C" (MBConv) or "T" (transformer) (CoAtNet-0: C, C, T, T).
    pub block_types: Vec<BlockType>,
    /// Channels of both stem convolutions (64).
    pub stem_width: i64,
    /// Stride of the first stem convolution (2 at 224px, 1 for CIFAR).
    pub stem_stride: i64,
    /// MBConv expansion relative to the block's output width (4).
    pub mbconv_expand_ratio: f64,
    /// Squeeze-excitation width relative to the MBConv output width (0.25).
    pub se_ratio: f64,
    /// Channels per attention head (32).
    pub dim_head: i64,
    /// Transformer MLP hidden width = mlp_ratio × width (4).
    pub mlp_ratio: f64,
    /// Width of the head's pre-logits layer (CoAtNet-0 in timm: 768); 0 for none.
    pub head_hidden_size: i64,
    /// Stochastic depth, rising linearly to this rate over all blocks.
    pub drop_path_rate: f64,
}

impl CoAtNetConfig {
    fn total_stride(&self) -> i64 {
        u32::try_from(self.embed_dims.len())
            .ok()
            .and_then(|n| self.stem_stride.checked_shl(n))
            .unwrap_or(i64::MAX)
    }
}

impl Family for CoAtNetConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[("stem_width", self.stem_width), ("dim_head", self.dim_head)])?;
        let n = self.embed_dims.len();
        if n == 0 || self.depths.len() != n || self.block_types.len() != n {
            return Err(Problem::at(
                "embed_dims",
                "`embed_dims`, `depths` and `block_types` need the same, non-zero length",
            ));
        }
        if n > 12 {
            return Err(Problem::new(
                &[],
                format!("at most 12 stages are supported, got {n}"),
            ));
        }
        if self.embed_dims.iter().chain(&self.depths).any(|&x| x < 1) {
            return Err(Problem::at(
                "embed_dims",
                "`embed_dims` and `depths` entries must be at least 1",
            ));
        }
        if !(1..=2).contains(&self.stem_stride) {
            return Err(Problem::at(
                "stem_stride",
                format!("`stem_stride` must be 1 or 2, got {}", self.stem_stride),
            ));
        }
        if !(self.mbconv_expand_ratio > 0.0 && self.mbconv_expand_ratio.is_finite()) {
            return Err(Problem::at(
                "mbconv_expand_ratio",
                format!(
                    "`mbconv_expand_ratio` must be positive, got {}",
                    self.mbconv_expand_ratio
                ),
            ));
        }
        if self.head_hidden_size < 0 {
            return Err(Problem::at(
                "head_hidden_size",
                format!(
                    "`head_hidden_size` must be at least 0, got {}",
                    self.head_hidden_size
                ),
            ));
        }
        for (i, (&d, t)) in self.embed_dims.iter().zip(&self.block_types).enumerate() {
            match t {
                BlockType::Transformer if d % self.dim_head != 0 => {
                    return Err(Problem::at(
                        "dim_head",
                        format!(
                            "stage {i}: width {d} is not divisible by `dim_head` {}",
                            self.dim_head
                        ),
                    ));
                }
                BlockType::Conv if ((self.se_ratio * d as f64) as i64) < 1 => {
                    return Err(Problem::at(
                        "se_ratio",
                        format!(
                            "stage {i}: `se_ratio` {} leaves no squeeze-excitation channels \
                             for width {d}",
                            self.se_ratio
                        ),
                    ));
                }
                _ => {}
            }
        }
        check_rates(self.mlp_ratio, self.drop_path_rate, 0.0)
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        let s = self.total_stride();
        if io.image_size % s != 0 {
            return Err(Problem::new(
                &[],
                format!(
                    "the image size {} must be divisible by stem_stride × 2^stages = {s} \
                     (every stage halves an even resolution, as in timm's MaxxVit)",
                    io.image_size
                ),
            ));
        }
        Ok(())
    }
}

pub static COATNET: Arch = Arch {
    name: "coatnet",
    family: "coatnet",
    kind: super::ArchKind::Hybrid,
    about: "CoAtNet (Dai et al. 2021); imagenet = CoAtNet-0 (timm coatnet_0_224), cifar = \
            CoAtNet-0 with a stride-1 stem",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let c0 = |stem_stride: i64, dpr: f64| {
            json!({
                "embed_dims": [96, 192, 384, 768], "depths": [2, 3, 5, 2],
                "block_types": ["C", "C", "T", "T"], "stem_width": 64, "stem_stride": stem_stride,
                "mbconv_expand_ratio": 4.0, "se_ratio": 0.25, "dim_head": 32, "mlp_ratio": 4.0,
                "head_hidden_size": 768, "drop_path_rate": dpr
            })
        };
        match p {
            "tiny" => Some(json!({
                "embed_dims": [16, 16, 32, 32], "depths": [1, 1, 1, 1],
                "block_types": ["C", "C", "T", "T"], "stem_width": 8, "stem_stride": 2,
                "mbconv_expand_ratio": 2.0, "se_ratio": 0.25, "dim_head": 8, "mlp_ratio": 2.0,
                "head_hidden_size": 32, "drop_path_rate": 0.0
            })),
            "cifar" => Some(c0(1, 0.1)),
            "imagenet" => Some(c0(2, 0.2)),
            _ => None,
        }
    },
    check: check_of::<CoAtNetConfig>,
    fits: fits_of::<CoAtNetConfig>,
    build: build_of::<CoAtNetConfig>,
    reference: "timm coatnet_0_224",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, conv2d_timm as conv_eff, drop_path, drop_path_rates, LayerNorm2d},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Device, Kind, Tensor,
    };

    impl Build for CoAtNetConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            self.validate().map_err(|p| anyhow::Error::msg(p.message))?;
            Ok(Box::new(CoAtNet::new(p, self, io)?))
        }
    }

    /// LayerNorm eps of the transformer blocks and the head (timm `MaxxVitTransformerCfg.norm_eps`).
    const LN_EPS: f64 = 1e-6;

    /// A 1×1 convolution of a transformer block, Xavier-uniform with bias `N(0, bias_std)`.
    fn conv_vit(p: nn::Path, cin: i64, cout: i64, bias_std: f64) -> nn::Conv2D {
        let bound = (6.0 / (cin + cout) as f64).sqrt();
        nn::conv2d(
            p,
            cin,
            cout,
            1,
            nn::ConvConfig {
                ws_init: nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
                bs_init: if bias_std > 0.0 {
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: bias_std,
                    }
                } else {
                    nn::Init::Const(0.0)
                },
                ..Default::default()
            },
        )
    }

    /// BatchNorm with PyTorch's initialisation (γ = 1, β = 0) and eps 1e-5.
    fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
        nn::batch_norm2d(
            p,
            c,
            nn::BatchNormConfig {
                ws_init: nn::Init::Const(1.0),
                ..Default::default()
            },
        )
    }

    /// timm's `Downsample2d` with `avg2` pooling: 2×2 average pool.
    fn pool2(x: &Tensor) -> Tensor {
        x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
    }

    /// timm's `gen_relative_position_index` for an `h × w` map: for query token (i1, j1) and key
    /// token (i2, j2), `(i1 − i2 + h − 1)(2w − 1) + (j1 − j2 + w − 1)`.
    fn relative_position_index(h: i64, w: i64, device: Device) -> Tensor {
        let n = h * w;
        let mut idx = Vec::with_capacity((n * n) as usize);
        for a in 0..n {
            let (i1, j1) = (a / w, a % w);
            for b in 0..n {
                let (i2, j2) = (b / w, b % w);
                idx.push((i1 - i2 + h - 1) * (2 * w - 1) + (j1 - j2 + w - 1));
            }
        }
        Tensor::from_slice(idx.as_slice()).to_device(device)
    }

    #[derive(Debug)]
    struct Stem {
        conv1: nn::Conv2D,
        norm1: nn::BatchNorm,
        conv2: nn::Conv2D,
    }

    impl ModuleT for Stem {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            x.apply(&self.conv1)
                .apply_t(&self.norm1, train)
                .gelu("none")
                .apply(&self.conv2)
        }
    }

    /// timm's `MbConvBlock` (pre-norm, stride in the depthwise conv, SE after norm2).
    #[derive(Debug)]
    struct MbConv {
        /// Stride 2: the shortcut pools and (when the width changes) expands.
        down: bool,
        shortcut_expand: Option<nn::Conv2D>,
        pre_norm: nn::BatchNorm,
        conv1_1x1: nn::Conv2D,
        norm1: nn::BatchNorm,
        conv2_kxk: nn::Conv2D,
        norm2: nn::BatchNorm,
        se_fc1: nn::Conv2D,
        se_fc2: nn::Conv2D,
        conv3_1x1: nn::Conv2D,
        drop_path: f64,
    }

    impl MbConv {
        fn new(
            p: nn::Path,
            c: &CoAtNetConfig,
            cin: i64,
            cout: i64,
            stride: i64,
            drop_path: f64,
        ) -> Self {
            let mid = layers::make_divisible(cout as f64 * c.mbconv_expand_ratio, 8);
            let rd = (c.se_ratio * cout as f64) as i64;
            let down = stride == 2;
            Self {
                down,
                shortcut_expand: (down && cin != cout)
                    .then(|| conv_eff(&p / "shortcut" / "expand", cin, cout, 1, 1, 1, true)),
                pre_norm: bn(&p / "pre_norm", cin),
                conv1_1x1: conv_eff(&p / "conv1_1x1", cin, mid, 1, 1, 1, false),
                norm1: bn(&p / "norm1", mid),
                conv2_kxk: conv_eff(&p / "conv2_kxk", mid, mid, 3, stride, mid, false),
                norm2: bn(&p / "norm2", mid),
                se_fc1: conv_eff(&p / "se" / "fc1", mid, rd, 1, 1, 1, true),
                se_fc2: conv_eff(&p / "se" / "fc2", rd, mid, 1, 1, 1, true),
                conv3_1x1: conv_eff(&p / "conv3_1x1", mid, cout, 1, 1, 1, true),
                drop_path,
            }
        }
    }

    impl ModuleT for MbConv {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let short = if self.down {
                let s = pool2(x);
                match &self.shortcut_expand {
                    Some(e) => s.apply(e),
                    None => s,
                }
            } else {
                x.shallow_clone()
            };
            let y = x
                .apply_t(&self.pre_norm, train)
                .apply(&self.conv1_1x1)
                .apply_t(&self.norm1, train)
                .gelu("none")
                .apply(&self.conv2_kxk)
                .apply_t(&self.norm2, train)
                .gelu("none");
            let gate = y
                .mean_dim(&[2i64, 3][..], true, Kind::Float)
                .apply(&self.se_fc1)
                .silu()
                .apply(&self.se_fc2)
                .sigmoid();
            let y = (y * gate).apply(&self.conv3_1x1);
            drop_path(&y, self.drop_path, train) + short
        }
    }

    /// timm's `TransformerBlock2d` with `Attention2d` (head-first qkv layout, fused attention) and
    /// `RelPosBias` over the block's whole (square) output feature map.
    #[derive(Debug)]
    struct TransformerBlock {
        down: bool,
        shortcut_expand: Option<nn::Conv2D>,
        norm1: LayerNorm2d,
        qkv: nn::Conv2D,
        proj: nn::Conv2D,
        relative_position_bias_table: Tensor,
        /// Non-persistent: `[area²]` indices into the table.
        relative_position_index: Tensor,
        heads: i64,
        dim_head: i64,
        area: i64,
        norm2: LayerNorm2d,
        fc1: nn::Conv2D,
        fc2: nn::Conv2D,
        drop_path: f64,
    }

    impl TransformerBlock {
        /// `res`: side of the block's output feature map.
        fn new(
            p: nn::Path,
            c: &CoAtNetConfig,
            dim: i64,
            dim_out: i64,
            stride: i64,
            res: i64,
            drop_path: f64,
        ) -> Self {
            let down = stride == 2;
            let heads = dim_out / c.dim_head;
            let hidden = (dim_out as f64 * c.mlp_ratio) as i64;
            let norm1 = if down {
                LayerNorm2d::new(&p / "norm1" / "norm", dim, LN_EPS)
            } else {
                LayerNorm2d::new(&p / "norm1", dim, LN_EPS)
            };
            let a = &p / "attn";
            Self {
                down,
                shortcut_expand: (down && dim != dim_out)
                    .then(|| conv_vit(&p / "shortcut" / "expand", dim, dim_out, 0.0)),
                norm1,
                qkv: conv_vit(&a / "qkv", dim, 3 * dim_out, 0.0),
                proj: conv_vit(&a / "proj", dim_out, dim_out, 0.0),
                relative_position_bias_table: layers::trunc_normal_var(
                    &(&a / "rel_pos"),
                    "relative_position_bias_table",
                    &[(2 * res - 1) * (2 * res - 1), heads],
                    0.02,
                ),
                relative_position_index: relative_position_index(res, res, p.device()),
                heads,
                dim_head: c.dim_head,
                area: res * res,
                norm2: LayerNorm2d::new(&p / "norm2", dim_out, LN_EPS),
                fc1: conv_vit(&p / "mlp" / "fc1", dim_out, hidden, 1e-6),
                fc2: conv_vit(&p / "mlp" / "fc2", hidden, dim_out, 1e-6),
                drop_path,
            }
        }
    }

    impl ModuleT for TransformerBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let (short, y) = if self.down {
                let s = pool2(x);
                let s = match &self.shortcut_expand {
                    Some(e) => s.apply(e),
                    None => s,
                };
                (s, pool2(&x.apply(&self.norm1)))
            } else {
                (x.shallow_clone(), x.apply(&self.norm1))
            };
            let (b, _, h, w) = y.size4().expect("CoAtNet features are [batch, C, H, W]");
            let n = h * w;
            assert_eq!(
                n, self.area,
                "CoAtNet was built for another image size (its relative-position bias covers {} \
                 tokens, the feature map has {n})",
                self.area
            );
            // Head-first layout: channels [h·3d, h·3d + d) are head h's queries, then keys, values.
            let qkv = y
                .apply(&self.qkv)
                .reshape([b, self.heads, 3 * self.dim_head, n])
                .chunk(3, 2);
            let (q, k, v) = (
                qkv[0].transpose(-1, -2),
                qkv[1].transpose(-1, -2),
                qkv[2].transpose(-1, -2),
            );
            let bias = self
                .relative_position_bias_table
                .index_select(0, &self.relative_position_index)
                .reshape([n, n, self.heads])
                .permute([2, 0, 1])
                .unsqueeze(0);
            let o = layers::sdpa(&q, &k, &v, Some(&bias), 0.0, train)
                .transpose(-1, -2)
                .reshape([b, -1, h, w])
                .apply(&self.proj);
            let x = short + drop_path(&o, self.drop_path, train);
            let m = x
                .apply(&self.norm2)
                .apply(&self.fc1)
                .gelu("none")
                .apply(&self.fc2);
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    /// The classifier: timm's `NormMlpClassifierHead` (pool → LayerNorm → pre-logits linear + tanh
    /// → fc) when `head_hidden_size` > 0, else the final `norm` (LayerNorm2d) and a pooled `head.fc`.
    #[derive(Debug)]
    enum Head {
        NormMlp {
            norm: nn::LayerNorm,
            pre_logits: nn::Linear,
            fc: nn::Linear,
        },
        Plain {
            norm: LayerNorm2d,
            fc: nn::Linear,
        },
    }

    #[derive(Debug)]
    pub struct CoAtNet {
        stem: Stem,
        blocks: Vec<Box<dyn ModuleT>>,
        head: Head,
    }

    impl CoAtNet {
        pub fn new(p: &nn::Path, c: &CoAtNetConfig, io: &ModelIo) -> anyhow::Result<Self> {
            c.fits(io).map_err(|p| anyhow::Error::msg(p.message))?;
            let s = p / "stem";
            let stem = Stem {
                conv1: conv_eff(
                    &s / "conv1",
                    io.in_channels,
                    c.stem_width,
                    3,
                    c.stem_stride,
                    1,
                    false,
                ),
                norm1: bn(&s / "norm1", c.stem_width),
                conv2: conv_eff(&s / "conv2", c.stem_width, c.stem_width, 3, 1, 1, false),
            };
            let total: i64 = c.depths.iter().sum();
            let dpr = drop_path_rates(c.drop_path_rate, total);
            let mut blocks: Vec<Box<dyn ModuleT>> = Vec::new();
            let mut res = io.image_size / c.stem_stride;
            let mut cin = c.stem_width;
            for (i, ((&d, &w), &t)) in c
                .depths
                .iter()
                .zip(&c.embed_dims)
                .zip(&c.block_types)
                .enumerate()
            {
                res /= 2;
                let sp = p / "stages" / i as i64 / "blocks";
                for j in 0..d {
                    let stride = if j == 0 { 2 } else { 1 };
                    let rate = dpr[blocks.len()];
                    let bp = &sp / j;
                    match t {
                        BlockType::Conv => {
                            blocks.push(Box::new(MbConv::new(bp, c, cin, w, stride, rate)))
                        }
                        BlockType::Transformer => blocks.push(Box::new(TransformerBlock::new(
                            bp, c, cin, w, stride, res, rate,
                        ))),
                    }
                    cin = w;
                }
            }
            let head = if c.head_hidden_size > 0 {
                let h = p / "head";
                Head::NormMlp {
                    norm: layers::layer_norm(&h / "norm", cin, LN_EPS),
                    pre_logits: layers::linear_default(
                        &h / "pre_logits" / "fc",
                        cin,
                        c.head_hidden_size,
                    ),
                    fc: layers::linear_default(&h / "fc", c.head_hidden_size, io.num_classes),
                }
            } else {
                Head::Plain {
                    norm: LayerNorm2d::new(p / "norm", cin, LN_EPS),
                    fc: layers::linear_default(p / "head" / "fc", cin, io.num_classes),
                }
            };
            Ok(Self { stem, blocks, head })
        }
    }

    impl ModuleT for CoAtNet {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = self.stem.forward_t(x, train);
            for b in &self.blocks {
                y = b.forward_t(&y, train);
            }
            match &self.head {
                Head::NormMlp {
                    norm,
                    pre_logits,
                    fc,
                } => layers::global_pool(&y)
                    .apply(norm)
                    .apply(pre_logits)
                    .tanh()
                    .apply(fc),
                Head::Plain { norm, fc } => layers::global_pool(&y.apply(norm)).apply(fc),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn relative_position_index_matches_timm() {
            // timm gen_relative_position_index((2, 2)).view(-1)
            let idx = relative_position_index(2, 2, Device::Cpu);
            let v: Vec<i64> = Vec::try_from(idx).unwrap();
            assert_eq!(v, [4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
        }

        #[test]
        fn sizes_must_halve_evenly() {
            let c: CoAtNetConfig =
                serde_json::from_value((COATNET.preset)("imagenet").unwrap()).unwrap();
            c.validate().unwrap();
            let io = |s| ModelIo {
                in_channels: 3,
                image_size: s,
                num_classes: 10,
            };
            assert!(c.fits(&io(224)).is_ok());
            assert!(c.fits(&io(32)).is_ok());
            assert!(c.fits(&io(48)).is_err());
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
