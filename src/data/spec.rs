//! `datasets.<name>`: a dataset as the spec writes it (resolved by `data::resolve`).
use crate::vocab::Real;
use serde::Deserialize;

/// One entry of `datasets:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// `embedded:digits`, `synthetic`, `cifar10`, `imagenette`, `imagenette-160`, `imagenette-320`
    /// or `imagefolder`.
    pub source: String,
    /// Directory of a file-backed source; default `$ROBARCH_DATA/<official name>` (`datasets/`
    /// when unset). A relative path is relative to the pipeline file's directory, like every
    /// path a pipeline names (`spec::load` joins them).
    pub path: Option<String>,
    /// Side length images are resized to; default: the source's native size (224 for folders).
    pub resolution: Option<u32>,
    /// Folder sources: the test split is resized to `resolution / crop_pct` on its shorter side and
    /// centre-cropped (torchvision `Resize(256)` + `CenterCrop(224)` is 0.875, the default).
    pub crop_pct: Option<Real>,
    /// Keep at most this many images per split (class-balanced, seeded): `N` or
    /// `{train: N, val: V, test: M}`.
    pub limit: Option<super::Limit>,
    /// Fraction held out as the test split for sources without an official split.
    pub test_fraction: Option<Real>,
    /// Fraction of the training split held out as a `val` split (stratified, seeded).
    pub val_fraction: Option<Real>,
    /// Options of the `synthetic` source.
    pub synthetic: Option<super::synthetic::SyntheticSpec>,
}
