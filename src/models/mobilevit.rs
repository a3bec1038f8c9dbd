//! MobileViT (Mehta & Rastegari 2022, "MobileViT: Light-weight, General-purpose, and
//! Mobile-friendly Vision Transformer"): a 3×3 stem and stages of MobileNetV2 inverted residual
//! blocks (1×1 expansion → 3×3 depthwise → linear 1×1, residual only where the shape is kept);
//! the later stages follow their inverted residual with a MobileViT block: 3×3 conv → 1×1 to the
//! transformer width → unfold into 2×2 patches (the pixels at one position of every patch form
//! a sequence) → pre-norm transformer layers → LayerNorm → fold back → 1×1 projection → fusion
//! 3×3 conv over the concatenation with the block's input. A final 1×1 conv, average pool and
//! linear classifier close the network. SiLU everywhere (MLPs included), BatchNorm (eps 1e-5)
//! after every conv, LayerNorm with PyTorch's eps 1e-5 in the transformer.
//!
//! Reference implementation: timm's `ByobNet` (timm.models.byobnet) with the `mobilevit_*`
//! configs of timm.models.mobilevit (blocks adapted from apple/ml-cvnets). As in timm, a feature
//! map whose side the patch size does not divide is resized bilinearly to the next multiple
//! before unfolding and back after folding, so any image size works. Names follow timm
//! `mobilevit_s` (`stem.conv.weight`, `stem.bn.weight`, `stages.1.0.conv2_kxk.conv.weight`,
//! `stages.2.1.transformer.0.attn.qkv.weight`, `stages.2.1.conv_fusion.bn.running_var`,
//! `final_conv.conv.weight`, `head.fc.weight`). Initialisation as timm's ByobNet: convs normal
//! with std √(2/fan-out), linears normal std 0.01 with zero bias, BatchNorm γ = 1 except the last
//! BatchNorm of residual inverted-residual blocks (γ = 0).
//!
//! Presets: `imagenet` = MobileViT-S (timm `mobilevit_s`, 5,578,632 parameters), `xs` =
//! MobileViT-XS (2,317,848), `xxs` = MobileViT-XXS (1,272,024). `cifar` is MobileViT-S with a
//! stride-1 stem: a 32px image reaches the transformer stages at 8×8, 4×4 and 2×2 (total stride
//! 16 instead of 32), so every stage still has at least one whole 2×2 patch.
use super::vit::check_rates;
use super::{build_of, check_of, fits_of, positive, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileVitConfig {
    /// Stem output channels (16).
    pub stem_chs: i64,
    /// Stride of the 3×3 stem convolution (2 at 224px, 1 for CIFAR).
    pub stem_stride: i64,
    /// Output channels per stage (rounded to multiples of 8; S: [32, 64, 96, 128, 160]).
    pub channels: Vec<i64>,
    /// Inverted residual blocks per stage (S: [1, 3, 1, 1, 1]).
    pub depths: Vec<i64>,
    /// Stride of each stage's first block (S: [1, 2, 2, 2, 2]).
    pub strides: Vec<i64>,
    /// Expansion ratio of the inverted residual blocks (4 for S/XS, 2 for XXS).
    pub expansion: f64,
    /// Transformer width of each stage's MobileViT block, 0 for a stage without one
    /// (S: [0, 0, 144, 192, 240]).
    pub transformer_dims: Vec<i64>,
    /// Transformer layers of each stage's MobileViT block (S: [0, 0, 2, 4, 3]).
    pub transformer_depths: Vec<i64>,
    /// Side of the patches the MobileViT blocks unfold (2).
    pub patch_size: i64,
    /// Attention heads of every transformer layer (4).
    pub heads: i64,
    /// Transformer MLP hidden width = mlp_ratio × width (2).
    pub mlp_ratio: f64,
    /// Channels of the final 1×1 conv before pooling (S: 640); 0 for none.
    pub num_features: i64,
    /// Stochastic depth, rising linearly to this rate over all blocks (timm default 0).
    pub drop_path_rate: f64,
}

impl Family for MobileVitConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("stem_chs", self.stem_chs),
            ("patch_size", self.patch_size),
            ("heads", self.heads),
        ])?;
        let n = self.channels.len();
        if n == 0
            || self.depths.len() != n
            || self.strides.len() != n
            || self.transformer_dims.len() != n
            || self.transformer_depths.len() != n
        {
            return Err(Problem::at(
                "channels",
                "`channels`, `depths`, `strides`, `transformer_dims` and \
                 `transformer_depths` need the same, non-zero length",
            ));
        }
        if self.channels.iter().chain(&self.depths).any(|&x| x < 1) {
            return Err(Problem::at(
                "channels",
                "`channels` and `depths` entries must be at least 1",
            ));
        }
        if self
            .strides
            .iter()
            .chain([&self.stem_stride])
            .any(|s| !(1..=2).contains(s))
        {
            return Err(Problem::at(
                "strides",
                "`strides` and `stem_stride` entries must be 1 or 2",
            ));
        }
        for (i, (&d, &l)) in self
            .transformer_dims
            .iter()
            .zip(&self.transformer_depths)
            .enumerate()
        {
            if d < 0 || l < 0 {
                return Err(Problem::at(
                    "transformer_dims",
                    format!(
                        "stage {i}: `transformer_dims` and `transformer_depths` must be at least 0"
                    ),
                ));
            }
            if d > 0 && l < 1 {
                return Err(Problem::at(
                    "transformer_depths",
                    format!(
                        "stage {i}: a MobileViT block (transformer_dims {d}) needs \
                         `transformer_depths` of at least 1"
                    ),
                ));
            }
            if d > 0 && d % self.heads != 0 {
                return Err(Problem::at(
                    "heads",
                    format!(
                        "stage {i}: transformer width {d} is not divisible by `heads` {}",
                        self.heads
                    ),
                ));
            }
        }
        if !(self.expansion > 0.0 && self.expansion.is_finite()) {
            return Err(Problem::at(
                "expansion",
                format!("`expansion` must be positive, got {}", self.expansion),
            ));
        }
        if self.num_features < 0 {
            return Err(Problem::at(
                "num_features",
                format!(
                    "`num_features` must be at least 0, got {}",
                    self.num_features
                ),
            ));
        }
        check_rates(self.mlp_ratio, self.drop_path_rate, 0.0)
    }
}

