//! MLP-Mixer (Tolstikhin et al. 2021, "MLP-Mixer: An all-MLP Architecture for Vision") in timm's
//! layout (`timm.models.mlp_mixer.MlpMixer`): a patchify convolution, blocks of a token-mixing MLP
//! (across patches, on the transposed token matrix) and a channel-mixing MLP, each pre-norm with
//! a residual, a final LayerNorm, the mean over tokens and a linear `head`. Names follow timm
//! `mixer_s16_224` (`stem.proj`, `blocks.0.norm1`, `blocks.0.mlp_tokens.fc1`, `blocks.0.norm2`,
//! `blocks.0.mlp_channels.fc2`, `norm`, `head`); LayerNorm eps 1e-6; exact GELU.
//!
//! The token-mixing MLP maps the number of patches, (image_size / patch_size)², to
//! `tokens_mlp_ratio × dim` and back, so its weights depend on the image size. As in timm, every
//! block gets the same drop-path rate (timm does not ramp it). Init as timm's (xavier-uniform MLP
//! weights, N(0, 1e-6) MLP biases, lecun-normal stem), except the head: timm zeroes it, here it is
//! truncated normal (0.02) so a fresh model's logits still depend on its input.
//!
//! The CIFAR variant is Mixer-S with 4×4 patches (64 tokens at 32px).
use super::vit::{check_rates, renamed};
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixerConfig {
    /// Side of the square patches (stride of the stem convolution).
    pub patch_size: i64,
    /// Channel width (timm `embed_dim`).
    pub dim: i64,
    /// Number of mixer blocks.
    pub depth: i64,
    /// Token-mixing MLP hidden width = int(tokens_mlp_ratio × dim) (timm/paper: 0.5).
    pub tokens_mlp_ratio: f64,
    /// Channel-mixing MLP hidden width = int(channels_mlp_ratio × dim) (timm/paper: 4).
    pub channels_mlp_ratio: f64,
    /// Stochastic depth, the same rate in every block (as timm does).
    pub drop_path_rate: f64,
    /// Dropout in the MLPs and before the head.
    pub dropout: f64,
}

impl MixerConfig {
    fn hidden(&self) -> (i64, i64) {
        let d = self.dim as f64;
        (
            (self.tokens_mlp_ratio * d) as i64,
            (self.channels_mlp_ratio * d) as i64,
        )
    }
}

impl Family for MixerConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("patch_size", self.patch_size),
            ("dim", self.dim),
            ("depth", self.depth),
        ])?;
        check_rates(self.tokens_mlp_ratio, self.drop_path_rate, self.dropout)
            .map_err(|p| renamed(p, "mlp_ratio", "tokens_mlp_ratio", "`tokens_mlp_ratio`"))?;
        check_rates(self.channels_mlp_ratio, 0.0, 0.0)
            .map_err(|p| renamed(p, "mlp_ratio", "channels_mlp_ratio", "`channels_mlp_ratio`"))?;
        let (t, c) = self.hidden();
        if t < 1 || c < 1 {
            return Err(Problem::new(
                &[],
                format!(
                    "the MLP widths int(ratio × dim) are {t} (tokens) and {c} (channels); both \
                     must be at least 1"
                ),
            ));
        }
        Ok(())
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        if io.image_size < self.patch_size {
            return Err(Problem::new(
                &[],
                format!(
                    "patch_size {} exceeds the image size {}",
                    self.patch_size, io.image_size
                ),
            ));
        }
        Ok(())
    }
}

