//! The prepared form of a dataset: uint8 NCHW images and int64 labels per split in one
//! safetensors file, plus `dataset.json` with shapes, class names and normalisation statistics.
use super::{DatasetParams, RawSplit};
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const TENSORS: &str = "data.safetensors";
pub const INFO: &str = "dataset.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub classes: Vec<String>,
    pub channels: usize,
    pub resolution: u32,
    pub train_size: usize,
    pub test_size: usize,
    /// Per-channel mean and std of the training pixels in [0,1]; the model's first layer.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

pub struct Prepared {
    pub train_x: Tensor,
    pub train_y: Tensor,
    pub test_x: Tensor,
    pub test_y: Tensor,
    pub info: DatasetInfo,
}

impl Prepared {
    pub fn split(&self, split: crate::spec::Split) -> (&Tensor, &Tensor) {
        match split {
            crate::spec::Split::Train => (&self.train_x, &self.train_y),
            crate::spec::Split::Test => (&self.test_x, &self.test_y),
        }
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

/// Indices of the class-balanced seeded subset when `limit` is below the split's size.
fn limited(labels: &[i64], limit: Option<usize>, seed: u64) -> Option<Vec<usize>> {
    match limit {
        Some(l) if l < labels.len() => Some(super::balanced_subset(labels, l, seed)),
        _ => None,
    }
}

/// Materialises a dataset from its canonical parameters; `root` is the directory of file-backed
/// sources.
pub fn prepare(p: &DatasetParams, root: Option<&Path>, seed: u64) -> Result<Prepared> {
    use super::SourceKind;
    let split_seed = crate::rng::derive(seed, &[0xDA7A]);
    let limit_seed = |salt: u64| crate::rng::derive(seed, &[0x11, salt]);
    let limit =
        |s: RawSplit, l: Option<usize>, salt: u64| match limited(&s.labels, l, limit_seed(salt)) {
            Some(idx) => s.select(&idx),
            None => s,
        };
    let root = || root.context("a file-backed dataset needs its directory");
    let kind = super::source_kind(&p.source)
        .with_context(|| format!("unknown dataset source {}", p.source))?;
    let (train, test, classes) = match kind {
        SourceKind::Digits => {
            let all = super::digits::load_all()?;
            let (tr, te) =
                super::stratified_split(&all.labels, p.test_fraction.unwrap_or(0.25), split_seed);
            (
                all.select(&tr),
                all.select(&te),
                (0..super::digits::CLASSES)
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>(),
            )
        }
        SourceKind::Synthetic => {
            let s = p.synthetic.clone().unwrap_or_default();
            let (tr, te) = super::synthetic::generate(&s, p.resolution, split_seed);
            (
                tr,
                te,
                (0..s.classes).map(|c| format!("class{c}")).collect(),
            )
        }
        SourceKind::Cifar10 => super::cifar10::load(root()?)?,
        SourceKind::Folder { imagenette } => {
            use super::image_folder::{self, FolderSplit};
            let layout = image_folder::discover(root()?)?;
            let classes = layout.train.classes.clone();
            let (train, test) = match layout.test {
                Some(t) => (layout.train, t),
                None => {
                    // No official held-out split: a stratified, seeded one from the single tree.
                    let all = layout.train;
                    let labels: Vec<i64> = all.items.iter().map(|(_, c)| *c as i64).collect();
                    let (tr, te) = super::stratified_split(
                        &labels,
                        p.test_fraction.unwrap_or(0.25),
                        split_seed,
                    );
                    let pick = |idx: &[usize]| FolderSplit {
                        classes: all.classes.clone(),
                        items: idx.iter().map(|&i| all.items[i].clone()).collect(),
                    };
                    (pick(&tr), pick(&te))
                }
            };
            // Subsets are drawn before decoding, so `limit` also bounds the decoding work.
            let subset = |s: FolderSplit, l: Option<usize>, salt: u64| {
                let labels: Vec<i64> = s.items.iter().map(|(_, c)| *c as i64).collect();
                match limited(&labels, l, limit_seed(salt)) {
                    Some(idx) => FolderSplit {
                        classes: s.classes.clone(),
                        items: idx.iter().map(|&i| s.items[i].clone()).collect(),
                    },
                    None => s,
                }
            };
            let (train, test) = (
                subset(train, p.train_limit, 0),
                subset(test, p.test_limit, 1),
            );
            let crop = p.crop_pct.unwrap_or(0.875);
            let names = if imagenette {
                image_folder::imagenette_names(&classes)
            } else {
                classes
            };
            (
                image_folder::load_split(&train, p.resolution, 1.0)?,
                image_folder::load_split(&test, p.resolution, crop)?,
                names,
            )
        }
    };
    let (train, test) = (limit(train, p.train_limit, 0), limit(test, p.test_limit, 1));
    ensure!(
        !train.is_empty() && !test.is_empty(),
        "dataset has an empty split"
    );
    let (train_x, train_y) = to_tensors(&train);
    let (test_x, test_y) = to_tensors(&test);
    let (train_x, test_x) = (
        resize(&train_x, p.resolution as i64),
        resize(&test_x, p.resolution as i64),
    );
    let f = train_x.to_kind(Kind::Double) / 255.0;
    let mean: Vec<f64> = Vec::try_from(f.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double))?;
    let std: Vec<f64> = Vec::try_from(f.std_correction([0i64, 2, 3].as_slice(), 0, false))?;
    let std = std.into_iter().map(|s| s.max(1e-3)).collect();
    let info = DatasetInfo {
        classes,
        channels: train.channels,
        resolution: p.resolution,
        train_size: train.len(),
        test_size: test.len(),
        mean,
        std,
    };
    Ok(Prepared {
        train_x,
        train_y,
        test_x,
        test_y,
        info,
    })
}

pub fn save(dir: &Path, d: &Prepared) -> Result<()> {
    Tensor::write_safetensors(
        &[
            ("train_x", &d.train_x),
            ("train_y", &d.train_y),
            ("test_x", &d.test_x),
            ("test_y", &d.test_y),
        ],
        dir.join(TENSORS),
    )?;
    std::fs::write(dir.join(INFO), serde_json::to_vec_pretty(&d.info)?)?;
    Ok(())
}

pub fn load(dir: &Path) -> Result<Prepared> {
    let info: DatasetInfo =
        serde_json::from_slice(&std::fs::read(dir.join(INFO))?).context("reading dataset.json")?;
    let mut t: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(TENSORS))?
        .into_iter()
        .collect();
    let mut take = |n: &str| {
        t.remove(n)
            .with_context(|| format!("prepared data lacks {n}"))
    };
    Ok(Prepared {
        train_x: take("train_x")?.to_device(Device::Cpu),
        train_y: take("train_y")?,
        test_x: take("test_x")?,
        test_y: take("test_y")?,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_prepare_resizes_limits_and_roundtrips() {
        let p = DatasetParams {
            source: "embedded:digits".into(),
            resolution: 16,
            train_limit: Some(50),
            test_limit: Some(50),
            test_fraction: Some(0.25),
            crop_pct: None,
            synthetic: None,
            source_hash: String::new(),
        };
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
    }
}
