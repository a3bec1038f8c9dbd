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
use crate::analysis::correlation::{self, Output, Over, Row, OUTPUT};
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
    /// Per-seed points or per-architecture means where seeds repeat (absent from the key when
    /// `means`, the default).
    #[serde(skip_serializing_if = "Over::is_means")]
    pub over: Over,
    pub groups: BTreeMap<String, Vec<String>>,
    /// Per training name.
    pub gaps: BTreeMap<String, Gaps>,
    pub evals: Vec<Labels>,
    pub sparsity: Vec<Labels>,
    pub bounds: Vec<Labels>,
}

type Key = (String, String);
/// One model of one training chain: the model's name and its chain's seed (none without `seeds:`).
type Point = (String, Option<u64>);
/// Per (dataset, training) → measure or gap name → point → value.
type Values = BTreeMap<Key, BTreeMap<String, BTreeMap<Point, f64>>>;

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

/// Gap values per (dataset, training) → gap name → (model, seed) → value.
fn gap_values(evals: &[EvalResult], gaps: &BTreeMap<String, Gaps>) -> Values {
    let mut acc: BTreeMap<(Key, Point, String, String), &EvalResult> = BTreeMap::new();
    for e in evals {
        acc.insert(
            (
                (e.dataset.clone(), e.training.clone()),
                (e.model.clone(), e.seed),
                e.attack.clone(),
                e.split.clone(),
            ),
            e,
        );
    }
    let mut out: Values = BTreeMap::new();
    let points: BTreeMap<Key, Vec<Point>> = acc.keys().fold(BTreeMap::new(), |mut m, k| {
        let v: &mut Vec<Point> = m.entry(k.0.clone()).or_default();
        if !v.contains(&k.1) {
            v.push(k.1.clone());
        }
        m
    });
    for (key, ps) in &points {
        let Some(g) = gaps.get(&key.1) else { continue };
        let slot = out.entry(key.clone()).or_default();
        for p in ps {
            let get = |a: &str, split: &str| {
                acc.get(&(key.clone(), p.clone(), a.to_string(), split.to_string()))
            };
            for a in &g.gap {
                if let (Some(tr), Some(te)) = (get(a, "train"), get(a, "test")) {
                    slot.entry(format!("robust_gap:{a}"))
                        .or_default()
                        .insert(p.clone(), 100.0 * (tr.robust_accuracy - te.robust_accuracy));
                }
            }
            for a in &g.unseen {
                if let Some(te) = get(a, "test") {
                    slot.entry(format!("unseen_drop:{a}"))
                        .or_default()
                        .insert(p.clone(), 100.0 * (te.clean_accuracy - te.robust_accuracy));
                }
            }
        }
    }
    out
}

/// The points of one row: the (model, seed) pairs with both values, as rows of
/// `(model, seed, x, y)`; with [`Over::Means`], one per model, averaged over its seeds that have
/// both (seed `None`).
fn pair_up(
    mv: &BTreeMap<Point, f64>,
    gv: &BTreeMap<Point, f64>,
    over: Over,
) -> Vec<(String, Option<u64>, f64, f64)> {
    let both = mv
        .iter()
        .filter_map(|(p, x)| gv.get(p).map(|y| (p, *x, *y)));
    match over {
        Over::Seeds => both.map(|(p, x, y)| (p.0.clone(), p.1, x, y)).collect(),
        Over::Means => {
            let mut sums: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
            for (p, x, y) in both {
                let s = sums.entry(p.0.as_str()).or_default();
                *s = (s.0 + x, s.1 + y, s.2 + 1);
            }
            sums.into_iter()
                .map(|(m, (x, y, n))| (m.to_string(), None, x / n as f64, y / n as f64))
                .collect()
        }
    }
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
            over: c.over,
            groups,
            gaps,
            evals,
            sparsity,
            bounds,
        }
    }

    fn measures(&self, cx: &StageContext) -> Result<Values> {
        let mut out: Values = BTreeMap::new();
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
                    .insert((l.model.clone(), l.seed), v);
            }
        }
        Ok(out)
    }
}

