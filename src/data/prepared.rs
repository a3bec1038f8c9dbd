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

/// Materialises a dataset from its canonical parameters.
pub fn prepare(p: &DatasetParams, seed: u64) -> Result<Prepared> {
    let split_seed = crate::rng::derive(seed, &[0xDA7A]);
    let (train, test, classes) = match p.source.as_str() {
        "embedded:digits" => {
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
        "synthetic" => {
            let s = p.synthetic.clone().unwrap_or_default();
            let (tr, te) = super::synthetic::generate(&s, p.resolution, split_seed);
            (
                tr,
                te,
                (0..s.classes).map(|c| format!("class{c}")).collect(),
            )
        }
        other => anyhow::bail!("unknown dataset source {other}"),
    };
    let limit = |s: RawSplit, salt: u64| match p.limit {
        Some(l) if l < s.len() => s.select(&super::balanced_subset(
            &s.labels,
            l,
            crate::rng::derive(seed, &[0x11, salt]),
        )),
        _ => s,
    };
    let (train, test) = (limit(train, 0), limit(test, 1));
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
            limit: Some(50),
            test_fraction: Some(0.25),
            synthetic: None,
            source_hash: String::new(),
        };
        let d = prepare(&p, 0).unwrap();
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
