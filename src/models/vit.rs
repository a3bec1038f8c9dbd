//! Vision Transformer (Dosovitskiy et al. 2021) in timm's layout: patch embedding, class token,
//! learned position embedding, pre-norm blocks (multi-head self-attention, GELU MLP), final norm.
//! Parameter names follow timm (`blocks.0.attn.qkv.weight`, …).
use super::{parse_config, Arch, ModelIo};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::{self, ModuleT};
use tch::Tensor;

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
}

pub static VIT: Arch = Arch {
    name: "vit",
    family: "vit",
    about: "Vision Transformer; presets tiny, cifar (ViT-S/4 at 32px), imagenet (ViT-B/16)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => {
            Some(json!({"patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0}))
        }
        "cifar" => {
            Some(json!({"patch_size": 4, "dim": 384, "depth": 12, "heads": 6, "mlp_ratio": 4.0}))
        }
        "imagenet" => {
            Some(json!({"patch_size": 16, "dim": 768, "depth": 12, "heads": 12, "mlp_ratio": 4.0}))
        }
        _ => None,
    },
    check: |v| {
        let (c, canon) = parse_config::<VitConfig>(v)?;
        if c.patch_size < 1 || c.dim < 1 || c.depth < 1 || c.heads < 1 || c.mlp_ratio <= 0.0 {
            return Err("patch_size, dim, depth, heads and mlp_ratio must be positive".into());
        }
        if c.dim % c.heads != 0 {
            return Err(format!(
                "dim {} is not divisible by heads {}",
                c.dim, c.heads
            ));
        }
        Ok(canon)
    },
    fits: |v, io| {
        let c: VitConfig = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        if io.image_size % c.patch_size != 0 {
            return Err(format!(
                "patch_size {} does not divide the image size {}",
                c.patch_size, io.image_size
            ));
        }
        Ok(())
    },
    build: |p, v, io| {
        Ok(Box::new(Vit::new(
            p,
            &serde_json::from_value(v.clone())?,
            io,
        )))
    },
};

fn ln(p: nn::Path, d: i64) -> nn::LayerNorm {
    // timm's ViT uses eps 1e-6.
    nn::layer_norm(
        p,
        vec![d],
        nn::LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        },
    )
}

fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    // timm initialises ViT linears with trunc_normal(std=0.02) and zero bias.
    nn::linear(
        p,
        i,
        o,
        nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        },
    )
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, heads: i64, hidden: i64) -> Self {
        Self {
            norm1: ln(&p / "norm1", dim),
            qkv: linear(&p / "attn" / "qkv", dim, 3 * dim),
            proj: linear(&p / "attn" / "proj", dim, dim),
            norm2: ln(&p / "norm2", dim),
            fc1: linear(&p / "mlp" / "fc1", dim, hidden),
            fc2: linear(&p / "mlp" / "fc2", hidden, dim),
            heads,
        }
    }

    fn attention(&self, x: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().expect("tokens are [batch, tokens, dim]");
        let qkv = x
            .apply(&self.qkv)
            .reshape([b, n, 3, self.heads, c / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        y.transpose(1, 2).reshape([b, n, c]).apply(&self.proj)
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let x = x + self.attention(&x.apply(&self.norm1));
        let h = x
            .apply(&self.norm2)
            .apply(&self.fc1)
            .gelu("none")
            .apply(&self.fc2);
        x + h
    }
}

#[derive(Debug)]
pub struct Vit {
    patch: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    head: nn::Linear,
}

impl Vit {
    pub fn new(p: &nn::Path, c: &VitConfig, io: &ModelIo) -> Self {
        let tokens = (io.image_size / c.patch_size).pow(2) + 1;
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
        let small = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let hidden = (c.dim as f64 * c.mlp_ratio).round() as i64;
        Self {
            patch,
            cls_token: p.var("cls_token", &[1, 1, c.dim], small),
            pos_embed: p.var("pos_embed", &[1, tokens, c.dim], small),
            blocks: (0..c.depth)
                .map(|i| Block::new(p / "blocks" / i, c.dim, c.heads, hidden))
                .collect(),
            norm: ln(p / "norm", c.dim),
            head: linear(p / "head", c.dim, io.num_classes),
        }
    }
}

impl ModuleT for Vit {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let b = x.size()[0];
        let t = x.apply(&self.patch).flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut t = Tensor::cat(&[cls, t], 1) + &self.pos_embed;
        for blk in &self.blocks {
            t = blk.forward_t(&t, train);
        }
        t.apply(&self.norm).select(1, 0).apply(&self.head)
    }
}

#[cfg(test)]
mod tests {
    use crate::models::{resolve, ModelIo, Network};
    use tch::Device;

    #[test]
    fn vit_b16_parameter_count_matches_timm() {
        // timm vit_base_patch16_224 (1000 classes): 86,567,656 parameters.
        let spec = crate::spec::ModelSpec {
            arch: None,
            preset: "imagenet".into(),
            overrides: Default::default(),
        };
        let p = resolve("vit", &spec).unwrap();
        let io = ModelIo {
            in_channels: 3,
            image_size: 224,
            num_classes: 1000,
        };
        let n = Network::new(&p, &io, &[0.5; 3], &[0.5; 3], Device::Cpu, 0)
            .unwrap()
            .num_parameters();
        assert_eq!(n, 86_567_656);
    }
}
