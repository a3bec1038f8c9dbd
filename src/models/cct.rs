//! Compact Convolutional Transformer (Hassani et al. 2021, "Escaping the Big Data Paradigm with
//! Compact Transformers"), as the authors' PyTorch code builds it (SHI-Labs/Compact-Transformers,
//! `src/cct.py`, `src/utils/tokenizer.py`, `src/utils/transformers.py`; not in timm, so the
//! reference is a transcription of that code, scripts/reference_models/cct.py):
//!
//! - a convolutional tokenizer: `conv_layers` × (conv without bias → ReLU → max-pool), the
//!   intermediate convolutions `conv_channels` wide, the last `dim` wide; its map is the token
//!   sequence;
//! - a learnable position embedding (trunc-normal, std 0.2) sized for the image, or none;
//! - transformer encoder layers exactly as the authors wrote them: `x + attn(pre_norm(x))`, then
//!   `norm1` applied to the residual stream, then `x + linear2(gelu(linear1(x)))` (exact GELU,
//!   qkv without bias, attention dropout, stochastic depth rising linearly);
//! - a final LayerNorm, sequence pooling (`softmax(attention_pool(x))` over tokens as weights),
//!   and a linear classifier `fc`.
//!
//! Names are the authors' (`tokenizer.conv_layers.0.0.weight`, `classifier.positional_emb`,
//! `classifier.blocks.0.pre_norm`, `.self_attn.qkv`, `.self_attn.proj`, `.linear1`, `.norm1`,
//! `.linear2`, `classifier.norm`, `classifier.attention_pool`, `classifier.fc`); LayerNorm eps is
//! PyTorch's 1e-5. The authors' frozen sinusoidal embedding is not offered.
//!
//! Presets: cifar = CCT-7/3×1 (7 layers, one 3×3 stride-1 conv, width 256, 4 heads, MLP ratio 2:
//! 3,760,139 parameters at 32px / 10 classes, the paper's 3.76M); imagenet = CCT-14/7×2 (14 layers,
//! two 7×7 stride-2 convs, width 384, 6 heads, MLP ratio 3: 22,367,273 at 224px / 1000 classes,
//! the paper's 22.36M).
use super::vit::{check_heads, check_rates, renamed};
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

/// CCT's position embedding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionalEmbedding {
    /// A learned `[1, tokens, dim]` parameter.
    Learnable,
    /// No position embedding.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CctConfig {
    /// Embedding width.
    pub dim: i64,
    /// Number of transformer encoder layers.
    pub depth: i64,
    pub heads: i64,
    /// MLP hidden width = int(mlp_ratio × dim).
    pub mlp_ratio: f64,
    /// Number of conv → ReLU → max-pool stages in the tokenizer.
    pub conv_layers: i64,
    /// Tokenizer convolution kernel, stride and padding (CCT: 3/1/1 for 3×3, 7/2/3 for 7×7).
    pub conv_kernel: i64,
    pub conv_stride: i64,
    pub conv_padding: i64,
    /// Width of the tokenizer's intermediate convolutions (the authors' `in_planes`, 64).
    pub conv_channels: i64,
    /// Tokenizer max-pool kernel, stride and padding (CCT: 3/2/1).
    pub pool_kernel: i64,
    pub pool_stride: i64,
    pub pool_padding: i64,
    /// `learnable` or `none`.
    pub positional_embedding: PositionalEmbedding,
    /// Stochastic depth, rising linearly to this rate over the layers (CCT: 0.1).
    pub drop_path_rate: f64,
    /// Dropout after the position embedding, in the MLPs and after the attention projection.
    pub dropout: f64,
    /// Dropout on the attention weights (CCT: 0.1).
    pub attention_dropout: f64,
}

impl CctConfig {
    /// The tokenizer's map side for an image side `s`, or `None` if a layer does not fit.
    fn token_side(&self, s: i64) -> Option<i64> {
        let mut s = s;
        for _ in 0..self.conv_layers {
            if s + 2 * self.conv_padding < self.conv_kernel {
                return None;
            }
            s = (s + 2 * self.conv_padding - self.conv_kernel) / self.conv_stride + 1;
            if s + 2 * self.pool_padding < self.pool_kernel {
                return None;
            }
            s = (s + 2 * self.pool_padding - self.pool_kernel) / self.pool_stride + 1;
        }
        Some(s)
    }
}

