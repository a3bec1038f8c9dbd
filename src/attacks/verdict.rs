//! Evaluation results and the verdicts drawn from them: the attacks of an evaluation, curve
//! points typed ([`EvalAttack`], [`CurvePoint`]), the evaluate stage's summary
//! ([`EvalMetrics`]) and per-sample flags ([`PER_SAMPLE`]), one result labelled with the spec
//! names it came from ([`EvalResult`]), worst-case groups over attacks and threat models
//! ([`group_results`]) and the gradient-masking checks ([`warnings`]). The report's tables and the
//! correlation stage's gaps are built from these.
use super::{AttackClass, AttackConfig};
use crate::vocab::Norm;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The evaluate stage's per-point outputs: `clean_correct`, `robust_correct` (uint8 [n]),
/// `margin` (float32 [n]: `z_y − max_{j≠y} z_j` of the last image scored) and, for compositions,
/// `broken_by` (int64 [n], the first member that broke the point, −1 for none).
pub const PER_SAMPLE: &str = "per_sample.safetensors";
/// The evaluate stage's summary ([`EvalMetrics`]), also its entry's summary.
pub const METRICS: &str = "metrics.json";

/// An evaluation's per-point outputs ([`PER_SAMPLE`]), in point order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Points {
    pub clean: Vec<bool>,
    pub robust: Vec<bool>,
    pub margin: Vec<f32>,
    pub broken_by: Option<Vec<i64>>,
}

impl Points {
    pub fn len(&self) -> usize {
        self.clean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clean.is_empty()
    }

    /// The points of `parts` one after another (shards in point order).
    pub fn concat(parts: &[Points]) -> Points {
        let mut all = Points::default();
        let composite = parts.iter().any(|p| p.broken_by.is_some());
        let mut by = Vec::new();
        for p in parts {
            all.clean.extend(&p.clean);
            all.robust.extend(&p.robust);
            all.margin.extend(&p.margin);
            match &p.broken_by {
                Some(b) => by.extend(b),
                None => by.extend(std::iter::repeat_n(-1, p.len())),
            }
        }
        all.broken_by = composite.then_some(by);
        all
    }

    /// The summary of these points under `attack` (`members`: a composition's member names).
    pub fn metrics(
        &self,
        attack: &AttackConfig,
        members: Option<&[String]>,
        notes: Vec<String>,
        seconds: f64,
    ) -> EvalMetrics {
        let n = self.len();
        let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        let count = |f: &dyn Fn(usize) -> bool| (0..n).filter(|&i| f(i)).count();
        // Robust accuracy after each member: clean-correct points no member up to i broke.
        let by = self.broken_by.clone().unwrap_or_else(|| vec![-1; n]);
        let members = members
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let still = count(&|p| self.clean[p] && (by[p] < 0 || by[p] > i as i64));
                (name.clone(), frac(still))
            })
            .collect();
        EvalMetrics {
            n,
            clean_accuracy: frac(count(&|p| self.clean[p])),
            robust_accuracy: frac(count(&|p| self.robust[p])),
            eps: attack.eps(),
            norm: attack.norm(),
            class: attack.class(),
            members,
            notes,
            seconds,
        }
    }

    /// Writes the points as [`PER_SAMPLE`] to `path`.
    pub fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use safetensors::{tensor::TensorView, Dtype};
        let n = self.len();
        let flags = |v: &[bool]| v.iter().map(|&b| b as u8).collect::<Vec<u8>>();
        let (clean, robust) = (flags(&self.clean), flags(&self.robust));
        let margin: Vec<u8> = self.margin.iter().flat_map(|v| v.to_le_bytes()).collect();
        let by: Option<Vec<u8>> = self
            .broken_by
            .as_ref()
            .map(|b| b.iter().flat_map(|v| v.to_le_bytes()).collect());
        fn view(dtype: Dtype, n: usize, bytes: &[u8]) -> anyhow::Result<TensorView<'_>> {
            TensorView::new(dtype, vec![n], bytes).map_err(|e| anyhow::anyhow!("{e:?}"))
        }
        let mut tensors = vec![
            ("clean_correct", view(Dtype::U8, n, &clean)?),
            ("robust_correct", view(Dtype::U8, n, &robust)?),
            ("margin", view(Dtype::F32, n, &margin)?),
        ];
        if let Some(by) = &by {
            tensors.push(("broken_by", view(Dtype::I64, n, by)?));
        }
        let bytes = safetensors::tensor::serialize(tensors, &None)
            .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", path.display()))?;
        std::fs::write(path, bytes)?;
        Ok(())
    }

    /// Reads [`PER_SAMPLE`] from `path`.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Points> {
        use anyhow::Context;
        use safetensors::Dtype;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("reading {}: {e:?}", path.display()))?;
        let get = |name: &str, dtype: Dtype| -> anyhow::Result<Option<Vec<u8>>> {
            let Ok(t) = st.tensor(name) else { return Ok(None) };
            anyhow::ensure!(
                t.dtype() == dtype,
                "{}: {name} is {:?}, not {dtype:?}",
                path.display(),
                t.dtype()
            );
            Ok(Some(t.data().to_vec()))
        };
        let need = |name: &str, dtype| {
            get(name, dtype)?.with_context(|| format!("{} lacks {name}", path.display()))
        };
        let flags = |v: Vec<u8>| v.into_iter().map(|b| b == 1).collect::<Vec<bool>>();
        let clean = flags(need("clean_correct", Dtype::U8)?);
        let robust = flags(need("robust_correct", Dtype::U8)?);
        let margin = match get("margin", Dtype::F32)? {
            Some(b) => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            None => vec![f32::NAN; clean.len()],
        };
        let broken_by = get("broken_by", Dtype::I64)?.map(|b| {
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        });
        Ok(Points {
            clean,
            robust,
            margin,
            broken_by,
        })
    }
}

