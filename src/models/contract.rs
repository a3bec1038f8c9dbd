//! A model's input contract: what its network expects of the pixels it is given, recorded in
//! every saved model's `model.json` and checked where a model comes from outside (an imported
//! TorchScript file, a timm model, a published checkpoint). robarch always feeds [0, 1] pixels; the
//! contract says how they are turned into what the network body sees (scaled to [0, 255] or not,
//! normalised by a per-channel mean/std in front of the network or not).
//!
//! The usual silent failure of an outside model is a preprocessing mismatch (normalisation applied
//! twice or not at all, 0–255 against 0–1 pixels): clean accuracy drops to near chance while
//! everything runs. The import stage therefore measures clean accuracy on the first test points
//! and refuses below twice chance (or outside `expect:`), naming the contract it assumed.
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};

/// The pixel range a network body expects: `[0, 1]` or `[0, 255]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum PixelRange {
    #[default]
    Unit,
    Byte,
}

impl PixelRange {
    pub fn is_unit(&self) -> bool {
        *self == PixelRange::Unit
    }
    /// The range's upper end (1 or 255).
    pub fn scale(&self) -> f64 {
        match self {
            PixelRange::Unit => 1.0,
            PixelRange::Byte => 255.0,
        }
    }
}

impl Serialize for PixelRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [0u32, self.scale() as u32].serialize(s)
    }
}

impl<'de> Deserialize<'de> for PixelRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<f64> = Deserialize::deserialize(d)?;
        match v.as_slice() {
            [lo, hi] if *lo == 0.0 && *hi == 1.0 => Ok(PixelRange::Unit),
            [lo, hi] if *lo == 0.0 && *hi == 255.0 => Ok(PixelRange::Byte),
            _ => Err(serde::de::Error::custom(format!(
                "range {v:?} is not supported: use [0, 1] or [0, 255]"
            ))),
        }
    }
}

/// `expect:` on an outside model: the clean accuracy it should reach on the first test points.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Expected clean accuracy, in [0, 1].
    pub clean: f64,
    /// Accepted distance from `clean`.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    0.02
}

impl Expect {
    pub fn validate(&self) -> Result<(), Problem> {
        if !(0.0..=1.0).contains(&self.clean) {
            return Err(Problem::at(
                "expect",
                format!("`clean` is an accuracy in [0, 1], got {}", self.clean),
            ));
        }
        if self.tolerance.is_nan() || self.tolerance < 0.0 {
            return Err(Problem::at(
                "expect",
                format!("`tolerance` must be at least 0, got {}", self.tolerance),
            ));
        }
        Ok(())
    }
}

/// Where the per-channel mean/std normalisation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// robarch applies the dataset's mean/std in front of the network (native models, and
    /// imports with `normalize: true`): the network body sees normalised inputs.
    Robarch,
    /// The network body gets the pixels as they are (in `range`); it may normalise itself.
    None,
}

/// A saved model's input contract, as `model.json` records it (`input`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputContract {
    /// What robarch feeds the model: pixels in [0, 1].
    pub pixels: [u32; 2],
    /// The pixel range the network body expects (robarch scales [0, 1] pixels to it).
    pub range: PixelRange,
    /// Where the normalisation happens.
    pub normalization: Normalization,
    /// The mean/std subtracted and divided in front of the network body, in [0, 1] pixel units
    /// (0 and 1 when `normalization` is `none`; the range's scale folded in otherwise).
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Image side and channels the network takes.
    pub resolution: i64,
    pub channels: i64,
}

impl InputContract {
    /// The contract of a network body that takes `range` pixels, normalised by the dataset's
    /// `mean`/`std` (in [0, 1] units) or not; `mean`/`std` become what robarch applies in front.
    pub fn new(
        range: PixelRange,
        normalize: bool,
        data_mean: &[f64],
        data_std: &[f64],
        io: &super::ModelIo,
    ) -> InputContract {
        let c = data_mean.len();
        let (mean, std) = if normalize {
            // (255x − 255m)/(255s) = (x − m)/s: the range cancels once normalised.
            (data_mean.to_vec(), data_std.to_vec())
        } else {
            // x·scale: subtract 0, divide by 1/scale.
            (vec![0.0; c], vec![1.0 / range.scale(); c])
        };
        InputContract {
            pixels: [0, 1],
            range,
            normalization: if normalize {
                Normalization::Robarch
            } else {
                Normalization::None
            },
            mean,
            std,
            resolution: io.image_size,
            channels: io.in_channels,
        }
    }

    /// One line for messages: "[0, 1] pixels, normalised by robarch with the dataset's mean/std".
    pub fn describe(&self) -> String {
        let range = match self.range {
            PixelRange::Unit => "[0, 1] pixels",
            PixelRange::Byte => "[0, 255] pixels",
        };
        match self.normalization {
            Normalization::Robarch => {
                format!("{range}, normalised by robarch with the dataset's mean/std")
            }
            Normalization::None => format!("{range}, not normalised by robarch"),
        }
    }

