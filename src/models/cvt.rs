//! CvT (Wu et al. 2021, "CvT: Introducing Convolutions to Vision Transformers"), as the authors'
//! code builds it (microsoft/CvT, `lib/models/cls_cvt.py`, `get_cls_model`; not in timm, so the
//! reference is a transcription of that code, scripts/reference_models/cvt.py):
//!
//! - stages, each opened by a convolutional token embedding (conv with bias → LayerNorm);
//! - pre-norm blocks whose attention projects queries, keys and values with a depthwise
//!   `kernel_qkv`×`kernel_qkv` convolution + BatchNorm ('dw_bn', stride 1 for queries,
//!   `stride_kv` for keys and values) followed by a linear layer each; scores are scaled by
//!   dim^-0.5 (the whole width, as the authors' code does, not the head width);
//! - MLPs with QuickGELU (`x·σ(1.702x)`, the authors' activation; Hugging Face's port uses exact
//!   GELU);
//! - a class token in the last stage only (as in every published CvT), which bypasses the
//!   convolutional projections; LayerNorm on it and a linear `head` (without the class token: the
//!   mean of the normalised last-stage tokens).
//!
//! Names are the authors' (`stage0.patch_embed.proj`, `stage0.patch_embed.norm`,
//! `stage2.cls_token`, `stage0.blocks.0.norm1`, `.attn.conv_proj_q.conv`, `.attn.conv_proj_q.bn`,
//! `.attn.proj_q`, `.attn.proj`, `.norm2`, `.mlp.fc1`, `.mlp.fc2`, `norm`, `head`); LayerNorm eps
//! 1e-5. Stochastic depth applies to the last stage only, rising linearly over its blocks (the
//! published configs' DROP_PATH_RATE [0, 0, r]).
//!
//! imagenet = CvT-13: 19,997,480 parameters at 224px / 1000 classes (the paper's 20M; Hugging Face
//! `CvtForImageClassification(CvtConfig())` has the same count with 1000 labels). cifar = CvT-13
//! with a 3×3 stride-1 first embedding, so a 32px image gives 32/16/8 maps (224px: 56/28/14).
use super::vit::{check_rates, renamed};
use super::{build_of, check_of, fits_of, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvtConfig {
    /// Kernel of each stage's convolutional token embedding (CvT-13: [7, 3, 3]).
    pub patch_sizes: Vec<i64>,
    /// Stride of each stage's token embedding (CvT-13: [4, 2, 2]).
    pub patch_strides: Vec<i64>,
    /// Padding of each stage's token embedding (CvT-13: [2, 1, 1]).
    pub patch_paddings: Vec<i64>,
    /// Width per stage (CvT-13: [64, 192, 384]).
    pub dims: Vec<i64>,
    /// Attention heads per stage (CvT-13: [1, 3, 6]).
    pub heads: Vec<i64>,
    /// Blocks per stage (CvT-13: [1, 2, 10]).
    pub depths: Vec<i64>,
    /// MLP hidden width = int(mlp_ratio × width).
    pub mlp_ratio: f64,
    /// Bias on the q/k/v linear projections (CvT: true).
    pub qkv_bias: bool,
    /// A class token in the last stage (CvT: true); otherwise the head pools the tokens.
    pub cls_token: bool,
    /// Kernel of the depthwise q/k/v projections (odd; padding kernel / 2). CvT: 3.
    pub kernel_qkv: i64,
    /// Stride of the key/value projections (CvT: 2).
    pub stride_kv: i64,
    /// Stochastic depth of the last stage, rising linearly over its blocks (CvT-13: 0.1).
    pub drop_path_rate: f64,
    /// Dropout after the token embedding, in the MLPs and after the attention projection.
    pub dropout: f64,
    /// Dropout on the attention weights.
    pub attention_dropout: f64,
}

impl CvtConfig {
    /// The map side after each stage for an image side `s` (`None` where a stage does not fit).
    fn sides(&self, s: i64) -> Vec<Option<i64>> {
        let mut s = Some(s);
        self.patch_sizes
            .iter()
            .zip(&self.patch_strides)
            .zip(&self.patch_paddings)
            .map(|((&k, &st), &p)| {
                s = match s {
                    Some(s) if s + 2 * p >= k => Some((s + 2 * p - k) / st + 1),
                    _ => None,
                };
                s
            })
            .collect()
    }
}

impl Family for CvtConfig {
    fn validate(&self) -> Result<(), Problem> {
        let n = self.depths.len();
        if n == 0
            || [
                &self.patch_sizes,
                &self.patch_strides,
                &self.patch_paddings,
                &self.dims,
                &self.heads,
            ]
            .iter()
            .any(|v| v.len() != n)
        {
            return Err(Problem::at(
                "patch_sizes",
                "`patch_sizes`, `patch_strides`, `patch_paddings`, `dims`, `heads` and \
                 `depths` need the same, non-zero length",
            ));
        }
        for (name, v) in [
            ("patch_sizes", &self.patch_sizes),
            ("patch_strides", &self.patch_strides),
            ("dims", &self.dims),
            ("heads", &self.heads),
            ("depths", &self.depths),
        ] {
            if v.iter().any(|&x| x < 1) {
                return Err(Problem::at(
                    name,
                    format!("`{name}` entries must be at least 1, got {v:?}"),
                ));
            }
        }
        if self.patch_paddings.iter().any(|&x| x < 0) {
            return Err(Problem::at(
                "patch_paddings",
                format!(
                    "`patch_paddings` entries must be at least 0, got {:?}",
                    self.patch_paddings
                ),
            ));
        }
        for (i, (d, h)) in self.dims.iter().zip(&self.heads).enumerate() {
            if d % h != 0 {
                return Err(Problem::new(
                    &[],
                    format!("stage {i}: width {d} is not divisible by heads {h}"),
                ));
            }
        }
        if self.kernel_qkv < 1 || self.kernel_qkv % 2 == 0 {
            return Err(Problem::at(
                "kernel_qkv",
                format!(
                    "`kernel_qkv` must be odd and positive (queries keep the map size), got {}",
                    self.kernel_qkv
                ),
            ));
        }
        if self.stride_kv < 1 {
            return Err(Problem::at(
                "stride_kv",
                format!("`stride_kv` must be at least 1, got {}", self.stride_kv),
            ));
        }
        check_rates(self.mlp_ratio, self.drop_path_rate, self.dropout)?;
        check_rates(1.0, self.attention_dropout, 0.0).map_err(|p| {
            renamed(
                p,
                "drop_path_rate",
                "attention_dropout",
                "`attention_dropout`",
            )
        })?;
        if let Some(d) = self
            .dims
            .iter()
            .find(|&&d| ((d as f64 * self.mlp_ratio) as i64) < 1)
        {
            return Err(Problem::new(
                &[],
                format!(
                    "the MLP width int(mlp_ratio × {d}) must be at least 1 (mlp_ratio {})",
                    self.mlp_ratio
                ),
            ));
        }
        Ok(())
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        match self.sides(io.image_size).iter().position(|s| s.is_none()) {
            Some(i) => Err(Problem::new(
                &[],
                format!(
                    "stage {i}'s token embedding (kernel {}, stride {}, padding {}) does not fit \
                     the map of a {}px image",
                    self.patch_sizes[i],
                    self.patch_strides[i],
                    self.patch_paddings[i],
                    io.image_size
                ),
            )),
            None => Ok(()),
        }
    }
}

pub static CVT: Arch = Arch {
    name: "cvt",
    family: "cvt",
    kind: super::ArchKind::Hybrid,
    about: "CvT (Wu et al. 2021); imagenet = CvT-13, cifar = CvT-13 with a 3×3/1 first embedding",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let cvt13 = |k0: i64, s0: i64, p0: i64| {
            json!({"patch_sizes": [k0, 3, 3], "patch_strides": [s0, 2, 2],
                   "patch_paddings": [p0, 1, 1], "dims": [64, 192, 384], "heads": [1, 3, 6],
                   "depths": [1, 2, 10], "mlp_ratio": 4.0, "qkv_bias": true, "cls_token": true,
                   "kernel_qkv": 3, "stride_kv": 2, "drop_path_rate": 0.1, "dropout": 0.0,
                   "attention_dropout": 0.0})
        };
        match p {
            "tiny" => Some(
                json!({"patch_sizes": [7, 3], "patch_strides": [4, 2], "patch_paddings": [2, 1],
                       "dims": [16, 32], "heads": [1, 2], "depths": [1, 2], "mlp_ratio": 2.0,
                       "qkv_bias": true, "cls_token": true, "kernel_qkv": 3, "stride_kv": 2,
                       "drop_path_rate": 0.0, "dropout": 0.0, "attention_dropout": 0.0}),
            ),
            "cifar" => Some(cvt13(3, 1, 1)),
            "imagenet" => Some(cvt13(7, 4, 2)),
            _ => None,
        }
    },
    check: check_of::<CvtConfig>,
    fits: fits_of::<CvtConfig>,
    build: build_of::<CvtConfig>,
    reference: "microsoft/CvT cvt-13-224x224 (transcribed; = Hugging Face CvtConfig() at 1000 \
                classes)",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, drop_path, drop_path_rates},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Kind, Tensor,
    };

    impl Build for CvtConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Cvt::new(p, self, io)))
        }
    }

    /// The authors' 'dw_bn' projection: depthwise conv (no bias) → BatchNorm → tokens.
    #[derive(Debug)]
    struct ConvProj {
        conv: nn::Conv2D,
        bn: nn::BatchNorm,
    }

    impl ConvProj {
        fn new(p: nn::Path, dim: i64, k: i64, stride: i64) -> Self {
            Self {
                conv: layers::conv2d(&p / "conv", dim, dim, k, stride, k / 2, dim, false),
                bn: layers::bn2d(&p / "bn", dim),
            }
        }
    }

    impl ModuleT for ConvProj {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            x.apply(&self.conv)
                .apply_t(&self.bn, train)
                .flatten(2, -1)
                .transpose(1, 2)
        }
    }

    #[derive(Debug)]
    struct Attention {
        conv_proj_q: ConvProj,
        conv_proj_k: ConvProj,
        conv_proj_v: ConvProj,
        proj_q: nn::Linear,
        proj_k: nn::Linear,
        proj_v: nn::Linear,
        proj: nn::Linear,
        heads: i64,
        scale: f64,
        with_cls: bool,
        attn_drop: f64,
        proj_drop: f64,
    }

    impl Attention {
        fn new(p: nn::Path, dim: i64, heads: i64, c: &CvtConfig, with_cls: bool) -> Self {
            let (k, skv) = (c.kernel_qkv, c.stride_kv);
            Self {
                conv_proj_q: ConvProj::new(&p / "conv_proj_q", dim, k, 1),
                conv_proj_k: ConvProj::new(&p / "conv_proj_k", dim, k, skv),
                conv_proj_v: ConvProj::new(&p / "conv_proj_v", dim, k, skv),
                proj_q: layers::linear(&p / "proj_q", dim, dim, c.qkv_bias),
                proj_k: layers::linear(&p / "proj_k", dim, dim, c.qkv_bias),
                proj_v: layers::linear(&p / "proj_v", dim, dim, c.qkv_bias),
                proj: layers::linear(&p / "proj", dim, dim, true),
                heads,
                scale: (dim as f64).powf(-0.5),
                with_cls,
                attn_drop: c.attention_dropout,
                proj_drop: c.dropout,
            }
        }

        /// `x`: `[batch, (1 +) h·w, dim]`, the class token first when there is one.
        fn forward(&self, x: &Tensor, h: i64, w: i64, train: bool) -> Tensor {
            let (b, _, c) = x.size3().expect("tokens are [batch, tokens, dim]");
            let (cls, sp) = if self.with_cls {
                (Some(x.narrow(1, 0, 1)), x.narrow(1, 1, h * w))
            } else {
                (None, x.shallow_clone())
            };
            let map = sp.transpose(1, 2).reshape([b, c, h, w]);
            let project = |cp: &ConvProj, lin: &nn::Linear| -> Tensor {
                let t = cp.forward_t(&map, train);
                let t = match &cls {
                    Some(ct) => Tensor::cat(&[ct, &t], 1),
                    None => t,
                };
                let n = t.size()[1];
                t.apply(lin)
                    .reshape([b, n, self.heads, c / self.heads])
                    .transpose(1, 2)
            };
            let q = project(&self.conv_proj_q, &self.proj_q);
            let k = project(&self.conv_proj_k, &self.proj_k);
            let v = project(&self.conv_proj_v, &self.proj_v);
            let n = q.size()[2];
            let y = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                if train { self.attn_drop } else { 0.0 },
                false,
                self.scale,
                false,
            );
            layers::dropout(
                &y.transpose(1, 2).reshape([b, n, c]).apply(&self.proj),
                self.proj_drop,
                train,
            )
        }
    }

    fn quick_gelu(x: &Tensor) -> Tensor {
        x * (x * 1.702).sigmoid()
    }

    #[derive(Debug)]
    struct Block {
        norm1: nn::LayerNorm,
        attn: Attention,
        norm2: nn::LayerNorm,
        fc1: nn::Linear,
        fc2: nn::Linear,
        dropout: f64,
        drop_path: f64,
    }

    impl Block {
        fn new(
            p: nn::Path,
            dim: i64,
            heads: i64,
            c: &CvtConfig,
            with_cls: bool,
            drop_path: f64,
        ) -> Self {
            let hidden = (dim as f64 * c.mlp_ratio) as i64;
            Self {
                norm1: layers::layer_norm(&p / "norm1", dim, 1e-5),
                attn: Attention::new(&p / "attn", dim, heads, c, with_cls),
                norm2: layers::layer_norm(&p / "norm2", dim, 1e-5),
                fc1: layers::linear(&p / "mlp" / "fc1", dim, hidden, true),
                fc2: layers::linear(&p / "mlp" / "fc2", hidden, dim, true),
                dropout: c.dropout,
                drop_path,
            }
        }

        fn forward(&self, x: &Tensor, h: i64, w: i64, train: bool) -> Tensor {
            let a = self.attn.forward(&x.apply(&self.norm1), h, w, train);
            let x = x + drop_path(&a, self.drop_path, train);
            let m = layers::dropout(
                &quick_gelu(&x.apply(&self.norm2).apply(&self.fc1)),
                self.dropout,
                train,
            );
            let m = layers::dropout(&m.apply(&self.fc2), self.dropout, train);
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    /// One stage (the authors' `VisionTransformer`).
    #[derive(Debug)]
    struct Stage {
        proj: nn::Conv2D,
        norm: nn::LayerNorm,
        cls_token: Option<Tensor>,
        blocks: Vec<Block>,
        dropout: f64,
    }

    impl Stage {
        /// Returns the stage's map (NCHW) and, in a stage with one, the class token `[batch, 1, dim]`.
        fn forward(&self, x: &Tensor, train: bool) -> (Tensor, Option<Tensor>) {
            let y = x.apply(&self.proj);
            let (b, c, h, w) = y.size4().expect("maps are NCHW");
            let mut t = y.flatten(2, -1).transpose(1, 2).apply(&self.norm);
            if let Some(ct) = &self.cls_token {
                t = Tensor::cat(&[ct.expand([b, -1, -1], false), t], 1);
            }
            let mut t = layers::dropout(&t, self.dropout, train);
            for blk in &self.blocks {
                t = blk.forward(&t, h, w, train);
            }
            let (cls, sp) = if self.cls_token.is_some() {
                (Some(t.narrow(1, 0, 1)), t.narrow(1, 1, h * w))
            } else {
                (None, t)
            };
            (sp.transpose(1, 2).reshape([b, c, h, w]), cls)
        }
    }

    #[derive(Debug)]
    pub struct Cvt {
        stages: Vec<Stage>,
        norm: nn::LayerNorm,
        head: nn::Linear,
    }

    impl Cvt {
        pub fn new(p: &nn::Path, c: &CvtConfig, io: &ModelIo) -> Self {
            let n = c.depths.len();
            let mut cin = io.in_channels;
            let mut stages = Vec::new();
            for (i, &dim) in c.dims.iter().enumerate() {
                let sp = p / format!("stage{i}");
                let last = i == n - 1;
                let with_cls = c.cls_token && last;
                let rate = if last { c.drop_path_rate } else { 0.0 };
                let dpr = drop_path_rates(rate, c.depths[i]);
                stages.push(Stage {
                    proj: layers::conv2d(
                        &sp / "patch_embed" / "proj",
                        cin,
                        dim,
                        c.patch_sizes[i],
                        c.patch_strides[i],
                        c.patch_paddings[i],
                        1,
                        true,
                    ),
                    norm: layers::layer_norm(&sp / "patch_embed" / "norm", dim, 1e-5),
                    cls_token: with_cls
                        .then(|| layers::trunc_normal_var(&sp, "cls_token", &[1, 1, dim], 0.02)),
                    blocks: (0..c.depths[i])
                        .map(|j| {
                            Block::new(
                                &sp / "blocks" / j,
                                dim,
                                c.heads[i],
                                c,
                                with_cls,
                                dpr[j as usize],
                            )
                        })
                        .collect(),
                    dropout: c.dropout,
                });
                cin = dim;
            }
            Self {
                stages,
                norm: layers::layer_norm(p / "norm", cin, 1e-5),
                head: layers::linear(p / "head", cin, io.num_classes, true),
            }
        }
    }

    impl ModuleT for Cvt {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.shallow_clone();
            let mut cls = None;
            for s in &self.stages {
                let (m, c) = s.forward(&y, train);
                y = m;
                cls = c;
            }
            let f = match cls {
                Some(ct) => ct.apply(&self.norm).select(1, 0),
                None => y
                    .flatten(2, -1)
                    .transpose(1, 2)
                    .apply(&self.norm)
                    .mean_dim(&[1i64][..], false, Kind::Float)
                    .to_kind(y.kind()),
            };
            f.apply(&self.head)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
