//! ResNet (He et al. 2016) with basic blocks, in the CIFAR variant (3×3 stem, no max-pool) and the
//! ImageNet variant (7×7/2 stem + max-pool). Parameter names follow torchvision/timm.
use super::{bn2d, parse_config, Arch, ModelIo};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::{self, ConvConfig, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 stride-1 convolution, no max-pool: the standard CIFAR ResNet.
    Cifar,
    /// 7×7 stride-2 convolution and 3×3 stride-2 max-pool.
    Imagenet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Blocks per stage.
    pub layers: Vec<i64>,
    /// Channels per stage; the first stage also sets the stem width.
    pub widths: Vec<i64>,
    pub stem: Stem,
}

pub static RESNET18: Arch = Arch {
    name: "resnet18",
    family: "resnet",
    about: "ResNet-18, basic blocks [2,2,2,2] (He et al. 2016)",
    presets: &["tiny", "cifar", "imagenet"],
    preset: |p| match p {
        "tiny" => Some(json!({"layers": [1, 1, 1], "widths": [16, 32, 64], "stem": "cifar"})),
        "cifar" => {
            Some(json!({"layers": [2, 2, 2, 2], "widths": [64, 128, 256, 512], "stem": "cifar"}))
        }
        "imagenet" => {
            Some(json!({"layers": [2, 2, 2, 2], "widths": [64, 128, 256, 512], "stem": "imagenet"}))
        }
        _ => None,
    },
    check: |v| {
        let (c, canon) = parse_config::<ResNetConfig>(v)?;
        if c.layers.is_empty() || c.layers.len() != c.widths.len() {
            return Err("`layers` and `widths` need the same, non-zero length".into());
        }
        if c.layers.iter().chain(&c.widths).any(|&x| x < 1) {
            return Err("`layers` and `widths` entries must be at least 1".into());
        }
        Ok(canon)
    },
    fits: |_, _| Ok(()),
    build: |p, v, io| {
        Ok(Box::new(ResNet::new(
            p,
            &serde_json::from_value(v.clone())?,
            io,
        )))
    },
};

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        k,
        ConvConfig {
            stride,
            padding,
            bias: false,
            ..Default::default()
        },
    )
}

#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || cin != cout).then(|| {
            (
                conv(&p / "downsample" / 0, cin, cout, 1, stride, 0),
                bn2d(&p / "downsample" / 1, cout),
            )
        });
        Self {
            conv1: conv(&p / "conv1", cin, cout, 3, stride, 1),
            bn1: bn2d(&p / "bn1", cout),
            conv2: conv(&p / "conv2", cout, cout, 3, 1, 1),
            bn2: bn2d(&p / "bn2", cout),
            downsample,
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let short = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + short).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    stem: Stem,
    blocks: Vec<BasicBlock>,
    fc: nn::Linear,
}

impl ResNet {
    pub fn new(p: &nn::Path, c: &ResNetConfig, io: &ModelIo) -> Self {
        let w0 = c.widths[0];
        let conv1 = match c.stem {
            Stem::Cifar => conv(p / "conv1", io.in_channels, w0, 3, 1, 1),
            Stem::Imagenet => conv(p / "conv1", io.in_channels, w0, 7, 2, 3),
        };
        let mut blocks = Vec::new();
        let mut cin = w0;
        for (stage, (&n, &w)) in c.layers.iter().zip(&c.widths).enumerate() {
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    p / format!("layer{}", stage + 1) / b,
                    cin,
                    w,
                    stride,
                ));
                cin = w;
            }
        }
        Self {
            conv1,
            bn1: bn2d(p / "bn1", w0),
            stem: c.stem,
            blocks,
            fc: nn::linear(p / "fc", cin, io.num_classes, Default::default()),
        }
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        if self.stem == Stem::Imagenet {
            y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for b in &self.blocks {
            y = b.forward_t(&y, train);
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{resolve, Network};
    use tch::Device;

    fn count(preset: &str, io: ModelIo) -> i64 {
        let spec = crate::spec::ModelSpec {
            arch: None,
            preset: preset.into(),
            overrides: Default::default(),
        };
        let p = resolve("resnet18", &spec).unwrap();
        Network::new(
            &p,
            &io,
            &vec![0.5; io.in_channels as usize],
            &vec![0.5; io.in_channels as usize],
            Device::Cpu,
            0,
        )
        .unwrap()
        .num_parameters()
    }

    #[test]
    fn parameter_counts_match_references() {
        // torchvision resnet18 (1000 classes): 11,689,512. CIFAR ResNet-18 (10 classes, 3x3 stem,
        // as in kuangliu/pytorch-cifar and the study's code): 11,173,962.
        assert_eq!(
            count(
                "imagenet",
                ModelIo {
                    in_channels: 3,
                    image_size: 224,
                    num_classes: 1000
                }
            ),
            11_689_512
        );
        assert_eq!(
            count(
                "cifar",
                ModelIo {
                    in_channels: 3,
                    image_size: 32,
                    num_classes: 10
                }
            ),
            11_173_962
        );
    }
}
