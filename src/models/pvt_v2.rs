//! PVT v2 (Wang et al. 2022, "PVT v2: Improved Baselines with Pyramid Vision Transformer") in
//! timm's layout (`timm.models.pvt_v2.PyramidVisionTransformerV2`): an overlapping patch
//! embedding (7×7 stride-4 convolution + LayerNorm), four stages of pre-norm blocks with
//! spatial-reduction attention (queries from every token; keys and values from the map shrunk by
//! an `sr × sr` stride-`sr` convolution + LayerNorm) and an MLP with a 3×3 depthwise convolution
//! between its two linears, a LayerNorm closing every stage, overlapping 3×3 stride-2 patch
//! embeddings between stages, average pool and a linear `head`. Names follow timm `pvt_v2_b2`
//! (`patch_embed.proj`, `stages.1.downsample.proj`, `stages.0.blocks.0.attn.sr`,
//! `stages.0.blocks.0.mlp.dwconv`, `stages.0.norm`, `head`). LayerNorm eps as in timm: 1e-6 in
//! the blocks and stage norms, PyTorch's 1e-5 in the patch embeddings and after `sr`.
//!
//! The CIFAR variant keeps PVT-v2-b2's stages but embeds 32px images with a 3×3 stride-2 first
//! patch embedding (16×16 tokens in stage 1 instead of 8×8) and reduces keys/values by (4, 2, 1, 1)
//! so every stage attends over a 4×4 (or full) key grid, as b2's (8, 4, 2, 1) gives 7×7 at 224px.
use super::vit::{check_rates, renamed};
use super::{build_of, check_of, fits_of, positive, Arch, Family, ModelIo};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PvtV2Config {
    /// Kernel of the first (overlapping) patch embedding: 7 in PVT v2; padding is kernel / 2.
    pub stem_patch: i64,
    /// Stride of the first patch embedding: 4 in PVT v2. Must be smaller than `stem_patch`.
    pub stem_stride: i64,
    /// Blocks per stage (b2: [3, 4, 6, 3]).
    pub depths: Vec<i64>,
    /// Width per stage (b2: [64, 128, 320, 512]).
    pub embed_dims: Vec<i64>,
    /// Attention heads per stage (b2: [1, 2, 5, 8]).
    pub heads: Vec<i64>,
    /// Spatial-reduction ratio of keys/values per stage (b2: [8, 4, 2, 1]); 1 = none.
    pub sr_ratios: Vec<i64>,
    /// MLP hidden width = ratio × width, per stage (b2: [8, 8, 4, 4]).
    pub mlp_ratios: Vec<f64>,
    /// Stochastic depth, rising linearly to this rate over all blocks.
    pub drop_path_rate: f64,
}

impl PvtV2Config {
    /// Feature side of every stage for an image side `s`.
    fn resolutions(&self, s: i64) -> Vec<i64> {
        let k = self.stem_patch;
        let mut r = (s + 2 * (k / 2) - k) / self.stem_stride + 1;
        let mut out = vec![r];
        for _ in 1..self.depths.len() {
            r = (r - 1) / 2 + 1;
            out.push(r);
        }
        out
    }
}