fn preset(p: &str) -> Option<serde_json::Value> {
    let s = |stem_stride: i64| {
        json!({
            "stem_chs": 16, "stem_stride": stem_stride, "channels": [32, 64, 96, 128, 160],
            "depths": [1, 3, 1, 1, 1], "strides": [1, 2, 2, 2, 2], "expansion": 4.0,
            "transformer_dims": [0, 0, 144, 192, 240], "transformer_depths": [0, 0, 2, 4, 3],
            "patch_size": 2, "heads": 4, "mlp_ratio": 2.0, "num_features": 640,
            "drop_path_rate": 0.0
        })
    };
    match p {
        "tiny" => Some(json!({
            "stem_chs": 8, "stem_stride": 2, "channels": [8, 16, 24, 32],
            "depths": [1, 1, 1, 1], "strides": [1, 2, 2, 2], "expansion": 2.0,
            "transformer_dims": [0, 0, 32, 48], "transformer_depths": [0, 0, 1, 1],
            "patch_size": 2, "heads": 2, "mlp_ratio": 2.0, "num_features": 64,
            "drop_path_rate": 0.0
        })),
        "cifar" => Some(s(1)),
        "imagenet" => Some(s(2)),
        "xs" => Some(json!({
            "stem_chs": 16, "stem_stride": 2, "channels": [32, 48, 64, 80, 96],
            "depths": [1, 3, 1, 1, 1], "strides": [1, 2, 2, 2, 2], "expansion": 4.0,
            "transformer_dims": [0, 0, 96, 120, 144], "transformer_depths": [0, 0, 2, 4, 3],
            "patch_size": 2, "heads": 4, "mlp_ratio": 2.0, "num_features": 384,
            "drop_path_rate": 0.0
        })),
        "xxs" => Some(json!({
            "stem_chs": 16, "stem_stride": 2, "channels": [16, 24, 48, 64, 80],
            "depths": [1, 3, 1, 1, 1], "strides": [1, 2, 2, 2, 2], "expansion": 2.0,
            "transformer_dims": [0, 0, 64, 80, 96], "transformer_depths": [0, 0, 2, 4, 3],
            "patch_size": 2, "heads": 4, "mlp_ratio": 2.0, "num_features": 320,
            "drop_path_rate": 0.0
        })),
        _ => None,
    }
}

