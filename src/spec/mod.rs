//! The YAML experiment spec: typed structs (serde, `deny_unknown_fields`), loading with
//! file:line:column errors, and semantic validation with did-you-mean hints.
//!
//! `docs/spec.md` documents every field; keep the two in step.
pub mod evaluation;
pub mod executor;
pub mod locate;
pub mod recipe;
pub mod resolved;
pub mod syntax;
pub use crate::analysis::spec as analysis;
pub use crate::analysis::spec::AnalysisSpec;
pub use evaluation::{EvaluationSpec, Only};
pub use resolved::Resolved;

// The YAML-facing structs each domain owns, and the shared vocabulary, composed here.
pub use crate::attacks::spec::AttackSpec;
pub use crate::data::spec::DatasetSpec;
pub use crate::models::spec::ModelSpec;
pub use crate::report::spec::{Format, ReportSpec, TableKind};
pub use crate::train::spec::{
    default_monitor_n, ModelMode, MonitorSpec, OptimizerName, OptimizerSpec, ScheduleName,
    ScheduleSpec, TrainMethod, TrainingSpec,
};
pub use crate::vocab::{did_you_mean, real, typo_hint, Norm, Problem, Real, Split};

use crate::vocab::type_hint;
use crate::{data, models, train};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Names the pipeline; reports go to `reports/<name>/`.
    pub name: String,
    /// Base seed for data splits, initialisation, shuffling and attack restarts.
    #[serde(default)]
    pub seed: u64,
    /// Training seeds to repeat every model's training with: each seed is its own chain of
    /// stages (train → evaluations → analyses) with its own keys and ids (`…/seed-N`); tables show
    /// mean ± std over them. `seed` still draws the data split and the correlation's bootstrap.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// `default`, or `portable`: CPU results bit-identical across x86-64 CPUs, slower (enters
    /// no key; recorded in each entry's provenance).
    #[serde(default)]
    pub numerics: crate::vocab::Numerics,
    pub datasets: BTreeMap<String, DatasetSpec>,
    pub models: BTreeMap<String, ModelSpec>,
    /// Needed unless every model is an imported TorchScript model.
    #[serde(default)]
    pub training: BTreeMap<String, TrainingSpec>,
    #[serde(default)]
    pub evaluation: EvaluationSpec,
    /// Analyses: `sparsity` and `bounds` per trained model, `correlation` across them.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    #[serde(default)]
    pub report: ReportSpec,
    /// Where stages run: this machine or Slurm jobs (enters no key).
    #[serde(default)]
    pub executor: executor::ExecutorSpec,
    /// Each `training` entry as YAML after recipe expansion (for per-model `overrides`).
    #[serde(skip)]
    pub training_raw: BTreeMap<String, serde_yaml::Value>,
    /// The names of `evaluation.attacks` in the order the file lists them (the map above is
    /// sorted): the report's columns follow it.
    #[serde(skip)]
    pub attack_order: Vec<String>,
}

fn default_device() -> String {
    "auto".into()
}

pub use crate::models::saved::Checkpoint;

/// Every problem of a spec file, formatted `file:line:col: field: message (hint)`.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub lines: Vec<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let n = self.lines.len();
        writeln!(
            f,
            "{} has {} problem{}:",
            self.file.display(),
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for l in &self.lines {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// A spec together with where it came from, for error messages and the run manifest.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub path: PathBuf,
    pub source: String,
    /// The spec resolved: what planning reads.
    pub resolved: Resolved,
}

/// `seeds:`: at least one, each once.
fn check_seeds(seeds: Option<&[u64]>) -> Vec<Problem> {
    let Some(seeds) = seeds else { return vec![] };
    if seeds.is_empty() {
        return vec![Problem::new(&["seeds"], "is empty")
            .hint("list the training seeds, e.g. `seeds: [0, 1]`, or remove `seeds:`")];
    }
    let mut seen = std::collections::BTreeSet::new();
    seeds
        .iter()
        .filter(|s| !seen.insert(**s))
        .map(|s| {
            Problem::new(&["seeds"], format!("lists seed {s} twice"))
                .hint("each seed is one repeat of the study; list it once")
        })
        .collect()
}

impl Spec {
    /// The training seeds of the chains: each of `seeds:`, or one chain with no seed label (its
    /// stages seeded by `seed`, ids and keys as without repeats).
    pub fn chains(&self) -> Vec<Option<u64>> {
        match &self.seeds {
            Some(v) => v.iter().copied().map(Some).collect(),
            None => vec![None],
        }
    }
}

/// Reads, parses and validates a pipeline file.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read pipeline file {}: {e} (check the path; pipelines live in pipelines/)",
            path.display()
        )
    })?;
    load_str(path, source)
}