/// The rows: every measure against every gap, over the models that have both (per seed or
/// averaged over seeds, as `over` says).
pub fn correlate_all(
    measures: &Values,
    gaps: &Values,
    bootstrap: usize,
    confidence: f64,
    seed: u64,
    over: Over,
) -> Output {
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let seeds: std::collections::BTreeSet<u64> = measures
        .values()
        .chain(gaps.values())
        .flat_map(|m| m.values())
        .flat_map(|v| v.keys().filter_map(|p| p.1))
        .collect();
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
                let points = pair_up(mv, gv, over);
                let models: Vec<String> = points.iter().map(|p| p.0.clone()).collect();
                let x: Vec<f64> = points.iter().map(|p| p.2).collect();
                let y: Vec<f64> = points.iter().map(|p| p.3).collect();
                // Points of one architecture resample together.
                let cluster: Vec<usize> = models
                    .iter()
                    .map(|m| models.iter().position(|n| n == m).unwrap())
                    .collect();
                let s = row_seed(seed, &[&key.0, &key.1, mname, gname]);
                let stat = correlation::correlate_clustered(
                    &x, &y, &cluster, bootstrap, confidence, s,
                );
                rows.push(Row {
                    dataset: key.0.clone(),
                    training: key.1.clone(),
                    measure: mname.clone(),
                    gap: gname.clone(),
                    models,
                    x,
                    y,
                    seeds: points.iter().filter_map(|p| p.1).collect(),
                    stat,
                });
            }
        }
        let n = ms
            .values()
            .map(|v| {
                v.keys()
                    .map(|p| p.0.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            })
            .max()
            .unwrap_or(0);
        if n < MIN_ARCHS {
            warnings.push(format!(
                "{}/{}: only {n} architectures; rank correlations over fewer than {MIN_ARCHS} are barely informative and their bootstrap intervals unreliable",
                key.0, key.1
            ));
        }
    }
    Output {
        rows,
        warnings,
        seeds: seeds.into_iter().collect(),
        over,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(v: &[(&str, f64)]) -> BTreeMap<Point, f64> {
        v.iter().map(|(k, x)| ((k.to_string(), None), *x)).collect()
    }

    /// `(model, seed, value)` triples.
    fn seeded(v: &[(&str, u64, f64)]) -> BTreeMap<Point, f64> {
        v.iter().map(|(k, s, x)| ((k.to_string(), Some(*s)), *x)).collect()
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
        let out = correlate_all(&measures, &gaps, 500, 0.9, 0, Over::Means);
        assert_eq!(out.rows.len(), 1);
        assert!(out.seeds.is_empty() && out.points().is_none());
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
        let m = ("m".to_string(), None);
        assert!((g["robust_gap:pgd"][&m] - 20.0).abs() < 1e-9);
        assert!((g["unseen_drop:l2"][&m] - 20.0).abs() < 1e-9);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn seeds_give_means_or_per_seed_points() {
        let key = ("d".to_string(), "t".to_string());
        // Seeds 0 and 1 of a, b, c; c's seed 1 has no gap, d only seed 0's measure.
        let measures = BTreeMap::from([(
            key.clone(),
            BTreeMap::from([(
                "hoyer".to_string(),
                seeded(&[
                    ("a", 0, 0.1),
                    ("a", 1, 0.3),
                    ("b", 0, 0.5),
                    ("b", 1, 0.5),
                    ("c", 0, 0.9),
                    ("c", 1, 0.1),
                    ("d", 0, 1.0),
                ]),
            )]),
        )]);
        let gaps = BTreeMap::from([(
            key.clone(),
            BTreeMap::from([(
                "robust_gap:pgd".to_string(),
                seeded(&[
                    ("a", 0, 30.0),
                    ("a", 1, 10.0),
                    ("b", 0, 12.0),
                    ("b", 1, 14.0),
                    ("c", 0, 2.0),
                ]),
            )]),
        )]);
        let means = correlate_all(&measures, &gaps, 200, 0.9, 0, Over::Means);
        let r = &means.rows[0];
        // One point per model, averaged over the seeds that have both values (c: seed 0 only).
        assert_eq!(r.models, ["a", "b", "c"]);
        assert!(r.seeds.is_empty());
        assert_eq!(r.x, [0.2, 0.5, 0.9]);
        assert_eq!(r.y, [20.0, 13.0, 2.0]);
        assert_eq!(r.stat.n, 3);
        assert_eq!(means.seeds, [0, 1]);
        assert!(means.points().unwrap().contains("mean over its training seeds (0, 1)"));
        let per_seed = correlate_all(&measures, &gaps, 200, 0.9, 0, Over::Seeds);
        let r = &per_seed.rows[0];
        assert_eq!(r.models, ["a", "a", "b", "b", "c"]);
        assert_eq!(r.seeds, [0, 1, 0, 1, 0]);
        assert_eq!(r.y, [30.0, 10.0, 12.0, 14.0, 2.0]);
        assert_eq!(r.stat.n, 5);
        assert!(per_seed.points().unwrap().contains("resamples whole architectures"));
        // Four architectures: the warning counts architectures, not (architecture, seed) pairs.
        assert!(per_seed.warnings[0].contains("only 4 architectures"));
    }
}
