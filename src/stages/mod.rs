//! Stage kinds. Each is one file implementing [`StageKind`]: its kind name, a version bumped
//! whenever its semantics change, and where its code runs ([`Work`]): a stage that computes with
//! tensors implements [`TensorStage`] (only the worker's build has it, so the control plane
//! cannot call it), one that reads results implements [`ControlStage`]. Either writes outputs
//! into a staging directory the executor commits to the cache. Its canonical parameters (part of
//! its key) are its fields, serialised; [`rebuild`] makes a stage again from them, as a worker
//! does from the description the control plane sends.
pub mod analyse;
pub mod correlation;
pub mod cost;
pub mod evaluate;
pub mod import;
pub mod inputs;
pub mod load;
pub mod merge;
pub mod prepare;
pub mod report;
pub mod script;
pub mod train;

#[cfg(not(feature = "torch"))]
mod no_tensor;
#[cfg(not(feature = "torch"))]
pub use no_tensor::*;
#[cfg(feature = "torch")]
mod tensor;
#[cfg(feature = "torch")]
pub use tensor::*;

use crate::cache::Entry;
use crate::progress::StageProgress;
use crate::vocab::device::Slot;
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything a running stage may touch.
pub struct StageContext<'a> {
    /// The stage's id (fault points scoped to stages, messages).
    pub id: &'a str,
    /// Staging directory for outputs (committed atomically on success).
    pub out: &'a Path,
    /// Verified input entries by role (`data`, `model`, or a stage id for the report).
    pub inputs: &'a BTreeMap<String, Entry>,
    /// Where the control plane placed the stage (`StageContext::device` is its libtorch device).
    pub slot: Slot,
    /// Where long stages keep per-epoch checkpoints for resuming.
    pub checkpoints: PathBuf,
    pub progress: StageProgress,
    /// Remarks for the entry's provenance (`StageContext::note`).
    pub notes: std::sync::Mutex<Vec<String>>,
    /// The setting the result was computed under, where the stage knows better than the
    /// process (`StageContext::set_setting`).
    pub setting: std::sync::Mutex<Option<String>>,
}

impl StageContext<'_> {
    /// Records the setting the outputs were computed under, e.g. a training's resumed epochs ran
    /// under another thread count than this process's.
    pub fn set_setting(&self, setting: String) {
        *self.setting.lock().unwrap_or_else(|e| e.into_inner()) = Some(setting);
    }

    /// Records a remark in the entry's provenance (shown by `robarch explain`), e.g. that a
    /// training resumed under another setting.
    pub fn note(&self, remark: String) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(remark);
    }

    pub fn input(&self, role: &str) -> Result<&Entry> {
        self.inputs
            .get(role)
            .with_context(|| format!("stage input `{role}` is missing"))
    }
}

/// A stage kind: its name, a version bumped whenever its semantics change, and `run`, which
/// writes outputs into a staging directory the executor commits to the cache.
///
/// What the stage's key depends on is its serialised self: every field of a stage struct enters
/// the key, except a field marked `#[serde(skip)]` with a comment beginning "Not part of the key:"
/// that says why (a location, not content). Nobody writes key parameters by hand, so a field added
/// to a stage cannot be left out of its key by accident (`stage_structs_mark_every_field_left_out`).
pub trait StageKind: Serialize + Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    /// Whether the stage runs tensors on the compute device (and so takes a device slot).
    fn uses_device(&self) -> bool {
        false
    }
    /// Where its code runs: `in_worker(self)` for a stage that computes with tensors (it
    /// implements [`TensorStage`]), `Work::Here(self)` for one that reads results in the control
    /// plane (it implements [`ControlStage`]).
    fn work(&self) -> Work<'_>;
    /// What the stage reads that is not part of its key (a dataset's directory, an imported
    /// file) or holds outside it (a report's curve points), for [`rebuild`]; `null` where
    /// nothing.
    fn locations(&self) -> Value {
        Value::Null
    }
    /// For compute estimates: the images per split this stage will hold (`prepare`).
    fn images(&self) -> Option<crate::data::SplitSizes> {
        None
    }
    /// For compute estimates: the model this stage provides (`train`, `import`).
    fn model_cost(&self) -> Option<cost::ModelCost> {
        None
    }
    /// For compute estimates: this stage's FLOPs, given what its inputs provide; `None` where
    /// unknown, `Some(0.0)` where negligible (reading and writing results).
    fn flops(&self, _: &cost::CostInputs) -> Option<f64> {
        Some(0.0)
    }
}