impl Family for CctConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("conv_layers", self.conv_layers),
            ("conv_kernel", self.conv_kernel),
            ("conv_stride", self.conv_stride),
            ("conv_channels", self.conv_channels),
            ("pool_kernel", self.pool_kernel),
            ("pool_stride", self.pool_stride),
        ])?;
        for (n, v) in [
            ("conv_padding", self.conv_padding),
            ("pool_padding", self.pool_padding),
        ] {
            if v < 0 {
                return Err(Problem::at(n, format!("`{n}` must be at least 0, got {v}")));
            }
        }
        if 2 * self.pool_padding > self.pool_kernel {
            return Err(Problem::at(
                "pool_padding",
                format!(
                    "`pool_padding` ({}) must be at most half of `pool_kernel` ({})",
                    self.pool_padding, self.pool_kernel
                ),
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
        if ((self.dim as f64 * self.mlp_ratio) as i64) < 1 {
            return Err(Problem::new(
                &[],
                format!(
                    "the MLP width int(mlp_ratio × dim) must be at least 1 (mlp_ratio {}, dim {})",
                    self.mlp_ratio, self.dim
                ),
            ));
        }
        check_heads(self.dim, self.heads)
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        match self.token_side(io.image_size) {
            Some(s) if s >= 1 => Ok(()),
            _ => Err(Problem::new(
                &[],
                format!(
                    "the tokenizer ({} × conv {}/{} pad {}, max-pool {}/{} pad {}) leaves no \
                     tokens of a {}px image",
                    self.conv_layers,
                    self.conv_kernel,
                    self.conv_stride,
                    self.conv_padding,
                    self.pool_kernel,
                    self.pool_stride,
                    self.pool_padding,
                    io.image_size
                ),
            )),
        }
    }
}

pub static CCT: Arch = Arch {
    name: "cct",
    family: "cct",
    kind: super::ArchKind::Hybrid,
    about: "Compact Convolutional Transformer (Hassani et al. 2021); cifar = CCT-7/3x1, \
            imagenet = CCT-14/7x2",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => Some(json!({
            "dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "conv_layers": 2,
            "conv_kernel": 3, "conv_stride": 2, "conv_padding": 1, "conv_channels": 16,
            "pool_kernel": 3, "pool_stride": 2, "pool_padding": 1,
            "positional_embedding": "learnable", "drop_path_rate": 0.0, "dropout": 0.0,
            "attention_dropout": 0.0})),
        "cifar" => Some(json!({
            "dim": 256, "depth": 7, "heads": 4, "mlp_ratio": 2.0, "conv_layers": 1,
            "conv_kernel": 3, "conv_stride": 1, "conv_padding": 1, "conv_channels": 64,
            "pool_kernel": 3, "pool_stride": 2, "pool_padding": 1,
            "positional_embedding": "learnable", "drop_path_rate": 0.1, "dropout": 0.0,
            "attention_dropout": 0.1})),
        "imagenet" => Some(json!({
            "dim": 384, "depth": 14, "heads": 6, "mlp_ratio": 3.0, "conv_layers": 2,
            "conv_kernel": 7, "conv_stride": 2, "conv_padding": 3, "conv_channels": 64,
            "pool_kernel": 3, "pool_stride": 2, "pool_padding": 1,
            "positional_embedding": "learnable", "drop_path_rate": 0.1, "dropout": 0.0,
            "attention_dropout": 0.1})),
        _ => None,
    },
    check: check_of::<CctConfig>,
    fits: fits_of::<CctConfig>,
    build: build_of::<CctConfig>,
    reference: "SHI-Labs/Compact-Transformers cct_14_7x2_224 (transcribed)",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, drop_path, drop_path_rates, Attention},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Kind, Tensor,
    };

    impl Build for CctConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Cct::new(p, self, io)))
        }
    }

    /// The authors' `TransformerEncoderLayer`.
    #[derive(Debug)]
    struct Layer {
        pre_norm: nn::LayerNorm,
        self_attn: Attention,
        linear1: nn::Linear,
        norm1: nn::LayerNorm,
        linear2: nn::Linear,
        dropout: f64,
        drop_path: f64,
    }

    impl Layer {
        fn new(p: nn::Path, c: &CctConfig, drop_path: f64) -> Self {
            let hidden = (c.dim as f64 * c.mlp_ratio) as i64;
            Self {
                pre_norm: layers::layer_norm(&p / "pre_norm", c.dim, 1e-5),
                self_attn: Attention::new(
                    &p / "self_attn",
                    c.dim,
                    c.heads,
                    false,
                    c.attention_dropout,
                    c.dropout,
                ),
                linear1: layers::linear(&p / "linear1", c.dim, hidden, true),
                norm1: layers::layer_norm(&p / "norm1", c.dim, 1e-5),
                linear2: layers::linear(&p / "linear2", hidden, c.dim, true),
                dropout: c.dropout,
                drop_path,
            }
        }
    }

    impl ModuleT for Layer {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let a = self.self_attn.forward_t(&x.apply(&self.pre_norm), train);
            let x = (x + drop_path(&a, self.drop_path, train)).apply(&self.norm1);
            let h = layers::dropout(&x.apply(&self.linear1).gelu("none"), self.dropout, train);
            let h = layers::dropout(&h.apply(&self.linear2), self.dropout, train);
            &x + drop_path(&h, self.drop_path, train)
        }
    }

    #[derive(Debug)]
    pub struct Cct {
        convs: Vec<nn::Conv2D>,
        pool: (i64, i64, i64),
        positional_emb: Option<Tensor>,
        blocks: Vec<Layer>,
        norm: nn::LayerNorm,
        attention_pool: nn::Linear,
        fc: nn::Linear,
        dropout: f64,
    }

    impl Cct {
        pub fn new(p: &nn::Path, c: &CctConfig, io: &ModelIo) -> Self {
            let tp = p / "tokenizer" / "conv_layers";
            let convs = (0..c.conv_layers)
                .map(|i| {
                    let cin = if i == 0 {
                        io.in_channels
                    } else {
                        c.conv_channels
                    };
                    let cout = if i == c.conv_layers - 1 {
                        c.dim
                    } else {
                        c.conv_channels
                    };
                    // The authors' tokenizer init: kaiming_normal_ (fan-in, ReLU gain).
                    nn::conv2d(
                        &tp / i / 0,
                        cin,
                        cout,
                        c.conv_kernel,
                        nn::ConvConfig {
                            stride: c.conv_stride,
                            padding: c.conv_padding,
                            bias: false,
                            ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
                            ..Default::default()
                        },
                    )
                })
                .collect();
            let side = c.token_side(io.image_size).unwrap_or(1).max(1);
            let cp = p / "classifier";
            let positional_emb =
                (c.positional_embedding == PositionalEmbedding::Learnable).then(|| {
                    // torch's trunc_normal_(std=0.2) cuts at ±2 (= ±10σ): a plain normal in effect.
                    cp.var(
                        "positional_emb",
                        &[1, side * side, c.dim],
                        nn::Init::Randn {
                            mean: 0.0,
                            stdev: 0.2,
                        },
                    )
                });
            let dpr = drop_path_rates(c.drop_path_rate, c.depth);
            Self {
                convs,
                pool: (c.pool_kernel, c.pool_stride, c.pool_padding),
                positional_emb,
                blocks: (0..c.depth)
                    .map(|i| Layer::new(&cp / "blocks" / i, c, dpr[i as usize]))
                    .collect(),
                norm: layers::layer_norm(&cp / "norm", c.dim, 1e-5),
                attention_pool: layers::linear(&cp / "attention_pool", c.dim, 1, true),
                fc: layers::linear(&cp / "fc", c.dim, io.num_classes, true),
                dropout: c.dropout,
            }
        }
    }

    impl ModuleT for Cct {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let (k, s, pad) = self.pool;
            let mut y = x.shallow_clone();
            for conv in &self.convs {
                y = y
                    .apply(conv)
                    .relu()
                    .max_pool2d([k, k], [s, s], [pad, pad], [1, 1], false);
            }
            let mut t = y.flatten(2, -1).transpose(1, 2);
            if let Some(pe) = &self.positional_emb {
                t += pe;
            }
            let mut t = layers::dropout(&t, self.dropout, train);
            for b in &self.blocks {
                t = b.forward_t(&t, train);
            }
            let t = t.apply(&self.norm);
            // Sequence pooling: token weights softmax(attention_pool(x)) over the sequence.
            let w = t
                .apply(&self.attention_pool)
                .softmax(1, Kind::Float)
                .to_kind(t.kind());
            w.transpose(-1, -2)
                .matmul(&t)
                .squeeze_dim(-2)
                .apply(&self.fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
