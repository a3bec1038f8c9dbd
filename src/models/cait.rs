//! CaiT (Touvron et al. 2021, "Going deeper with Image Transformers") in timm's layout
//! (`timm.models.cait.Cait`): a patch embedding with a learned position embedding and no class
//! token; self-attention blocks with talking-heads attention (linear mixes of the heads before,
//! `proj_l`, and after, `proj_w`, the softmax) and LayerScale (`gamma_1`, `gamma_2`); then
//! class-attention blocks (`blocks_token_only`) in which only a class token, inserted at that
//! point, attends to itself and the frozen patch tokens; final LayerNorm (eps 1e-6 everywhere) and
//! a linear `head` on the class token. As in timm (and the paper), every self-attention block gets
//! the same drop-path rate and the class-attention blocks none. Names follow timm `cait_xxs24_224`.
use super::vit::{check_heads, check_patch, check_rates};
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaitConfig {
    pub patch_size: i64,
    /// Embedding width.
    pub dim: i64,
    /// Self-attention (talking-heads) blocks.
    pub depth: i64,
    pub heads: i64,
    /// MLP hidden width = mlp_ratio × dim, in both kinds of block.
    pub mlp_ratio: f64,
    /// Class-attention blocks (2 in every CaiT).
    pub depth_token_only: i64,
    /// Initial LayerScale value (paper: 0.1 up to depth 18, 1e-5 at 24, 1e-6 deeper).
    pub layer_scale_init: f64,
    /// Stochastic depth of every self-attention block (uniform, not increasing).
    pub drop_path_rate: f64,
}

impl Family for CaitConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("patch_size", self.patch_size),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("depth_token_only", self.depth_token_only),
        ])?;
        check_rates(self.mlp_ratio, self.drop_path_rate, 0.0)?;
        check_heads(self.dim, self.heads)
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        check_patch(self.patch_size, io)
    }
}

