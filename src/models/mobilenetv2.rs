//! MobileNetV2 (Sandler et al. 2018): inverted residual blocks (1×1 expansion, 3×3 depthwise,
//! linear 1×1 projection) with ReLU6, widths rounded by `make_divisible`. Names follow torchvision
//! `mobilenet_v2` (`features.1.conv.0.0.weight`, `classifier.1`). The CIFAR variant keeps the
//! network and changes two strides to 1 (stem and the 24-channel stage), as in the common CIFAR
//! ports (kuangliu/pytorch-cifar, chenyaofo/pytorch-cifar-models).
use super::{build_of, check_of, fits_of, Arch, Family};
use crate::vocab::Problem;

use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNetV2Config {
    pub width_mult: f64,
    /// Blocks per stage (paper: [1,2,3,4,3,3,1]).
    pub depths: Vec<i64>,
    /// Stride of each stage's first block (paper: [1,2,2,2,1,2,1]).
    pub strides: Vec<i64>,
    pub stem_stride: i64,
    /// Width of the final 1×1 convolution before width scaling (paper: 1280).
    pub last_channel: i64,
    pub dropout: f64,
}

impl Family for MobileNetV2Config {
    fn validate(&self) -> Result<(), Problem> {
        if self.width_mult <= 0.0 {
            return Err(Problem::at(
                "width_mult",
                format!("`width_mult` must be positive, got {}", self.width_mult),
            ));
        }
        if self.depths.len() != 7 || self.strides.len() != 7 {
            return Err(Problem::at(
                "depths",
                "`depths` and `strides` need one entry per stage (7)",
            ));
        }
        if self.depths.iter().any(|&d| d < 1)
            || self
                .strides
                .iter()
                .chain([&self.stem_stride])
                .any(|&s| !(1..=2).contains(&s))
        {
            return Err(Problem::at(
                "depths",
                "`depths` must be at least 1; `strides` and `stem_stride` 1 or 2",
            ));
        }
        if self.last_channel < 1 || !(0.0..1.0).contains(&self.dropout) {
            return Err(Problem::at(
                "last_channel",
                "`last_channel` must be at least 1 and `dropout` in [0, 1)",
            ));
        }
        Ok(())
    }
}

pub static MOBILENETV2: Arch = Arch {
    name: "mobilenetv2",
    family: "mobilenetv2",
    kind: super::ArchKind::Cnn,
    about: "MobileNetV2 1.0 (Sandler et al. 2018)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| {
        let d = [1, 2, 3, 4, 3, 3, 1];
        match p {
            "tiny" => Some(
                json!({"width_mult": 0.25, "depths": [1, 1, 1, 1, 1, 1, 1], "strides": [1, 1, 2, 2, 1, 2, 1], "stem_stride": 1, "last_channel": 128, "dropout": 0.2}),
            ),
            "cifar" => Some(
                json!({"width_mult": 1.0, "depths": d, "strides": [1, 1, 2, 2, 1, 2, 1], "stem_stride": 1, "last_channel": 1280, "dropout": 0.2}),
            ),
            "imagenet" => Some(
                json!({"width_mult": 1.0, "depths": d, "strides": [1, 2, 2, 2, 1, 2, 1], "stem_stride": 2, "last_channel": 1280, "dropout": 0.2}),
            ),
            _ => None,
        }
    },
    check: check_of::<MobileNetV2Config>,
    fits: fits_of::<MobileNetV2Config>,
    build: build_of::<MobileNetV2Config>,
    reference: "timm mobilenetv2_100 / torchvision mobilenet_v2",
};

