//! RegNetX (Radosavovic et al. 2020, "Designing Network Design Spaces"): a 3×3 stride-2 stem and
//! four stages of residual bottleneck blocks (1×1 → grouped 3×3 → 1×1, ReLU, BatchNorm, a 1×1
//! projection shortcut where the shape changes), whose widths, depths and group sizes come from
//! the design-space parameters: per-block widths `u_j = w0 + wa·j` are quantised to
//! `w0 · wm^round(log(u_j/w0)/log wm)` (multiples of 8), equal widths form a stage, and the
//! bottleneck widths are rounded to multiples of the group size.
//!
//! Reference implementation: timm's `timm.models.regnet.RegNet` (timm 1.0), including its exact
//! quantisation (`generate_regnet`, computed in float32 as timm does with torch tensors, and
//! `adjust_widths_groups_comp`). Names follow timm `regnetx_002` (`stem.conv.weight`,
//! `s1.b1.conv1.conv.weight`, `s1.b1.conv2.bn.running_var`, `s1.b1.downsample.conv.weight`,
//! `head.fc.weight`). Initialisation as timm: convolutions normal with std √(2/fan-out) (fan-out
//! divided by the groups), the classifier normal std 0.01, BatchNorm γ = 1 except the last
//! BatchNorm of every block (γ = 0, timm's `zero_init_last`).
//!
//! The `imagenet` preset is RegNetX-200MF (timm `regnetx_002`, 2,684,792 parameters), `x_400mf`
//! is RegNetX-400MF (timm `regnetx_004`, 5,157,512). The CIFAR variant is the same network with a
//! stride-1 stem, 64 stem channels and unstrided first two stages, as in kuangliu/pytorch-cifar's
//! `RegNetX_200MF` (widths 24/56/152/368, depths 1/1/4/7, group width 8, strides 1/1/2/2): a 32px
//! image keeps 32×32 features through two stages and ends at 8×8.
use super::{build_of, check_of, fits_of, positive, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegNetConfig {
    /// Initial width w0 (a multiple of 8).
    pub w0: i64,
    /// Width slope wa (≥ 0).
    pub wa: f64,
    /// Width multiplier wm (> 1) between stages.
    pub wm: f64,
    /// Total number of blocks d.
    pub depth: i64,
    /// Channels per group of the 3×3 convolutions (g).
    pub group_size: i64,
    /// Bottleneck ratio b (1 for RegNetX).
    pub bottle_ratio: f64,
    /// Stem output channels (timm: 32).
    pub stem_width: i64,
    /// Stride of the 3×3 stem convolution (2 at 224px, 1 for CIFAR).
    pub stem_stride: i64,
    /// Stride of the first block of each of the four stages (timm: [2, 2, 2, 2]).
    pub strides: Vec<i64>,
    /// Stochastic depth, rising linearly to this rate over all blocks.
    pub drop_path_rate: f64,
}

/// One stage: output width, number of blocks, group size of its 3×3 convolutions.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StageSpec {
    width: i64,
    depth: i64,
    group_size: i64,
}

/// Python's `round` (halves to even).
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

impl RegNetConfig {
    /// timm's `generate_regnet` (float32, as torch computes it) followed by
    /// `adjust_widths_groups_comp`: the stages with their widths, depths and group sizes.
    fn stages(&self) -> Vec<StageSpec> {
        let (w0, wa, wm) = (self.w0 as f32, self.wa as f32, self.wm as f32);
        let log_wm = self.wm.ln() as f32;
        let mut widths: Vec<i64> = (0..self.depth)
            .map(|i| {
                let cont = i as f32 * wa + w0;
                let e = ((cont / w0).ln() / log_wm).round_ties_even();
                ((w0 * wm.powf(e) / 8.0).round_ties_even() * 8.0) as i64
            })
            .collect();
        // torch.unique(return_counts=True): sorted distinct widths with their counts.
        widths.sort_unstable();
        let mut uniq: Vec<(i64, i64)> = Vec::new();
        for w in widths {
            let same = uniq.last().is_some_and(|l| l.0 == w);
            if same {
                if let Some(l) = uniq.last_mut() {
                    l.1 += 1;
                }
            } else {
                uniq.push((w, 1));
            }
        }
        uniq.into_iter()
            .map(|(w, depth)| {
                let w_bot = (w as f64 * self.bottle_ratio) as i64;
                let g = self.group_size.min(w_bot).max(1);
                let w_bot = (py_round(w_bot as f64 / g as f64) * g as f64) as i64;
                StageSpec {
                    width: (w_bot as f64 / self.bottle_ratio) as i64,
                    depth,
                    group_size: g,
                }
            })
            .collect()
    }

    /// Bottleneck width and number of groups of a block of output width `width` (timm's
    /// `Bottleneck`: `int(round(out_chs * bottle_ratio))`, `bottleneck // group_size`).
    fn bottleneck(&self, width: i64, group_size: i64) -> (i64, i64) {
        let b = py_round(width as f64 * self.bottle_ratio) as i64;
        (b, b / group_size)
    }
}