/// [`load`] of a pipeline's text, `path` naming it in errors.
pub fn load_str(path: &Path, source: String) -> anyhow::Result<Loaded> {
    let mut spec = parse(path, &source)?;
    // One rule for every path a pipeline names: relative to the pipeline file's directory (the
    // models' `file` is joined where the import stage reads it).
    if let Some(base) = path.parent().filter(|b| !b.as_os_str().is_empty()) {
        for ds in spec.datasets.values_mut() {
            if let Some(p) = ds.path.as_mut().filter(|p| Path::new(p.as_str()).is_relative()) {
                *p = base.join(&*p).to_string_lossy().into_owned();
            }
        }
    }
    let resolved = resolve(&spec).map_err(|problems| located(path, &source, &problems))?;
    Ok(Loaded {
        spec,
        path: path.to_path_buf(),
        source,
        resolved,
    })
}

/// Parses YAML into a [`Spec`], turning serde errors into located, hinted messages. Training
/// entries naming a `recipe` are expanded first (see [`recipe`]).
pub fn parse(path: &Path, source: &str) -> Result<Spec, SpecError> {
    let error = |msg: String, loc: String, at: &[String]| {
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        let hint = syntax::misplaced_hint(&msg, at)
            .or_else(|| unknown_name_hint(&msg))
            .or_else(|| type_hint(&msg))
            .or_else(|| missing_hint(&msg))
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        SpecError {
            file: path.to_path_buf(),
            lines: vec![format!("{}{loc}: {msg}{hint}", path.display())],
        }
    };
    let from_str = |e: serde_yaml::Error| {
        let loc = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        error(e.to_string(), loc, &[])
    };
    // Not YAML at all: the line with a caret under the column, and the likely cause.
    let syntax_error = |e: serde_yaml::Error| {
        let Some(l) = e.location() else {
            return from_str(e);
        };
        let (line, col) = (l.line(), l.column());
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        let mut located = match syntax::cause(source, line, col, msg) {
            Some(cause) => SpecError {
                file: path.to_path_buf(),
                lines: vec![format!("{}:{line}:{col}: {msg} ({cause})", path.display())],
            },
            // YAML, but a value no field takes (a number beyond 64 bits): serde's hints.
            None => from_str(e),
        };
        if let (Some(first), Some(x)) = (located.lines.first_mut(), syntax::excerpt(source, line, col)) {
            first.push('\n');
            first.push_str(&x);
        }
        located
    };
    let mut root: serde_yaml::Value = serde_yaml::from_str(source).map_err(syntax_error)?;
    if root.is_null() {
        return Err(SpecError {
            file: path.to_path_buf(),
            lines: vec![format!(
                "{}: the file is empty: a pipeline needs at least `name:`, `datasets:`, `models:` \
                 and `training:` (pipelines/quickstart.yaml is a complete example)",
                path.display()
            )],
        });
    }
    let expanded = recipe::expand(&mut root).map_err(|p| located(path, source, &p))?;
    let mut spec: Spec = if expanded {
        // No positions in a merged value: serde_path_to_error names the field path, which we
        // locate in the source.
        serde_path_to_error::deserialize(root.clone()).map_err(|e| {
            let parts: Vec<String> = e
                .path()
                .iter()
                .map(|s| s.to_string())
                .filter(|s| s != "?")
                .collect();
            let loc = locate::locate(source, &parts)
                .map(|p| format!(":{}:{}", p.line, p.col))
                .unwrap_or_default();
            let msg = e.inner().to_string();
            let msg = if parts.is_empty() {
                msg
            } else {
                format!("{}: {msg}", parts.join("."))
            };
            error(msg, loc, &parts)
        })?
    } else {
        serde_yaml::from_str(source).map_err(from_str)?
    };
    if let Some(a) = root
        .get("evaluation")
        .and_then(|e| e.get("attacks"))
        .and_then(|a| a.as_mapping())
    {
        spec.attack_order = a.keys().filter_map(|k| k.as_str().map(String::from)).collect();
    }
    if let Some(t) = root.get("training").and_then(|t| t.as_mapping()) {
        for (k, v) in t {
            if let Some(k) = k.as_str() {
                spec.training_raw.insert(k.to_string(), v.clone());
            }
        }
    }
    Ok(spec)
}

