//! `correlation`: across the architectures of each (dataset, training), Kendall's τ and
//! Spearman's ρ between every per-model analysis's measures and every measured gap, with
//! bootstrap intervals (the computation is `analysis::correlation`).
//!
//! Gaps, in percentage points:
//! - `robust_gap:<attack>`: train − test robust accuracy under an attack of the training threat
//!   model (the robust generalization gap);
//! - `unseen_drop:<attack>`: test clean − test robust accuracy under an attack the model was not
//!   trained against (another norm, or a group).
use super::inputs::{self, load_evals, Labels};
use super::{write_json, StageContext, StageKind};
use crate::analysis::correlation::{correlate_all, defined, gap_values, Over, Values, OUTPUT};
use crate::attacks::verdict;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The gaps of one training entry: which attacks (or groups) measure what.
pub use crate::analysis::correlation::Sides as Gaps;

#[derive(Serialize, Deserialize)]
pub struct Correlation {
    pub bootstrap: usize,
    pub confidence: f64,
    pub seed: u64,
    /// Per-seed points or per-architecture means where seeds repeat (absent from the key when
    /// `means`, the default).
    #[serde(default, skip_serializing_if = "Over::is_means")]
    pub over: Over,
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per training name.
    pub gaps: BTreeMap<String, Gaps>,
    pub evals: Vec<Labels>,
    /// Per-model analysis name → the inputs behind its measures (each appears under its name in
    /// the key).
    #[serde(flatten)]
    pub per_model: inputs::PerModel,
}

impl Correlation {
    /// The `analysis.correlation` settings `c` over the inputs behind the labels; `gaps` per
    /// training name.
    pub fn new(
        c: &crate::analysis::spec::CorrelationSpec,
        seed: u64,
        groups: BTreeMap<String, Vec<String>>,
        gaps: BTreeMap<String, Gaps>,
        evals: Vec<Labels>,
        per_model: inputs::PerModel,
    ) -> Self {
        Self {
            bootstrap: c.bootstrap,
            confidence: c.confidence.get(),
            seed,
            over: c.over,
            groups,
            gaps,
            evals,
            per_model,
        }
    }

    fn measures(&self, cx: &StageContext) -> Result<Values> {
        let mut out: Values = BTreeMap::new();
        for a in crate::analysis::REGISTRY {
            let Some(labels) = self.per_model.get(a.name) else {
                continue;
            };
            for (l, values) in inputs::load_measures(cx, a, labels, false)? {
                for (name, v) in defined(values) {
                    out.entry((l.dataset.clone(), l.training.clone()))
                        .or_default()
                        .entry(name)
                        .or_default()
                        .insert((l.model.clone(), l.seed), v);
                }
            }
        }
        Ok(out)
    }
}

impl StageKind for Correlation {
    fn kind(&self) -> &'static str {
        "correlation"
    }
    fn version(&self) -> u32 {
        1
    }
    fn work(&self) -> super::Work<'_> {
        super::Work::Here(self)
    }
}

impl super::ControlStage for Correlation {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let mut evals = load_evals(cx, &self.evals)?;
        let grouped = verdict::group_results(&evals, &self.groups);
        evals.extend(grouped);
        let gaps = gap_values(&evals, &self.gaps);
        let measures = self.measures(cx)?;
        // Its warnings reach the log and `warnings.md` through the report.
        let out = correlate_all(
            &measures,
            &gaps,
            self.bootstrap,
            self.confidence,
            self.seed,
            self.over,
        );
        write_json(&cx.out.join(OUTPUT), &out)?;
        Ok(json!({"rows": out.rows.len(), "warnings": out.warnings}))
    }
}