impl Family for RegNetConfig {
    fn validate(&self) -> Result<(), Problem> {
        positive(&[
            ("w0", self.w0),
            ("depth", self.depth),
            ("group_size", self.group_size),
            ("stem_width", self.stem_width),
        ])?;
        if self.w0 % 8 != 0 {
            return Err(Problem::at(
                "w0",
                format!("`w0` must be a multiple of 8, got {}", self.w0),
            ));
        }
        if !(self.wa >= 0.0 && self.wa.is_finite()) {
            return Err(Problem::at(
                "wa",
                format!("`wa` must be at least 0, got {}", self.wa),
            ));
        }
        if !(self.wm > 1.0 && self.wm.is_finite()) {
            return Err(Problem::at(
                "wm",
                format!("`wm` must be greater than 1, got {}", self.wm),
            ));
        }
        if !(self.bottle_ratio > 0.0 && self.bottle_ratio.is_finite()) {
            return Err(Problem::at(
                "bottle_ratio",
                format!("`bottle_ratio` must be positive, got {}", self.bottle_ratio),
            ));
        }
        if self.depth > 1000 {
            return Err(Problem::at(
                "depth",
                format!("`depth` must be at most 1000, got {}", self.depth),
            ));
        }
        if self.strides.len() != 4 {
            return Err(Problem::at(
                "strides",
                format!(
                    "`strides` needs one entry per stage (4), got {}",
                    self.strides.len()
                ),
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
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(Problem::at(
                "drop_path_rate",
                format!(
                    "`drop_path_rate` must be in [0, 1), got {}",
                    self.drop_path_rate
                ),
            ));
        }
        let stages = self.stages();
        if stages.len() != 4 {
            return Err(Problem::at(
                "w0",
                format!(
                    "`w0`, `wa`, `wm` and `depth` give {} stages (widths {:?}); RegNet needs \
                     exactly 4",
                    stages.len(),
                    stages.iter().map(|s| s.width).collect::<Vec<_>>()
                ),
            ));
        }
        for (i, s) in stages.iter().enumerate() {
            let (b, groups) = self.bottleneck(s.width, s.group_size);
            if s.width < 1 || b < 1 || groups < 1 || b % groups != 0 {
                return Err(Problem::at(
                    "bottle_ratio",
                    format!(
                        "stage {}: width {} with `bottle_ratio` {} and group size {} gives a \
                         bottleneck of {b} channels that {groups} groups cannot split",
                        i + 1,
                        s.width,
                        self.bottle_ratio,
                        s.group_size
                    ),
                ));
            }
        }
        Ok(())
    }
}

pub static REGNETX: Arch = Arch {
    name: "regnetx",
    family: "regnet",
    kind: super::ArchKind::Cnn,
    about: "RegNetX (Radosavovic et al. 2020); imagenet = RegNetX-200MF, x_400mf = RegNetX-400MF, \
            cifar = RegNetX-200MF with a stride-1 stem and strides 1/1/2/2",
    presets: &["tiny", "cifar", "imagenet", "x_400mf"],
    preset: |p| match p {
        "tiny" => Some(json!({
            "w0": 8, "wa": 8.0, "wm": 1.5, "depth": 5, "group_size": 8, "bottle_ratio": 1.0,
            "stem_width": 8, "stem_stride": 2, "strides": [2, 2, 2, 2], "drop_path_rate": 0.0
        })),
        "cifar" => Some(json!({
            "w0": 24, "wa": 36.44, "wm": 2.49, "depth": 13, "group_size": 8, "bottle_ratio": 1.0,
            "stem_width": 64, "stem_stride": 1, "strides": [1, 1, 2, 2], "drop_path_rate": 0.0
        })),
        "imagenet" => Some(json!({
            "w0": 24, "wa": 36.44, "wm": 2.49, "depth": 13, "group_size": 8, "bottle_ratio": 1.0,
            "stem_width": 32, "stem_stride": 2, "strides": [2, 2, 2, 2], "drop_path_rate": 0.0
        })),
        "x_400mf" => Some(json!({
            "w0": 24, "wa": 24.48, "wm": 2.54, "depth": 22, "group_size": 16, "bottle_ratio": 1.0,
            "stem_width": 32, "stem_stride": 2, "strides": [2, 2, 2, 2], "drop_path_rate": 0.0
        })),
        _ => None,
    },
    check: check_of::<RegNetConfig>,
    fits: fits_of::<RegNetConfig>,
    build: build_of::<RegNetConfig>,
    reference: "timm regnetx_002",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{drop_path, drop_path_rates},
        Build, ModelIo,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for RegNetConfig {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            self.validate().map_err(|p| anyhow::Error::msg(p.message))?;
            Ok(Box::new(RegNet::new(p, self, io)))
        }
    }

    /// timm's `ConvNormAct` without its activation: a bias-free convolution (`.conv`, timm's
    /// symmetric padding, normal init with std √(2/fan-out)) and BatchNorm (`.bn`, γ = `gamma`).
    #[derive(Debug)]
    struct ConvBn {
        conv: nn::Conv2D,
        bn: nn::BatchNorm,
    }

    impl ConvBn {
        fn new(
            p: nn::Path,
            cin: i64,
            cout: i64,
            k: i64,
            stride: i64,
            groups: i64,
            gamma: f64,
        ) -> Self {
            let conv = crate::models::layers::conv2d_timm(
                &p / "conv",
                cin,
                cout,
                k,
                stride,
                groups,
                false,
            );
            let bn = nn::batch_norm2d(
                &p / "bn",
                cout,
                nn::BatchNormConfig {
                    ws_init: nn::Init::Const(gamma),
                    ..Default::default()
                },
            );
            Self { conv, bn }
        }

        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            x.apply(&self.conv).apply_t(&self.bn, train)
        }
    }