impl Spec {
    /// Training entry `name` as it applies to model `model` (architecture kind `kind`): the entry
    /// with its matching `overrides` merged in.
    pub fn training_for(
        &self,
        name: &str,
        model: &str,
        kind: models::ArchKind,
    ) -> Result<TrainingSpec, Problem> {
        let t = &self.training[name];
        let raw = self.training_raw.get(name);
        let applies = t.overrides.contains_key(model) || t.overrides.contains_key(kind.as_str());
        let (Some(raw), true) = (raw, applies) else {
            return Ok(t.clone());
        };
        let (v, applied) = recipe::specialise(raw, model, kind.as_str());
        serde_yaml::from_value(v).map_err(|e| {
            let key = applied.last().cloned().unwrap_or_default();
            Problem::new(
                &["training", name, "overrides", key.as_str()],
                format!("for model `{model}`: {e}"),
            )
        })
    }
}


/// For serde's "missing field `x`": add it.
fn missing_hint(msg: &str) -> Option<String> {
    let field = msg.strip_prefix("missing field `")?.split('`').next()?;
    Some(format!("add `{field}:`; docs/spec.md describes it"))
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (and variants), suggests the closest.
fn unknown_name_hint(msg: &str) -> Option<String> {
    let start = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| msg.find(p).map(|i| i + p.len()))?;
    // name ` , expected one of ` cand1 ` , ` cand2 ` ...
    let parts: Vec<&str> = msg[start..].split('`').collect();
    let candidates = parts.iter().skip(2).step_by(2).copied();
    did_you_mean(parts[0], candidates).map(|c| format!("did you mean `{c}`?"))
}

