//! Training-time data augmentation on uint8 CHW images, applied in the order listed in the spec
//! (like torchvision's `Compose`). Each image's randomness is derived from (seed, epoch, position
//! in the epoch), so an epoch's batches are identical however many threads assemble them and
//! whether or not training was resumed. Normalisation is not here: it is the model's first layer,
//! so ε stays in pixel units.
pub mod autoaugment;
pub mod geometric;

use crate::vocab::Problem;
use serde::{Deserialize, Serialize};

/// One uint8 image, channels × height × width, row-major.
pub struct Image<'a> {
    pub data: &'a mut [u8],
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// One augmentation step of `training.<name>.augment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Augment {
    /// `RandomCrop(size, padding)`: zero-pad, then crop back at a random offset.
    RandomCrop {
        #[serde(default = "default_padding")]
        padding: usize,
    },
    /// `RandomHorizontalFlip(p)`.
    Hflip {
        #[serde(default = "half")]
        p: f64,
    },
    /// `RandomResizedCrop(size, scale, ratio)` back to the stored resolution.
    RandomResizedCrop {
        #[serde(default = "default_scale")]
        scale: (f64, f64),
        #[serde(default = "default_ratio")]
        ratio: (f64, f64),
    },
    /// `AutoAugment(policy)` with a learned policy: cifar10, imagenet or svhn.
    Autoaugment { policy: autoaugment::Policy },
}

fn default_padding() -> usize {
    4
}
fn half() -> f64 {
    0.5
}
fn default_scale() -> (f64, f64) {
    (0.08, 1.0)
}
fn default_ratio() -> (f64, f64) {
    (3.0 / 4.0, 4.0 / 3.0)
}

/// Names accepted as list items, for messages.
pub const NAMES: &[&str] = &["random_crop", "hflip", "random_resized_crop", "autoaugment"];

impl Augment {
    /// Parses one list item: a bare name (`hflip`), a name with options
    /// (`random_crop: {padding: 4}`), or `autoaugment: cifar10` as short for `{policy: cifar10}`.
    pub fn from_yaml(v: &serde_yaml::Value) -> Result<Augment, String> {
        use serde_yaml::value::{Tag, TaggedValue};
        use serde_yaml::{Mapping, Value};
        let (name, options) = match v {
            Value::String(s) => (s.clone(), Value::Mapping(Mapping::new())),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next().expect("one entry");
                let name = k
                    .as_str()
                    .ok_or("a step name must be a string")?
                    .to_string();
                let options = match inner {
                    Value::Null => Value::Mapping(Mapping::new()),
                    Value::String(p) if name == "autoaugment" => {
                        let mut o = Mapping::new();
                        o.insert("policy".into(), Value::String(p.clone()));
                        Value::Mapping(o)
                    }
                    other => other.clone(),
                };
                (name, options)
            }
            _ => return Err("expected a step name or `name: {options}`".into()),
        };
        // serde_yaml reads externally tagged enums from YAML tags (`!hflip {}`).
        let tagged = Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(name),
            value: options,
        }));
        serde_yaml::from_value(tagged).map_err(|e| e.to_string())
    }

    /// Checks option ranges; the problem is relative to the step's options.
    pub fn check(&self) -> Result<(), Problem> {
        let bad = |f: &str, m: String| Err(Problem::at(f, m));
        match self {
            Augment::Hflip { p } if !(0.0..=1.0).contains(p) => {
                bad("p", format!("{p} is not a probability"))
            }
            Augment::RandomResizedCrop { scale, ratio } => {
                if !(scale.0 > 0.0 && scale.0 <= scale.1 && scale.1 <= 1.0) {
                    bad("scale", "needs 0 < min <= max <= 1".into())
                } else if !(ratio.0 > 0.0 && ratio.0 <= ratio.1) {
                    bad("ratio", "needs 0 < min <= max".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn apply(&self, img: &mut Image, rng: &mut impl rand::Rng) {
        match self {
            Augment::RandomCrop { padding } => geometric::random_crop(img, *padding, rng),
            Augment::Hflip { p } => {
                if rng.random::<f64>() < *p {
                    geometric::hflip(img)
                }
            }
            Augment::RandomResizedCrop { scale, ratio } => {
                geometric::random_resized_crop(img, *scale, *ratio, rng)
            }
            Augment::Autoaugment { policy } => autoaugment::apply(img, *policy, rng),
        }
    }
}

/// Applies `steps` in order to one image with its own seeded generator.
pub fn apply_all(steps: &[Augment], img: &mut Image, seed: u64) {
    use rand::SeedableRng;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    for s in steps {
        s.apply(img, &mut rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Augment, String> {
        Augment::from_yaml(&serde_yaml::from_str(src).unwrap())
    }

    #[test]
    fn yaml_forms() {
        assert_eq!(parse("hflip").unwrap(), Augment::Hflip { p: 0.5 });
        assert_eq!(
            parse("random_crop: {padding: 2}").unwrap(),
            Augment::RandomCrop { padding: 2 }
        );
        assert_eq!(
            parse("random_crop:").unwrap(),
            Augment::RandomCrop { padding: 4 }
        );
        assert_eq!(
            parse("autoaugment: cifar10").unwrap(),
            Augment::Autoaugment {
                policy: autoaugment::Policy::Cifar10
            }
        );
        assert_eq!(
            parse("autoaugment: {policy: imagenet}").unwrap(),
            Augment::Autoaugment {
                policy: autoaugment::Policy::Imagenet
            }
        );
        assert!(parse("hfilp").unwrap_err().contains("unknown variant"));
        assert!(parse("random_crop: {pading: 4}")
            .unwrap_err()
            .contains("pading"));
        assert!(parse("autoaugment: mnist").is_err());
        assert!(Augment::Hflip { p: 2.0 }.check().is_err());
    }
}
