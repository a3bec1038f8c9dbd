//! `correlation`: across the architectures of each (dataset, training), Kendall's τ and
//! Spearman's ρ between every sparsity/bound measure and every measured gap, with bootstrap
//! intervals (see `analysis::correlation`).
//!
//! Gaps, in percentage points:
//! - `robust_gap:<attack>`: train − test robust accuracy under an attack of the training threat
//!   model (the robust generalization gap);
//! - `unseen_drop:<attack>`: test clean − test robust accuracy under an attack the model was not
//!   trained against (another norm, or a group).
use super::inputs::{self, load_evals, Labels};
use super::{write_json, StageContext, StageKind};
use crate::analysis::correlation::{self, Output, Row, OUTPUT};
use crate::attacks::verdict::{self, EvalResult};
use anyhow::Result;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Fewer architectures than this get a warning.
pub const MIN_ARCHS: usize = 6;

/// The gaps of one training entry: which attacks (or groups) measure what. The report groups
/// its seen/unseen columns by the same sets, so both use one type.
pub use crate::report::Sides as Gaps;

#[derive(Serialize)]
pub struct Correlation {
    pub bootstrap: usize,
    pub confidence: f64,
    pub seed: u64,
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per training name.
    pub gaps: BTreeMap<String, Gaps>,
    pub evals: Vec<Labels>,
    pub sparsity: Vec<Labels>,
    pub bounds: Vec<Labels>,
}

type Key = (String, String);

/// The defined values of one model's measures (the report's `analysis` columns).
fn defined(values: Vec<(String, Option<f64>)>) -> BTreeMap<String, f64> {
    values
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Seed of one (dataset, training, measure, gap) row's bootstrap.
fn row_seed(seed: u64, parts: &[&str]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap())
}

/// Gap values per (dataset, training) → gap name → model → value.
fn gap_values(
    evals: &[EvalResult],
    gaps: &BTreeMap<String, Gaps>,
) -> BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>> {
    let mut acc: BTreeMap<(Key, String, String, String), &EvalResult> = BTreeMap::new();
    for e in evals {
        acc.insert(
            (
                (e.dataset.clone(), e.training.clone()),
                e.model.clone(),
                e.attack.clone(),
                e.split.clone(),
            ),
            e,
        );
    }
    let mut out: BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>> = BTreeMap::new();
    let models: BTreeMap<Key, Vec<String>> = acc.keys().fold(BTreeMap::new(), |mut m, k| {
        let v: &mut Vec<String> = m.entry(k.0.clone()).or_default();
        if !v.contains(&k.1) {
            v.push(k.1.clone());
        }
        m
    });
    for (key, ms) in &models {
        let Some(g) = gaps.get(&key.1) else { continue };
        let slot = out.entry(key.clone()).or_default();
        for model in ms {
            let get = |a: &str, split: &str| {
                acc.get(&(key.clone(), model.clone(), a.to_string(), split.to_string()))
            };
            for a in &g.gap {
                if let (Some(tr), Some(te)) = (get(a, "train"), get(a, "test")) {
                    slot.entry(format!("robust_gap:{a}")).or_default().insert(
                        model.clone(),
                        100.0 * (tr.robust_accuracy - te.robust_accuracy),
                    );
                }
            }
            for a in &g.unseen {
                if let Some(te) = get(a, "test") {
                    slot.entry(format!("unseen_drop:{a}")).or_default().insert(
                        model.clone(),
                        100.0 * (te.clean_accuracy - te.robust_accuracy),
                    );
                }
            }
        }
    }
    out
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
        sparsity: Vec<Labels>,
        bounds: Vec<Labels>,
    ) -> Self {
        Self {
            bootstrap: c.bootstrap,
            confidence: c.confidence.get(),
            seed,
            groups,
            gaps,
            evals,
            sparsity,
            bounds,
        }
    }

    fn measures(
        &self,
        cx: &StageContext,
    ) -> Result<BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>>> {
        let mut out: BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>> = BTreeMap::new();
        // Whole-model sparsity measures, then products and bounds (log10).
        let sparsity = inputs::load_sparsity(cx, &self.sparsity)?
            .into_iter()
            .map(|(l, s)| (l, s.overall_measures()));
        let bounds = inputs::load_bounds(cx, &self.bounds)?
            .into_iter()
            .map(|(l, b)| (l, b.measures()));
        for (l, values) in sparsity.chain(bounds) {
            for (name, v) in defined(values) {
                out.entry((l.dataset.clone(), l.training.clone()))
                    .or_default()
                    .entry(name)
                    .or_default()
                    .insert(l.model.clone(), v);
            }
        }
        Ok(out)
    }
}

