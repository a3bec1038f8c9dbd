//! What the report and correlation stages know of their inputs: the spec names behind each input
//! entry ([`Labels`], part of their keys) and the entries' results, read typed through each
//! producing stage's reader (`evaluate`, `sparsity::read`, `bounds::read`): no stage reads another
//! stage's output by string key.
use super::StageContext;
use crate::attacks::verdict::{EvalMetrics, EvalResult, PER_SAMPLE};
use anyhow::{Context, Result};
use serde::Serialize;

/// Labels of one input: which spec names produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Labels {
    pub role: String,
    pub dataset: String,
    pub model: String,
    pub training: String,
    pub attack: Option<String>,
    pub split: Option<String>,
    /// The training seed where a pipeline repeats seeds; absent otherwise (keys unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The evaluation results behind `labels`, with their per-point flags.
pub fn load_evals(cx: &StageContext, labels: &[Labels]) -> Result<Vec<EvalResult>> {
    let mut evals = Vec::new();
    for l in labels {
        let input = cx.input(&l.role)?;
        let m: EvalMetrics =
            serde_json::from_value(input.meta.summary.clone()).context("evaluation summary")?;
        let file = input.dir.join(PER_SAMPLE);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let flags = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("reading {}: {e:?}", file.display()))?;
        let robust = flags
            .tensor("robust_correct")
            .map_err(|_| anyhow::anyhow!("{} lacks robust_correct", file.display()))?;
        anyhow::ensure!(
            robust.dtype() == safetensors::Dtype::U8,
            "{}: robust_correct is {:?}, not u8",
            file.display(),
            robust.dtype()
        );
        let robust: Vec<bool> = robust.data().iter().map(|&v| v == 1).collect();
        evals.push(EvalResult {
            dataset: l.dataset.clone(),
            model: l.model.clone(),
            training: l.training.clone(),
            attack: l.attack.clone().unwrap_or_default(),
            split: l.split.clone().unwrap_or_default(),
            seed: l.seed,
            n: m.n,
            clean_accuracy: m.clean_accuracy,
            robust_accuracy: m.robust_accuracy,
            eps: m.eps,
            norm: m.norm,
            class: m.class,
            robust,
            notes: m.notes,
        });
    }
    Ok(evals)
}

/// The results behind `labels`, each read typed by its stage's `read`.
fn load<'a, T>(
    cx: &StageContext,
    labels: &'a [Labels],
    read: fn(&crate::cache::Entry) -> Result<T>,
) -> Result<Vec<(&'a Labels, T)>> {
    labels
        .iter()
        .map(|l| Ok((l, read(cx.input(&l.role)?).with_context(|| l.role.clone())?)))
        .collect()
}

/// The sparsity summaries behind `labels`; each must have a whole-model Hoyer measure.
pub fn load_sparsity<'a>(
    cx: &StageContext,
    labels: &'a [Labels],
) -> Result<Vec<(&'a Labels, crate::analysis::sparsity::Summary)>> {
    let out = load(cx, labels, super::sparsity::read)?;
    if let Some((l, _)) = out.iter().find(|(_, s)| s.overall.hoyer.is_nan()) {
        anyhow::bail!(
            "{}: the sparsity summary has no overall Hoyer measure",
            l.role
        );
    }
    Ok(out)
}

/// The per-epoch histories of the train entries behind `labels`.
pub fn load_histories<'a>(
    cx: &StageContext,
    labels: &'a [Labels],
) -> Result<Vec<(&'a Labels, Vec<crate::train::EpochRecord>)>> {
    load(cx, labels, super::train::read_history)
}

/// The bounds outputs behind `labels`.
pub fn load_bounds<'a>(
    cx: &StageContext,
    labels: &'a [Labels],
) -> Result<Vec<(&'a Labels, crate::analysis::bounds::Output)>> {
    load(cx, labels, super::bounds::read)
}
