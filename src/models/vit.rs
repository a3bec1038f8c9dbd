//! Vision Transformer (Dosovitskiy et al. 2021) in timm's layout: patch embedding, class token,
//! learned position embedding, pre-norm blocks (multi-head self-attention, GELU MLP), final norm,
//! head on the class token. Parameter names follow timm (`blocks.0.attn.qkv.weight`, …).
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub patch_size: i64,
    /// Embedding width.
    pub dim: i64,
    pub depth: i64,
    pub heads: i64,
    /// MLP hidden width = mlp_ratio × dim.
    pub mlp_ratio: f64,
    /// Stochastic depth, rising linearly to this rate over the blocks.
    #[serde(default)]
    pub drop_path_rate: f64,
    /// Dropout after the position embedding, in the MLPs and after projections.
    #[serde(default)]
    pub dropout: f64,
}

impl Family for VitConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("patch_size", self.patch_size),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
        ])?;
        check_rates(self.mlp_ratio, self.drop_path_rate, self.dropout)?;
        check_heads(self.dim, self.heads)
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        check_patch(self.patch_size, io)
    }
}

/// Shared checks of the transformer families. The rates are located at the fields `mlp_ratio`,
/// `drop_path_rate` and `dropout`; a family whose fields are named otherwise renames the problem.
pub fn check_rates(mlp_ratio: f64, drop_path_rate: f64, dropout: f64) -> Result<(), Problem> {
    if mlp_ratio <= 0.0 {
        return Err(Problem::at(
            "mlp_ratio",
            format!("`mlp_ratio` must be positive, got {mlp_ratio}"),
        ));
    }
    for (n, v) in [("drop_path_rate", drop_path_rate), ("dropout", dropout)] {
        if !(0.0..1.0).contains(&v) {
            return Err(Problem::at(n, format!("`{n}` must be in [0, 1), got {v}")));
        }
    }
    Ok(())
}

/// A [`check_rates`] problem for a family whose field `from` has another name: at the field `to`,
/// with "`from`" in the message replaced by `said` (e.g. "`mlp_ratios` entries"); a problem with
/// another field as it is.
pub fn renamed(p: Problem, from: &str, to: &str, said: &str) -> Problem {
    if p.field() != from {
        return p;
    }
    Problem::at(to, p.message.replace(&format!("`{from}`"), said))
}

/// The width splits evenly into heads (a problem of two fields: located at the entry).
pub fn check_heads(dim: i64, heads: i64) -> Result<(), Problem> {
    if dim % heads != 0 {
        return Err(Problem::new(
            &[],
            format!("dim {dim} is not divisible by heads {heads}"),
        ));
    }
    Ok(())
}

/// The patch size divides the image (a problem of the pair: located at the entry).
pub fn check_patch(patch: i64, io: &ModelIo) -> Result<(), Problem> {
    if io.image_size % patch != 0 {
        return Err(Problem::new(
            &[],
            format!(
                "patch_size {patch} does not divide the image size {}",
                io.image_size
            ),
        ));
    }
    Ok(())
}