/// The rows: every measure against every gap, over the models that have both.
pub fn correlate_all(
    measures: &BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>>,
    gaps: &BTreeMap<Key, BTreeMap<String, BTreeMap<String, f64>>>,
    bootstrap: usize,
    confidence: f64,
    seed: u64,
) -> Output {
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    for (key, ms) in measures {
        let Some(gs) = gaps.get(key) else {
            warnings.push(format!(
                "{}/{}: no gap could be measured (no matching train and test evaluations)",
                key.0, key.1
            ));
            continue;
        };
        for (gname, gv) in gs {
            for (mname, mv) in ms {
                let models: Vec<String> =
                    mv.keys().filter(|m| gv.contains_key(*m)).cloned().collect();
                let x: Vec<f64> = models.iter().map(|m| mv[m]).collect();
                let y: Vec<f64> = models.iter().map(|m| gv[m]).collect();
                let s = row_seed(seed, &[&key.0, &key.1, mname, gname]);
                let stat = correlation::correlate(&x, &y, bootstrap, confidence, s);
                rows.push(Row {
                    dataset: key.0.clone(),
                    training: key.1.clone(),
                    measure: mname.clone(),
                    gap: gname.clone(),
                    models,
                    x,
                    y,
                    stat,
                });
            }
        }
        let n = ms.values().map(|v| v.len()).max().unwrap_or(0);
        if n < MIN_ARCHS {
            warnings.push(format!(
                "{}/{}: only {n} architectures; rank correlations over fewer than {MIN_ARCHS} are barely informative and their bootstrap intervals unreliable",
                key.0, key.1
            ));
        }
    }
    Output { rows, warnings }
}

impl StageKind for Correlation {
    fn kind(&self) -> &'static str {
        "correlation"
    }
    fn version(&self) -> u32 {
        1
    }
    fn in_worker(&self) -> bool {
        false
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let mut evals = load_evals(cx, &self.evals)?;
        let grouped = verdict::group_results(&evals, &self.groups);
        evals.extend(grouped);
        let gaps = gap_values(&evals, &self.gaps);
        let measures = self.measures(cx)?;
        // Its warnings reach the log and `warnings.md` through the report.
        let out = correlate_all(&measures, &gaps, self.bootstrap, self.confidence, self.seed);
        write_json(&cx.out.join(OUTPUT), &out)?;
        Ok(json!({"rows": out.rows.len(), "warnings": out.warnings}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(v: &[(&str, f64)]) -> BTreeMap<String, f64> {
        v.iter().map(|(k, x)| (k.to_string(), *x)).collect()
    }

    #[test]
    fn rows_pair_models_present_on_both_sides() {
        let key = ("d".to_string(), "t".to_string());
        let measures = BTreeMap::from([(
            key.clone(),
            BTreeMap::from([(
                "hoyer".to_string(),
                table(&[("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.4), ("e", 0.5)]),
            )]),
        )]);
        // The gap falls as sparsity rises, except e has no gap measured.
        let gaps = BTreeMap::from([(
            key.clone(),
            BTreeMap::from([(
                "robust_gap:pgd".to_string(),
                table(&[("a", 30.0), ("b", 20.0), ("c", 25.0), ("d", 5.0)]),
            )]),
        )]);
        let out = correlate_all(&measures, &gaps, 500, 0.9, 0);
        assert_eq!(out.rows.len(), 1);
        let r = &out.rows[0];
        assert_eq!(r.models, ["a", "b", "c", "d"]);
        assert_eq!(r.stat.n, 4);
        // x increases; y = 30, 20, 25, 5: discordant ab, ac, ad, bd, cd, concordant bc → τ = −4/6.
        assert!((r.stat.kendall_tau.value.unwrap() + 4.0 / 6.0).abs() < 1e-12);
        // Five architectures (one without a gap): fewer than MIN_ARCHS.
        assert_eq!(out.warnings.len(), 1);
        assert!(
            out.warnings[0].contains("only 5 architectures"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn gaps_from_evaluations() {
        let e = |model: &str, attack: &str, split: &str, clean: f64, robust: f64| EvalResult {
            clean_accuracy: clean,
            eps: 0.1,
            ..crate::attacks::verdict::testing::ev(model, attack, split, robust)
        };
        let evals = vec![
            e("m", "pgd", "train", 0.9, 0.7),
            e("m", "pgd", "test", 0.8, 0.5),
            e("m", "l2", "test", 0.8, 0.6),
            e("m", "l2", "train", 0.9, 0.1),
        ];
        let gaps = BTreeMap::from([(
            "t".to_string(),
            Gaps {
                gap: vec!["pgd".into()],
                unseen: vec!["l2".into()],
            },
        )]);
        let g = gap_values(&evals, &gaps);
        let g = &g[&("d".to_string(), "t".to_string())];
        assert!((g["robust_gap:pgd"]["m"] - 20.0).abs() < 1e-9);
        assert!((g["unseen_drop:l2"]["m"] - 20.0).abs() < 1e-9);
        assert_eq!(g.len(), 2);
    }
}