/// One attack of the evaluation, resolved: an entry of `evaluation.attacks`, or one extra radius
/// of its `curve` (a curve point), which is evaluated as an attack of its own.
#[derive(Debug, Clone)]
pub struct EvalAttack {
    /// The entry's name under `evaluation.attacks` (`pgd-linf`), a curve point's too.
    pub name: String,
    /// A curve point's radius; `None` for the entry itself.
    pub curve_eps: Option<f64>,
    /// The attack, at the curve point's radius for a curve point.
    pub config: AttackConfig,
}

impl EvalAttack {
    /// The name in stage ids, labels and tables: the entry's, or `attack@ε` for a curve point
    /// with ε in decimal, at most 6 places (`pgd-linf@0.007843`). Stage ids and keys hold it, so
    /// its format is fixed.
    pub fn id(&self) -> String {
        match self.curve_eps {
            None => self.name.clone(),
            Some(eps) => {
                let s = format!("{eps:.6}");
                let s = s.trim_end_matches('0').trim_end_matches('.');
                format!("{}@{s}", self.name)
            }
        }
    }

    /// The curve point this attack is, if it is one.
    pub fn curve(&self) -> Option<CurvePoint> {
        self.curve_eps.map(|eps| CurvePoint {
            attack: self.name.clone(),
            eps,
        })
    }
}

/// A curve point: one extra radius of an attack's `curve`, evaluated as its own attack
/// ([`EvalAttack::id`] names it) and shown in the ε-curve table and plots only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The `evaluation.attacks` entry whose curve it is (`pgd-linf`).
    pub attack: String,
    /// Its radius.
    pub eps: f64,
}

/// The evaluate stage's summary of one (model, attack, split).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalMetrics {
    pub n: usize,
    pub clean_accuracy: f64,
    pub robust_accuracy: f64,
    /// The attack's radius and threat-model norm (`None` for clean).
    #[serde(default)]
    pub eps: f64,
    #[serde(default)]
    pub norm: Option<Norm>,
    #[serde(default = "iterative")]
    pub class: AttackClass,
    /// Compositions: robust accuracy after each member, in order (AutoAttack's log).
    #[serde(default)]
    pub members: Vec<(String, f64)>,
    /// Warnings the attack raised (gradient-masking signs, skipped members).
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub seconds: f64,
}

fn iterative() -> AttackClass {
    AttackClass::Iterative
}

