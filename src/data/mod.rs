//! Datasets: sources (embedded real digits, procedural synthetic, CIFAR-10, ImageNette, any
//! ImageFolder), resolution of a spec entry to canonical params, source fingerprints, downloads,
//! and the prepared on-disk form (uint8 NCHW tensors in safetensors) every later stage reads.
pub mod cifar10;
pub mod digits;
pub mod fetch;
pub mod fingerprint;
pub mod image_folder;
pub mod loader;
pub mod prepared;
pub mod spec;
pub mod synthetic;

use crate::vocab::{typo_hint, Problem};
use serde::{Deserialize, Serialize};
use spec::DatasetSpec;
use std::path::PathBuf;

/// Source names accepted in `datasets.<name>.source`.
pub const SOURCES: &[&str] = &[
    "embedded:digits",
    "synthetic",
    "cifar10",
    "imagenette",
    "imagenette-160",
    "imagenette-320",
    "imagefolder",
];

/// How a source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Digits,
    Synthetic,
    Cifar10,
    /// An ImageFolder tree; `imagenette` names classes after their WordNet ids.
    Folder {
        imagenette: bool,
    },
}

pub fn source_kind(source: &str) -> Option<SourceKind> {
    Some(match source {
        "embedded:digits" => SourceKind::Digits,
        "synthetic" => SourceKind::Synthetic,
        "cifar10" => SourceKind::Cifar10,
        "imagefolder" => SourceKind::Folder { imagenette: false },
        s if s.starts_with("imagenette") && fetch::find(s).is_some() => {
            SourceKind::Folder { imagenette: true }
        }
        _ => return None,
    })
}

/// `limit: N` (every split) or `limit: {train: N, val: V, test: M}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(
    untagged,
    expecting = "`limit:` takes a whole number ≥ 0 or `{train: N, val: V, test: M}`"
)]
pub enum Limit {
    All(usize),
    PerSplit {
        train: Option<usize>,
        val: Option<usize>,
        test: Option<usize>,
    },
}

/// Canonical dataset parameters: everything that determines the prepared tensors. The source's
/// location is deliberately absent (renaming a directory must not re-prepare); its content is in
/// `source_hash`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetParams {
    pub source: String,
    pub resolution: u32,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub test_fraction: Option<f64>,
    /// Fraction of the training split held out as `val` (absent: no val split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_limit: Option<usize>,
    pub crop_pct: Option<f64>,
    /// Folder sources: an image already `resolution`² is stored as it is (no resize, no crop).
    /// In keys only where set (folder sources), so the other sources keep theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_native: Option<bool>,
    pub synthetic: Option<synthetic::SyntheticSpec>,
    /// blake3 of the source bytes (embedded data, generator version, or file fingerprint), so
    /// changed source data re-prepares.
    pub source_hash: String,
}

/// Images per split a dataset will hold once prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SplitSizes {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

impl SplitSizes {
    pub fn of(&self, split: crate::vocab::Split) -> usize {
        match split {
            crate::vocab::Split::Train => self.train,
            crate::vocab::Split::Val => self.val,
            crate::vocab::Split::Test => self.test,
        }
    }
}

/// The split sizes `p` will prepare, known before its files are read (for compute estimates):
/// the sources' official sizes (CIFAR-10 50,000/10,000; ImageNette 9,469/3,925; 1,797 digits),
/// the hold-out fractions and the limits, as `prepare` applies them (to within the per-class
/// rounding of the stratified hold-outs). `None` for `imagefolder`, whose size is its files'.
pub fn expected_sizes(p: &DatasetParams) -> Option<SplitSizes> {
    let held_out = |n: usize, f: f64| {
        let t = (n as f64 * f).round() as usize;
        (n - t, t)
    };
    let (train, test) = match p.source.as_str() {
        "embedded:digits" => held_out(1797, p.test_fraction.unwrap_or(0.25)),
        "cifar10" => (50_000, 10_000),
        "imagenette" | "imagenette-160" | "imagenette-320" => (9_469, 3_925),
        "synthetic" => {
            let s = p.synthetic.as_ref()?;
            (s.train_size, s.test_size)
        }
        _ => return None,
    };
    let (train, val) = match p.val_fraction {
        Some(f) => held_out(train, f),
        None => (train, 0),
    };
    let cap = |n: usize, l: Option<usize>| l.map_or(n, |l| n.min(l));
    Some(SplitSizes {
        train: cap(train, p.train_limit),
        val: cap(val, p.val_limit),
        test: cap(test, p.test_limit),
    })
}

