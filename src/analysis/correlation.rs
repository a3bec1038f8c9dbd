//! Rank correlations between a measure and a gap across architectures, with bootstrap confidence
//! intervals (docs/theory.md, "Rank correlation").
//!
//! - Kendall's τ_b (Kendall 1945): (C − D) / √((n₀ − n₁)(n₀ − n₂)) over all pairs, C and D the
//!   concordant and discordant pairs, n₀ = n(n−1)/2, n₁ and n₂ the pairs tied in x and in y;
//!   what `scipy.stats.kendalltau` computes by default.
//! - Spearman's ρ: Pearson's correlation of the ranks, ties given their average rank.
//! - Percentile bootstrap (Efron 1979): resample the architectures with replacement B times, take
//!   the statistic of each resample, and report the (1−c)/2 and (1+c)/2 quantiles; resamples where
//!   the statistic is undefined (all x or all y tied) are dropped and counted.
use crate::attacks::verdict::EvalResult;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Average ranks (1-based), ties sharing the mean of their positions.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson's correlation; NaN when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman's ρ; NaN when either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Kendall's τ_b; NaN when either side is constant.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    let (mut c, mut d, mut tx, mut ty) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let sx = (x[i] - x[j])
                .partial_cmp(&0.0)
                .map(|o| o as i64)
                .unwrap_or(0);
            let sy = (y[i] - y[j])
                .partial_cmp(&0.0)
                .map(|o| o as i64)
                .unwrap_or(0);
            if sx == 0 {
                tx += 1;
            }
            if sy == 0 {
                ty += 1;
            }
            match sx * sy {
                1 => c += 1,
                -1 => d += 1,
                _ => {}
            }
        }
    }
    let n0 = (n * n.saturating_sub(1) / 2) as i64;
    let den = (((n0 - tx) * (n0 - ty)) as f64).sqrt();
    if den == 0.0 {
        return f64::NAN;
    }
    (c - d) as f64 / den
}

