//! The prepared form of a dataset: uint8 NCHW images and int64 labels per split in one
//! safetensors file, plus `dataset.json` with shapes, class names and normalisation statistics.
use serde::{Deserialize, Serialize};

pub const TENSORS: &str = "data.safetensors";
pub const INFO: &str = "dataset.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub classes: Vec<String>,
    pub channels: usize,
    pub resolution: u32,
    pub train_size: usize,
    /// Size of the val split carved from train (`val_fraction`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_size: Option<usize>,
    pub test_size: usize,
    /// Per-channel mean and std of the training pixels in [0,1]; the model's first layer.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Folder sources: how many images of each split were resampled to `resolution`², and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampled: Option<Resampling>,
}

/// What a folder source's preparation did to image sizes (images already `resolution`² are
/// stored as they are).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resampling {
    /// Images resized or cropped, per split.
    pub train: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<usize>,
    pub test: usize,
    /// The transforms, in words.
    pub how: String,
}

/// The tensor half (libtorch, the worker build): preparing, saving and loading tensors.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::data::{
        image_folder::{self, FolderSplit},
        DatasetParams, RawSplit,
    };
    use anyhow::{ensure, Context, Result};
    use std::{collections::HashMap, path::Path};
    use tch::{Device, Kind, Tensor};

    pub struct Prepared {
        pub train_x: Tensor,
        pub train_y: Tensor,
        /// Images and labels of the val split, when the dataset has one.
        pub val: Option<(Tensor, Tensor)>,
        pub test_x: Tensor,
        pub test_y: Tensor,
        pub info: DatasetInfo,
    }

    impl Prepared {
        pub fn split(&self, split: crate::vocab::Split) -> Result<(&Tensor, &Tensor)> {
            use crate::vocab::Split;
            Ok(match split {
                Split::Train => (&self.train_x, &self.train_y),
                Split::Val => {
                    let (x, y) = self
                        .val
                        .as_ref()
                        .context("the dataset has no val split; set val_fraction")?;
                    (x, y)
                }
                Split::Test => (&self.test_x, &self.test_y),
            })
        }
    }

    fn to_tensors(s: &RawSplit) -> (Tensor, Tensor) {
        let x = Tensor::from_slice(&s.images).view([
            s.len() as i64,
            s.channels as i64,
            s.size as i64,
            s.size as i64,
        ]);
        (x, Tensor::from_slice(&s.labels))
    }

    /// Bilinear resize of uint8 images (antialiased when shrinking).
    fn resize(x: &Tensor, res: i64) -> Tensor {
        let size = x.size();
        if size[2] == res && size[3] == res {
            return x.shallow_clone();
        }
        let f = x.to_kind(Kind::Float);
        let y = if res < size[2] {
            f.internal_upsample_bilinear2d_aa([res, res], false, None, None)
        } else {
            f.upsample_bilinear2d([res, res], false, None, None)
        };
        y.round().clamp(0.0, 255.0).to_kind(Kind::Uint8)
    }

    /// A split before tensors are made: something with labels that can be subset by index (decoded
    /// images, or a folder's file list, so subsets are drawn before any decoding).
    trait Items: Sized {
        fn labels(&self) -> Vec<i64>;
        fn pick(&self, idx: &[usize]) -> Self;
    }

    impl Items for RawSplit {
        fn labels(&self) -> Vec<i64> {
            self.labels.clone()
        }
        fn pick(&self, idx: &[usize]) -> Self {
            self.select(idx)
        }
    }

    impl Items for FolderSplit {
        fn labels(&self) -> Vec<i64> {
            self.items.iter().map(|(_, c)| *c as i64).collect()
        }
        fn pick(&self, idx: &[usize]) -> Self {
            FolderSplit {
                classes: self.classes.clone(),
                items: idx.iter().map(|&i| self.items[i].clone()).collect(),
            }
        }
    }

    /// Train, optional val, and test items of a dataset.
    struct Splits<S> {
        train: S,
        val: Option<S>,
        test: S,
    }

    impl<S: Items> Splits<S> {
        /// Holds out a stratified `fraction` of `all` as the test split.
        fn held_out(all: S, fraction: f64, seed: u64) -> (S, S) {
            let (tr, te) = crate::data::stratified_split(&all.labels(), fraction, seed);
            (all.pick(&tr), all.pick(&te))
        }

        /// Carves the val split out of train (when requested), then applies the per-split limits
        /// (class-balanced, seeded).
        fn new(train: S, test: S, p: &DatasetParams, seed: u64) -> Self {
            let (train, val) = match p.val_fraction {
                Some(f) => {
                    let (tr, va) = Self::held_out(train, f, crate::rng::derive(seed, &[0x7A1]));
                    (tr, Some(va))
                }
                None => (train, None),
            };
            let limit = |s: S, l: Option<usize>, salt: u64| {
                let labels = s.labels();
                match l {
                    Some(l) if l < labels.len() => s.pick(&crate::data::balanced_subset(
                        &labels,
                        l,
                        crate::rng::derive(seed, &[0x11, salt]),
                    )),
                    _ => s,
                }
            };
            Splits {
                train: limit(train, p.train_limit, 0),
                test: limit(test, p.test_limit, 1),
                val: val.map(|v| limit(v, p.val_limit, 2)),
            }
        }
    }

    /// Materialises a dataset from its canonical parameters; `root` is the directory of file-backed
    /// sources.
    pub fn prepare(p: &DatasetParams, root: Option<&Path>, seed: u64) -> Result<Prepared> {
        use crate::data::SourceKind;
        let split_seed = crate::rng::derive(seed, &[0xDA7A]);
        let mut resampled = None;
        let root = || root.context("a file-backed dataset needs its directory");
        let kind = crate::data::source_kind(&p.source)
            .with_context(|| format!("unknown dataset source {}", p.source))?;
        let test_fraction = p.test_fraction.unwrap_or(0.25);
        let (splits, classes) = match kind {
            SourceKind::Digits => {
                let (tr, te) =
                    Splits::held_out(crate::data::digits::load_all()?, test_fraction, split_seed);
                let names = (0..crate::data::digits::CLASSES)
                    .map(|c| c.to_string())
                    .collect();
                (Splits::new(tr, te, p, seed), names)
            }
            SourceKind::Synthetic => {
                let s = p.synthetic.clone().unwrap_or_default();
                let (tr, te) = crate::data::synthetic::generate(&s, p.resolution, split_seed);
                let names = (0..s.classes).map(|c| format!("class{c}")).collect();
                (Splits::new(tr, te, p, seed), names)
            }
            SourceKind::Cifar10 => {
                let (tr, te, names) = crate::data::cifar10::load(root()?)?;
                (Splits::new(tr, te, p, seed), names)
            }
            SourceKind::Folder { imagenette } => {
                let layout = image_folder::discover(root()?)?;
                let classes = layout.train.classes.clone();
                let (tr, te) = match layout.test {
                    Some(t) => (layout.train, t),
                    // No official held-out split: a stratified, seeded one from the single tree.
                    None => Splits::held_out(layout.train, test_fraction, split_seed),
                };
                let files = Splits::new(tr, te, p, seed);
                // Training images keep the whole shorter side for random crops; val and test get
                // the evaluation transform (resize to resolution / crop_pct, centre crop).
                let crop = p.crop_pct.unwrap_or(0.875);
                let native = p.keep_native.unwrap_or(false);
                let decode =
                    |s: &FolderSplit, c: f64| image_folder::load_split(s, p.resolution, c, native);
                let (train, n_train) = decode(&files.train, 1.0)?;
                let val = files.val.as_ref().map(|v| decode(v, crop)).transpose()?;
                let (test, n_test) = decode(&files.test, crop)?;
                let r = p.resolution;
                let short = (r as f64 / crop).round().max(r as f64) as u32;
                let how = format!(
                    "images not {r}x{r}: training images' shorter side resized to {r} (bilinear, antialiased) and centre-cropped to {r}x{r}; val/test images' shorter side resized to {short} (crop_pct {crop}) and centre-cropped to {r}x{r}{}",
                    if native { format!("; images already {r}x{r} are kept as they are") } else { String::new() }
                );
                let resampling = Resampling {
                    train: n_train,
                    val: val.as_ref().map(|v| v.1),
                    test: n_test,
                    how,
                };
                if resampling.train + resampling.test + resampling.val.unwrap_or(0) > 0 {
                    tracing::info!(
                        "resampled to {r}x{r}: {} train, {} test{} images ({})",
                        resampling.train,
                        resampling.test,
                        resampling
                            .val
                            .map(|v| format!(", {v} val"))
                            .unwrap_or_default(),
                        resampling.how
                    );
                }
                resampled = Some(resampling);
                let splits = Splits {
                    train,
                    val: val.map(|v| v.0),
                    test,
                };
                let names = if imagenette {
                    image_folder::imagenette_names(&classes)
                } else {
                    classes
                };
                (splits, names)
            }
        };
        let Splits { train, val, test } = splits;
        ensure!(
            !train.is_empty() && !test.is_empty() && val.as_ref().is_none_or(|v| !v.is_empty()),
            "dataset has an empty split (lower val_fraction/test_fraction or raise limit)"
        );
        let tensors = |s: &RawSplit| {
            let (x, y) = to_tensors(s);
            (resize(&x, p.resolution as i64), y)
        };
        let (train_x, train_y) = tensors(&train);
        let (test_x, test_y) = tensors(&test);
        let val_t = val.as_ref().map(tensors);
        let f = train_x.to_kind(Kind::Double) / 255.0;
        let mean: Vec<f64> =
            Vec::try_from(f.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double))?;
        let std: Vec<f64> = Vec::try_from(f.std_correction([0i64, 2, 3].as_slice(), 0, false))?;
        let std = std.into_iter().map(|s| s.max(1e-3)).collect();
        let info = DatasetInfo {
            classes,
            channels: train.channels,
            resolution: p.resolution,
            train_size: train.len(),
            val_size: val.as_ref().map(|v| v.len()),
            test_size: test.len(),
            mean,
            std,
            resampled,
        };
        Ok(Prepared {
            train_x,
            train_y,
            val: val_t,
            test_x,
            test_y,
            info,
        })
    }

    pub fn save(dir: &Path, d: &Prepared) -> Result<()> {
        let mut named = vec![
            ("train_x", &d.train_x),
            ("train_y", &d.train_y),
            ("test_x", &d.test_x),
            ("test_y", &d.test_y),
        ];
        if let Some((x, y)) = &d.val {
            named.push(("val_x", x));
            named.push(("val_y", y));
        }
        Tensor::write_safetensors(&named, dir.join(TENSORS))?;
        std::fs::write(dir.join(INFO), serde_json::to_vec_pretty(&d.info)?)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Prepared> {
        let info: DatasetInfo = serde_json::from_slice(&std::fs::read(dir.join(INFO))?)
            .context("reading dataset.json")?;
        let mut t: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(TENSORS))?
            .into_iter()
            .collect();
        let mut take = |n: &str| {
            t.remove(n)
                .with_context(|| format!("prepared data lacks {n}"))
        };
        let val = match info.val_size {
            Some(_) => Some((take("val_x")?, take("val_y")?)),
            None => None,
        };
        Ok(Prepared {
            train_x: take("train_x")?.to_device(Device::Cpu),
            train_y: take("train_y")?,
            val,
            test_x: take("test_x")?,
            test_y: take("test_y")?,
            info,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn digits(resolution: u32, limit: Option<usize>) -> DatasetParams {
            DatasetParams {
                source: "embedded:digits".into(),
                resolution,
                train_limit: limit,
                test_limit: limit,
                test_fraction: Some(0.25),
                val_fraction: None,
                val_limit: None,
                crop_pct: None,
                keep_native: None,
                synthetic: None,
                source_hash: String::new(),
            }
        }

        #[test]
        fn digits_prepare_resizes_limits_and_roundtrips() {
            let p = digits(16, Some(50));
            let d = prepare(&p, None, 0).unwrap();
            assert_eq!(d.train_x.size(), [50, 1, 16, 16]);
            assert_eq!(d.test_y.size(), [50]);
            assert_eq!(d.train_x.kind(), Kind::Uint8);
            assert_eq!(d.info.classes.len(), 10);
            assert!(
                d.info.mean[0] > 0.1 && d.info.mean[0] < 0.5,
                "{:?}",
                d.info.mean
            );
            let dir = tempfile::tempdir().unwrap();
            save(dir.path(), &d).unwrap();
            let e = load(dir.path()).unwrap();
            assert!(e.train_x.equal(&d.train_x) && e.test_y.equal(&d.test_y));
            assert!(e.val.is_none() && e.split(crate::vocab::Split::Val).is_err());
        }

        #[test]
        fn val_split_is_carved_from_train_stratified_and_saved() {
            let mut p = digits(8, None);
            let full = prepare(&p, None, 0).unwrap();
            p.val_fraction = Some(0.2);
            let d = prepare(&p, None, 0).unwrap();
            let val = d.info.val_size.unwrap();
            assert_eq!(d.info.train_size + val, full.info.train_size);
            assert!(
                (val as f64 / full.info.train_size as f64 - 0.2).abs() < 0.01,
                "{val}"
            );
            // The test split is untouched by carving val out of train.
            assert!(d.test_x.equal(&full.test_x));
            // Every class is in val.
            let (_, vy) = d.split(crate::vocab::Split::Val).unwrap();
            assert_eq!(
                i64::try_from(vy.unique_dim(0, true, false, false).0.size()[0]).unwrap(),
                10
            );
            let dir = tempfile::tempdir().unwrap();
            save(dir.path(), &d).unwrap();
            let e = load(dir.path()).unwrap();
            assert!(e.val.unwrap().1.equal(vy));
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