pub static VIT: Arch = Arch {
    name: "vit",
    family: "vit",
    kind: super::ArchKind::Transformer,
    about: "Vision Transformer (Dosovitskiy et al. 2021); cifar = ViT-S/4, imagenet = ViT-B/16",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => Some(
            json!({"patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0, "drop_path_rate": 0.0, "dropout": 0.0}),
        ),
        "cifar" => Some(
            json!({"patch_size": 4, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0, "drop_path_rate": 0.0, "dropout": 0.0}),
        ),
        "imagenet" => Some(
            json!({"patch_size": 16, "dim": 768, "depth": 12, "heads": 12, "mlp_ratio": 4.0, "drop_path_rate": 0.0, "dropout": 0.0}),
        ),
        _ => None,
    },
    check: check_of::<VitConfig>,
    fits: fits_of::<VitConfig>,
    build: build_of::<VitConfig>,
    reference: "timm vit_base_patch16_224",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, drop_path, drop_path_rates, Attention, Mlp},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for VitConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Vit::new(p, self, io, false)))
        }
    }

    /// A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).
    #[derive(Debug)]
    pub struct Block {
        norm1: nn::LayerNorm,
        attn: Attention,
        norm2: nn::LayerNorm,
        mlp: Mlp,
        drop_path: f64,
    }

    impl Block {
        pub fn new(
            p: nn::Path,
            dim: i64,
            heads: i64,
            mlp_ratio: f64,
            dropout: f64,
            drop_path: f64,
        ) -> Self {
            let hidden = (dim as f64 * mlp_ratio) as i64;
            Self {
                norm1: layers::layer_norm(&p / "norm1", dim, 1e-6),
                attn: Attention::new(&p / "attn", dim, heads, true, 0.0, dropout),
                norm2: layers::layer_norm(&p / "norm2", dim, 1e-6),
                mlp: Mlp::new(&p / "mlp", dim, hidden, dim, dropout),
                drop_path,
            }
        }
    }

    impl ModuleT for Block {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let a = self.attn.forward_t(&x.apply(&self.norm1), train);
            let x = x + drop_path(&a, self.drop_path, train);
            let m = self.mlp.forward_t(&x.apply(&self.norm2), train);
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    /// ViT, and with `distilled` DeiT's variant: a second (distillation) token with its own head,
    /// whose prediction is averaged with the class token's (timm's behaviour outside distillation).
    #[derive(Debug)]
    pub struct Vit {
        patch: nn::Conv2D,
        cls_token: Tensor,
        dist_token: Option<Tensor>,
        pos_embed: Tensor,
        blocks: Vec<Block>,
        norm: nn::LayerNorm,
        head: nn::Linear,
        head_dist: Option<nn::Linear>,
        dropout: f64,
    }

    impl Vit {
        pub fn new(p: &nn::Path, c: &VitConfig, io: &ModelIo, distilled: bool) -> Self {
            let prefix = if distilled { 2 } else { 1 };
            let tokens = (io.image_size / c.patch_size).pow(2) + prefix;
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
            let dpr = drop_path_rates(c.drop_path_rate, c.depth);
            Self {
                patch,
                cls_token: layers::trunc_normal_var(p, "cls_token", &[1, 1, c.dim], 1e-6),
                dist_token: distilled
                    .then(|| layers::trunc_normal_var(p, "dist_token", &[1, 1, c.dim], 0.02)),
                pos_embed: layers::trunc_normal_var(p, "pos_embed", &[1, tokens, c.dim], 0.02),
                blocks: (0..c.depth)
                    .map(|i| {
                        Block::new(
                            p / "blocks" / i,
                            c.dim,
                            c.heads,
                            c.mlp_ratio,
                            c.dropout,
                            dpr[i as usize],
                        )
                    })
                    .collect(),
                norm: layers::layer_norm(p / "norm", c.dim, 1e-6),
                head: layers::linear(p / "head", c.dim, io.num_classes, true),
                head_dist: distilled
                    .then(|| layers::linear(p / "head_dist", c.dim, io.num_classes, true)),
                dropout: c.dropout,
            }
        }
    }

    impl ModuleT for Vit {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let b = x.size()[0];
            let t = x.apply(&self.patch).flatten(2, -1).transpose(1, 2);
            let mut toks = vec![self.cls_token.expand([b, -1, -1], false)];
            if let Some(d) = &self.dist_token {
                toks.push(d.expand([b, -1, -1], false));
            }
            toks.push(t);
            let mut t = layers::dropout(
                &(Tensor::cat(&toks, 1) + &self.pos_embed),
                self.dropout,
                train,
            );
            for blk in &self.blocks {
                t = blk.forward_t(&t, train);
            }
            let t = t.apply(&self.norm);
            let y = t.select(1, 0).apply(&self.head);
            match &self.head_dist {
                Some(h) => (y + t.select(1, 1).apply(h)) / 2.0,
                None => y,
            }
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
