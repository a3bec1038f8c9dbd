//! Datasets: sources (embedded real digits, procedural synthetic), resolution to canonical params,
//! and the prepared on-disk form (uint8 NCHW tensors in safetensors) every later stage reads.
pub mod digits;
pub mod prepared;
pub mod synthetic;

use crate::spec::{did_you_mean, DatasetSpec, Problem};
use serde::{Deserialize, Serialize};

/// Source names accepted in `datasets.<name>.source`.
pub const SOURCES: &[&str] = &["embedded:digits", "synthetic"];

/// Canonical dataset parameters: everything that determines the prepared tensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetParams {
    pub source: String,
    pub resolution: u32,
    pub limit: Option<usize>,
    pub test_fraction: Option<f64>,
    pub synthetic: Option<synthetic::SyntheticSpec>,
    /// blake3 of the source bytes, so changed source data re-prepares.
    pub source_hash: String,
}

/// Checks a dataset entry and fills its defaults.
pub fn resolve(name: &str, ds: &DatasetSpec) -> Result<DatasetParams, Vec<Problem>> {
    let at = |f: &str| vec!["datasets".to_string(), name.to_string(), f.to_string()];
    let mut problems = Vec::new();
    let mk = |path: Vec<String>, msg: String, hint: Option<String>| Problem {
        path,
        message: msg,
        hint,
    };
    if !SOURCES.contains(&ds.source.as_str()) {
        let hint = match did_you_mean(&ds.source, SOURCES.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("known sources: {}", SOURCES.join(", ")),
        };
        return Err(vec![mk(
            at("source"),
            format!("dataset source `{}` not found", ds.source),
            Some(hint),
        )]);
    }
    if let Some(r) = ds.resolution {
        if !(4..=1024).contains(&r) {
            problems.push(mk(
                at("resolution"),
                format!("{r} is out of range"),
                Some("use 4..=1024 pixels".into()),
            ));
        }
    }
    if ds.limit == Some(0) {
        problems.push(mk(at("limit"), "must be at least 1".into(), None));
    }
    let synthetic = ds.source == "synthetic";
    if ds.synthetic.is_some() && !synthetic {
        problems.push(mk(
            at("synthetic"),
            "only applies to `source: synthetic`".into(),
            Some("remove it".into()),
        ));
    }
    if synthetic && ds.test_fraction.is_some() {
        problems.push(mk(
            at("test_fraction"),
            "does not apply to `source: synthetic`".into(),
            Some("set synthetic.test_size".into()),
        ));
    }
    let test_fraction = if synthetic {
        None
    } else {
        Some(ds.test_fraction.map(|r| r.get()).unwrap_or(0.25))
    };
    if let Some(f) = test_fraction {
        if !(f > 0.0 && f < 1.0) {
            problems.push(mk(
                at("test_fraction"),
                format!("{f} is not strictly between 0 and 1"),
                None,
            ));
        }
    }
    let syn = synthetic.then(|| ds.synthetic.clone().unwrap_or_default());
    if let Some(s) = &syn {
        if let Err((field, msg)) = s.check() {
            problems.push(mk(
                vec![
                    "datasets".into(),
                    name.into(),
                    "synthetic".into(),
                    field.into(),
                ],
                msg,
                None,
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (native, source_hash) = match ds.source.as_str() {
        "embedded:digits" => (digits::NATIVE_RESOLUTION, digits::source_hash()),
        _ => (
            synthetic::NATIVE_RESOLUTION,
            synthetic::GENERATOR_VERSION.to_string(),
        ),
    };
    Ok(DatasetParams {
        source: ds.source.clone(),
        resolution: ds.resolution.unwrap_or(native),
        limit: ds.limit,
        test_fraction,
        synthetic: syn,
        source_hash,
    })
}

/// Images and labels of one split before storage: uint8 pixels, NCHW.
pub struct RawSplit {
    pub images: Vec<u8>,
    pub labels: Vec<i64>,
    pub channels: usize,
    pub size: usize,
}

impl RawSplit {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    fn image(&self, i: usize) -> &[u8] {
        let n = self.channels * self.size * self.size;
        &self.images[i * n..(i + 1) * n]
    }
    /// The subset at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> RawSplit {
        let mut images = Vec::with_capacity(indices.len() * self.channels * self.size * self.size);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        RawSplit {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            size: self.size,
        }
    }
}

/// Indices of each class, each list in a seeded random order.
fn shuffled_by_class(labels: &[i64], seed: u64) -> std::collections::BTreeMap<i64, Vec<usize>> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut by_class: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    for v in by_class.values_mut() {
        v.shuffle(&mut rng);
    }
    by_class
}

/// Indices of a class-balanced, seeded subset of at most `limit` items: classes take turns, each
/// contributing its items in a seeded random order.
pub fn balanced_subset(labels: &[i64], limit: usize, seed: u64) -> Vec<usize> {
    let by_class = shuffled_by_class(labels, seed);
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < limit.min(labels.len()) {
        for v in by_class.values() {
            if let Some(&i) = v.get(round) {
                if out.len() < limit {
                    out.push(i);
                }
            }
        }
        round += 1;
    }
    out.sort_unstable();
    out
}

/// Splits `labels` into stratified (train, test) index lists with a seeded shuffle per class.
pub fn stratified_split(labels: &[i64], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let by_class = shuffled_by_class(labels, seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for v in by_class.values() {
        let n_test = ((v.len() as f64) * test_fraction).round() as usize;
        test.extend_from_slice(&v[..n_test]);
        train.extend_from_slice(&v[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_subset_is_balanced_seeded_and_bounded() {
        let labels: Vec<i64> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let s = balanced_subset(&labels, 20, 7);
        assert_eq!(s.len(), 20);
        assert_eq!(s.iter().filter(|&&i| labels[i] == 1).count(), 10);
        assert_eq!(s, balanced_subset(&labels, 20, 7));
        assert_ne!(s, balanced_subset(&labels, 20, 8));
        assert_eq!(balanced_subset(&labels, 1000, 1).len(), 100);
    }

    #[test]
    fn stratified_split_keeps_class_proportions_and_is_disjoint() {
        let labels: Vec<i64> = (0..200).map(|i| i % 4).collect();
        let (tr, te) = stratified_split(&labels, 0.25, 3);
        assert_eq!(te.len(), 52); // round(50 * 0.25) = 13 per class
        assert_eq!(tr.len() + te.len(), 200);
        assert!(tr.iter().all(|i| !te.contains(i)));
        for c in 0..4 {
            assert_eq!(te.iter().filter(|&&i| labels[i] == c).count(), 13);
        }
    }
}