pub static MIXER: Arch = Arch {
    name: "mixer",
    family: "mixer",
    kind: super::ArchKind::Mlp,
    about: "MLP-Mixer (Tolstikhin et al. 2021); imagenet = Mixer-S/16, cifar = Mixer-S/4",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let s = |patch: i64| {
            json!({"patch_size": patch, "dim": 512, "depth": 8, "tokens_mlp_ratio": 0.5,
                   "channels_mlp_ratio": 4.0, "drop_path_rate": 0.0, "dropout": 0.0})
        };
        match p {
            "tiny" => Some(
                json!({"patch_size": 8, "dim": 32, "depth": 2, "tokens_mlp_ratio": 0.5,
                       "channels_mlp_ratio": 4.0, "drop_path_rate": 0.0, "dropout": 0.0}),
            ),
            "cifar" => Some(s(4)),
            "imagenet" => Some(s(16)),
            _ => None,
        }
    },
    check: check_of::<MixerConfig>,
    fits: fits_of::<MixerConfig>,
    build: build_of::<MixerConfig>,
    reference: "timm mixer_s16_224",
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

    impl Build for MixerConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Mixer::new(p, self, io)))
        }
    }

    /// A linear layer initialised as timm's Mixer MLPs: xavier-uniform weight, N(0, 1e-6) bias.
    fn mlp_linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
        let bound = (6.0 / (cin + cout) as f64).sqrt();
        nn::linear(
            p,
            cin,
            cout,
            nn::LinearConfig {
                ws_init: nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
                bs_init: Some(nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1e-6,
                }),
                bias: true,
            },
        )
    }

    fn mlp(p: nn::Path, dim: i64, hidden: i64, drop: f64) -> Mlp {
        Mlp {
            fc1: mlp_linear(&p / "fc1", dim, hidden),
            fc2: mlp_linear(&p / "fc2", hidden, dim),
            drop,
        }
    }

    #[derive(Debug)]
    struct Block {
        norm1: nn::LayerNorm,
        mlp_tokens: Mlp,
        norm2: nn::LayerNorm,
        mlp_channels: Mlp,
        drop_path: f64,
    }

    impl Block {
        fn new(p: nn::Path, c: &MixerConfig, tokens: i64) -> Self {
            let (th, ch) = c.hidden();
            Self {
                norm1: layers::layer_norm(&p / "norm1", c.dim, 1e-6),
                mlp_tokens: mlp(&p / "mlp_tokens", tokens, th, c.dropout),
                norm2: layers::layer_norm(&p / "norm2", c.dim, 1e-6),
                mlp_channels: mlp(&p / "mlp_channels", c.dim, ch, c.dropout),
                drop_path: c.drop_path_rate,
            }
        }
    }

    impl ModuleT for Block {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let t = self
                .mlp_tokens
                .forward_t(&x.apply(&self.norm1).transpose(1, 2), train)
                .transpose(1, 2);
            let x = x + drop_path(&t, self.drop_path, train);
            let m = self.mlp_channels.forward_t(&x.apply(&self.norm2), train);
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    #[derive(Debug)]
    pub struct Mixer {
        stem: nn::Conv2D,
        blocks: Vec<Block>,
        norm: nn::LayerNorm,
        head: nn::Linear,
        dropout: f64,
    }

    impl Mixer {
        pub fn new(p: &nn::Path, c: &MixerConfig, io: &ModelIo) -> Self {
            let tokens = (io.image_size / c.patch_size).pow(2);
            let stem = layers::conv2d(
                p / "stem" / "proj",
                io.in_channels,
                c.dim,
                c.patch_size,
                c.patch_size,
                0,
                1,
                true,
            );
            // timm's lecun_normal_: truncated normal with variance 1/fan_in after truncation.
            let fan_in = (io.in_channels * c.patch_size * c.patch_size) as f64;
            layers::trunc_normal_(&stem.ws, (1.0 / fan_in).sqrt() / 0.879_625_661_034_239_8);
            if let Some(b) = &stem.bs {
                let _ = tch::no_grad(|| b.shallow_clone().zero_());
            }
            Self {
                stem,
                blocks: (0..c.depth)
                    .map(|i| Block::new(p / "blocks" / i, c, tokens))
                    .collect(),
                norm: layers::layer_norm(p / "norm", c.dim, 1e-6),
                head: layers::linear(p / "head", c.dim, io.num_classes, true),
                dropout: c.dropout,
            }
        }
    }

    impl ModuleT for Mixer {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut t = x.apply(&self.stem).flatten(2, -1).transpose(1, 2);
            for b in &self.blocks {
                t = b.forward_t(&t, train);
            }
            let t = t
                .apply(&self.norm)
                .mean_dim(&[1i64][..], false, Kind::Float)
                .to_kind(x.kind());
            layers::dropout(&t, self.dropout, train).apply(&self.head)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