/// A resolved dataset entry: canonical params plus, for file sources, where the files are.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub params: DatasetParams,
    pub root: Option<PathBuf>,
    /// The source files under `root` (what the fingerprint covers), listed once by `resolve`.
    pub files: Vec<PathBuf>,
    /// Image channels and number of classes the prepared data will have (the models' I/O).
    pub channels: usize,
    pub classes: usize,
    /// A downloadable dataset whose directory is not there yet, located at its field with what to
    /// run to get it. The plan can still be shown (its classes are known without the files), not
    /// run.
    pub absent: Option<Problem>,
}

/// Classes of the downloadable datasets, known without their files (CIFAR-10's ten; ImageNette's
/// ten synsets), so a plan can be shown before `robarch data fetch`.
const FETCHABLE_CLASSES: usize = 10;

/// The directory a file-backed source reads: `path:` or the default under [`fetch::data_root`].
fn source_root(ds: &DatasetSpec) -> Option<PathBuf> {
    if let Some(p) = &ds.path {
        return Some(PathBuf::from(p));
    }
    fetch::find(&ds.source).map(|a| fetch::data_root().join(a.dir))
}

/// Checks a dataset entry and fills its defaults (cheap: lists files but hashes nothing; the
/// planner fills `source_hash` of file sources with [`fingerprint_source`]).
// Long because it is the dataset section's checks in the order the docs list them (source, path,
// resolution, limits, splits, augmentation of file sources), each a few lines with its located
// problem; they share the half-resolved entry.
pub fn resolve(name: &str, ds: &DatasetSpec) -> Result<Resolved, Vec<Problem>> {
    let at = |f: &str| vec!["datasets".to_string(), name.to_string(), f.to_string()];
    let mut problems = Vec::new();
    let mk = |path: Vec<String>, msg: String, hint: Option<String>| Problem {
        path,
        message: msg,
        hint,
    };
    let Some(kind) = source_kind(&ds.source) else {
        let hint = typo_hint(&ds.source, SOURCES.iter().copied(), || {
            format!("known sources: {}", SOURCES.join(", "))
        });
        return Err(vec![mk(
            at("source"),
            format!("dataset source `{}` not found", ds.source),
            Some(hint),
        )]);
    };
    let files = matches!(kind, SourceKind::Cifar10 | SourceKind::Folder { .. });
    let folder = matches!(kind, SourceKind::Folder { .. });
    if let Some(r) = ds.resolution {
        if !(4..=1024).contains(&r) {
            problems.push(mk(
                at("resolution"),
                format!("{r} is out of range"),
                Some("use 4..=1024 pixels".into()),
            ));
        }
    }
    let (train_limit, val_limit, test_limit) = match ds.limit {
        None => (None, None, None),
        Some(Limit::All(n)) => (Some(n), Some(n), Some(n)),
        Some(Limit::PerSplit { train, val, test }) => (train, val, test),
    };
    let val_fraction = ds.val_fraction.map(|r| r.get());
    if let Some(f) = val_fraction {
        if !(f > 0.0 && f < 1.0) {
            problems.push(mk(
                at("val_fraction"),
                format!("{f} is not strictly between 0 and 1"),
                None,
            ));
        }
    }
    let val_limit = val_fraction.and(val_limit);
    if [train_limit, val_limit, test_limit].contains(&Some(0)) {
        problems.push(mk(at("limit"), "must be at least 1".into(), None));
    }
    if ds.path.is_some() && !files {
        problems.push(mk(
            at("path"),
            format!("source `{}` reads no files", ds.source),
            Some("remove `path`".into()),
        ));
    }
    if kind == (SourceKind::Folder { imagenette: false }) && ds.path.is_none() {
        problems.push(mk(
            at("source"),
            "`imagefolder` needs a `path`".into(),
            Some("add `path: <dir with train/ and val/ (or class dirs)>`".into()),
        ));
    }
    if ds.crop_pct.is_some() && !folder {
        problems.push(mk(
            at("crop_pct"),
            "only applies to image-folder sources".into(),
            Some("remove it".into()),
        ));
    }
    let crop_pct = folder.then(|| ds.crop_pct.map(|r| r.get()).unwrap_or(0.875));
    if let Some(c) = crop_pct {
        if !(c > 0.0 && c <= 1.0) {
            problems.push(mk(at("crop_pct"), format!("{c} is not in (0, 1]"), None));
        }
    }
    if ds.synthetic.is_some() && kind != SourceKind::Synthetic {
        problems.push(mk(
            at("synthetic"),
            "only applies to `source: synthetic`".into(),
            Some("remove it".into()),
        ));
    }
    let root = if files { source_root(ds) } else { None };
    // Layout problems are reported against `path` when given, else against `source`.
    let root_field = if ds.path.is_some() { "path" } else { "source" };
    // Says which base a relative `path:` was read against.
    let base = if ds.path.is_some() {
        "; `path:` is relative to the pipeline file's directory"
    } else {
        ""
    };
    let fetch_hint = |source: &str| {
        match fetch::find(source) {
        Some(_) => format!(
            "run `robarch data fetch {source}` (downloads into $ROBARCH_DATA or datasets/), or set `path:` to your copy{base}"
        ),
        None => format!("set `path:` to a directory with train/<class>/* and val/<class>/* (or <class>/*){base}"),
    }
    };
    let mut has_official_test = matches!(kind, SourceKind::Cifar10);
    let mut folder_classes = 0;
    let mut source_files = Vec::new();
    // A downloadable dataset not fetched yet to its default place: planned (status, dag, dry
    // runs), never run. An explicit `path:` that is not there stays an error (a typo, likelier).
    let fetchable = fetch::find(&ds.source).is_some() && ds.path.is_none();
    let absent = match &root {
        Some(r) if fetchable && !r.exists() => Some(mk(
            at(root_field),
            format!("{} is not there yet", r.display()),
            Some(fetch_hint(&ds.source)),
        )),
        _ => None,
    };
    if absent.is_some() {
        has_official_test = true;
        folder_classes = FETCHABLE_CLASSES;
    }
    match (kind, &root) {
        _ if absent.is_some() => {}
        (SourceKind::Cifar10, Some(r)) => match cifar10::check_layout(r) {
            Ok(()) => source_files = cifar10::files(r),
            Err(e) => problems.push(mk(at(root_field), e, Some(fetch_hint(&ds.source)))),
        },
        (SourceKind::Folder { .. }, Some(r)) if problems.is_empty() => {
            match image_folder::discover(r) {
                Ok(l) => {
                    has_official_test = l.test.is_some();
                    folder_classes = l.train.classes.len();
                    source_files = image_folder::files(&l);
                }
                Err(e) => problems.push(mk(
                    at(root_field),
                    format!("{e:#}"),
                    Some(fetch_hint(&ds.source)),
                )),
            }
        }
        _ => {}
    }
    let needs_fraction = kind == SourceKind::Digits || (folder && !has_official_test);
    if ds.test_fraction.is_some() && !needs_fraction {
        let why = if kind == SourceKind::Synthetic {
            (
                "does not apply to `source: synthetic`",
                "set synthetic.test_size",
            )
        } else {
            ("this source has an official test split", "remove it")
        };
        problems.push(mk(at("test_fraction"), why.0.into(), Some(why.1.into())));
    }
    let test_fraction = needs_fraction.then(|| ds.test_fraction.map(|r| r.get()).unwrap_or(0.25));
    if let Some(f) = test_fraction {
        if !(f > 0.0 && f < 1.0) {
            problems.push(mk(
                at("test_fraction"),
                format!("{f} is not strictly between 0 and 1"),
                None,
            ));
        }
    }
    let syn = (kind == SourceKind::Synthetic).then(|| ds.synthetic.clone().unwrap_or_default());
    if let Some(s) = &syn {
        if let Err(p) = s.check() {
            problems.push(p.under(&["datasets", name, "synthetic"]));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (native, source_hash, channels, classes) = match kind {
        SourceKind::Digits => (
            digits::NATIVE_RESOLUTION,
            digits::source_hash(),
            1,
            digits::CLASSES,
        ),
        SourceKind::Synthetic => {
            let s = syn.as_ref().expect("synthetic options");
            (
                synthetic::NATIVE_RESOLUTION,
                synthetic::GENERATOR_VERSION.to_string(),
                s.channels,
                s.classes,
            )
        }
        SourceKind::Cifar10 => (cifar10::NATIVE_RESOLUTION, String::new(), 3, 10),
        SourceKind::Folder { .. } => (224, String::new(), 3, folder_classes),
    };
    Ok(Resolved {
        params: DatasetParams {
            source: ds.source.clone(),
            resolution: ds.resolution.unwrap_or(native),
            train_limit,
            test_limit,
            test_fraction,
            val_fraction,
            val_limit,
            crop_pct,
            keep_native: folder.then_some(true),
            synthetic: syn,
            source_hash,
        },
        root,
        files: source_files,
        channels: channels as usize,
        classes: classes as usize,
        absent,
    })
}

/// Fills `source_hash` of a file-backed dataset with the fingerprint of its files' contents.
pub fn fingerprint_source(
    r: &mut Resolved,
    state: &mut fingerprint::HashState,
) -> anyhow::Result<()> {
    let Some(root) = &r.root else {
        return Ok(());
    };
    if r.absent.is_some() {
        // No files to hash: the keys that follow are placeholders no entry can have.
        r.params.source_hash = "absent".into();
        return Ok(());
    }
    r.params.source_hash = state.fingerprint(root, &r.files)?;
    Ok(())
}

/// Images and labels of one split before storage: uint8 pixels, NCHW.
#[derive(Debug)]
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