/// A field path as `a.b.c`, with a segment that is not a plain name in backticks and escaped
/// (`datasets.\`..\``), so that odd names cannot blur the path or the terminal.
fn render_path(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if resolved::is_simple_name(s) || s.parse::<usize>().is_ok() {
                s.clone()
            } else {
                format!("`{}`", s.escape_debug())
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Formats problems with file:line:column.
pub fn located(path: &Path, source: &str, problems: &[Problem]) -> SpecError {
    let lines = problems
        .iter()
        .map(|p| {
            let pos = locate::locate(source, &p.path)
                .map(|p| format!(":{}:{}", p.line, p.col))
                .unwrap_or_default();
            // A field known elsewhere (`epochs` under a model): where it belongs.
            let misplaced = match p.path.split_last() {
                Some((field, above)) if p.message.starts_with("unknown field") => {
                    syntax::misplaced(field, above)
                }
                _ => None,
            };
            let hint = match (&p.hint, misplaced) {
                (Some(h), Some(m)) => format!(" ({h}; {m})"),
                (Some(h), None) => format!(" ({h})"),
                (None, Some(m)) => format!(" ({m})"),
                (None, None) => String::new(),
            };
            format!(
                "{}{pos}: {}: {}{hint}",
                path.display(),
                render_path(&p.path),
                p.message
            )
        })
        .collect();
    SpecError {
        file: path.to_path_buf(),
        lines,
    }
}



/// Semantic checks serde cannot express: registry names, ranges, and cross-references.
pub fn validate(spec: &Spec) -> Vec<Problem> {
    resolve(spec).err().unwrap_or_default()
}

/// Checks the spec and resolves it, once, into the typed values planning builds stages from
/// ("parse, don't validate"): every problem found, or a [`Resolved`] with nothing left to fail.
pub fn resolve(spec: &Spec) -> Result<Resolved, Vec<Problem>> {
    let mut out = Vec::new();
    let mut r = Resolved::default();
    resolved::check_names(spec, &mut out);
    out.extend(executor::check(&spec.executor));
    if let Err(e) = crate::vocab::device::parse_device(&spec.device) {
        out.push(Problem::new(&["device"], e).hint("use auto, cpu, cuda or cuda:N"));
    }
    out.extend(check_seeds(spec.seeds.as_deref()));
    for (section, empty) in [
        ("datasets", spec.datasets.is_empty()),
        ("models", spec.models.is_empty()),
    ] {
        if empty {
            out.push(Problem::new(&[section], "needs at least one entry"));
        }
    }
    for (name, ds) in &spec.datasets {
        match data::resolve(name, ds) {
            Err(p) => out.extend(p),
            Ok(d) => {
                r.datasets.insert(name.clone(), d);
            }
        }
    }
    out.extend(evaluation::check_val_split(spec));
    for (name, m) in &spec.models {
        match models::resolve(name, m) {
            Err(p) => out.extend(p),
            Ok(mp) => {
                r.models.insert(name.clone(), mp);
            }
        }
    }
    out.extend(check_trained(spec, &r));
    out.extend(resolved::check_pairs(spec, &r));
    resolve_training_entries(spec, &mut r, &mut out);
    match evaluation::resolve_evaluation(spec) {
        Ok(attacks) => r.attacks = attacks,
        Err(ps) => out.extend(ps),
    }
    spec.analysis.validate(&mut out);
    out.extend(check_tables(spec));
    out.extend(evaluation::check_references(spec));
    if out.is_empty() {
        Ok(r)
    } else {
        Err(out)
    }
}

/// The training entries, as written and as each model trains with them (its `overrides`
/// merged in here, where the YAML is), each checked and resolved by `train::resolve`.
fn resolve_training_entries(spec: &Spec, r: &mut Resolved, out: &mut Vec<Problem>) {
    let model_names: Vec<&str> = spec.models.keys().map(String::as_str).collect();
    for (name, t) in &spec.training {
        let specialise = |m: &str, kind: models::ArchKind| spec.training_for(name, m, kind);
        let pipeline = train::resolve::Models {
            names: &model_names,
            resolved: &r.models,
            specialise: &specialise,
        };
        match train::resolve::resolve(name, t, &pipeline) {
            Ok(e) => {
                for (m, settings) in e.per_model {
                    r.training.insert((m, name.clone()), settings);
                }
                r.entries.insert(name.clone(), e.entry);
            }
            Err(ps) => out.extend(ps),
        }
    }
}

/// Imported models are evaluated as they are; every other model needs a training entry (a
/// model that did not resolve has its own problem already).
fn check_trained(spec: &Spec, r: &Resolved) -> Vec<Problem> {
    let mut out = Vec::new();
    let trained: Vec<&str> = spec
        .models
        .keys()
        .filter(|n| {
            r.models
                .get(*n)
                .is_some_and(|mp| mp.trains())
        })
        .map(String::as_str)
        .collect();
    if spec.training.is_empty() && !trained.is_empty() {
        out.push(
            Problem::new(
                &["training"],
                format!(
                    "needs at least one entry: {} {} trained here",
                    trained
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if trained.len() == 1 { "is" } else { "are" }
                ),
            )
            .hint("add an entry such as `training: {at: {attack: {norm: linf, eps: 8/255}, epochs: 10}}`; only a pipeline whose models are all imported and evaluated as they are (`arch: torchscript` without `train: true`) needs none"),
        );
    }
    out
}

/// The `analysis` and `correlation` tables need their analyses.
fn check_tables(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    for (table, needs, ok) in [
        (
            TableKind::Analysis,
            "`sparsity` or `bounds`",
            !spec.analysis.per_model.is_empty(),
        ),
        (
            TableKind::Correlation,
            "`correlation`",
            spec.analysis.correlation.is_some(),
        ),
    ] {
        if spec.report.tables.contains(&table) && !ok {
            out.push(
                Problem::new(
                    &["report", "tables"],
                    format!(
                        "the `{}` table needs the {needs} analysis",
                        serde_yaml::to_string(&table).unwrap_or_default().trim()
                    ),
                )
                .hint(format!("add {needs} to `analysis`")),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_only() {
        let c = ["resnet18", "vit", "preact_resnet18"];
        assert_eq!(did_you_mean("resnet19", c), Some("resnet18"));
        assert_eq!(did_you_mean("vti", c), Some("vit"));
        assert_eq!(did_you_mean("transformer", c), None);
    }

    #[test]
    fn serde_unknown_field_gets_a_hint() {
        let src = "name: x\ndatasets:\n  d: {source: synthetic, resolutoin: 8}\nmodels: {}\ntraining: {}\n";
        let e = parse(Path::new("p.yaml"), src).unwrap_err().to_string();
        assert!(e.contains("p.yaml:3:"), "{e}");
        assert!(e.contains("did you mean `resolution`?"), "{e}");
    }
}

/// A pipeline file's settings as `dotted.path → value` (sequences and scalars as flow YAML),
/// for `report --compare`'s headline; empty when the file does not read as YAML.
pub fn flatten(path: &Path) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &serde_yaml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_yaml::Value::Mapping(m) if !m.is_empty() => {
                for (k, v) in m {
                    let k = match k {
                        serde_yaml::Value::String(s) => s.clone(),
                        other => flow(other),
                    };
                    let path = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    walk(&path, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), flow(other));
            }
        }
    }
    /// A value on one line: `8/255`, `[0, 1]`, `{padding: 1}`.
    fn flow(v: &serde_yaml::Value) -> String {
        match v {
            serde_yaml::Value::Null => "null".into(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Sequence(s) => {
                format!("[{}]", s.iter().map(flow).collect::<Vec<_>>().join(", "))
            }
            serde_yaml::Value::Mapping(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}: {}", flow(k), flow(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            serde_yaml::Value::Tagged(t) => flow(&t.value),
        }
    }
    let mut out = BTreeMap::new();
    if let Some(v) = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_yaml::from_str::<serde_yaml::Value>(&s).ok())
    {
        walk("", &v, &mut out);
    }
    out
}