/// One trained model in tables: (dataset, model, training).
pub type RowKey = (String, String, String);

/// One evaluation result, labelled with the spec names it came from.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub dataset: String,
    pub model: String,
    pub training: String,
    pub attack: String,
    pub split: String,
    /// The training seed, where a pipeline repeats seeds (reports show mean ± std over them).
    pub seed: Option<u64>,
    pub n: usize,
    pub clean_accuracy: f64,
    pub robust_accuracy: f64,
    pub eps: f64,
    pub norm: Option<Norm>,
    pub class: AttackClass,
    /// Per point: survived the attack (and was classified correctly clean).
    pub robust: Vec<bool>,
    pub notes: Vec<String>,
    /// The curve point this result is of (`attack` is then its [`EvalAttack::id`]); `None` for
    /// an entry of `evaluation.attacks` or a group.
    pub curve: Option<CurvePoint>,
}

impl EvalResult {
    fn key(&self) -> (RowKey, String, Option<u64>) {
        (
            (
                self.dataset.clone(),
                self.model.clone(),
                self.training.clone(),
            ),
            self.split.clone(),
            self.seed,
        )
    }
    /// Whether this is a curve point, shown in the ε-curve table only.
    pub fn is_curve_point(&self) -> bool {
        self.curve.is_some()
    }

    /// The entry of `evaluation.attacks` (or the group) this is of: a curve point's attack, else
    /// `attack`. The ε-curve table and plots gather an attack's radii under it.
    pub fn base(&self) -> &str {
        self.curve
            .as_ref()
            .map_or(self.attack.as_str(), |c| c.attack.as_str())
    }
}

/// Group rows: for each (dataset, model, training, split) that has every member, a point is
/// robust only if it survived every member (the per-sample worst case; across norms, the union
/// threat model). Members missing for a key leave that group out for it.
pub fn group_results(
    evals: &[EvalResult],
    groups: &BTreeMap<String, Vec<String>>,
) -> Vec<EvalResult> {
    let mut by: BTreeMap<(RowKey, String, Option<u64>), Vec<&EvalResult>> = BTreeMap::new();
    for e in evals {
        by.entry(e.key()).or_default().push(e);
    }
    let mut out = Vec::new();
    for ((row, split, seed), es) in &by {
        for (g, members) in groups {
            let found: Vec<&&EvalResult> = members
                .iter()
                .filter_map(|m| es.iter().find(|e| &e.attack == m))
                .collect();
            if found.len() != members.len() || found.is_empty() {
                continue;
            }
            // Members evaluated on different `limits` share their first n points (every
            // evaluation takes the first N of the prepared split): the group is over those.
            let smallest = found
                .iter()
                .min_by_key(|e| e.robust.len())
                .expect("a group has members");
            let n = smallest.robust.len();
            let robust: Vec<bool> = (0..n).map(|i| found.iter().all(|e| e.robust[i])).collect();
            let norms: BTreeSet<Norm> = found.iter().filter_map(|e| e.norm).collect();
            out.push(EvalResult {
                dataset: row.0.clone(),
                model: row.1.clone(),
                training: row.2.clone(),
                attack: g.clone(),
                split: split.clone(),
                seed: *seed,
                n,
                clean_accuracy: smallest.clean_accuracy,
                robust_accuracy: robust.iter().filter(|&&r| r).count() as f64 / n.max(1) as f64,
                eps: found.iter().map(|e| e.eps).fold(0.0, f64::max),
                norm: if norms.len() == 1 {
                    norms.into_iter().next()
                } else {
                    None
                },
                class: AttackClass::Iterative,
                robust,
                notes: Vec::new(),
                curve: None,
            });
        }
    }
    out
}