/// Where a stage's code runs.
pub enum Work<'a> {
    /// Here, in the control plane: the stage reads results (the report, the correlation).
    Here(&'a dyn ControlStage),
    /// In a worker process, with tensors: the stage's tensor half, which only the worker's build
    /// has (the control plane's is an empty marker).
    Worker(TensorHalf<'a>),
}

/// A stage that reads results and computes in the control plane.
pub trait ControlStage {
    /// Produces the outputs; returns a small JSON summary stored in the entry's metadata.
    fn run(&self, cx: &StageContext) -> Result<Value>;
}

/// A stage as the planner and the executor see it; implemented for every [`StageKind`].
pub trait Stage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    /// Canonical parameters: every value that determines the output, defaults filled in.
    fn params(&self) -> Value;
    fn uses_device(&self) -> bool;
    fn work(&self) -> Work<'_>;
    /// Whether the stage runs in a worker process (it computes with tensors).
    fn in_worker(&self) -> bool {
        matches!(self.work(), Work::Worker(_))
    }
    fn locations(&self) -> Value;
    fn images(&self) -> Option<crate::data::SplitSizes>;
    fn model_cost(&self) -> Option<cost::ModelCost>;
    fn flops(&self, inputs: &cost::CostInputs) -> Option<f64>;
}

impl<T: StageKind> Stage for T {
    fn kind(&self) -> &'static str {
        StageKind::kind(self)
    }
    fn version(&self) -> u32 {
        StageKind::version(self)
    }
    fn params(&self) -> Value {
        serde_json::to_value(self).expect("stage parameters serialise")
    }
    fn uses_device(&self) -> bool {
        StageKind::uses_device(self)
    }
    fn work(&self) -> Work<'_> {
        StageKind::work(self)
    }
    fn locations(&self) -> Value {
        StageKind::locations(self)
    }
    fn images(&self) -> Option<crate::data::SplitSizes> {
        StageKind::images(self)
    }
    fn model_cost(&self) -> Option<cost::ModelCost> {
        StageKind::model_cost(self)
    }
    fn flops(&self, inputs: &cost::CostInputs) -> Option<f64> {
        StageKind::flops(self, inputs)
    }
}

pub use crate::cache::write_json;

/// A file a model entry names outside the cache (a TorchScript module, a checkpoint), found at
/// plan time: where it is now, and the file name and blake3 that go into the key (moving the file
/// re-runs nothing; new bytes re-run what reads it).
pub struct OutsideFile {
    pub path: PathBuf,
    pub name: String,
    pub blake3: String,
}