    /// timm's RegNet `Bottleneck` (no SE, ReLU after the residual sum).
    #[derive(Debug)]
    struct Bottleneck {
        conv1: ConvBn,
        conv2: ConvBn,
        conv3: ConvBn,
        downsample: Option<ConvBn>,
        drop_path: f64,
    }

    impl Bottleneck {
        fn new(
            p: nn::Path,
            c: &RegNetConfig,
            cin: i64,
            cout: i64,
            stride: i64,
            group_size: i64,
            drop_path: f64,
        ) -> Self {
            let (b, groups) = c.bottleneck(cout, group_size);
            Self {
                conv1: ConvBn::new(&p / "conv1", cin, b, 1, 1, 1, 1.0),
                conv2: ConvBn::new(&p / "conv2", b, b, 3, stride, groups, 1.0),
                conv3: ConvBn::new(&p / "conv3", b, cout, 1, 1, 1, 0.0),
                downsample: (cin != cout || stride != 1)
                    .then(|| ConvBn::new(&p / "downsample", cin, cout, 1, stride, 1, 1.0)),
                drop_path,
            }
        }
    }

    impl ModuleT for Bottleneck {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = self.conv1.forward_t(x, train).relu();
            let y = self.conv2.forward_t(&y, train).relu();
            let y = self.conv3.forward_t(&y, train);
            let short = match &self.downsample {
                Some(d) => d.forward_t(x, train),
                None => x.shallow_clone(),
            };
            (drop_path(&y, self.drop_path, train) + short).relu()
        }
    }

    #[derive(Debug)]
    pub struct RegNet {
        stem: ConvBn,
        blocks: Vec<Bottleneck>,
        fc: nn::Linear,
    }

    impl RegNet {
        pub fn new(p: &nn::Path, c: &RegNetConfig, io: &ModelIo) -> Self {
            let stages = c.stages();
            let total: i64 = stages.iter().map(|s| s.depth).sum();
            let dpr = drop_path_rates(c.drop_path_rate, total);
            let stem = ConvBn::new(
                p / "stem",
                io.in_channels,
                c.stem_width,
                3,
                c.stem_stride,
                1,
                1.0,
            );
            let mut blocks = Vec::new();
            let mut cin = c.stem_width;
            for (i, s) in stages.iter().enumerate() {
                let sp = p / format!("s{}", i + 1);
                for j in 0..s.depth {
                    let stride = if j == 0 { c.strides[i] } else { 1 };
                    let rate = dpr[blocks.len()];
                    blocks.push(Bottleneck::new(
                        &sp / format!("b{}", j + 1),
                        c,
                        cin,
                        s.width,
                        stride,
                        s.group_size,
                        rate,
                    ));
                    cin = s.width;
                }
            }
            let fc = nn::linear(
                p / "head" / "fc",
                cin,
                io.num_classes,
                nn::LinearConfig {
                    ws_init: nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.01,
                    },
                    bs_init: Some(nn::Init::Const(0.0)),
                    bias: true,
                },
            );
            Self { stem, blocks, fc }
        }
    }

    impl ModuleT for RegNet {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = self.stem.forward_t(x, train).relu();
            for b in &self.blocks {
                y = b.forward_t(&y, train);
            }
            y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(preset: &str) -> RegNetConfig {
        serde_json::from_value((REGNETX.preset)(preset).unwrap()).unwrap()
    }

    #[test]
    fn design_space_quantisation_matches_timm() {
        let w = |p: &str| {
            cfg(p)
                .stages()
                .iter()
                .map(|s| (s.width, s.depth, s.group_size))
                .collect::<Vec<_>>()
        };
        // timm regnetx_002 / regnetx_004.
        assert_eq!(
            w("imagenet"),
            [(24, 1, 8), (56, 1, 8), (152, 4, 8), (368, 7, 8)]
        );
        assert_eq!(
            w("x_400mf"),
            [(32, 1, 16), (64, 2, 16), (160, 7, 16), (384, 12, 16)]
        );
        assert_eq!(w("tiny"), [(8, 1, 8), (16, 1, 8), (24, 2, 8), (40, 1, 8)]);
        for p in REGNETX.presets {
            cfg(p).validate().unwrap();
        }
    }
}