/// Signs of gradient masking (Carlini et al. 2019, "Perform basic sanity tests") and the notes the
/// attacks raised, one line each: within one (model, split) and one threat model (norm, ε), a
/// single-step attack must not beat an iterative one, and a black-box attack must not beat the
/// white-box ones.
pub fn warnings(evals: &[EvalResult]) -> Vec<String> {
    let mut out = Vec::new();
    let mut by: BTreeMap<(RowKey, String, Option<u64>), Vec<&EvalResult>> = BTreeMap::new();
    for e in evals {
        by.entry(e.key()).or_default().push(e);
        for n in &e.notes {
            out.push(format!(
                "{}/{}/{} `{}` on {}: {n}",
                e.dataset, e.model, e.training, e.attack, e.split
            ));
        }
    }
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    for ((row, split, seed), es) in &by {
        let seed = seed.map(|s| format!(" (seed {s})")).unwrap_or_default();
        let same = |a: &EvalResult, b: &EvalResult| {
            a.norm == b.norm && (a.eps - b.eps).abs() <= 1e-12 * a.eps.max(1.0)
        };
        for weak in es
            .iter()
            .filter(|e| matches!(e.class, AttackClass::SingleStep | AttackClass::BlackBox))
        {
            let white = es
                .iter()
                .filter(|e| e.class == AttackClass::Iterative && same(weak, e));
            // Against the strongest white-box attack only: a weak iterative attack (few small
            // steps) may well lose to FGSM or to 5000 queries without any masking.
            let strongest = white.min_by(|a, b| a.robust_accuracy.total_cmp(&b.robust_accuracy));
            if let Some(strong) = strongest {
                if weak.robust_accuracy < strong.robust_accuracy {
                    let only: usize = (0..weak.robust.len().min(strong.robust.len()))
                        .filter(|&i| !weak.robust[i] && strong.robust[i])
                        .count();
                    let what = if weak.class == AttackClass::SingleStep {
                        "single-step attack beats iterative"
                    } else {
                        "black-box attack beats white-box"
                    };
                    out.push(format!(
                        "{}/{}/{}{seed} on {split}: {what}: `{}` {} < `{}` {} ({only} points broken only by `{}`): a sign of gradient masking (Carlini et al. 2019)",
                        row.0, row.1, row.2, weak.attack, pct(weak.robust_accuracy), strong.attack, pct(strong.robust_accuracy), weak.attack
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn ev(model: &str, attack: &str, split: &str, robust: f64) -> EvalResult {
        EvalResult {
            dataset: "d".into(),
            model: model.into(),
            training: "t".into(),
            attack: attack.into(),
            split: split.into(),
            seed: None,
            n: 10,
            clean_accuracy: 0.9,
            robust_accuracy: robust,
            eps: 0.0,
            norm: None,
            class: AttackClass::Iterative,
            robust: Vec::new(),
            notes: Vec::new(),
            curve: None,
        }
    }

    /// An evaluation with per-sample flags (robust accuracy computed from them).
    pub fn flags(
        attack: &str,
        norm: Norm,
        eps: f64,
        class: AttackClass,
        robust: &[u8],
    ) -> EvalResult {
        let robust: Vec<bool> = robust.iter().map(|&r| r == 1).collect();
        EvalResult {
            n: robust.len(),
            robust_accuracy: robust.iter().filter(|&&r| r).count() as f64 / robust.len() as f64,
            eps,
            norm: Some(norm),
            class,
            robust,
            ..ev("cnn", attack, "test", 0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::flags;
    use super::*;

    #[test]
    fn groups_take_the_per_sample_worst_case_across_norms() {
        let evals = vec![
            flags(
                "pgd-linf",
                Norm::Linf,
                0.03,
                AttackClass::Iterative,
                &[1, 1, 0, 1, 0],
            ),
            flags(
                "pgd-l2",
                Norm::L2,
                0.5,
                AttackClass::Iterative,
                &[1, 0, 1, 1, 0],
            ),
            flags(
                "pgd-l1",
                Norm::L1,
                12.0,
                AttackClass::Iterative,
                &[1, 1, 1, 0, 0],
            ),
        ];
        let groups = BTreeMap::from([
            (
                "union".to_string(),
                vec!["pgd-linf".into(), "pgd-l2".into(), "pgd-l1".into()],
            ),
            ("linf".to_string(), vec!["pgd-linf".into()]),
            ("missing".to_string(), vec!["pgd-linf".into(), "aa".into()]),
        ]);
        let g = group_results(&evals, &groups);
        assert_eq!(g.len(), 2, "a group with a missing member is left out");
        let union = g.iter().find(|e| e.attack == "union").unwrap();
        assert_eq!(union.robust, vec![true, false, false, false, false]);
        assert!((union.robust_accuracy - 0.2).abs() < 1e-12);
        assert_eq!(union.norm, None);
        // Worst case ≤ every member (Carlini et al.: mean of min, not min of means).
        assert!(evals
            .iter()
            .all(|e| union.robust_accuracy <= e.robust_accuracy));
        let linf = g.iter().find(|e| e.attack == "linf").unwrap();
        assert_eq!(linf.norm, Some(Norm::Linf));
        assert!((linf.robust_accuracy - 0.6).abs() < 1e-12);
    }

    #[test]
    fn groups_over_different_limits_use_the_shared_points() {
        // AutoAttack on the first 3 points, PGD on 5: the group is over the first 3.
        let evals = vec![
            flags("pgd", Norm::Linf, 0.03, AttackClass::Iterative, &[1, 1, 1, 0, 1]),
            flags("aa", Norm::Linf, 0.03, AttackClass::Iterative, &[1, 0, 1]),
        ];
        let groups = BTreeMap::from([("g".to_string(), vec!["pgd".into(), "aa".into()])]);
        let g = group_results(&evals, &groups);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].robust, vec![true, false, true]);
        assert_eq!(g[0].n, 3);
        assert!((g[0].robust_accuracy - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn masking_warnings_fire_only_when_a_weaker_attack_wins() {
        let pgd = flags(
            "pgd",
            Norm::Linf,
            0.03,
            AttackClass::Iterative,
            &[1, 1, 1, 0],
        );
        let fgsm_ok = flags(
            "fgsm",
            Norm::Linf,
            0.03,
            AttackClass::SingleStep,
            &[1, 1, 1, 1],
        );
        let fgsm_bad = flags(
            "fgsm",
            Norm::Linf,
            0.03,
            AttackClass::SingleStep,
            &[1, 0, 0, 1],
        );
        let square_bad = flags(
            "square",
            Norm::Linf,
            0.03,
            AttackClass::BlackBox,
            &[0, 1, 1, 0],
        );
        let other_eps = flags(
            "square",
            Norm::Linf,
            0.06,
            AttackClass::BlackBox,
            &[0, 0, 0, 0],
        );
        assert!(warnings(&[pgd.clone(), fgsm_ok.clone(), other_eps]).is_empty());
        let w = warnings(&[pgd.clone(), fgsm_bad]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("single-step attack beats iterative")
                && w[0].contains("2 points broken only by `fgsm`"),
            "{}",
            w[0]
        );
        let w = warnings(&[pgd.clone(), square_bad.clone()]);
        assert!(w[0].contains("black-box attack beats white-box"), "{w:?}");
        // A single-step or black-box attack that only beats a weak white-box attack (not the
        // strongest) is fine.
        let weak_pgd5 = flags(
            "pgd-5",
            Norm::Linf,
            0.03,
            AttackClass::Iterative,
            &[1, 1, 1, 1],
        );
        let fgsm_mid = flags(
            "fgsm",
            Norm::Linf,
            0.03,
            AttackClass::SingleStep,
            &[1, 1, 0, 1],
        );
        assert!(warnings(&[weak_pgd5, pgd.clone(), fgsm_mid]).is_empty());
        let weak_pgd = flags(
            "pgd-2",
            Norm::Linf,
            0.03,
            AttackClass::Iterative,
            &[1, 1, 1, 1],
        );
        let apgd = flags(
            "apgd",
            Norm::Linf,
            0.03,
            AttackClass::Iterative,
            &[0, 0, 1, 0],
        );
        assert!(warnings(&[weak_pgd.clone(), apgd, square_bad.clone()]).is_empty());
        let w = warnings(&[weak_pgd, pgd, square_bad]);
        assert_eq!(
            w.len(),
            1,
            "one warning, against the strongest white-box: {w:?}"
        );
        assert!(w[0].contains("< `pgd` 75.00%"), "{w:?}");
        let mut noted = fgsm_ok;
        noted.notes.push("zero gradients".into());
        assert!(warnings(&[noted])[0].ends_with("zero gradients"));
    }
}
