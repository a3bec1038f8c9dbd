//! The study's table layouts: one row per architecture, grouped by architecture kind (CNN,
//! transformer, hybrid, MLP, as the paper groups them) inside blocks of (dataset, training), with
//! grouped columns (an attack's train and test accuracy side by side). A cell holds one value per
//! seed; the renderers show the mean, with ± the sample standard deviation where seeds repeat, and
//! mark the best value of each column per block.
use super::{Inputs, ModelMeasures};
use crate::attacks::verdict::{EvalResult, RowKey};
use anyhow::Result;
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Which value of a column is the best (shown in bold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// Descriptive columns: nothing is bold.
    Neither,
}

/// One row: the block it belongs to, its kind section (architecture tables) and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StudyRow {
    pub dataset: String,
    pub training: String,
    /// The architecture kind (`cnn`, `transformer`, …); `None` in tables not about models.
    pub section: Option<String>,
    /// The row's labels, one per [`StudyTable::row_names`].
    pub labels: Vec<String>,
}

/// One column: an optional group heading (the attack) above its name (`train`, `test`).
#[derive(Debug, Clone)]
pub struct StudyCol {
    pub group: Option<String>,
    pub name: String,
    pub better: Better,
    /// Per row: the value of every seed (empty: missing).
    pub cells: Vec<Vec<f64>>,
}

