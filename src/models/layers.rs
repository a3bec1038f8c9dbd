//! Building blocks shared by the architecture files. Names and defaults follow PyTorch/timm so
//! that every family's parameters carry timm's dotted names (`blocks.0.attn.qkv.weight`) and load
//! into the reference implementation unchanged. Tensor code only: `models/mod.rs` declares the
//! module for the worker's build alone.
use tch::{
    nn::{self, ModuleT},
    Kind, Tensor,
};

/// A 2-d convolution with PyTorch's default initialisation.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    groups: i64,
    bias: bool,
) -> nn::Conv2D {
    let c = nn::ConvConfig {
        stride,
        padding,
        groups,
        bias,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, c)
}

/// Convolution initialised as torchvision/timm CNNs do: Kaiming normal, fan-out, ReLU gain.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_kaiming(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    groups: i64,
    bias: bool,
) -> nn::Conv2D {
    let ws_init = nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    };
    conv2d_init(p, cin, cout, k, (stride, padding, groups), bias, ws_init)
}

/// A convolution with normal init of std √(2/fan-out), fan-out = k²·out/groups, and zero bias:
/// timm's `_init_weight` for EfficientNet/ByobNet/RegNet/MaxxVit and PVT-v2's init.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_fan_out(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    groups: i64,
    bias: bool,
) -> nn::Conv2D {
    let fan_out = (k * k * cout / groups).max(1);
    let ws_init = nn::Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_out as f64).sqrt(),
    };
    conv2d_init(p, cin, cout, k, (stride, padding, groups), bias, ws_init)
}

/// A convolution whose weights start from `ws_init` and whose bias (if any) starts at zero.
fn conv2d_init(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    (stride, padding, groups): (i64, i64, i64),
    bias: bool,
    ws_init: nn::Init,
) -> nn::Conv2D {
    let c = nn::ConvConfig {
        stride,
        padding,
        groups,
        bias,
        ws_init,
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, c)
}

/// timm's `create_conv2d`: [`conv2d_fan_out`] with timm's symmetric padding
/// `((stride-1) + (k-1)) / 2`.
pub fn conv2d_timm(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    groups: i64,
    bias: bool,
) -> nn::Conv2D {
    let padding = ((stride - 1) + (k - 1)) / 2;
    conv2d_fan_out(p, cin, cout, k, stride, padding, groups, bias)
}

/// A convolution initialised as timm's ConvNeXt and MetaFormer do: truncated normal (std 0.02)
/// weights, zero bias.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_trunc_normal(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
    groups: i64,
) -> nn::Conv2D {
    let c = conv2d(p, cin, cout, k, stride, padding, groups, true);
    trunc_normal_(&c.ws, 0.02);
    if let Some(b) = &c.bs {
        let _ = tch::no_grad(|| b.shallow_clone().zero_());
    }
    c
}

/// Batch norm with PyTorch's defaults: eps 1e-5, momentum 0.1, weight 1, bias 0 (tch's own
/// default draws the weight from U(0, 1)).
pub fn bn2d(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        },
    )
}

/// Layer norm over the last dimension.
pub fn layer_norm(p: nn::Path, d: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![d],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// Fills `t` in place with a normal(0, std) truncated at ±2 std (timm's `trunc_normal_`).
pub fn trunc_normal_(t: &Tensor, std: f64) {
    // Inverse-CDF sampling: uniform over [Φ(-2), Φ(2)] mapped through Φ⁻¹.
    let (lo, hi) = (0.022_750_131_948_179_2, 0.977_249_868_051_820_8);
    tch::no_grad(|| {
        let mut t = t.shallow_clone();
        let _ = t.uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0);
        let _ = t.erfinv_();
        let _ = t.g_mul_scalar_(std * std::f64::consts::SQRT_2);
        let _ = t.clamp_(-2.0 * std, 2.0 * std);
    });
}

/// A trainable parameter drawn from a truncated normal (timm's position embeddings, tokens).
pub fn trunc_normal_var(p: &nn::Path, name: &str, dims: &[i64], std: f64) -> Tensor {
    let t = p.var(name, dims, nn::Init::Const(0.0));
    trunc_normal_(&t, std);
    t
}

/// A linear layer initialised as timm's transformers do: truncated normal (std 0.02), zero bias.
pub fn linear(p: nn::Path, cin: i64, cout: i64, bias: bool) -> nn::Linear {
    let l = nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: nn::Init::Const(0.0),
            bs_init: Some(nn::Init::Const(0.0)),
            bias,
        },
    );
    trunc_normal_(&l.ws, 0.02);
    l
}

/// A linear layer with PyTorch's default initialisation (CNN classifier heads).
pub fn linear_default(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    nn::linear(p, cin, cout, Default::default())
}

/// Layer norm over the channel dimension of an NCHW tensor (timm's `LayerNorm2d`).
#[derive(Debug)]
pub struct LayerNorm2d(pub nn::LayerNorm);

impl LayerNorm2d {
    pub fn new(p: nn::Path, c: i64, eps: f64) -> Self {
        Self(layer_norm(p, c, eps))
    }
}

impl nn::Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.permute([0, 2, 3, 1]).apply(&self.0).permute([0, 3, 1, 2])
    }
}

/// Stochastic depth (Huang et al. 2016): in training, drops the whole residual branch of a
/// sample with probability `p` and rescales the survivors by 1/(1-p); identity in eval.
pub fn drop_path(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - p;
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    x * mask / keep
}

