//! Swin Transformer (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using
//! Shifted Windows"), in timm's layout (`timm.models.swin_transformer.SwinTransformer`, timm
//! 1.0): a patchify embedding with LayerNorm, stages of pre-norm blocks whose self-attention runs
//! inside non-overlapping windows with a learned relative-position bias, every second block on
//! windows shifted by half a window (cyclic shift plus an attention mask), patch merging (2×2
//! neighbourhood → LayerNorm → linear, halving the resolution and doubling the width) at the
//! start of every stage but the first, final LayerNorm, average pool and `head.fc`.
//!
//! As in timm, the window of a stage is clipped to its feature resolution and the shift switched
//! off when the resolution is no larger than the window; a resolution the window does not divide
//! is zero-padded after the shift. Windows, shifts and masks are fixed at build time from
//! `ModelIo::image_size`, like timm's model built with `img_size`. The relative-position index and
//! the shift masks are non-persistent buffers in timm, plain tensors here (not in the VarStore).
//! Names follow timm `swin_tiny_patch4_window7_224` (`layers.1.downsample.reduction.weight`,
//! `layers.0.blocks.1.attn.relative_position_bias_table`, `head.fc.weight`). All LayerNorms use
//! PyTorch's eps 1e-5, as timm's Swin does.
use super::vit::check_rates;
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinConfig {
    /// Side of the square patches of the embedding (4 for Swin-T at 224px).
    pub patch_size: i64,
    /// Width of the first stage; stage i has `embed_dim × 2^i`.
    pub embed_dim: i64,
    /// Blocks per stage (Swin-T: [2, 2, 6, 2]).
    pub depths: Vec<i64>,
    /// Attention heads per stage (Swin-T: [3, 6, 12, 24]).
    pub heads: Vec<i64>,
    /// Side of the attention windows (clipped per stage to the feature resolution).
    pub window_size: i64,
    /// MLP hidden width = mlp_ratio × width.
    pub mlp_ratio: f64,
    /// Stochastic depth, rising linearly to this rate over all blocks.
    pub drop_path_rate: f64,
}

impl SwinConfig {
    fn dims(&self) -> Vec<i64> {
        (0..self.depths.len())
            .map(|i| self.embed_dim << i)
            .collect()
    }
}

impl Family for SwinConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("patch_size", self.patch_size),
            ("embed_dim", self.embed_dim),
            ("window_size", self.window_size),
        ])?;
        if self.depths.is_empty() || self.depths.len() != self.heads.len() {
            return Err(Problem::at(
                "depths",
                "`depths` and `heads` need the same, non-zero length",
            ));
        }
        if self.depths.iter().chain(&self.heads).any(|&x| x < 1) {
            return Err(Problem::at(
                "depths",
                "`depths` and `heads` entries must be at least 1",
            ));
        }
        if self.depths.len() > 16 {
            return Err(Problem::at(
                "depths",
                format!(
                    "`depths` has {} stages; at most 16 are supported",
                    self.depths.len()
                ),
            ));
        }
        for (i, (d, h)) in self.dims().iter().zip(&self.heads).enumerate() {
            if d % h != 0 {
                return Err(Problem::new(
                    &[],
                    format!(
                        "stage {i}: width {d} (embed_dim × 2^{i}) is not divisible by heads {h}"
                    ),
                ));
            }
        }
        check_rates(self.mlp_ratio, self.drop_path_rate, 0.0)
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