    /// The two likely fixes of an outside model near chance: the other normalisation, the other
    /// range.
    pub fn fixes(&self) -> String {
        let norm = match self.normalization {
            Normalization::Robarch => "set `normalize: false` if the module normalises its inputs itself",
            Normalization::None => "set `normalize: true` if the module expects inputs normalised by the dataset's mean/std",
        };
        let range = match self.range {
            PixelRange::Unit => "set `range: [0, 255]` if it was trained on 0–255 pixels",
            PixelRange::Byte => "set `range: [0, 1]` if it was trained on 0–1 pixels",
        };
        format!("{norm}; or {range}")
    }
}

/// The share of points a model must classify correctly to pass the import check without
/// `expect:`: twice chance.
pub fn floor(classes: i64) -> f64 {
    2.0 / classes as f64
}

/// How many of the first test points the import's contract check classifies.
pub const CHECK_POINTS: i64 = 512;

/// The contract check's verdict on a clean accuracy `acc` of a model with `classes` outputs:
/// `None` when it passes.
pub fn problem(
    acc: f64,
    n: i64,
    classes: i64,
    expect: Option<&Expect>,
    contract: &InputContract,
) -> Option<String> {
    let measured = format!(
        "clean accuracy {:.1}% on the first {n} test points",
        100.0 * acc
    );
    match expect {
        Some(e) if (acc - e.clean).abs() > e.tolerance => Some(format!(
            "{measured}, outside `expect: {{clean: {}, tolerance: {}}}`, with the input contract {}; {}",
            e.clean,
            e.tolerance,
            contract.describe(),
            contract.fixes()
        )),
        Some(_) => None,
        None => {
            let floor = floor(classes);
            (acc < floor).then(|| {
                format!(
                    "{measured}, below twice chance ({:.1}%): the model does not read these images as it was trained to. It was imported with the input contract {}; {}; or set `expect:` to the accuracy you expect",
                    100.0 * floor,
                    contract.describe(),
                    contract.fixes()
                )
            })
        }
    }
}

/// The tensor half: measuring the accuracy the check judges, only with libtorch (the worker).
#[cfg(feature = "torch")]
mod net {
    use crate::models::Network;

    /// The share of uint8 images `x` that `net` (eval mode) classifies as `y`, in batches of 256.
    pub fn clean_accuracy(net: &Network, x: &tch::Tensor, y: &tch::Tensor) -> f64 {
        let n = x.size()[0];
        let mut correct = 0i64;
        tch::no_grad(|| {
            for lo in (0..n).step_by(256) {
                let len = 256.min(n - lo);
                let xb = x.narrow(0, lo, len).to_kind(tch::Kind::Float) / 255.0;
                let pred = net.forward_t(&xb, false).argmax(-1, false);
                let hit = pred.eq_tensor(&y.narrow(0, lo, len)).sum(tch::Kind::Int64);
                correct += i64::try_from(hit).unwrap_or(0);
            }
        });
        correct as f64 / n.max(1) as f64
    }
}
#[cfg(feature = "torch")]
pub use net::clean_accuracy;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_reads_and_folds_into_the_normalisation() {
        let r: PixelRange = serde_json::from_str("[0, 255]").unwrap();
        assert_eq!(r, PixelRange::Byte);
        assert_eq!(serde_json::to_string(&r).unwrap(), "[0,255]");
        assert!(serde_json::from_str::<PixelRange>("[0, 2]").is_err());
        let io = super::super::ModelIo {
            in_channels: 1,
            image_size: 8,
            num_classes: 10,
        };
        let c = InputContract::new(PixelRange::Byte, false, &[0.5], &[0.2], &io);
        assert_eq!((c.mean[0], c.std[0]), (0.0, 1.0 / 255.0));
        let c = InputContract::new(PixelRange::Byte, true, &[0.5], &[0.2], &io);
        assert_eq!((c.mean[0], c.std[0]), (0.5, 0.2));
        assert!(c.fixes().contains("normalize: false"), "{}", c.fixes());
    }

    #[test]
    fn the_contract_check_names_the_contract_and_the_fixes() {
        let io = super::super::ModelIo {
            in_channels: 3,
            image_size: 8,
            num_classes: 10,
        };
        let c = InputContract::new(PixelRange::Unit, true, &[0.5; 3], &[0.2; 3], &io);
        assert_eq!(problem(0.21, 100, 10, None, &c), None);
        let why = problem(0.12, 100, 10, None, &c).unwrap();
        assert!(why.contains("below twice chance (20.0%)"), "{why}");
        assert!(why.contains("normalised by robarch"), "{why}");
        assert!(why.contains("`normalize: false`"), "{why}");
        assert!(why.contains("`range: [0, 255]`"), "{why}");
        let e = Expect {
            clean: 0.85,
            tolerance: 0.02,
        };
        assert_eq!(problem(0.84, 100, 10, Some(&e), &c), None);
        let why = problem(0.80, 100, 10, Some(&e), &c).unwrap();
        assert!(
            why.contains("outside `expect: {clean: 0.85, tolerance: 0.02}`"),
            "{why}"
        );
        // `expect:` replaces the floor: a model expected near chance passes there.
        let e = Expect {
            clean: 0.1,
            tolerance: 0.1,
        };
        assert_eq!(problem(0.05, 100, 10, Some(&e), &c), None);
    }
}