impl StudyCol {
    /// The column's name in flat formats (CSV, Parquet): `group/name`, or `name`.
    pub fn flat_name(&self) -> String {
        match &self.group {
            Some(g) => format!("{g}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A table in the study's layout.
#[derive(Debug, Clone)]
pub struct StudyTable {
    /// File name (without extension).
    pub file: &'static str,
    /// One-line description: the caption in LaTeX and the heading in Markdown and HTML.
    pub title: &'static str,
    /// The values' unit and decimals: `%` with 2, or plain with 3.
    pub percent: bool,
    pub row_names: Vec<&'static str>,
    pub rows: Vec<StudyRow>,
    pub cols: Vec<StudyCol>,
    /// Per row, its clean test accuracy (%) where a low value can make a "lower is better"
    /// value look best (a model that learnt little has a small gap and small norms): such a
    /// column's bold goes only to rows within [`CONTENDER_POINTS`] of the block's most
    /// accurate. Empty: every row competes.
    pub accuracy: Vec<Option<f64>>,
}

/// How far below the block's best clean test accuracy (points) a row may be and still have
/// its gap, drop or bound bolded as the best.
pub const CONTENDER_POINTS: f64 = 5.0;

/// Mean and sample standard deviation (`None` with fewer than two values).
pub fn mean_std(v: &[f64]) -> Option<(f64, Option<f64>)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

impl StudyTable {
    /// The (dataset, training) blocks in row order, each with its row indices.
    pub fn blocks(&self) -> Vec<((String, String), Vec<usize>)> {
        let mut out: Vec<((String, String), Vec<usize>)> = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            let b = (r.dataset.clone(), r.training.clone());
            match out.last_mut() {
                Some((last, ix)) if *last == b => ix.push(i),
                _ => out.push((b, vec![i])),
            }
        }
        out
    }

    /// Whether any cell holds more than one seed.
    pub fn has_seeds(&self) -> bool {
        self.cols
            .iter()
            .any(|c| c.cells.iter().any(|v| v.len() > 1))
    }

    /// Rows (by index) whose mean is the best of column `c` within their block; ties are all best.
    pub fn best(&self, c: usize) -> BTreeSet<usize> {
        let col = &self.cols[c];
        let mut out = BTreeSet::new();
        if col.better == Better::Neither {
            return out;
        }
        for (_, ix) in self.blocks() {
            let top = ix
                .iter()
                .filter_map(|&i| self.accuracy.get(i).copied().flatten())
                .reduce(f64::max);
            let contends = |i: usize| match (col.better, top) {
                (Better::Lower, Some(top)) => self
                    .accuracy
                    .get(i)
                    .copied()
                    .flatten()
                    .is_some_and(|a| a >= top - CONTENDER_POINTS),
                _ => true,
            };
            let all: Vec<(usize, f64)> = ix
                .iter()
                .filter_map(|&i| mean_std(&col.cells[i]).map(|(m, _)| (i, m)))
                .filter(|(_, m)| m.is_finite())
                .collect();
            let means: Vec<(usize, f64)> =
                all.iter().copied().filter(|&(i, _)| contends(i)).collect();
            if all.len() < 2 || means.is_empty() {
                continue;
            }
            let pick = |a: f64, b: f64| match col.better {
                Better::Higher => a.max(b),
                _ => a.min(b),
            };
            let best = means.iter().map(|p| p.1).reduce(pick).expect("non-empty");
            out.extend(
                means
                    .iter()
                    .filter(|(_, m)| (m - best).abs() <= 1e-9 * best.abs().max(1.0))
                    .map(|p| p.0),
            );
        }
        out
    }

    /// A cell as text: mean (± std where seeds repeat) with the table's decimals.
    pub fn cell_text(&self, c: usize, r: usize, pm: &str) -> Option<String> {
        let d = if self.percent { 2 } else { 3 };
        mean_std(&self.cols[c].cells[r]).map(|(m, s)| match s {
            Some(s) => format!("{m:.d$}{pm}{s:.d$}"),
            None => format!("{m:.d$}"),
        })
    }

    /// The table as a DataFrame: `dataset`, `training`, `kind` (architecture tables), the row
    /// labels, then one mean column per column (`group/name`); where seeds repeat, a `…_std`
    /// column after each and `seeds` (values per row) at the end.
    pub fn to_frame(&self) -> Result<DataFrame> {
        let s = |f: &dyn Fn(&StudyRow) -> String| self.rows.iter().map(f).collect::<Vec<_>>();
        let mut cols = vec![
            Column::new("dataset".into(), s(&|r| r.dataset.clone())),
            Column::new("training".into(), s(&|r| r.training.clone())),
        ];
        if self.rows.iter().any(|r| r.section.is_some()) {
            cols.push(Column::new(
                "kind".into(),
                s(&|r| r.section.clone().unwrap_or_default()),
            ));
        }
        for (i, n) in self.row_names.iter().enumerate() {
            cols.push(Column::new((*n).into(), s(&|r| r.labels[i].clone())));
        }
        let seeds = self.has_seeds();
        for c in &self.cols {
            let ms: Vec<Option<(f64, Option<f64>)>> = c.cells.iter().map(|v| mean_std(v)).collect();
            cols.push(Column::new(
                c.flat_name().into(),
                ms.iter().map(|m| m.map(|m| m.0)).collect::<Vec<_>>(),
            ));
            if seeds {
                cols.push(Column::new(
                    format!("{}_std", c.flat_name()).into(),
                    ms.iter().map(|m| m.and_then(|m| m.1)).collect::<Vec<_>>(),
                ));
            }
        }
        if seeds {
            let n: Vec<u32> = (0..self.rows.len())
                .map(|r| {
                    self.cols
                        .iter()
                        .map(|c| c.cells[r].len())
                        .max()
                        .unwrap_or(0) as u32
                })
                .collect();
            cols.push(Column::new("seeds".into(), n));
        }
        Ok(DataFrame::new(cols)?)
    }
}

/// The paper's order of kinds; unknown kinds last.
pub(super) fn kind_rank(kind: &str) -> usize {
    crate::models::ArchKind::ALL
        .iter()
        .position(|k| k.as_str() == kind)
        .unwrap_or(usize::MAX)
}

/// Display name of a kind section.
pub fn kind_title(kind: &str) -> &str {
    match kind {
        "cnn" => "CNN",
        "transformer" => "Transformer",
        "hybrid" => "Hybrid",
        "mlp" => "MLP",
        "external" => "Imported",
        k => k,
    }
}

/// Rows of one per trained model, ordered dataset, training, kind (paper order), model.
fn model_rows<'a>(
    inputs: &Inputs,
    keys: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Vec<StudyRow> {
    let mut set: BTreeSet<(String, String, usize, String, String)> = BTreeSet::new();
    for (d, m, t) in keys {
        let kind = inputs.kind_of(m).to_string();
        set.insert((d.into(), t.into(), kind_rank(&kind), kind, m.into()));
    }
    set.into_iter()
        .map(|(dataset, training, _, kind, model)| StudyRow {
            dataset,
            training,
            section: Some(kind),
            labels: vec![model],
        })
        .collect()
}

type Slot = (String, String, String, String);

/// `(dataset, model, training, column id)` → one value per seed.
#[derive(Default)]
struct Cells(BTreeMap<Slot, BTreeMap<Option<u64>, f64>>);

impl Cells {
    fn put(&mut self, e: (&str, &str, &str), seed: Option<u64>, col: &str, v: f64) {
        self.0
            .entry((e.0.into(), e.1.into(), e.2.into(), col.into()))
            .or_default()
            .insert(seed, v);
    }
    fn column(&self, rows: &[StudyRow], col: &str) -> Vec<Vec<f64>> {
        rows.iter()
            .map(|r| {
                self.0
                    .get(&(
                        r.dataset.clone(),
                        r.labels[0].clone(),
                        r.training.clone(),
                        col.into(),
                    ))
                    .map(|m| m.values().copied().collect())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Attacks of the non-curve evaluations among `evals` in first-seen order, `clean` first.
pub(super) fn attack_order<'a>(evals: impl IntoIterator<Item = &'a EvalResult>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in evals.into_iter().filter(|e| !e.is_curve_point()) {
        if !out.contains(&e.attack) {
            out.push(e.attack.clone());
        }
    }
    out.sort_by_key(|a| a != "clean");
    out
}

/// The attack columns of the accuracy and gap tables: every attack, and `clean` (from each
/// evaluation's clean accuracy) first even where no `clean` attack ran.
fn table_attacks(inputs: &Inputs) -> Vec<String> {
    let mut attacks = attack_order(&inputs.evals);
    if !attacks.iter().any(|a| a == "clean") {
        attacks.insert(0, "clean".into());
    }
    attacks
}

fn key(e: &EvalResult) -> (&str, &str, &str) {
    (&e.dataset, &e.model, &e.training)
}

/// Per (model, seed, split), the evaluation on the most points: where `evaluation.only` gives an
/// attack fewer points, the clean accuracy a table shows is over the most points evaluated.
pub(super) fn widest<'a>(evals: &[&'a EvalResult]) -> Vec<&'a EvalResult> {
    let mut best: BTreeMap<((&str, &str, &str), Option<u64>, &str), &EvalResult> = BTreeMap::new();
    for e in evals {
        let slot = best.entry((key(e), e.seed, e.split.as_str())).or_insert(e);
        if e.n > slot.n {
            *slot = e;
        }
    }
    best.into_values().collect()
}

/// Each architecture row's clean test accuracy (%), the mean over seeds of the evaluation on
/// the most points: who contends for a bold gap, drop or bound ([`StudyTable::accuracy`]).
fn clean_test(inputs: &Inputs, rows: &[StudyRow]) -> Vec<Option<f64>> {
    let test: Vec<&EvalResult> = inputs
        .evals
        .iter()
        .filter(|e| !e.is_curve_point() && e.split == "test")
        .collect();
    let widest = widest(&test);
    rows.iter()
        .map(|r| {
            let v: Vec<f64> = widest
                .iter()
                .filter(|e| {
                    e.dataset == r.dataset
                        && e.training == r.training
                        && r.labels.first() == Some(&e.model)
                })
                .map(|e| 100.0 * e.clean_accuracy)
                .collect();
            mean_std(&v).map(|m| m.0)
        })
        .collect()
}

/// Robust accuracy (%) per architecture and attack, train and test side by side; `clean` is the
/// clean accuracy.
pub fn accuracy_by_attack(inputs: &Inputs) -> Option<StudyTable> {
    let evals: Vec<&EvalResult> = inputs
        .evals
        .iter()
        .filter(|e| !e.is_curve_point())
        .collect();
    if evals.is_empty() {
        return None;
    }
    let mut cells = Cells::default();
    for e in &evals {
        cells.put(
            key(e),
            e.seed,
            &format!("{}/{}", e.attack, e.split),
            100.0 * e.robust_accuracy,
        );
    }
    for e in widest(&evals) {
        cells.put(
            key(e),
            e.seed,
            &format!("clean/{}", e.split),
            100.0 * e.clean_accuracy,
        );
    }
    let rows = model_rows(inputs, evals.iter().map(|e| key(e)));
    let attacks = table_attacks(inputs);
    let splits = split_order(&evals);
    let mut cols = Vec::new();
    for a in &attacks {
        for s in &splits {
            cols.push(StudyCol {
                group: Some(a.clone()),
                name: s.clone(),
                better: Better::Higher,
                cells: cells.column(&rows, &format!("{a}/{s}")),
            });
        }
    }
    Some(StudyTable {
        file: "accuracy_by_attack",
        title: "Clean and robust accuracy (%) per architecture and attack, train and test",
        percent: true,
        row_names: vec!["model"],
        rows,
        cols,
        accuracy: Vec::new(),
    })
}

/// `train` then `test`, then any other split.
fn split_order(evals: &[&EvalResult]) -> Vec<String> {
    let mut s: Vec<String> = evals
        .iter()
        .map(|e| e.split.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    s.sort_by_key(|x| match x.as_str() {
        "train" => 0,
        "test" => 1,
        _ => 2,
    });
    s
}

/// The robust generalization gap (train − test robust accuracy, points) per architecture and
/// attack; `clean` is the clean gap.
pub fn gap_by_attack(inputs: &Inputs) -> Option<StudyTable> {
    let evals: Vec<&EvalResult> = inputs
        .evals
        .iter()
        .filter(|e| !e.is_curve_point())
        .collect();
    /// Robust and clean accuracy on (train, test).
    type Sides = ((Option<f64>, Option<f64>), (Option<f64>, Option<f64>));
    let mut acc: BTreeMap<(&str, &str, &str, Option<u64>, &str), Sides> = BTreeMap::new();
    for e in &evals {
        let (d, m, t) = key(e);
        let slot = acc.entry((d, m, t, e.seed, &e.attack)).or_default();
        match e.split.as_str() {
            "train" => {
                slot.0 .0 = Some(e.robust_accuracy);
                slot.1 .0 = Some(e.clean_accuracy);
            }
            "test" => {
                slot.0 .1 = Some(e.robust_accuracy);
                slot.1 .1 = Some(e.clean_accuracy);
            }
            _ => {}
        }
    }
    let mut cells = Cells::default();
    for ((d, m, t, seed, a), ((tr, te), _)) in &acc {
        if let (Some(tr), Some(te)) = (tr, te) {
            cells.put((d, m, t), *seed, a, 100.0 * (tr - te));
        }
    }
    // The clean gap from the evaluations on the most points of each split.
    let mut clean: BTreeMap<((&str, &str, &str), Option<u64>), (Option<f64>, Option<f64>)> =
        BTreeMap::new();
    for e in widest(&evals) {
        let slot = clean.entry((key(e), e.seed)).or_default();
        match e.split.as_str() {
            "train" => slot.0 = Some(e.clean_accuracy),
            "test" => slot.1 = Some(e.clean_accuracy),
            _ => {}
        }
    }
    for ((k, seed), sides) in &clean {
        if let (Some(tr), Some(te)) = sides {
            cells.put(*k, *seed, "clean", 100.0 * (tr - te));
        }
    }
    if cells.0.is_empty() {
        return None;
    }
    let rows = model_rows(
        inputs,
        cells
            .0
            .keys()
            .map(|k| (k.0.as_str(), k.1.as_str(), k.2.as_str())),
    );
    let attacks = table_attacks(inputs);
    let cols = attacks
        .iter()
        .map(|a| StudyCol {
            group: None,
            name: a.clone(),
            better: Better::Lower,
            cells: cells.column(&rows, a),
        })
        .filter(|c| c.cells.iter().any(|v| !v.is_empty()))
        .collect();
    Some(StudyTable {
        file: "gap_by_attack",
        title: "Robust generalization gap (train - test robust accuracy, points) per architecture and attack; bold: the smallest among architectures within 5 points of the best clean test accuracy",
        percent: true,
        row_names: vec!["model"],
        accuracy: clean_test(inputs, &rows),
        rows,
        cols,
    })
}

/// Accuracy drop (test clean − test robust, points) under the attacks of the training threat
/// model (seen) and under the others (unseen), with the mean of each side.
pub fn unseen_drop(inputs: &Inputs) -> Option<StudyTable> {
    let test: Vec<&EvalResult> = inputs
        .evals
        .iter()
        .filter(|e| !e.is_curve_point() && e.split == "test")
        .collect();
    let mut cells = Cells::default();
    let mut seen_order: Vec<String> = Vec::new();
    let mut unseen_order: Vec<String> = Vec::new();
    // Per (model, seed): the drops under seen and under unseen attacks.
    type Drops = (Vec<f64>, Vec<f64>);
    let mut means: BTreeMap<(RowKey, Option<u64>), Drops> = BTreeMap::new();
    for e in &test {
        let Some(g) = inputs.gaps.get(&e.training) else {
            continue;
        };
        let side = if g.gap.contains(&e.attack) {
            "seen"
        } else if g.unseen.contains(&e.attack) {
            "unseen"
        } else {
            continue;
        };
        let order = if side == "seen" {
            &mut seen_order
        } else {
            &mut unseen_order
        };
        if !order.contains(&e.attack) {
            order.push(e.attack.clone());
        }
        let drop = 100.0 * (e.clean_accuracy - e.robust_accuracy);
        cells.put(key(e), e.seed, &format!("{side}/{}", e.attack), drop);
        let m = means
            .entry((
                (e.dataset.clone(), e.model.clone(), e.training.clone()),
                e.seed,
            ))
            .or_default();
        if side == "seen" {
            m.0.push(drop)
        } else {
            m.1.push(drop)
        }
    }
    if unseen_order.is_empty() || seen_order.is_empty() {
        return None;
    }
    for ((k, seed), (s, u)) in &means {
        let avg = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let e = (k.0.as_str(), k.1.as_str(), k.2.as_str());
        let (s, u) = (avg(s), avg(u));
        if let Some(s) = s {
            cells.put(e, *seed, "mean/seen", s);
        }
        if let Some(u) = u {
            cells.put(e, *seed, "mean/unseen", u);
        }
        if let (Some(s), Some(u)) = (s, u) {
            cells.put(e, *seed, "mean/unseen - seen", u - s);
        }
    }
    let rows = model_rows(
        inputs,
        means
            .keys()
            .map(|(k, _)| (k.0.as_str(), k.1.as_str(), k.2.as_str())),
    );
    let mut cols = Vec::new();
    for (side, order) in [("seen", &seen_order), ("unseen", &unseen_order)] {
        for a in order {
            cols.push(StudyCol {
                group: Some(side.into()),
                name: a.clone(),
                better: Better::Lower,
                cells: cells.column(&rows, &format!("{side}/{a}")),
            });
        }
    }
    for n in ["seen", "unseen", "unseen - seen"] {
        cols.push(StudyCol {
            group: Some("mean".into()),
            name: n.into(),
            better: Better::Lower,
            cells: cells.column(&rows, &format!("mean/{n}")),
        });
    }
    Some(StudyTable {
        file: "unseen_drop",
        title: "Accuracy drop (test clean - test robust, points) under the training threat model (seen) and other norms (unseen); bold: the smallest among architectures within 5 points of the best clean test accuracy",
        percent: true,
        row_names: vec!["model"],
        accuracy: clean_test(inputs, &rows),
        rows,
        cols,
    })
}

/// The measures whose names `pick` keeps (returning the column heading), one column each in
/// first-seen order, best by `better`.
fn measure_table(
    inputs: &Inputs,
    pick: fn(&str) -> Option<String>,
    better: fn(&str) -> Better,
) -> (Vec<StudyRow>, Vec<StudyCol>) {
    let mut cells = Cells::default();
    let mut names: Vec<(String, String)> = Vec::new();
    let mut keys = Vec::new();
    for m in &inputs.measures {
        let ModelMeasures {
            key: (d, mo, t),
            seed,
            values,
            ..
        } = m;
        for (n, v) in values {
            let Some(head) = pick(n) else { continue };
            if !names.iter().any(|x| &x.0 == n) {
                names.push((n.clone(), head));
            }
            keys.push((d.as_str(), mo.as_str(), t.as_str()));
            if let Some(v) = v {
                cells.put((d, mo, t), *seed, n, *v);
            }
        }
    }
    let rows = model_rows(inputs, keys.into_iter());
    let cols = names
        .iter()
        .map(|(n, head)| StudyCol {
            group: None,
            name: head.clone(),
            better: better(n),
            cells: cells.column(&rows, n),
        })
        .collect();
    (rows, cols)
}

/// Hoyer sparsity of the whole model and per layer type, with the other sparsity measures.
pub fn sparsity_by_layer(inputs: &Inputs) -> Option<StudyTable> {
    let (rows, cols) = measure_table(
        inputs,
        |n| {
            if n == "hoyer" {
                Some("hoyer (all)".into())
            } else if let Some(t) = n.strip_prefix("hoyer_") {
                Some(format!("hoyer ({t})"))
            } else if n == "l1_over_l2" || n.starts_with("below_") {
                Some(n.into())
            } else {
                None
            }
        },
        // Hoyer and the fractions of near-zero weights grow with sparsity; ℓ1/ℓ2 shrinks.
        |n| {
            if n == "l1_over_l2" {
                Better::Lower
            } else {
                Better::Higher
            }
        },
    );
    // Layer types no model has stay out.
    let cols: Vec<StudyCol> = cols
        .into_iter()
        .filter(|c| c.cells.iter().any(|v| !v.is_empty()))
        .collect();
    (!rows.is_empty()).then_some(StudyTable {
        file: "sparsity_by_layer",
        title: "Weight sparsity per architecture: Hoyer measure of all weights and per layer type",
        percent: false,
        row_names: vec!["model"],
        rows,
        cols,
        accuracy: Vec::new(),
    })
}

/// Norm products and norm-based (adversarial) Rademacher bounds, log10.
pub fn bounds(inputs: &Inputs) -> Option<StudyTable> {
    let (rows, cols) = measure_table(
        inputs,
        |n| n.strip_prefix("log10_").map(String::from),
        |_| Better::Lower,
    );
    (!rows.is_empty()).then_some(StudyTable {
        file: "bounds",
        title: "Norm products and norm-based Rademacher complexity bounds per architecture (log10); bold: the smallest among architectures within 5 points of the best clean test accuracy",
        percent: false,
        row_names: vec!["model"],
        accuracy: clean_test(inputs, &rows),
        rows,
        cols,
    })
}

/// Kendall's τ and Spearman's ρ of each measure against each gap, one row per measure.
pub fn correlation_matrix(inputs: &Inputs) -> Option<StudyTable> {
    let c = inputs.correlation.as_ref()?;
    if c.rows.is_empty() {
        return None;
    }
    let mut rows: Vec<StudyRow> = Vec::new();
    let mut gaps: Vec<String> = Vec::new();
    for r in &c.rows {
        let row = StudyRow {
            dataset: r.dataset.clone(),
            training: r.training.clone(),
            section: None,
            labels: vec![r.measure.clone()],
        };
        if !rows.contains(&row) {
            rows.push(row);
        }
        if !gaps.contains(&r.gap) {
            gaps.push(r.gap.clone());
        }
    }
    rows.sort_by(|a, b| (&a.dataset, &a.training).cmp(&(&b.dataset, &b.training)));
    let mut cols = Vec::new();
    for g in &gaps {
        for (name, get) in [
            (
                "tau",
                (|s: &crate::analysis::correlation::Correlation| s.kendall_tau.value)
                    as fn(&_) -> Option<f64>,
            ),
            ("rho", |s| s.spearman_rho.value),
        ] {
            let cells = rows
                .iter()
                .map(|row| {
                    c.rows
                        .iter()
                        .find(|r| {
                            r.dataset == row.dataset
                                && r.training == row.training
                                && r.measure == row.labels[0]
                                && &r.gap == g
                        })
                        .and_then(|r| get(&r.stat))
                        .into_iter()
                        .collect()
                })
                .collect();
            cols.push(StudyCol {
                group: Some(g.clone()),
                name: name.into(),
                better: Better::Neither,
                cells,
            });
        }
    }
    Some(StudyTable {
        file: "correlation_matrix",
        title: "Rank correlation (Kendall tau, Spearman rho) of each measure with each gap across architectures",
        percent: false,
        row_names: vec!["measure"],
        rows,
        cols,
        accuracy: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::verdict::testing::ev;
    use crate::report::{render, Sides};

    fn e(model: &str, attack: &str, split: &str, seed: u64, robust: f64, clean: f64) -> EvalResult {
        EvalResult {
            seed: Some(seed),
            clean_accuracy: clean,
            ..ev(model, attack, split, robust)
        }
    }

    fn inputs(evals: Vec<EvalResult>) -> Inputs {
        Inputs {
            evals,
            measures: Vec::new(),
            correlation: None,
            kinds: [("vit", "transformer"), ("cnn", "cnn"), ("pvt", "hybrid")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into(),
            gaps: [(
                "t".to_string(),
                Sides {
                    gap: vec!["pgd".into()],
                    unseen: vec!["l2".into()],
                },
            )]
            .into(),
            histories: Vec::new(),
        }
    }

    #[test]
    fn clean_accuracy_comes_from_the_evaluation_on_the_most_points() {
        // AutoAttack on 2 test points (`evaluation.only`), PGD on 10: the clean column and the
        // clean gap are PGD's 10 points', whatever order the evaluations come in.
        let few = |split: &str, clean: f64| EvalResult {
            n: 2,
            ..e("cnn", "aa", split, 0, 0.5, clean)
        };
        for evals in [
            vec![e("cnn", "pgd", "train", 0, 0.7, 0.9), e("cnn", "pgd", "test", 0, 0.6, 0.8), few("train", 1.0), few("test", 0.5)],
            vec![few("train", 1.0), few("test", 0.5), e("cnn", "pgd", "train", 0, 0.7, 0.9), e("cnn", "pgd", "test", 0, 0.6, 0.8)],
        ] {
            let i = inputs(evals);
            let t = accuracy_by_attack(&i).unwrap();
            let col = |g: &str, n: &str| {
                t.cols
                    .iter()
                    .find(|c| c.group.as_deref() == Some(g) && c.name == n)
                    .unwrap()
                    .cells[0]
                    .clone()
            };
            assert_eq!(col("clean", "test"), [80.0]);
            assert_eq!(col("clean", "train"), [90.0]);
            assert_eq!(col("aa", "test"), [50.0]);
            let g = gap_by_attack(&i).unwrap();
            let clean = g.cols.iter().find(|c| c.name == "clean").unwrap();
            assert!((clean.cells[0][0] - 10.0).abs() < 1e-9, "{:?}", clean.cells);
        }
    }

    /// A model that learnt little has the smallest gap: it is not bolded for it; the best gap
    /// among the accurate models is.
    #[test]
    fn a_gap_is_bolded_only_among_accurate_models() {
        let i = inputs(vec![
            e("cnn", "pgd", "train", 0, 0.70, 0.95),
            e("cnn", "pgd", "test", 0, 0.60, 0.95),
            e("pvt", "pgd", "train", 0, 0.68, 0.92),
            e("pvt", "pgd", "test", 0, 0.61, 0.92),
            // 40% clean, a negative gap.
            e("vit", "pgd", "train", 0, 0.30, 0.40),
            e("vit", "pgd", "test", 0, 0.31, 0.40),
        ]);
        let g = gap_by_attack(&i).unwrap();
        let c = g.cols.iter().position(|c| c.name == "pgd").unwrap();
        let model = |r: usize| g.rows[r].labels[0].as_str();
        let best: Vec<&str> = g.best(c).into_iter().map(model).collect();
        assert_eq!(best, ["pvt"], "{:?}", g.accuracy);
        // Every model is accurate enough: the smallest gap wins.
        let mut all = g.clone();
        all.accuracy.clear();
        let best: Vec<&str> = all.best(c).into_iter().map(model).collect();
        assert_eq!(best, ["vit"]);
        all.accuracy = vec![Some(95.0), Some(92.0), Some(91.0)];
        assert_eq!(all.best(c).len(), 1);
    }

    /// Three architectures, `vit` with two seeds: rows in kind order, train and test side by
    /// side per attack, mean ± sample std where seeds repeat, the best per column in bold.
    #[test]
    fn accuracy_table_groups_kinds_pairs_splits_and_aggregates_seeds() {
        let i = inputs(vec![
            e("vit", "pgd", "test", 0, 0.40, 0.80),
            e("vit", "pgd", "test", 1, 0.44, 0.84),
            e("vit", "pgd", "train", 0, 0.60, 0.90),
            e("vit", "pgd", "train", 1, 0.62, 0.92),
            e("cnn", "pgd", "test", 0, 0.30, 0.85),
            e("cnn", "pgd", "train", 0, 0.70, 0.95),
            e("pvt", "pgd", "test", 0, 0.35, 0.70),
            e("pvt", "l2", "test", 0, 0.20, 0.70),
        ]);
        let t = accuracy_by_attack(&i).unwrap();
        let models: Vec<&str> = t.rows.iter().map(|r| r.labels[0].as_str()).collect();
        assert_eq!(models, ["cnn", "vit", "pvt"]);
        let cols: Vec<String> = t.cols.iter().map(|c| c.flat_name()).collect();
        assert_eq!(
            cols,
            [
                "clean/train",
                "clean/test",
                "pgd/train",
                "pgd/test",
                "l2/train",
                "l2/test"
            ]
        );
        // vit pgd/test: mean 42, sample std of (40, 44) = 2.83.
        assert_eq!(t.cell_text(3, 1, " ± ").unwrap(), "42.00 ± 2.83");
        assert_eq!(t.cell_text(3, 0, " ± ").unwrap(), "30.00");
        assert_eq!(t.best(3), [1].into());
        assert_eq!(t.best(2), [0].into());
        let df = t.to_frame().unwrap();
        assert!(df
            .get_column_names()
            .iter()
            .any(|c| c.as_str() == "pgd/test_std"));
        assert_eq!(
            df.column("seeds")
                .unwrap()
                .u32()
                .unwrap()
                .into_no_null_iter()
                .collect::<Vec<_>>(),
            [1, 2, 1]
        );
        let tex = render::study_latex(&t).unwrap();
        for want in [
            "\\toprule",
            "\\multicolumn{2}{c}{pgd}",
            "\\cmidrule(lr){4-5}",
            "\\multicolumn{7}{l}{\\textit{CNN}}",
            "\\multicolumn{7}{l}{\\textit{Hybrid}}",
            "vit & $91.00 \\pm 1.41$ & $82.00 \\pm 2.83$",
            "$\\mathbf{42.00 \\pm 2.83}$",
            "\\bottomrule",
        ] {
            assert!(tex.contains(want), "{want} not in\n{tex}");
        }
        let md = render::study_markdown(&t).unwrap();
        assert!(md.contains("| d | t | transformer | vit | 91.00 ± 1.41 | 82.00 ± 2.83 | 61.00 ± 1.41 | **42.00 ± 2.83** | – | – |"), "{md}");
    }

    #[test]
    fn gap_and_unseen_drop_follow_the_training_threat_model() {
        let i = inputs(vec![
            e("cnn", "pgd", "train", 0, 0.70, 0.95),
            e("cnn", "pgd", "test", 0, 0.30, 0.85),
            e("cnn", "l2", "test", 0, 0.25, 0.85),
            e("vit", "pgd", "train", 0, 0.50, 0.80),
            e("vit", "pgd", "test", 0, 0.40, 0.80),
            e("vit", "l2", "test", 0, 0.50, 0.80),
        ]);
        let g = gap_by_attack(&i).unwrap();
        let names: Vec<String> = g.cols.iter().map(|c| c.flat_name()).collect();
        assert_eq!(names, ["clean", "pgd"]);
        assert_eq!(g.cell_text(1, 0, "").unwrap(), "40.00");
        assert_eq!(g.cell_text(1, 1, "").unwrap(), "10.00");
        assert_eq!(g.best(1), [1].into(), "the smaller gap is the best");
        let u = unseen_drop(&i).unwrap();
        let names: Vec<String> = u.cols.iter().map(|c| c.flat_name()).collect();
        assert_eq!(
            names,
            [
                "seen/pgd",
                "unseen/l2",
                "mean/seen",
                "mean/unseen",
                "mean/unseen - seen"
            ]
        );
        // cnn: seen drop 85 − 30 = 55, unseen 85 − 25 = 60; vit: 40 and 30.
        assert_eq!(u.cell_text(0, 0, "").unwrap(), "55.00");
        assert_eq!(u.cell_text(1, 0, "").unwrap(), "60.00");
        assert_eq!(u.cell_text(4, 0, "").unwrap(), "5.00");
        assert_eq!(u.cell_text(4, 1, "").unwrap(), "-10.00");
    }

    #[test]
    fn latex_escapes_labels() {
        assert_eq!(
            render::tex_escape("below_abs<0.001 & 5%"),
            "below\\_abs$<$0.001 \\& 5\\%"
        );
        assert_eq!(render::tex_escape("ℓ∞"), "$\\ell$$\\infty$");
        assert_eq!(render::tex_escape("Kendall τ"), "Kendall $\\tau$");
        assert_eq!(render::tex_escape("→"), "?");
    }
}