/// A statistic with its bootstrap interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    /// `null` when undefined (fewer than 2 points, or one side constant).
    pub value: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Correlation {
    pub n: usize,
    pub kendall_tau: Estimate,
    pub spearman_rho: Estimate,
    /// Resamples kept (the statistic was defined on them).
    pub bootstrap_kept: usize,
    pub bootstrap: usize,
    pub confidence: f64,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The q-quantile of sorted values, linearly interpolated (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// τ_b and ρ of (x, y) with percentile-bootstrap intervals from `resamples` seeded resamples.
pub fn correlate(
    x: &[f64],
    y: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Correlation {
    let singletons: Vec<usize> = (0..x.len()).collect();
    correlate_clustered(x, y, &singletons, resamples, confidence, seed)
}

/// [`correlate`] where points come in clusters (`cluster[i]`: point i's cluster, e.g. the
/// architecture of a per-seed point): each resample draws whole clusters with replacement, as
/// many as there are clusters, so points of one architecture never count as independent
/// evidence. Singleton clusters give exactly [`correlate`]'s resamples.
pub fn correlate_clustered(
    x: &[f64],
    y: &[f64],
    cluster: &[usize],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Correlation {
    assert_eq!(x.len(), y.len());
    assert_eq!(x.len(), cluster.len());
    let n = x.len();
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in cluster.iter().enumerate() {
        members.entry(c).or_default().push(i);
    }
    let members: Vec<Vec<usize>> = members.into_values().collect();
    let k = members.len();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let (mut taus, mut rhos) = (Vec::new(), Vec::new());
    let mut kept = 0;
    if n >= 2 {
        let (mut bx, mut by) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..resamples {
            bx.clear();
            by.clear();
            for _ in 0..k {
                for &i in &members[rng.random_range(0..k)] {
                    bx.push(x[i]);
                    by.push(y[i]);
                }
            }
            let (t, r) = (kendall_tau_b(&bx, &by), spearman(&bx, &by));
            if t.is_finite() && r.is_finite() {
                kept += 1;
                taus.push(t);
                rhos.push(r);
            }
        }
    }
    let interval = |v: &mut Vec<f64>| -> (Option<f64>, Option<f64>) {
        if v.is_empty() {
            return (None, None);
        }
        v.sort_by(f64::total_cmp);
        let a = (1.0 - confidence) / 2.0;
        (Some(quantile(v, a)), Some(quantile(v, 1.0 - a)))
    };
    let (tlo, thi) = interval(&mut taus);
    let (rlo, rhi) = interval(&mut rhos);
    let (tau, rho) = if n >= 2 {
        (finite(kendall_tau_b(x, y)), finite(spearman(x, y)))
    } else {
        (None, None)
    };
    Correlation {
        n,
        kendall_tau: Estimate {
            value: tau,
            lo: tlo,
            hi: thi,
        },
        spearman_rho: Estimate {
            value: rho,
            lo: rlo,
            hi: rhi,
        },
        bootstrap_kept: kept,
        bootstrap: resamples,
        confidence,
    }
}

/// Its name in `analysis:` and its stage kind.
pub const NAME: &str = "correlation";
/// One line for `robarch ls analyses`.
pub const ABOUT: &str = "per pipeline: Kendall τ and Spearman ρ (bootstrap intervals) of every measure against the robust generalization gap and unseen-attack drops";

/// The correlation stage's result file.
pub const OUTPUT: &str = "correlation.json";

/// One row of the correlation stage's output: a measure against a gap over the models of a
/// (dataset, training).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub dataset: String,
    pub training: String,
    pub measure: String,
    pub gap: String,
    pub models: Vec<String>,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    /// Per point, its training seed, where points are per seed (`over: seeds`): `models` then
    /// names an architecture once per seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    #[serde(flatten)]
    pub stat: Correlation,
}

/// The correlation stage's output ([`OUTPUT`]), read by the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
    /// The training seeds the inputs repeat (empty without `seeds:`), and whether each point is
    /// an architecture's mean over them or one seed's value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub over: Over,
}

/// What one point of a correlation is where seeds repeat.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Over {
    #[default]
    Means,
    Seeds,
}

impl Over {
    pub fn is_means(&self) -> bool {
        *self == Over::Means
    }
}

impl Output {
    /// What one point of a row is, in words (for the report), where seeds repeat.
    pub fn points(&self) -> Option<String> {
        if self.seeds.is_empty() {
            return None;
        }
        let list = self
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Some(match self.over {
            Over::Means => format!(
                "Each point is an architecture's mean over its training seeds ({list}); n counts architectures."
            ),
            Over::Seeds => format!(
                "Each point is one training seed ({list}) of an architecture; n counts (architecture, seed) pairs, and the bootstrap resamples whole architectures, so the intervals do not treat an architecture's seeds as independent evidence."
            ),
        })
    }
}

/// The gaps of one training entry: which attacks (or groups) measure what — `gap` (train − test
/// robust accuracy) under the attacks of its threat model (seen), `unseen` (test clean − robust)
/// under the others. The report groups its seen/unseen columns by the same sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sides {
    pub gap: Vec<String>,
    pub unseen: Vec<String>,
}

/// Fewer architectures than this get a warning.
pub const MIN_ARCHS: usize = 6;

pub type Key = (String, String);
/// One model of one training chain: the model's name and its chain's seed (none without `seeds:`).
pub type Point = (String, Option<u64>);
/// Per (dataset, training) → measure or gap name → point → value.
pub type Values = BTreeMap<Key, BTreeMap<String, BTreeMap<Point, f64>>>;

