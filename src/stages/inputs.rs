//! What the report and correlation stages know of their inputs: the spec names behind each input
//! entry ([`Labels`], part of their keys) and the entries' results, read typed through each
//! producing stage's reader (`evaluate`, each analysis's typed output): no stage reads another
//! stage's output by string key.
use super::StageContext;
use crate::attacks::verdict::{CurvePoint, EvalMetrics, EvalResult, PER_SAMPLE};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Labels of one input: which spec names produced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Not part of the key: `attack` names it already (`<attack>@ε`, `EvalAttack::id`). The
    /// curve point an evaluation is, typed, so that the report never reads it back out of the
    /// name; a rebuilt report gets it from its locations (`Report::locations`).
    #[serde(skip)]
    pub curve: Option<CurvePoint>,
}

/// The labels of each per-model analysis's stages, by analysis name in registry order: a map in
/// the correlation's and the report's keys, where each analysis appears under its name where the
/// old `sparsity` and `bounds` fields were (serde_json keeps insertion order, so the order is
/// part of the key).
#[derive(Debug, Clone, Default)]
pub struct PerModel(Vec<(String, Vec<Labels>)>);

impl PerModel {
    /// The lists of `names`, empty, in the order given.
    pub fn listing(names: impl IntoIterator<Item = String>) -> Self {
        Self(names.into_iter().map(|n| (n, Vec::new())).collect())
    }

    /// Adds `label` to analysis `name`'s list (a new list goes last).
    pub fn push(&mut self, name: &str, label: Labels) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, ls)) => ls.push(label),
            None => self.0.push((name.to_string(), vec![label])),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Vec<Labels>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, ls)| ls)
    }

    /// Every label, analyses in order.
    pub fn labels(&self) -> impl Iterator<Item = &Labels> {
        self.0.iter().flat_map(|(_, ls)| ls)
    }
}

impl<'de> Deserialize<'de> for PerModel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PerModel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("analysis names with their inputs' labels")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> std::result::Result<PerModel, M::Error> {
                let mut out = Vec::new();
                while let Some((name, labels)) = m.next_entry::<String, Vec<Labels>>()? {
                    out.push((name, labels));
                }
                Ok(PerModel(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for PerModel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, labels) in &self.0 {
            m.serialize_entry(name, labels)?;
        }
        m.end()
    }
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
            curve: l.curve.clone(),
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

/// The measures of analysis `a` behind `labels`, read typed by the analysis: the correlated
/// measures, or with `columns` the `analysis` table's columns.
pub fn load_measures<'a>(
    cx: &StageContext,
    a: &crate::analysis::Entry,
    labels: &'a [Labels],
    columns: bool,
) -> Result<Vec<(&'a Labels, Vec<crate::analysis::Measure>)>> {
    labels
        .iter()
        .map(|l| {
            let summary = &cx.input(&l.role)?.meta.summary;
            let m = match columns {
                true => a.columns(summary),
                false => a.measures(summary),
            };
            Ok((l, m.with_context(|| l.role.clone())?))
        })
        .collect()
}

/// The per-epoch histories of the train entries behind `labels`.
pub fn load_histories<'a>(
    cx: &StageContext,
    labels: &'a [Labels],
) -> Result<Vec<(&'a Labels, Vec<crate::train::EpochRecord>)>> {
    load(cx, labels, super::train::read_history)
}