/// The tensor half: the network itself, built only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::{
        layers::{bn2d, conv2d_kaiming, dropout, make_divisible},
        Build, ModelIo,
    };
    use tch::{
        nn::{self, ModuleT},
        Tensor,
    };

    impl Build for MobileNetV2Config {
        fn build(&self, p: &nn::Path, io: &ModelIo) -> anyhow::Result<Box<dyn ModuleT>> {
            Ok(Box::new(MobileNetV2::new(p, self, io)))
        }
    }

    /// (expansion t, channels c) of the seven stages of the paper's Table 2.
    const STAGES: [(i64, i64); 7] = [
        (1, 16),
        (6, 24),
        (6, 32),
        (6, 64),
        (6, 96),
        (6, 160),
        (6, 320),
    ];

    /// conv (no bias) + BN, optionally ReLU6: torchvision's `Conv2dNormActivation`.
    #[derive(Debug)]
    struct ConvBn {
        conv: nn::Conv2D,
        bn: nn::BatchNorm,
        act: bool,
    }

    impl ConvBn {
        fn new(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> Self {
            Self {
                conv: conv2d_kaiming(&p / 0, cin, cout, k, stride, (k - 1) / 2, groups, false),
                bn: bn2d(&p / 1, cout),
                act: true,
            }
        }
    }

    impl ModuleT for ConvBn {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let y = x.apply(&self.conv).apply_t(&self.bn, train);
            if self.act {
                y.clamp(0.0, 6.0)
            } else {
                y
            }
        }
    }

    #[derive(Debug)]
    struct InvertedResidual {
        expand: Option<ConvBn>,
        dw: ConvBn,
        project: ConvBn,
        residual: bool,
    }

    impl InvertedResidual {
        fn new(p: nn::Path, cin: i64, cout: i64, stride: i64, t: i64) -> Self {
            let hidden = cin * t;
            let c = &p / "conv";
            let off = if t != 1 { 1 } else { 0 };
            // The projection is a bare conv + BN at `conv.{off+1}` and `conv.{off+2}`.
            let project = ConvBn {
                conv: conv2d_kaiming(&c / (off + 1), hidden, cout, 1, 1, 0, 1, false),
                bn: bn2d(&c / (off + 2), cout),
                act: false,
            };
            Self {
                expand: (t != 1).then(|| ConvBn::new(&c / 0, cin, hidden, 1, 1, 1)),
                dw: ConvBn::new(&c / off, hidden, hidden, 3, stride, hidden),
                project,
                residual: stride == 1 && cin == cout,
            }
        }
    }

    impl ModuleT for InvertedResidual {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.shallow_clone();
            if let Some(e) = &self.expand {
                y = e.forward_t(&y, train);
            }
            let y = self.project.forward_t(&self.dw.forward_t(&y, train), train);
            if self.residual {
                x + y
            } else {
                y
            }
        }
    }

    #[derive(Debug)]
    pub struct MobileNetV2 {
        features: Vec<Box<dyn ModuleT>>,
        classifier: nn::Linear,
        dropout: f64,
    }

    impl MobileNetV2 {
        pub fn new(p: &nn::Path, c: &MobileNetV2Config, io: &ModelIo) -> Self {
            let f = p / "features";
            let mut cin = make_divisible(32.0 * c.width_mult, 8);
            let last = make_divisible(c.last_channel as f64 * c.width_mult.max(1.0), 8);
            let mut features: Vec<Box<dyn ModuleT>> = vec![Box::new(ConvBn::new(
                &f / 0,
                io.in_channels,
                cin,
                3,
                c.stem_stride,
                1,
            ))];
            for (s, &(t, ch)) in STAGES.iter().enumerate() {
                let cout = make_divisible(ch as f64 * c.width_mult, 8);
                for i in 0..c.depths[s] {
                    let stride = if i == 0 { c.strides[s] } else { 1 };
                    let idx = features.len() as i64;
                    features.push(Box::new(InvertedResidual::new(
                        &f / idx,
                        cin,
                        cout,
                        stride,
                        t,
                    )));
                    cin = cout;
                }
            }
            let idx = features.len() as i64;
            features.push(Box::new(ConvBn::new(&f / idx, cin, last, 1, 1, 1)));
            Self {
                features,
                classifier: nn::linear(
                    p / "classifier" / 1,
                    last,
                    io.num_classes,
                    nn::LinearConfig {
                        ws_init: nn::Init::Randn {
                            mean: 0.0,
                            stdev: 0.01,
                        },
                        bs_init: Some(nn::Init::Const(0.0)),
                        bias: true,
                    },
                ),
                dropout: c.dropout,
            }
        }
    }

    impl ModuleT for MobileNetV2 {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            let mut y = x.shallow_clone();
            for m in &self.features {
                y = m.forward_t(&y, train);
            }
            let y = y.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
            dropout(&y, self.dropout, train).apply(&self.classifier)
        }
    }
}
#[cfg(feature = "torch")]
pub use net::*;