/// Linearly increasing drop-path rates over `n` blocks, as timm assigns them.
pub fn drop_path_rates(rate: f64, n: i64) -> Vec<f64> {
    if n <= 1 {
        return vec![0.0; n.max(0) as usize];
    }
    (0..n).map(|i| rate * i as f64 / (n - 1) as f64).collect()
}

pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if p > 0.0 && train {
        x.dropout(p, train)
    } else {
        x.shallow_clone()
    }
}

/// timm's `Mlp`: fc1 → GELU → dropout → fc2 → dropout.
#[derive(Debug)]
pub struct Mlp {
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
    pub drop: f64,
}

impl Mlp {
    pub fn new(p: nn::Path, dim: i64, hidden: i64, out: i64, drop: f64) -> Self {
        Self {
            fc1: linear(&p / "fc1", dim, hidden, true),
            fc2: linear(&p / "fc2", hidden, out, true),
            drop,
        }
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = dropout(&x.apply(&self.fc1).gelu("none"), self.drop, train);
        dropout(&h.apply(&self.fc2), self.drop, train)
    }
}

/// Scaled dot-product attention over `[batch, heads, tokens, head_dim]` with an optional additive
/// bias and attention dropout.
pub fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    drop: f64,
    train: bool,
) -> Tensor {
    let p = if train { drop } else { 0.0 };
    Tensor::scaled_dot_product_attention(
        q,
        k,
        v,
        bias.map(|b| b.to_kind(q.kind())),
        p,
        false,
        None,
        false,
    )
}

/// timm's `Attention`: fused qkv projection, multi-head scaled dot-product attention, output
/// projection.
#[derive(Debug)]
pub struct Attention {
    pub qkv: nn::Linear,
    pub proj: nn::Linear,
    pub heads: i64,
    pub attn_drop: f64,
    pub proj_drop: f64,
}

impl Attention {
    pub fn new(
        p: nn::Path,
        dim: i64,
        heads: i64,
        qkv_bias: bool,
        attn_drop: f64,
        proj_drop: f64,
    ) -> Self {
        Self {
            qkv: linear(&p / "qkv", dim, 3 * dim, qkv_bias),
            proj: linear(&p / "proj", dim, dim, true),
            heads,
            attn_drop,
            proj_drop,
        }
    }
}

impl ModuleT for Attention {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, n, c) = x.size3().expect("tokens are [batch, tokens, dim]");
        let qkv = x
            .apply(&self.qkv)
            .reshape([b, n, 3, self.heads, c / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let y = sdpa(
            &qkv.get(0),
            &qkv.get(1),
            &qkv.get(2),
            None,
            self.attn_drop,
            train,
        );
        dropout(
            &y.transpose(1, 2).reshape([b, n, c]).apply(&self.proj),
            self.proj_drop,
            train,
        )
    }
}

/// A learned per-channel scale on a residual branch (CaiT's LayerScale, ConvNeXt's gamma).
pub fn layer_scale(p: &nn::Path, name: &str, dim: i64, init: f64) -> Tensor {
    p.var(name, &[dim], nn::Init::Const(init))
}

/// `make_divisible` from the MobileNet/timm code: rounds `v` to a multiple of `divisor`, never
/// going more than 10% below it.
pub fn make_divisible(v: f64, divisor: i64) -> i64 {
    let new_v = (divisor).max(((v + divisor as f64 / 2.0) as i64 / divisor) * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v + divisor
    } else {
        new_v
    }
}

/// Global average pool of an NCHW map to `[batch, channels]`.
pub fn global_pool(x: &Tensor) -> Tensor {
    x.mean_dim(&[-2i64, -1][..], false, Kind::Float)
        .to_kind(x.kind())
}

/// A module that is a sequence of train-aware modules.
#[derive(Debug, Default)]
pub struct Seq(pub Vec<Box<dyn ModuleT>>);

impl ModuleT for Seq {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for m in &self.0 {
            y = m.forward_t(&y, train);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn trunc_normal_is_truncated_with_the_right_spread() {
        let t = Tensor::zeros([200_000], (Kind::Float, Device::Cpu));
        trunc_normal_(&t, 0.5);
        let max = f64::try_from(t.abs().max()).unwrap();
        let std = f64::try_from(t.std(true)).unwrap();
        assert!(max <= 1.0 + 1e-6, "{max}");
        // A normal truncated at ±2σ has std 0.8796σ.
        assert!((std - 0.5 * 0.8796).abs() < 0.005, "{std}");
    }

    #[test]
    fn drop_path_is_identity_in_eval_and_unbiased_in_training() {
        let x = Tensor::ones([4000, 3], (Kind::Float, Device::Cpu));
        assert_eq!(drop_path(&x, 0.3, false), x);
        let y = drop_path(&x, 0.3, true);
        let rows = y.sum_dim_intlist(&[1i64][..], false, Kind::Float);
        // Every sample is dropped whole or kept whole (rescaled).
        let kept = rows.gt(0.0).to_kind(Kind::Float);
        let frac = f64::try_from(kept.mean(Kind::Float)).unwrap();
        assert!((frac - 0.7).abs() < 0.03, "{frac}");
        let mean = f64::try_from(y.mean(Kind::Float)).unwrap();
        assert!((mean - 1.0).abs() < 0.05, "{mean}");
    }

    #[test]
    fn make_divisible_matches_torchvision() {
        // torchvision: _make_divisible(32 * 1.0, 8) = 32; (1280 * 0.35, 8) = 448; (10, 8) = 16
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(448.0, 8), 448);
        assert_eq!(make_divisible(10.0, 8), 16);
        assert_eq!(make_divisible(92.0, 8), 96);
    }
}