pub static CAIT: Arch = Arch {
    name: "cait",
    family: "cait",
    kind: super::ArchKind::Transformer,
    about: "CaiT (Touvron et al. 2021); cifar = XXS-24 with 4×4 patches, imagenet = CaiT-XXS-24",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => Some(
            json!({"patch_size": 4, "dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "depth_token_only": 1, "layer_scale_init": 0.1, "drop_path_rate": 0.0}),
        ),
        "cifar" => Some(
            json!({"patch_size": 4, "dim": 192, "depth": 24, "heads": 4, "mlp_ratio": 4.0, "depth_token_only": 2, "layer_scale_init": 1e-5, "drop_path_rate": 0.05}),
        ),
        "imagenet" => Some(
            json!({"patch_size": 16, "dim": 192, "depth": 24, "heads": 4, "mlp_ratio": 4.0, "depth_token_only": 2, "layer_scale_init": 1e-5, "drop_path_rate": 0.05}),
        ),
        _ => None,
    },
    check: check_of::<CaitConfig>,
    fits: fits_of::<CaitConfig>,
    build: build_of::<CaitConfig>,
    reference: "timm cait_xxs24_224",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, drop_path, Mlp},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Kind, Tensor,
    };

    impl Build for CaitConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Cait::new(p, self, io)))
        }
    }

    const LN_EPS: f64 = 1e-6;

    /// Talking-heads attention (Shazeer et al. 2020) as in timm's `TalkingHeadAttn`: the logits are
    /// mixed across heads by `proj_l` before the softmax and the weights by `proj_w` after it.
    #[derive(Debug)]
    struct TalkingHeadAttn {
        qkv: nn::Linear,
        proj: nn::Linear,
        proj_l: nn::Linear,
        proj_w: nn::Linear,
        heads: i64,
        scale: f64,
    }

    impl TalkingHeadAttn {
        fn new(p: nn::Path, dim: i64, heads: i64) -> Self {
            Self {
                qkv: layers::linear(&p / "qkv", dim, 3 * dim, true),
                proj: layers::linear(&p / "proj", dim, dim, true),
                proj_l: layers::linear(&p / "proj_l", heads, heads, true),
                proj_w: layers::linear(&p / "proj_w", heads, heads, true),
                heads,
                scale: ((dim / heads) as f64).powf(-0.5),
            }
        }
    }

    impl nn::Module for TalkingHeadAttn {
        fn forward(&self, x: &Tensor) -> Tensor {
            let (b, n, c) = x.size3().expect("tokens are [batch, tokens, dim]");
            let qkv = x
                .apply(&self.qkv)
                .reshape([b, n, 3, self.heads, c / self.heads])
                .permute([2, 0, 3, 1, 4]);
            let q = qkv.get(0) * self.scale;
            let (k, v) = (qkv.get(1), qkv.get(2));
            let attn = q
                .matmul(&k.transpose(-2, -1))
                .permute([0, 2, 3, 1])
                .apply(&self.proj_l)
                .permute([0, 3, 1, 2])
                .softmax(-1, Kind::Float)
                .permute([0, 2, 3, 1])
                .apply(&self.proj_w)
                .permute([0, 3, 1, 2]);
            attn.matmul(&v)
                .transpose(1, 2)
                .reshape([b, n, c])
                .apply(&self.proj)
        }
    }

    /// A self-attention block with LayerScale: x + γ₁·attn(norm1(x)), then x + γ₂·mlp(norm2(x)).
    #[derive(Debug)]
    struct LayerScaleBlock {
        norm1: nn::LayerNorm,
        attn: TalkingHeadAttn,
        norm2: nn::LayerNorm,
        mlp: Mlp,
        gamma_1: Tensor,
        gamma_2: Tensor,
        drop_path: f64,
    }

    impl LayerScaleBlock {
        fn new(p: nn::Path, c: &CaitConfig, drop_path: f64) -> Self {
            let hidden = (c.dim as f64 * c.mlp_ratio) as i64;
            Self {
                norm1: layers::layer_norm(&p / "norm1", c.dim, LN_EPS),
                attn: TalkingHeadAttn::new(&p / "attn", c.dim, c.heads),
                norm2: layers::layer_norm(&p / "norm2", c.dim, LN_EPS),
                mlp: Mlp::new(&p / "mlp", c.dim, hidden, c.dim, 0.0),
                gamma_1: layers::layer_scale(&p, "gamma_1", c.dim, c.layer_scale_init),
                gamma_2: layers::layer_scale(&p, "gamma_2", c.dim, c.layer_scale_init),
                drop_path,
            }
        }
    }

    impl ModuleT for LayerScaleBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let a = x.apply(&self.norm1).apply(&self.attn) * &self.gamma_1;
            let x = x + drop_path(&a, self.drop_path, train);
            let m = self.mlp.forward_t(&x.apply(&self.norm2), train) * &self.gamma_2;
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    /// timm's `ClassAttn`: the class token (first token) queries all tokens.
    #[derive(Debug)]
    struct ClassAttn {
        q: nn::Linear,
        k: nn::Linear,
        v: nn::Linear,
        proj: nn::Linear,
        heads: i64,
    }

    impl ClassAttn {
        fn new(p: nn::Path, dim: i64, heads: i64) -> Self {
            Self {
                q: layers::linear(&p / "q", dim, dim, true),
                k: layers::linear(&p / "k", dim, dim, true),
                v: layers::linear(&p / "v", dim, dim, true),
                proj: layers::linear(&p / "proj", dim, dim, true),
                heads,
            }
        }

        /// `x`: `[batch, 1 + patches, dim]`, class token first; returns `[batch, 1, dim]`.
        fn forward(&self, x: &Tensor, train: bool) -> Tensor {
            let (b, n, c) = x.size3().expect("tokens are [batch, tokens, dim]");
            let hd = c / self.heads;
            let q = x
                .narrow(1, 0, 1)
                .apply(&self.q)
                .reshape([b, 1, self.heads, hd])
                .permute([0, 2, 1, 3]);
            let k = x
                .apply(&self.k)
                .reshape([b, n, self.heads, hd])
                .permute([0, 2, 1, 3]);
            let v = x
                .apply(&self.v)
                .reshape([b, n, self.heads, hd])
                .permute([0, 2, 1, 3]);
            layers::sdpa(&q, &k, &v, None, 0.0, train)
                .transpose(1, 2)
                .reshape([b, 1, c])
                .apply(&self.proj)
        }
    }

    /// A class-attention block (timm's `LayerScaleBlockClassAttn`, no drop path): the class token is
    /// updated by attention over [class token, patch tokens] and an MLP, both layer-scaled.
    #[derive(Debug)]
    struct ClassAttnBlock {
        norm1: nn::LayerNorm,
        attn: ClassAttn,
        norm2: nn::LayerNorm,
        mlp: Mlp,
        gamma_1: Tensor,
        gamma_2: Tensor,
    }

    impl ClassAttnBlock {
        fn new(p: nn::Path, c: &CaitConfig) -> Self {
            let hidden = (c.dim as f64 * c.mlp_ratio) as i64;
            Self {
                norm1: layers::layer_norm(&p / "norm1", c.dim, LN_EPS),
                attn: ClassAttn::new(&p / "attn", c.dim, c.heads),
                norm2: layers::layer_norm(&p / "norm2", c.dim, LN_EPS),
                mlp: Mlp::new(&p / "mlp", c.dim, hidden, c.dim, 0.0),
                gamma_1: layers::layer_scale(&p, "gamma_1", c.dim, c.layer_scale_init),
                gamma_2: layers::layer_scale(&p, "gamma_2", c.dim, c.layer_scale_init),
            }
        }

        /// `x`: patch tokens `[batch, patches, dim]`; `cls`: `[batch, 1, dim]`.
        fn forward(&self, x: &Tensor, cls: &Tensor, train: bool) -> Tensor {
            let u = Tensor::cat(&[cls, x], 1);
            let a = self.attn.forward(&u.apply(&self.norm1), train) * &self.gamma_1;
            let cls = cls + a;
            let m = self.mlp.forward_t(&cls.apply(&self.norm2), train) * &self.gamma_2;
            &cls + m
        }
    }

    #[derive(Debug)]
    pub struct Cait {
        patch: nn::Conv2D,
        cls_token: Tensor,
        pos_embed: Tensor,
        blocks: Vec<LayerScaleBlock>,
        blocks_token_only: Vec<ClassAttnBlock>,
        norm: nn::LayerNorm,
        head: nn::Linear,
    }

    impl Cait {
        pub fn new(p: &nn::Path, c: &CaitConfig, io: &ModelIo) -> Self {
            let patches = (io.image_size / c.patch_size).pow(2);
            let patch = nn::conv2d(
                p / "patch_embed" / "proj",
                io.in_channels,
                c.dim,
                c.patch_size,
                nn::ConvConfig {
                    stride: c.patch_size,
                    ..Default::default()
                },
            );
            Self {
                patch,
                cls_token: layers::trunc_normal_var(p, "cls_token", &[1, 1, c.dim], 0.02),
                pos_embed: layers::trunc_normal_var(p, "pos_embed", &[1, patches, c.dim], 0.02),
                blocks: (0..c.depth)
                    .map(|i| LayerScaleBlock::new(p / "blocks" / i, c, c.drop_path_rate))
                    .collect(),
                blocks_token_only: (0..c.depth_token_only)
                    .map(|i| ClassAttnBlock::new(p / "blocks_token_only" / i, c))
                    .collect(),
                norm: layers::layer_norm(p / "norm", c.dim, LN_EPS),
                head: layers::linear(p / "head", c.dim, io.num_classes, true),
            }
        }
    }

    impl ModuleT for Cait {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let b = x.size()[0];
            let mut t = x.apply(&self.patch).flatten(2, -1).transpose(1, 2) + &self.pos_embed;
            for blk in &self.blocks {
                t = blk.forward_t(&t, train);
            }
            let mut cls = self.cls_token.expand([b, -1, -1], false);
            for blk in &self.blocks_token_only {
                cls = blk.forward(&t, &cls, train);
            }
            // The final norm is per token and the head reads only the class token.
            cls.select(1, 0).apply(&self.norm).apply(&self.head)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