pub static MOBILEVIT: Arch = Arch {
    name: "mobilevit",
    family: "mobilevit",
    kind: super::ArchKind::Hybrid,
    about:
        "MobileViT (Mehta & Rastegari 2022); imagenet = MobileViT-S, xs/xxs = MobileViT-XS/XXS, \
            cifar = MobileViT-S with a stride-1 stem",
    presets: &["tiny", "cifar", "imagenet", "xs", "xxs"],
    preset,
    check: check_of::<MobileVitConfig>,
    fits: fits_of::<MobileVitConfig>,
    build: build_of::<MobileVitConfig>,
    reference: "timm mobilevit_s",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, conv2d_timm, drop_path, drop_path_rates, make_divisible},
        Build, ModelIo,
    };
    use tch::{
        nn::{self, ModuleT},
        Kind, Tensor,
    };

    impl Build for MobileVitConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            self.validate().map_err(|p| anyhow::Error::msg(p.message))?;
            Ok(Box::new(MobileVit::new(p, self, io)))
        }
    }

    /// LayerNorm eps of the transformer layers (timm passes `nn.LayerNorm`, eps 1e-5).
    const LN_EPS: f64 = 1e-5;

    /// A linear layer initialised as timm's ByobNet does (normal std 0.01, zero bias).
    fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
        nn::linear(
            p,
            cin,
            cout,
            nn::LinearConfig {
                ws_init: nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
                bs_init: Some(nn::Init::Const(0.0)),
                bias: true,
            },
        )
    }

    /// timm's `ConvNormAct`: conv (`.conv`) → BatchNorm (`.bn`) → SiLU (optional).
    #[derive(Debug)]
    struct ConvBnAct {
        conv: nn::Conv2D,
        bn: nn::BatchNorm,
        act: bool,
    }

    impl ConvBnAct {
        #[allow(clippy::too_many_arguments)]
        fn new(
            p: nn::Path,
            cin: i64,
            cout: i64,
            k: i64,
            stride: i64,
            groups: i64,
            act: bool,
            gamma: f64,
        ) -> Self {
            Self {
                conv: conv2d_timm(&p / "conv", cin, cout, k, stride, groups, false),
                bn: nn::batch_norm2d(
                    &p / "bn",
                    cout,
                    nn::BatchNormConfig {
                        ws_init: nn::Init::Const(gamma),
                        ..Default::default()
                    },
                ),
                act,
            }
        }

        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = x.apply(&self.conv).apply_t(&self.bn, train);
            if self.act {
                y.silu()
            } else {
                y
            }
        }
    }

    /// timm's `BottleneckBlock` as MobileViT configures it (`bottle_in`, `linear_out`, depthwise
    /// 3×3, no downsample shortcut): the residual exists only when stride 1 and width unchanged.
    #[derive(Debug)]
    struct InvertedResidual {
        conv1_1x1: ConvBnAct,
        conv2_kxk: ConvBnAct,
        conv3_1x1: ConvBnAct,
        residual: bool,
        drop_path: f64,
    }

    impl InvertedResidual {
        fn new(
            p: nn::Path,
            cin: i64,
            cout: i64,
            stride: i64,
            expansion: f64,
            drop_path: f64,
        ) -> Self {
            let mid = make_divisible(cin as f64 * expansion, 8);
            let residual = cin == cout && stride == 1;
            Self {
                conv1_1x1: ConvBnAct::new(&p / "conv1_1x1", cin, mid, 1, 1, 1, true, 1.0),
                conv2_kxk: ConvBnAct::new(&p / "conv2_kxk", mid, mid, 3, stride, mid, true, 1.0),
                conv3_1x1: ConvBnAct::new(
                    &p / "conv3_1x1",
                    mid,
                    cout,
                    1,
                    1,
                    1,
                    false,
                    if residual { 0.0 } else { 1.0 },
                ),
                residual,
                drop_path,
            }
        }
    }

    impl ModuleT for InvertedResidual {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = self.conv1_1x1.forward_t(x, train);
            let y = self.conv2_kxk.forward_t(&y, train);
            let y = self.conv3_1x1.forward_t(&y, train);
            // timm applies drop-path to the branch whether or not a shortcut follows.
            let y = drop_path(&y, self.drop_path, train);
            if self.residual {
                y + x
            } else {
                y
            }
        }
    }

    /// timm's ViT `Block` as MobileViT uses it: pre-norm attention and a SiLU MLP, no layer scale.
    #[derive(Debug)]
    struct TransformerLayer {
        norm1: nn::LayerNorm,
        attn: layers::Attention,
        norm2: nn::LayerNorm,
        fc1: nn::Linear,
        fc2: nn::Linear,
        drop_path: f64,
    }

    impl TransformerLayer {
        fn new(p: nn::Path, dim: i64, heads: i64, mlp_ratio: f64, drop_path: f64) -> Self {
            let hidden = (dim as f64 * mlp_ratio) as i64;
            let a = &p / "attn";
            Self {
                norm1: layers::layer_norm(&p / "norm1", dim, LN_EPS),
                attn: layers::Attention {
                    qkv: linear(&a / "qkv", dim, 3 * dim),
                    proj: linear(&a / "proj", dim, dim),
                    heads,
                    attn_drop: 0.0,
                    proj_drop: 0.0,
                },
                norm2: layers::layer_norm(&p / "norm2", dim, LN_EPS),
                fc1: linear(&p / "mlp" / "fc1", dim, hidden),
                fc2: linear(&p / "mlp" / "fc2", hidden, dim),
                drop_path,
            }
        }
    }

    impl ModuleT for TransformerLayer {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = self.attn.forward_t(&x.apply(&self.norm1), train);
            let x = x + drop_path(&y, self.drop_path, train);
            let y = x
                .apply(&self.norm2)
                .apply(&self.fc1)
                .silu()
                .apply(&self.fc2);
            &x + drop_path(&y, self.drop_path, train)
        }
    }

    /// timm's `MobileVitBlock` (local 3×3 + 1×1, unfold → transformer → fold, 1×1 projection,
    /// 3×3 fusion with the input).
    #[derive(Debug)]
    struct MobileVitBlock {
        conv_kxk: ConvBnAct,
        conv_1x1: nn::Conv2D,
        transformer: Vec<TransformerLayer>,
        norm: nn::LayerNorm,
        conv_proj: ConvBnAct,
        conv_fusion: ConvBnAct,
        patch: i64,
    }

    impl MobileVitBlock {
        fn new(p: nn::Path, c: &MobileVitConfig, chs: i64, dim: i64, depth: i64, dp: f64) -> Self {
            Self {
                conv_kxk: ConvBnAct::new(&p / "conv_kxk", chs, chs, 3, 1, 1, true, 1.0),
                conv_1x1: conv2d_timm(&p / "conv_1x1", chs, dim, 1, 1, 1, false),
                transformer: (0..depth)
                    .map(|i| {
                        TransformerLayer::new(&p / "transformer" / i, dim, c.heads, c.mlp_ratio, dp)
                    })
                    .collect(),
                norm: layers::layer_norm(&p / "norm", dim, LN_EPS),
                conv_proj: ConvBnAct::new(&p / "conv_proj", dim, chs, 1, 1, 1, true, 1.0),
                conv_fusion: ConvBnAct::new(&p / "conv_fusion", 2 * chs, chs, 3, 1, 1, true, 1.0),
                patch: c.patch_size,
            }
        }
    }

    impl ModuleT for MobileVitBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = self.conv_kxk.forward_t(x, train).apply(&self.conv_1x1);
            let (b, c, h, w) = y.size4().expect("MobileViT features are [batch, C, H, W]");
            let ps = self.patch;
            let (nh, nw) = ((h + ps - 1) / ps, (w + ps - 1) / ps);
            let resize = nh * ps != h || nw * ps != w;
            let y = if resize {
                y.upsample_bilinear2d([nh * ps, nw * ps], false, None::<f64>, None::<f64>)
            } else {
                y
            };
            let (n, area) = (nh * nw, ps * ps);
            // Unfold: [B, C, H, W] → [B·C·nh, nw, ps, ps] → [B·area, N, C].
            let mut t = y
                .reshape([b * c * nh, ps, nw, ps])
                .transpose(1, 2)
                .reshape([b, c, n, area])
                .transpose(1, 3)
                .reshape([b * area, n, c]);
            for l in &self.transformer {
                t = l.forward_t(&t, train);
            }
            let t = t.apply(&self.norm);
            // Fold: [B·area, N, C] → [B, C, nh·ps, nw·ps].
            let y = t
                .reshape([b, area, n, c])
                .transpose(1, 3)
                .reshape([b * c * nh, nw, ps, ps])
                .transpose(1, 2)
                .reshape([b, c, nh * ps, nw * ps]);
            let y = if resize {
                y.upsample_bilinear2d([h, w], false, None::<f64>, None::<f64>)
            } else {
                y
            };
            let y = self.conv_proj.forward_t(&y, train);
            self.conv_fusion.forward_t(&Tensor::cat(&[x, &y], 1), train)
        }
    }

    #[derive(Debug)]
    pub struct MobileVit {
        stem: ConvBnAct,
        blocks: Vec<Box<dyn ModuleT>>,
        final_conv: Option<ConvBnAct>,
        fc: nn::Linear,
    }

    impl MobileVit {
        pub fn new(p: &nn::Path, c: &MobileVitConfig, io: &ModelIo) -> Self {
            let n = c.channels.len();
            let per_stage: Vec<i64> = (0..n)
                .map(|i| c.depths[i] + i64::from(c.transformer_dims[i] > 0))
                .collect();
            let dpr = drop_path_rates(c.drop_path_rate, per_stage.iter().sum());
            let stem = ConvBnAct::new(
                p / "stem",
                io.in_channels,
                c.stem_chs,
                3,
                c.stem_stride,
                1,
                true,
                1.0,
            );
            let mut blocks: Vec<Box<dyn ModuleT>> = Vec::new();
            let mut cin = c.stem_chs;
            for i in 0..n {
                let sp = p / "stages" / i as i64;
                let cout = make_divisible(c.channels[i] as f64, 8);
                for j in 0..c.depths[i] {
                    let stride = if j == 0 { c.strides[i] } else { 1 };
                    let rate = dpr[blocks.len()];
                    blocks.push(Box::new(InvertedResidual::new(
                        &sp / j,
                        cin,
                        cout,
                        stride,
                        c.expansion,
                        rate,
                    )));
                    cin = cout;
                }
                if c.transformer_dims[i] > 0 {
                    let rate = dpr[blocks.len()];
                    blocks.push(Box::new(MobileVitBlock::new(
                        &sp / c.depths[i],
                        c,
                        cout,
                        c.transformer_dims[i],
                        c.transformer_depths[i],
                        rate,
                    )));
                }
            }
            let final_conv = (c.num_features > 0)
                .then(|| ConvBnAct::new(p / "final_conv", cin, c.num_features, 1, 1, 1, true, 1.0));
            let feat = if c.num_features > 0 {
                c.num_features
            } else {
                cin
            };
            Self {
                stem,
                blocks,
                final_conv,
                fc: linear(p / "head" / "fc", feat, io.num_classes),
            }
        }
    }

    impl ModuleT for MobileVit {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = self.stem.forward_t(x, train);
            for b in &self.blocks {
                y = b.forward_t(&y, train);
            }
            if let Some(f) = &self.final_conv {
                y = f.forward_t(&y, train);
            }
            y.mean_dim(&[-2i64, -1][..], false, Kind::Float)
                .apply(&self.fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