pub static SWIN: Arch = Arch {
    name: "swin",
    family: "swin",
    kind: super::ArchKind::Transformer,
    about: "Swin Transformer (Liu et al. 2021); cifar = Swin-T with 2×2 patches and 4×4 windows, \
            imagenet = Swin-T (patch 4, window 7)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => Some(
            json!({"patch_size": 4, "embed_dim": 16, "depths": [2, 2], "heads": [1, 2], "window_size": 3, "mlp_ratio": 2.0, "drop_path_rate": 0.0}),
        ),
        "cifar" => Some(
            json!({"patch_size": 2, "embed_dim": 96, "depths": [2, 2, 6, 2], "heads": [3, 6, 12, 24], "window_size": 4, "mlp_ratio": 4.0, "drop_path_rate": 0.1}),
        ),
        "imagenet" => Some(
            json!({"patch_size": 4, "embed_dim": 96, "depths": [2, 2, 6, 2], "heads": [3, 6, 12, 24], "window_size": 7, "mlp_ratio": 4.0, "drop_path_rate": 0.2}),
        ),
        _ => None,
    },
    check: check_of::<SwinConfig>,
    fits: fits_of::<SwinConfig>,
    build: build_of::<SwinConfig>,
    reference: "timm swin_tiny_patch4_window7_224",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, drop_path, drop_path_rates, Mlp},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Device, Kind, Tensor,
    };

    impl Build for SwinConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(Swin::new(p, self, io)))
        }
    }

    const LN_EPS: f64 = 1e-5;

    /// timm's `get_relative_position_index` for a `ws × ws` window: for query token a = (i1, j1) and
    /// key token b = (i2, j2), `(i1 − i2 + ws − 1)(2ws − 1) + (j1 − j2 + ws − 1)`.
    fn relative_position_index(ws: i64, device: Device) -> Tensor {
        let n = ws * ws;
        let mut idx = Vec::with_capacity((n * n) as usize);
        for a in 0..n {
            let (i1, j1) = (a / ws, a % ws);
            for b in 0..n {
                let (i2, j2) = (b / ws, b % ws);
                idx.push((i1 - i2 + ws - 1) * (2 * ws - 1) + (j1 - j2 + ws - 1));
            }
        }
        Tensor::from_slice(idx.as_slice()).to_device(device)
    }

    /// timm's `SwinTransformerBlock.get_attn_mask` for a shifted block at feature side `res`: the
    /// padded map is split into 3×3 regions (by the slices `[0, -ws)`, `[-ws, -shift)`,
    /// `[-shift, end)` along each axis); tokens of one window attend only within their region
    /// (0), across regions they get −100. Shape `[windows, ws², ws²]`.
    fn shift_mask(res: i64, ws: i64, shift: i64, device: Device) -> Tensor {
        let hp = (res + ws - 1) / ws * ws;
        let region = |i: i64| -> i64 {
            if i < hp - ws {
                0
            } else if i < hp - shift {
                1
            } else {
                2
            }
        };
        let nw = hp / ws;
        let n = ws * ws;
        let mut mask = Vec::with_capacity((nw * nw * n * n) as usize);
        for wh in 0..nw {
            for ww in 0..nw {
                let ids: Vec<i64> = (0..n)
                    .map(|t| region(wh * ws + t / ws) * 3 + region(ww * ws + t % ws))
                    .collect();
                for a in &ids {
                    for b in &ids {
                        mask.push(if a == b { 0f32 } else { -100f32 });
                    }
                }
            }
        }
        Tensor::from_slice(mask.as_slice())
            .reshape([nw * nw, n, n])
            .to_device(device)
    }

    /// Window multi-head self-attention with a relative-position bias (timm's `WindowAttention`,
    /// its non-fused path: scaled q·kᵀ + bias (+ mask), softmax, ·v).
    #[derive(Debug)]
    struct WindowAttention {
        qkv: nn::Linear,
        proj: nn::Linear,
        relative_position_bias_table: Tensor,
        /// Non-persistent: `[ws² · ws²]` indices into the table.
        relative_position_index: Tensor,
        heads: i64,
        area: i64,
        scale: f64,
    }

    impl WindowAttention {
        fn new(p: nn::Path, dim: i64, heads: i64, ws: i64) -> Self {
            Self {
                qkv: layers::linear(&p / "qkv", dim, 3 * dim, true),
                proj: layers::linear(&p / "proj", dim, dim, true),
                relative_position_bias_table: layers::trunc_normal_var(
                    &p,
                    "relative_position_bias_table",
                    &[(2 * ws - 1) * (2 * ws - 1), heads],
                    0.02,
                ),
                relative_position_index: relative_position_index(ws, p.device()),
                heads,
                area: ws * ws,
                scale: ((dim / heads) as f64).powf(-0.5),
            }
        }

        /// `x`: `[batch·windows, ws², dim]`; `mask`: `[windows, ws², ws²]`.
        fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
            let (bw, n, c) = x.size3().expect("windows are [batch·windows, tokens, dim]");
            let qkv = x
                .apply(&self.qkv)
                .reshape([bw, n, 3, self.heads, c / self.heads])
                .permute([2, 0, 3, 1, 4]);
            let q = qkv.get(0) * self.scale;
            let (k, v) = (qkv.get(1), qkv.get(2));
            let bias = self
                .relative_position_bias_table
                .index_select(0, &self.relative_position_index)
                .reshape([self.area, self.area, self.heads])
                .permute([2, 0, 1])
                .unsqueeze(0);
            let mut attn = q.matmul(&k.transpose(-2, -1)) + bias;
            if let Some(m) = mask {
                let nw = m.size()[0];
                attn = (attn.reshape([-1, nw, self.heads, n, n]) + m.unsqueeze(1).unsqueeze(0))
                    .reshape([-1, self.heads, n, n]);
            }
            let attn = attn.softmax(-1, Kind::Float);
            attn.matmul(&v)
                .transpose(1, 2)
                .reshape([bw, n, c])
                .apply(&self.proj)
        }
    }

    /// A Swin block on `[batch, H, W, dim]`: x + attn(norm1(x)) over (shifted) windows, then
    /// x + mlp(norm2(x)).
    #[derive(Debug)]
    struct SwinBlock {
        norm1: nn::LayerNorm,
        attn: WindowAttention,
        norm2: nn::LayerNorm,
        mlp: Mlp,
        window: i64,
        shift: i64,
        /// Non-persistent shift mask (None for unshifted blocks).
        attn_mask: Option<Tensor>,
        drop_path: f64,
    }

    impl SwinBlock {
        /// `res`: the block's (square) feature side.
        fn new(
            p: nn::Path,
            c: &SwinConfig,
            dim: i64,
            heads: i64,
            res: i64,
            shifted: bool,
            drop_path: f64,
        ) -> Self {
            // timm's `_calc_window_shift`: clip the window to the resolution, no shift if it fits.
            let ws = c.window_size.min(res);
            let shift = if shifted && res > ws {
                c.window_size / 2
            } else {
                0
            };
            let hidden = (dim as f64 * c.mlp_ratio) as i64;
            Self {
                norm1: layers::layer_norm(&p / "norm1", dim, LN_EPS),
                attn: WindowAttention::new(&p / "attn", dim, heads, ws),
                norm2: layers::layer_norm(&p / "norm2", dim, LN_EPS),
                mlp: Mlp::new(&p / "mlp", dim, hidden, dim, 0.0),
                window: ws,
                shift,
                attn_mask: (shift > 0).then(|| shift_mask(res, ws, shift, p.device())),
                drop_path,
            }
        }

        fn window_attention(&self, x: &Tensor) -> Tensor {
            let (b, h, w, c) = x.size4().expect("Swin features are [batch, H, W, dim]");
            let (ws, s) = (self.window, self.shift);
            let shifted = if s > 0 {
                x.roll([-s, -s], [1, 2])
            } else {
                x.shallow_clone()
            };
            let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
            let padded = if ph > 0 || pw > 0 {
                shifted.constant_pad_nd([0, 0, 0, pw, 0, ph])
            } else {
                shifted
            };
            let (hp, wp) = (h + ph, w + pw);
            let windows = padded
                .reshape([b, hp / ws, ws, wp / ws, ws, c])
                .permute([0, 1, 3, 2, 4, 5])
                .reshape([-1, ws * ws, c]);
            let y = self.attn.forward(&windows, self.attn_mask.as_ref());
            let y = y
                .reshape([b, hp / ws, wp / ws, ws, ws, c])
                .permute([0, 1, 3, 2, 4, 5])
                .reshape([b, hp, wp, c]);
            let y = if ph > 0 || pw > 0 {
                y.narrow(1, 0, h).narrow(2, 0, w)
            } else {
                y
            };
            if s > 0 {
                y.roll([s, s], [1, 2])
            } else {
                y
            }
        }
    }

    impl ModuleT for SwinBlock {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let a = self.window_attention(&x.apply(&self.norm1));
            let x = x + drop_path(&a, self.drop_path, train);
            let m = self.mlp.forward_t(&x.apply(&self.norm2), train);
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    /// timm's `PatchMerging`: pad to even H, W; concatenate each 2×2 neighbourhood in timm's order;
    /// LayerNorm; bias-free linear to the next width.
    #[derive(Debug)]
    struct PatchMerging {
        norm: nn::LayerNorm,
        reduction: nn::Linear,
    }

    impl PatchMerging {
        fn new(p: nn::Path, dim: i64, out: i64) -> Self {
            Self {
                norm: layers::layer_norm(&p / "norm", 4 * dim, LN_EPS),
                reduction: layers::linear(&p / "reduction", 4 * dim, out, false),
            }
        }
    }

    impl nn::Module for PatchMerging {
        fn forward(&self, x: &Tensor) -> Tensor {
            let (b, h, w, c) = x.size4().expect("Swin features are [batch, H, W, dim]");
            let x = if h % 2 == 1 || w % 2 == 1 {
                x.constant_pad_nd([0, 0, 0, w % 2, 0, h % 2])
            } else {
                x.shallow_clone()
            };
            let (h, w) = (h + h % 2, w + w % 2);
            x.reshape([b, h / 2, 2, w / 2, 2, c])
                .permute([0, 1, 3, 4, 2, 5])
                .flatten(3, -1)
                .apply(&self.norm)
                .apply(&self.reduction)
        }
    }

    #[derive(Debug)]
    struct Stage {
        downsample: Option<PatchMerging>,
        blocks: Vec<SwinBlock>,
    }

    #[derive(Debug)]
    pub struct Swin {
        patch: nn::Conv2D,
        patch_norm: nn::LayerNorm,
        stages: Vec<Stage>,
        norm: nn::LayerNorm,
        head: nn::Linear,
    }

    impl Swin {
        pub fn new(p: &nn::Path, c: &SwinConfig, io: &ModelIo) -> Self {
            let dims = c.dims();
            let total: i64 = c.depths.iter().sum();
            let dpr = drop_path_rates(c.drop_path_rate, total);
            let mut res = io.image_size / c.patch_size;
            let mut k = 0usize;
            let mut stages = Vec::new();
            for (i, (&depth, &heads)) in c.depths.iter().zip(&c.heads).enumerate() {
                let sp = p / "layers" / i as i64;
                let dim = dims[i];
                let downsample = (i > 0).then(|| {
                    res = (res + 1) / 2;
                    PatchMerging::new(&sp / "downsample", dims[i - 1], dim)
                });
                let blocks = (0..depth)
                    .map(|j| {
                        k += 1;
                        SwinBlock::new(
                            &sp / "blocks" / j,
                            c,
                            dim,
                            heads,
                            res,
                            j % 2 == 1,
                            dpr[k - 1],
                        )
                    })
                    .collect();
                stages.push(Stage { downsample, blocks });
            }
            let last = *dims.last().expect("validated: at least one stage");
            Self {
                patch: nn::conv2d(
                    p / "patch_embed" / "proj",
                    io.in_channels,
                    c.embed_dim,
                    c.patch_size,
                    nn::ConvConfig {
                        stride: c.patch_size,
                        ..Default::default()
                    },
                ),
                patch_norm: layers::layer_norm(p / "patch_embed" / "norm", c.embed_dim, LN_EPS),
                stages,
                norm: layers::layer_norm(p / "norm", last, LN_EPS),
                head: layers::linear(p / "head" / "fc", last, io.num_classes, true),
            }
        }
    }

    impl ModuleT for Swin {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x
                .apply(&self.patch)
                .permute([0, 2, 3, 1])
                .apply(&self.patch_norm);
            for s in &self.stages {
                if let Some(d) = &s.downsample {
                    y = y.apply(d);
                }
                for b in &s.blocks {
                    y = b.forward_t(&y, train);
                }
            }
            y.apply(&self.norm)
                .mean_dim(&[1i64, 2][..], false, Kind::Float)
                .apply(&self.head)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