impl Family for PvtV2Config {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("stem_patch", self.stem_patch),
            ("stem_stride", self.stem_stride),
        ])?;
        if self.stem_patch <= self.stem_stride {
            return Err(Problem::at(
                "stem_patch",
                format!(
                    "`stem_patch` ({}) must be larger than `stem_stride` ({}) for overlapping \
                     patches",
                    self.stem_patch, self.stem_stride
                ),
            ));
        }
        let n = self.depths.len();
        if n == 0
            || self.embed_dims.len() != n
            || self.heads.len() != n
            || self.sr_ratios.len() != n
            || self.mlp_ratios.len() != n
        {
            return Err(Problem::at(
                "depths",
                "`depths`, `embed_dims`, `heads`, `sr_ratios` and `mlp_ratios` need the same, \
                 non-zero length",
            ));
        }
        for (name, v) in [
            ("depths", &self.depths),
            ("embed_dims", &self.embed_dims),
            ("heads", &self.heads),
            ("sr_ratios", &self.sr_ratios),
        ] {
            if v.iter().any(|&x| x < 1) {
                return Err(Problem::at(
                    name,
                    format!("`{name}` entries must be at least 1, got {v:?}"),
                ));
            }
        }
        for (i, (d, h)) in self.embed_dims.iter().zip(&self.heads).enumerate() {
            if d % h != 0 {
                return Err(Problem::new(
                    &[],
                    format!("stage {i}: width {d} is not divisible by heads {h}"),
                ));
            }
        }
        for &r in &self.mlp_ratios {
            check_rates(r, self.drop_path_rate, 0.0)
                .map_err(|p| renamed(p, "mlp_ratio", "mlp_ratios", "`mlp_ratios` entries"))?;
        }
        Ok(())
    }
    fn fits(&self, io: &ModelIo) -> Result<(), Problem> {
        for (i, (r, sr)) in self
            .resolutions(io.image_size)
            .into_iter()
            .zip(&self.sr_ratios)
            .enumerate()
        {
            if r < *sr {
                return Err(Problem::new(
                    &[],
                    format!(
                        "stage {i} has {r}×{r} tokens at {}px, fewer than its sr_ratio {sr}",
                        io.image_size
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn b_preset(depths: [i64; 4], dims: [i64; 4]) -> serde_json::Value {
    json!({"stem_patch": 7, "stem_stride": 4, "depths": depths, "embed_dims": dims,
           "heads": [1, 2, 5, 8], "sr_ratios": [8, 4, 2, 1], "mlp_ratios": [8.0, 8.0, 4.0, 4.0],
           "drop_path_rate": 0.1})
}

pub static PVT_V2: Arch = Arch {
    name: "pvt_v2",
    family: "pvt_v2",
    kind: super::ArchKind::Hybrid,
    about: "PVT v2 (Wang et al. 2022); imagenet = b2, b0 = b0; cifar = b2 with a 3×3/2 first \
            patch embedding and sr (4,2,1,1)",
    presets: &["tiny", "cifar", "imagenet", "b0"],
    preset: |p| match p {
        "tiny" => Some(
            json!({"stem_patch": 3, "stem_stride": 2, "depths": [1, 1], "embed_dims": [16, 32],
                   "heads": [1, 2], "sr_ratios": [2, 1], "mlp_ratios": [2.0, 2.0],
                   "drop_path_rate": 0.0}),
        ),
        "cifar" => Some(
            json!({"stem_patch": 3, "stem_stride": 2, "depths": [3, 4, 6, 3],
                   "embed_dims": [64, 128, 320, 512], "heads": [1, 2, 5, 8],
                   "sr_ratios": [4, 2, 1, 1], "mlp_ratios": [8.0, 8.0, 4.0, 4.0],
                   "drop_path_rate": 0.1}),
        ),
        "imagenet" => Some(b_preset([3, 4, 6, 3], [64, 128, 320, 512])),
        "b0" => Some(b_preset([2, 2, 2, 2], [32, 64, 160, 256])),
        _ => None,
    },
    check: check_of::<PvtV2Config>,
    fits: fits_of::<PvtV2Config>,
    build: build_of::<PvtV2Config>,
    reference: "timm pvt_v2_b2",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{self, conv2d_fan_out, drop_path, drop_path_rates},
        Build,
    };
    use tch::{
        nn::{self, ModuleT},
        Kind, Tensor,
    };

    impl Build for PvtV2Config {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(PvtV2::new(p, self, io)))
        }
    }

    /// timm's `OverlapPatchEmbed`: k×k stride-s convolution with padding k/2, then LayerNorm
    /// (eps 1e-5) on the NHWC map. NCHW in, NHWC out.
    #[derive(Debug)]
    struct OverlapPatchEmbed {
        proj: nn::Conv2D,
        norm: nn::LayerNorm,
    }

    impl OverlapPatchEmbed {
        fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> Self {
            Self {
                proj: conv2d_fan_out(&p / "proj", cin, cout, k, stride, k / 2, 1, true),
                norm: layers::layer_norm(&p / "norm", cout, 1e-5),
            }
        }
    }

    impl nn::Module for OverlapPatchEmbed {
        fn forward(&self, x: &Tensor) -> Tensor {
            x.apply(&self.proj).permute([0, 2, 3, 1]).apply(&self.norm)
        }
    }

    /// Spatial-reduction attention: q from all tokens; k, v from the `sr`-strided map (+ LayerNorm).
    #[derive(Debug)]
    struct Attention {
        q: nn::Linear,
        kv: nn::Linear,
        proj: nn::Linear,
        sr: Option<(nn::Conv2D, nn::LayerNorm)>,
        heads: i64,
    }

    impl Attention {
        fn new(p: nn::Path, dim: i64, heads: i64, sr: i64) -> Self {
            Self {
                q: layers::linear(&p / "q", dim, dim, true),
                kv: layers::linear(&p / "kv", dim, 2 * dim, true),
                proj: layers::linear(&p / "proj", dim, dim, true),
                sr: (sr > 1).then(|| {
                    (
                        conv2d_fan_out(&p / "sr", dim, dim, sr, sr, 0, 1, true),
                        layers::layer_norm(&p / "norm", dim, 1e-5),
                    )
                }),
                heads,
            }
        }

        /// `x`: `[batch, h·w, dim]` tokens of an `h × w` map.
        fn forward(&self, x: &Tensor, h: i64, w: i64, train: bool) -> Tensor {
            let (b, n, c) = x.size3().expect("tokens are [batch, tokens, dim]");
            let hd = c / self.heads;
            let q = x
                .apply(&self.q)
                .reshape([b, n, self.heads, hd])
                .permute([0, 2, 1, 3]);
            let src = match &self.sr {
                Some((sr, norm)) => x
                    .permute([0, 2, 1])
                    .reshape([b, c, h, w])
                    .apply(sr)
                    .reshape([b, c, -1])
                    .permute([0, 2, 1])
                    .apply(norm),
                None => x.shallow_clone(),
            };
            let kv = src
                .apply(&self.kv)
                .reshape([b, -1, 2, self.heads, hd])
                .permute([2, 0, 3, 1, 4]);
            let y = layers::sdpa(&q, &kv.get(0), &kv.get(1), None, 0.0, train);
            y.transpose(1, 2).reshape([b, n, c]).apply(&self.proj)
        }
    }

    /// timm's `MlpWithDepthwiseConv`: fc1 → 3×3 depthwise conv on the map → GELU → fc2.
    #[derive(Debug)]
    struct Mlp {
        fc1: nn::Linear,
        dwconv: nn::Conv2D,
        fc2: nn::Linear,
    }

    impl Mlp {
        fn new(p: nn::Path, dim: i64, hidden: i64) -> Self {
            Self {
                fc1: layers::linear(&p / "fc1", dim, hidden, true),
                dwconv: conv2d_fan_out(&p / "dwconv", hidden, hidden, 3, 1, 1, hidden, true),
                fc2: layers::linear(&p / "fc2", hidden, dim, true),
            }
        }

        fn forward(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
            let y = x.apply(&self.fc1);
            let (b, _, c) = y.size3().expect("tokens are [batch, tokens, dim]");
            y.transpose(1, 2)
                .reshape([b, c, h, w])
                .apply(&self.dwconv)
                .flatten(2, -1)
                .transpose(1, 2)
                .gelu("none")
                .apply(&self.fc2)
        }
    }

    #[derive(Debug)]
    struct Block {
        norm1: nn::LayerNorm,
        attn: Attention,
        norm2: nn::LayerNorm,
        mlp: Mlp,
        drop_path: f64,
    }

    impl Block {
        fn new(p: nn::Path, dim: i64, heads: i64, sr: i64, mlp_ratio: f64, drop_path: f64) -> Self {
            Self {
                norm1: layers::layer_norm(&p / "norm1", dim, 1e-6),
                attn: Attention::new(&p / "attn", dim, heads, sr),
                norm2: layers::layer_norm(&p / "norm2", dim, 1e-6),
                mlp: Mlp::new(&p / "mlp", dim, (dim as f64 * mlp_ratio) as i64),
                drop_path,
            }
        }

        fn forward(&self, x: &Tensor, h: i64, w: i64, train: bool) -> Tensor {
            let a = self.attn.forward(&x.apply(&self.norm1), h, w, train);
            let x = x + drop_path(&a, self.drop_path, train);
            let m = self.mlp.forward(&x.apply(&self.norm2), h, w);
            &x + drop_path(&m, self.drop_path, train)
        }
    }

    #[derive(Debug)]
    struct Stage {
        /// Overlapping 3×3 stride-2 patch embedding (all stages but the first).
        downsample: Option<OverlapPatchEmbed>,
        blocks: Vec<Block>,
        norm: nn::LayerNorm,
    }

    impl Stage {
        /// NHWC in (first stage) or NCHW in (the others, through `downsample`); NCHW out.
        fn forward(&self, x: &Tensor, train: bool) -> Tensor {
            let x = match &self.downsample {
                Some(d) => x.apply(d),
                None => x.shallow_clone(),
            };
            let (b, h, w, c) = x.size4().expect("PVT features are [batch, H, W, dim]");
            let mut t = x.reshape([b, h * w, c]);
            for blk in &self.blocks {
                t = blk.forward(&t, h, w, train);
            }
            t.apply(&self.norm)
                .reshape([b, h, w, c])
                .permute([0, 3, 1, 2])
        }
    }

    #[derive(Debug)]
    pub struct PvtV2 {
        patch_embed: OverlapPatchEmbed,
        stages: Vec<Stage>,
        head: nn::Linear,
    }

    impl PvtV2 {
        pub fn new(p: &nn::Path, c: &PvtV2Config, io: &ModelIo) -> Self {
            let total: i64 = c.depths.iter().sum();
            let dpr = drop_path_rates(c.drop_path_rate, total);
            let mut k = 0usize;
            let mut stages = Vec::new();
            let mut cin = c.embed_dims[0];
            for i in 0..c.depths.len() {
                let sp = p / "stages" / i as i64;
                let dim = c.embed_dims[i];
                let downsample =
                    (i > 0).then(|| OverlapPatchEmbed::new(&sp / "downsample", cin, dim, 3, 2));
                let blocks = (0..c.depths[i])
                    .map(|j| {
                        k += 1;
                        Block::new(
                            &sp / "blocks" / j,
                            dim,
                            c.heads[i],
                            c.sr_ratios[i],
                            c.mlp_ratios[i],
                            dpr[k - 1],
                        )
                    })
                    .collect();
                stages.push(Stage {
                    downsample,
                    blocks,
                    norm: layers::layer_norm(&sp / "norm", dim, 1e-6),
                });
                cin = dim;
            }
            Self {
                patch_embed: OverlapPatchEmbed::new(
                    p / "patch_embed",
                    io.in_channels,
                    c.embed_dims[0],
                    c.stem_patch,
                    c.stem_stride,
                ),
                stages,
                head: layers::linear(p / "head", cin, io.num_classes, true),
            }
        }
    }

    impl ModuleT for PvtV2 {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.apply(&self.patch_embed);
            for s in &self.stages {
                y = s.forward(&y, train);
            }
            y.mean_dim(&[-1i64, -2][..], false, Kind::Float)
                .apply(&self.head)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