/// The defined values of one model's measures (the report's `analysis` columns).
pub fn defined(values: Vec<(String, Option<f64>)>) -> BTreeMap<String, f64> {
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
pub fn gap_values(evals: &[EvalResult], gaps: &BTreeMap<String, Sides>) -> Values {
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
                let stat = correlate_clustered(&x, &y, &cluster, bootstrap, confidence, s);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), [1.0, 4.0, 2.5, 2.5]);
    }

    #[test]
    fn hand_computed_tau_and_rho() {
        // x = 1..5, y = [1, 3, 2, 5, 4]: pairs 10, discordant (3,2) and (5,4) → τ = (8 − 2)/10;
        // Σd² = 0 + 1 + 1 + 1 + 1 = 4 → ρ = 1 − 6·4/(5·24) = 0.8.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 3.0, 2.0, 5.0, 4.0];
        assert!((kendall_tau_b(&x, &y) - 0.6).abs() < 1e-12);
        assert!((spearman(&x, &y) - 0.8).abs() < 1e-12);
        let rev: Vec<f64> = y.iter().map(|v| -v).collect();
        assert!((kendall_tau_b(&x, &rev) + 0.6).abs() < 1e-12);
    }

    #[test]
    fn tau_b_with_ties_matches_scipy() {
        // scipy.stats.kendalltau([1, 2, 2, 3], [1, 3, 2, 2]) = 0.4 (n₀ = 6, C = 3, D = 1,
        // one tie in each: 2/√(5·5)).
        let t = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]);
        assert!((t - 0.4).abs() < 1e-12, "{t}");
        assert!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn bootstrap_intervals_contain_the_estimate_and_repeat() {
        let x: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v + ((v * 7.0) % 5.0)).collect();
        let c = correlate(&x, &y, 2000, 0.9, 7);
        let (t, lo, hi) = (
            c.kendall_tau.value.unwrap(),
            c.kendall_tau.lo.unwrap(),
            c.kendall_tau.hi.unwrap(),
        );
        assert!(lo < t && t < hi && hi <= 1.0, "{lo} {t} {hi}");
        assert!(c.bootstrap_kept > 1900);
        assert_eq!(c, correlate(&x, &y, 2000, 0.9, 7));
        // A perfectly monotone relation: every defined resample has τ = ρ = 1.
        let m = correlate(&x, &x, 500, 0.95, 1);
        assert_eq!(m.kendall_tau.lo, Some(1.0));
        assert_eq!(m.spearman_rho.hi, Some(1.0));
        // One point: nothing is defined.
        let one = correlate(&[1.0], &[2.0], 100, 0.95, 1);
        assert_eq!(one.kendall_tau.value, None);
        assert_eq!(one.bootstrap_kept, 0);
    }

    #[test]
    fn clustered_bootstrap_resamples_whole_clusters() {
        // Singleton clusters: the same resamples as the plain bootstrap.
        let x: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| (v * 3.0) % 7.0).collect();
        let single: Vec<usize> = (0..10).collect();
        assert_eq!(
            correlate_clustered(&x, &y, &single, 500, 0.9, 3),
            correlate(&x, &y, 500, 0.9, 3)
        );
        // Two points per cluster that agree with each other but not across clusters: treating
        // them as independent narrows the interval; whole-cluster resampling keeps it wide.
        let xs: Vec<f64> = (0..12)
            .map(|i| (i / 2) as f64 + 0.01 * (i % 2) as f64)
            .collect();
        let ys: Vec<f64> = [3.0, 3.1, 0.0, 0.1, 5.0, 5.1, 1.0, 1.1, 4.0, 4.1, 2.0, 2.1].to_vec();
        let pairs: Vec<usize> = (0..12).map(|i| i / 2).collect();
        let clustered = correlate_clustered(&xs, &ys, &pairs, 2000, 0.9, 5);
        let naive = correlate(&xs, &ys, 2000, 0.9, 5);
        assert_eq!(clustered.kendall_tau.value, naive.kendall_tau.value);
        let width = |c: &Correlation| c.kendall_tau.hi.unwrap() - c.kendall_tau.lo.unwrap();
        assert!(
            width(&clustered) > 1.2 * width(&naive),
            "clustered {} vs naive {}",
            width(&clustered),
            width(&naive)
        );
    }

    #[test]
    fn quantile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!((quantile(&v, 0.5) - 2.5).abs() < 1e-12);
    }
}

#[cfg(test)]
mod study_tests {
    use super::*;

    fn table(v: &[(&str, f64)]) -> BTreeMap<Point, f64> {
        v.iter().map(|(k, x)| ((k.to_string(), None), *x)).collect()
    }

    /// `(model, seed, value)` triples.
    fn seeded(v: &[(&str, u64, f64)]) -> BTreeMap<Point, f64> {
        v.iter()
            .map(|(k, s, x)| ((k.to_string(), Some(*s)), *x))
            .collect()
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
            Sides {
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
        assert!(means
            .points()
            .unwrap()
            .contains("mean over its training seeds (0, 1)"));
        let per_seed = correlate_all(&measures, &gaps, 200, 0.9, 0, Over::Seeds);
        let r = &per_seed.rows[0];
        assert_eq!(r.models, ["a", "a", "b", "b", "c"]);
        assert_eq!(r.seeds, [0, 1, 0, 1, 0]);
        assert_eq!(r.y, [30.0, 10.0, 12.0, 14.0, 2.0]);
        assert_eq!(r.stat.n, 5);
        assert!(per_seed
            .points()
            .unwrap()
            .contains("resamples whole architectures"));
        // Four architectures: the warning counts architectures, not (architecture, seed) pairs.
        assert!(per_seed.warnings[0].contains("only 4 architectures"));
    }
}