impl OutsideFile {
    /// Resolves `rel` against the pipeline's directory and hashes it; a missing file is a problem
    /// at `field` with `hint` (how to write one).
    pub fn pin(
        pipeline: &Path,
        rel: &str,
        field: &[&str],
        hint: &str,
        hashes: &mut crate::data::fingerprint::HashState,
    ) -> std::result::Result<Self, crate::vocab::Problem> {
        use crate::vocab::Problem;
        let path = pipeline.parent().unwrap_or(Path::new(".")).join(rel);
        if !path.is_file() {
            return Err(Problem::new(field, format!("no such file: {}", path.display())).hint(hint));
        }
        let blake3 = hashes
            .fingerprint(path.parent().unwrap_or(Path::new(".")), std::slice::from_ref(&path))
            .map_err(|e| Problem::new(field, format!("{e:#}")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self { path, name, blake3 })
    }
}

/// Makes a stage again from what its key holds (`kind`, its parameters) and its
/// [`StageKind::locations`]: the stage the control plane planned, as a worker (or a Slurm job,
/// which also runs the report and the correlation) runs it.
pub fn rebuild(kind: &str, params: &Value, locations: &Value) -> Result<Box<dyn Stage>> {
    let p = params.clone();
    let what = || format!("the parameters of a `{kind}` stage");
    Ok(match kind {
        "prepare" => {
            let mut s: prepare::Prepare = serde_json::from_value(p).with_context(what)?;
            s.root = serde_json::from_value(locations["root"].clone()).with_context(what)?;
            Box::new(s)
        }
        "import" => {
            let mut s: import::Import = serde_json::from_value(p).with_context(what)?;
            s.file = serde_json::from_value(locations["file"].clone()).with_context(what)?;
            s.name = serde_json::from_value(locations["name"].clone()).with_context(what)?;
            Box::new(s)
        }
        "script" => {
            let mut s: script::Script = serde_json::from_value(p).with_context(what)?;
            s.name = serde_json::from_value(locations["name"].clone()).with_context(what)?;
            Box::new(s)
        }
        "load" => {
            let mut s: load::Load = serde_json::from_value(p).with_context(what)?;
            s.file = serde_json::from_value(locations["file"].clone()).with_context(what)?;
            s.name = serde_json::from_value(locations["name"].clone()).with_context(what)?;
            Box::new(s)
        }
        "train" => Box::new(serde_json::from_value::<train::Train>(p).with_context(what)?),
        "evaluate" => Box::new(serde_json::from_value::<evaluate::Evaluate>(p).with_context(what)?),
        "merge" => Box::new(serde_json::from_value::<merge::Merge>(p).with_context(what)?),
        "correlation" => {
            Box::new(serde_json::from_value::<correlation::Correlation>(p).with_context(what)?)
        }
        "report" => {
            let mut s: report::Report = serde_json::from_value(p).with_context(what)?;
            s.restore_curves(locations).with_context(what)?;
            Box::new(s)
        }
        k => match crate::analysis::find(k) {
            Some(a) => Box::new(analyse::Analyse::new(a, p)),
            None => anyhow::bail!("`{k}` is no stage kind a worker runs"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::saved::Checkpoint;
    use crate::models::{ModelIo, ModelParams};

    /// A stage field leaves the key only when `#[serde(skip)]` says so, with its reason in the
    /// doc comment right above ("Not part of the key: …"); and no stage writes key parameters by
    /// hand (`Stage::params` is always the serialised struct).
    #[test]
    fn stage_structs_mark_every_field_left_out() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stages");
        let mut skipped = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let l = line.trim();
                let leaves_key = l.starts_with("#[serde(")
                    && (l.contains("(skip)")
                        || l.contains("(skip,")
                        || l.contains(" skip)")
                        || l.contains("skip_serializing)")
                        || l.contains("skip_serializing,"));
                if !leaves_key {
                    continue;
                }
                let doc: Vec<&str> = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| l.trim().starts_with("///"))
                    .copied()
                    .collect();
                let doc = doc.into_iter().rev().collect::<Vec<_>>().join(" ");
                assert!(
                    doc.contains("Not part of the key:"),
                    "{name}:{}: a field left out of the stage key needs a `/// … Not part of the key: <why>` comment",
                    i + 1
                );
                skipped.push(format!("{name}:{}", lines[i + 1].trim()));
            }
            if name != "mod.rs" {
                assert!(
                    !text.contains("fn params("),
                    "{name}: key parameters are the serialised stage struct; mark fields instead"
                );
            }
        }
        skipped.sort();
        assert_eq!(
            skipped,
            [
                "analyse.rs:pub analysis: &'static Entry,",
                "import.rs:pub file: PathBuf,",
                "import.rs:pub name: String,",
                "inputs.rs:pub curve: Option<CurvePoint>,",
                "load.rs:pub file: PathBuf,",
                "load.rs:pub name: String,",
                "prepare.rs:pub root: Option<PathBuf>,",
                "script.rs:pub name: String,"
            ]
        );
    }

    #[test]
    fn keys_hold_fields_and_leave_out_locations() {
        let import = |file: &str| import::Import {
            model: ModelParams {
                arch: "torchscript".into(),
                config: serde_json::json!({"file": "m.pt", "blake3": "ab"}),
                weights: None,
            },
            io: ModelIo {
                in_channels: 1,
                image_size: 8,
                num_classes: 10,
            },
            file: PathBuf::from(file),
            name: file.to_string(),
        };
        let p = Stage::params(&import("/a/m.pt"));
        assert_eq!(p, Stage::params(&import("/b/m.pt")));
        assert_eq!(
            p.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["model", "io"]
        );
        let eval = |checkpoint| evaluate::Evaluate {
            attack: crate::attacks::config::CLEAN,
            split: crate::vocab::Split::Test,
            limit: None,
            batch_size: 256,
            seed: 1,
            checkpoint,
            points: None,
        };
        // `last` (the default) and an unsharded range are absent from the key, as before the
        // settings existed.
        assert_eq!(
            Stage::params(&eval(Checkpoint::Last)).to_string(),
            r#"{"attack":{"type":"clean"},"split":"test","limit":null,"batch_size":256,"seed":1}"#
        );
        assert_eq!(
            Stage::params(&eval(Checkpoint::Best))["checkpoint"],
            serde_json::json!("best")
        );
        let shard = Stage::params(&eval(Checkpoint::Last).shard(100, Some(200)));
        assert_eq!(shard["points"], serde_json::json!([100, 200]));
        let last = Stage::params(&eval(Checkpoint::Last).shard(200, None));
        assert_eq!(last["points"], serde_json::json!([200, null]));
        assert_eq!(shard["limit"], serde_json::Value::Null);
    }
}
