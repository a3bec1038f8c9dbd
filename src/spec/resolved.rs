//! The spec resolved once ("parse, don't validate"): [`super::resolve`] checks every entry and
//! keeps what it resolved, so planning builds stages from typed values and has no error path
//! that could leave a stage out of the DAG.
use super::{Checkpoint, Problem, Spec};
use crate::attacks::verdict::EvalAttack;
use crate::data;
use crate::models::{self, ModelIo, ModelParams};
use crate::train::resolve::TrainSettings;
use std::collections::BTreeMap;

/// Every entry of a spec that passed its checks, resolved.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub datasets: BTreeMap<String, data::Resolved>,
    pub models: BTreeMap<String, ModelParams>,
    /// The evaluation attacks, each preceded by its extra `curve` radii (its curve points).
    pub attacks: Vec<EvalAttack>,
    /// Per (model, training entry): the entry as it applies to that model (its `overrides`
    /// merged in), resolved.
    pub training: BTreeMap<(String, String), TrainSettings>,
    /// Each training entry as written (no override applied), resolved.
    pub entries: BTreeMap<String, TrainSettings>,
}

/// The data a model sees from a dataset.
pub fn io_of(d: &data::Resolved) -> ModelIo {
    ModelIo {
        in_channels: d.channels as i64,
        image_size: d.params.resolution as i64,
        num_classes: d.classes as i64,
    }
}

/// Longest name of a pipeline or an entry.
pub const MAX_NAME: usize = 100;

/// Whether `n` may be a path component: 1 to [`MAX_NAME`] letters, digits, `_`, `.` and `-`,
/// not starting with `.` (so never `.`, `..` or a hidden file), no separators or control
/// characters.
pub fn is_simple_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Names become parts of stage ids and file names (`reports/<name>/`, the manifest), so keep
/// them simple: nothing is computed for a pipeline with a name that could leave its directory.
pub fn check_names(s: &Spec, out: &mut Vec<Problem>) {
    let rule = format!(
        "names use 1 to {MAX_NAME} letters, digits, `_`, `.` and `-`, and do not start with `.`"
    );
    if !is_simple_name(&s.name) {
        out.push(
            Problem::new(
                &["name"],
                format!("`{}` is not a valid name: {rule}", s.name.escape_debug()),
            )
            .hint("e.g. `name: quickstart`"),
        );
    }
    let sections: [(&str, Vec<&String>); 4] = [
        ("datasets", s.datasets.keys().collect()),
        ("models", s.models.keys().collect()),
        ("training", s.training.keys().collect()),
        ("evaluation.attacks", s.evaluation.attacks.keys().collect()),
    ];
    for (section, names) in sections {
        for n in names {
            if !is_simple_name(n) {
                let mut path: Vec<&str> = section.split('.').collect();
                path.push(n);
                out.push(
                    Problem::new(
                        &path,
                        format!("`{}` is not a valid name: {rule}", n.escape_debug()),
                    )
                    .hint("rename the entry"),
                );
            }
        }
    }
}

/// What only a (dataset, model) pair can tell: the model fits the data (e.g. its patch size
/// divides the image); an imported model has one set of weights, so `checkpoint: best` does not
/// apply to it.
pub fn check_pairs(s: &Spec, r: &Resolved) -> Vec<Problem> {
    let mut out = Vec::new();
    for (mname, mp) in &r.models {
        let arch = models::find(&mp.arch).expect("resolved architectures exist");
        if !mp.trains() && s.evaluation.checkpoint == Checkpoint::Best
        {
            out.push(
                Problem::new(
                    &["evaluation", "checkpoint"],
                    format!("`best` does not apply to the imported model `{mname}`: it has one set of weights"),
                )
                .hint("use `checkpoint: last`, or put imported models in their own pipeline"),
            );
        }
        for (dname, d) in &r.datasets {
            if let Err(mut p) = (arch.fits)(&mp.config, &io_of(d)) {
                p.message = format!("does not fit dataset `{dname}`: {}", p.message);
                out.push(p.under(&["models", mname]));
            }
        }
    }
    out
}
