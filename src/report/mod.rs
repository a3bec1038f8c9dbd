//! The report: the paper's tables, plots and an HTML page from stage results. Tables are polars
//! DataFrames written as CSV and Parquet, and rendered as Markdown, LaTeX and HTML.
pub mod compare;
pub mod html;
pub mod labels;
pub mod plots;
pub mod publish;
pub mod render;
pub mod spec;
pub mod study;
use crate::analysis::PerModel;
use crate::attacks::verdict::{EvalResult, RowKey};
use anyhow::{Context, Result};
use polars::prelude::*;
use spec::TableKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the report's title says: the pipeline, when and by which robarch it was rendered, and
/// a fingerprint of what it shows (the spec's settings and every result it reads).
pub struct Title {
    pub pipeline: String,
    /// The first 12 hex digits of the fingerprint.
    pub spec: String,
    /// `YYYY-MM-DD` (UTC) of rendering.
    pub date: String,
}

impl Title {
    /// `<pipeline>: robarch report`.
    pub fn heading(&self) -> String {
        format!("{}: robarch report", self.pipeline)
    }
    /// `2026-12-07, robarch 0.1.0, spec 1a2b3c4d5e6f`.
    pub fn byline(&self) -> String {
        format!(
            "{}, robarch {}, spec {}",
            self.date,
            env!("CARGO_PKG_VERSION"),
            self.spec
        )
    }
}

/// Everything the report's tables are built from.
pub struct Inputs {
    /// Every evaluation, worst-case groups included.
    pub evals: Vec<EvalResult>,
    /// Every per-model analysis's columns, analyses in registry order.
    pub measures: Vec<ModelMeasures>,
    pub correlation: Option<crate::analysis::correlation::Output>,
    /// Model name → architecture kind (`cnn`, `transformer`, …).
    pub kinds: BTreeMap<String, String>,
    /// Training name → its seen (training threat model) and unseen attacks.
    pub gaps: BTreeMap<String, Sides>,
    /// Per-epoch history of every trained model.
    pub histories: Vec<History>,
}

impl Inputs {
    /// The architecture kind of model `m` (`external` when unknown).
    pub fn kind_of(&self, m: &str) -> &str {
        self.kinds.get(m).map_or("external", |k| k.as_str())
    }
}

/// The attacks of a training's threat model (`gap`, seen) and of other norms (`unseen`): the
/// correlation's gaps and the report's seen/unseen columns.
pub use crate::analysis::correlation::Sides;

/// The per-epoch records of one trained model.
#[derive(Debug, Clone)]
pub struct History {
    pub key: RowKey,
    pub seed: Option<u64>,
    pub epochs: Vec<crate::train::EpochRecord>,
}

/// A built table: a long DataFrame, or a table in the study's layout.
pub enum Built {
    Long(DataFrame),
    Study(study::StudyTable),
}

impl Built {
    /// The table as a DataFrame (what CSV and Parquet hold).
    pub fn frame(&self) -> Result<DataFrame> {
        match self {
            Built::Long(df) => Ok(df.clone()),
            Built::Study(t) => t.to_frame(),
        }
    }
}

/// One table of the report: the `report.tables` entry that asks for it, its file name (without
/// extension), its caption, whether it is added without being asked for, and its builder (`None`:
/// nothing to show). Adding a table is a [`TableKind`] variant, a builder and one line in
/// [`TABLES`].
pub struct Table {
    pub kind: TableKind,
    pub file: &'static str,
    pub caption: &'static str,
    pub auto: fn(&Inputs) -> bool,
    pub build: fn(&Inputs) -> Result<Option<Built>>,
}

impl Table {
    /// A sentence printed under the table in every format, where its values need one: what a
    /// correlation's point is where seeds repeat.
    pub fn note(&self, inputs: &Inputs) -> Option<String> {
        match self.kind {
            TableKind::Correlation | TableKind::CorrelationMatrix => {
                inputs.correlation.as_ref().and_then(|c| c.points())
            }
            _ => None,
        }
    }
}

fn long(df: Result<DataFrame>) -> Result<Option<Built>> {
    df.map(|d| Some(Built::Long(d)))
}

/// The report's tables, in the order they are added when not asked for: the long tables, then
/// the study's layouts (added whenever their inputs are there).
pub const TABLES: &[Table] = &[
    Table {
        kind: TableKind::RobustAccuracy,
        file: "robust_accuracy",
        caption: "Clean and robust test accuracy (%) per model and attack; Hoyer sparsity (0 to 1) where the sparsity analysis ran",
        auto: |_| false,
        build: |i| long(robust_accuracy(&i.evals, &sparsity_results(&i.measures))),
    },
    Table {
        kind: TableKind::GeneralizationGap,
        file: "generalization_gap",
        caption: "Train and test robust accuracy (%) and their gap (percentage points) per model and attack",
        auto: |_| false,
        build: |i| long(generalization_gap(&i.evals)),
    },
    Table {
        kind: TableKind::EpsCurve,
        file: "eps_curve",
        caption: "Robust accuracy (%) against the radius for every attack with a curve",
        auto: |i| i.evals.iter().any(|e| e.is_curve_point()),
        build: |i| long(eps_curve(&i.evals)),
    },
    Table {
        kind: TableKind::Analysis,
        file: "analysis",
        caption: "Per-model measures: sparsity (Hoyer and shares of weights, 0 to 1; l1/l2 ratio), log10 norm-based bounds, and robust flatness (loss increase) where analysed",
        auto: |i| !i.measures.is_empty(),
        build: |i| long(analysis(&i.measures)),
    },
    Table {
        kind: TableKind::Correlation,
        file: "correlation",
        caption: "Rank correlations (Kendall tau, Spearman rho, -1 to 1) of each measure with each gap, with 95% bootstrap intervals (none over fewer than 6 architectures: too few)",
        auto: |i| i.correlation.is_some(),
        build: |i| {
            i.correlation
                .as_ref()
                .map(|c| correlation(&c.rows).map(Built::Long))
                .transpose()
        },
    },
    Table {
        kind: TableKind::AccuracyByAttack,
        file: "accuracy_by_attack",
        caption: "",
        auto: |i| !i.evals.is_empty(),
        build: |i| Ok(study::accuracy_by_attack(i).map(Built::Study)),
    },
    Table {
        kind: TableKind::GapByAttack,
        file: "gap_by_attack",
        caption: "",
        auto: |i| !i.evals.is_empty(),
        build: |i| Ok(study::gap_by_attack(i).map(Built::Study)),
    },
    Table {
        kind: TableKind::UnseenDrop,
        file: "unseen_drop",
        caption: "",
        auto: |i| !i.evals.is_empty(),
        build: |i| Ok(study::unseen_drop(i).map(Built::Study)),
    },
    Table {
        kind: TableKind::SparsityByLayer,
        file: "sparsity_by_layer",
        caption: "",
        auto: |i| !i.measures.is_empty(),
        build: |i| Ok(study::sparsity_by_layer(i).map(Built::Study)),
    },
    Table {
        kind: TableKind::Bounds,
        file: "bounds",
        caption: "",
        auto: |i| !i.measures.is_empty(),
        build: |i| Ok(study::bounds(i).map(Built::Study)),
    },
    Table {
        kind: TableKind::CorrelationMatrix,
        file: "correlation_matrix",
        caption: "",
        auto: |i| i.correlation.is_some(),
        build: |i| Ok(study::correlation_matrix(i).map(Built::Study)),
    },
];

/// The table of `kind`.
pub fn table(kind: TableKind) -> &'static Table {
    TABLES
        .iter()
        .find(|t| t.kind == kind)
        .expect("every table kind is registered")
}

/// The tables to write: those `asked` for, in order, then those added without being asked.
pub fn tables_for(asked: &[TableKind], inputs: &Inputs) -> Vec<&'static Table> {
    let mut out: Vec<&Table> = asked.iter().map(|&k| table(k)).collect();
    for t in TABLES {
        if (t.auto)(inputs) && !asked.contains(&t.kind) {
            out.push(t);
        }
    }
    out
}

/// A radius as people write it: `8/255` where it is a whole number of 255ths below 1 (the
/// pixel grid), else its decimal (`0.5`, `12`).
pub fn eps_text(eps: f64) -> String {
    let k = eps * 255.0;
    if k >= 0.5 && eps < 1.0 && (k - k.round()).abs() < 1e-6 {
        format!("{}/255", k.round() as i64)
    } else {
        let s = format!("{eps:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The ε-curve table as people read it: each radius as written (`2/255`; CSV keeps the number).
fn eps_curve_for_people(df: &DataFrame) -> Result<DataFrame> {
    let eps: Vec<String> = df
        .column("eps")?
        .f64()?
        .into_iter()
        .map(|e| e.map_or("–".into(), eps_text))
        .collect();
    let mut df = df.clone();
    df.with_column(Column::new("eps".into(), eps))?;
    Ok(df)
}

/// Robust accuracy (%) against ε for every attack with curve points, on every split.
pub fn eps_curve(evals: &[EvalResult]) -> Result<DataFrame> {
    let bases: BTreeSet<&str> = evals
        .iter()
        .filter(|e| e.is_curve_point())
        .map(|e| e.base())
        .collect();
    let mut rows: Vec<&EvalResult> = evals
        .iter()
        .filter(|e| bases.contains(e.base()))
        .collect();
    rows.sort_by(|a, b| {
        (
            &a.dataset,
            &a.model,
            &a.training,
            a.seed,
            a.base(),
            &a.split,
        )
            .cmp(&(
                &b.dataset,
                &b.model,
                &b.training,
                b.seed,
                b.base(),
                &b.split,
            ))
            .then(a.eps.total_cmp(&b.eps))
    });
    let col = |name: &str, f: &dyn Fn(&EvalResult) -> String| {
        Column::new(name.into(), rows.iter().map(|e| f(e)).collect::<Vec<_>>())
    };
    let keys: Vec<SeedKey> = rows.iter().map(|e| seed_key(e)).collect();
    let mut cols = key_cols(&keys, seeded(evals));
    cols.extend([
        col("attack", &|e| e.base().to_string()),
        col("split", &|e| e.split.clone()),
        Column::new("eps".into(), rows.iter().map(|e| e.eps).collect::<Vec<_>>()),
        Column::new(
            "robust_accuracy".into(),
            rows.iter()
                .map(|e| 100.0 * e.robust_accuracy)
                .collect::<Vec<_>>(),
        ),
    ]);
    Ok(DataFrame::new(cols)?)
}

#[derive(Debug, Clone)]
pub struct SparsityResult {
    pub dataset: String,
    pub model: String,
    pub training: String,
    /// The training seed, where the pipeline repeats seeds.
    pub seed: Option<u64>,
    pub hoyer: f64,
}

/// A long table's row: (dataset, model, training) and the training seed where the pipeline
/// repeats seeds (`seeds:`); each seed is its own row, never overwritten by another's.
type SeedKey = (RowKey, Option<u64>);

fn seed_key(e: &EvalResult) -> SeedKey {
    (
        (e.dataset.clone(), e.model.clone(), e.training.clone()),
        e.seed,
    )
}

/// Whether the results carry seeds: the long tables then have a `seed` column after `training`
/// (without `seeds:` they are as before).
fn seeded(evals: &[EvalResult]) -> bool {
    evals.iter().any(|e| e.seed.is_some())
}

/// The key columns of `keys`: dataset, model, training, then `seed` when `seeded`.
fn key_cols(keys: &[SeedKey], seeded: bool) -> Vec<Column> {
    let mut cols = vec![
        Column::new(
            "dataset".into(),
            keys.iter().map(|k| k.0 .0.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "model".into(),
            keys.iter().map(|k| k.0 .1.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "training".into(),
            keys.iter().map(|k| k.0 .2.as_str()).collect::<Vec<_>>(),
        ),
    ];
    if seeded {
        cols.push(Column::new(
            SEED_COLUMN.into(),
            keys.iter().map(|k| k.1).collect::<Vec<_>>(),
        ));
    }
    cols
}

/// The long tables' seed column; `report --compare` reads it as part of a row's identity.
pub const SEED_COLUMN: &str = "seed";

/// Test-split accuracy (%) per (dataset, model, training[, seed]): `clean`, then one column per
/// attack, then `hoyer_sparsity` when the sparsity analysis ran. `clean` is that of the
/// evaluation on the most points (an attack `evaluation.only` limits sees fewer).
pub fn robust_accuracy(evals: &[EvalResult], sparsity: &[SparsityResult]) -> Result<DataFrame> {
    let test: Vec<&EvalResult> = evals
        .iter()
        .filter(|e| e.split == "test" && !e.is_curve_point())
        .collect();
    let keys: Vec<SeedKey> = test
        .iter()
        .map(|e| seed_key(e))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // In the order the evaluations come (the spec's).
    let attacks = study::attack_order(test.iter().copied());
    let lookup: BTreeMap<(SeedKey, &str), &EvalResult> = test
        .iter()
        .map(|e| ((seed_key(e), e.attack.as_str()), *e))
        .collect();
    let mut cols = key_cols(&keys, seeded(evals));
    // The first attack in name order among those on the most points (`study::widest` keeps the
    // first of equals).
    let mut by_name = test.clone();
    by_name.sort_by_key(|e| e.attack.as_str());
    let widest: BTreeMap<SeedKey, f64> = study::widest(&by_name)
        .into_iter()
        .map(|e| (seed_key(e), 100.0 * e.clean_accuracy))
        .collect();
    let clean: Vec<Option<f64>> = keys.iter().map(|k| widest.get(k).copied()).collect();
    cols.push(Column::new("clean".into(), clean));
    for a in attacks.iter().map(String::as_str) {
        if a == "clean" {
            continue;
        }
        let v: Vec<Option<f64>> = keys
            .iter()
            .map(|k| {
                lookup
                    .get(&(k.clone(), a))
                    .map(|e| 100.0 * e.robust_accuracy)
            })
            .collect();
        cols.push(Column::new(a.into(), v));
    }
    if !sparsity.is_empty() {
        let s: BTreeMap<SeedKey, f64> = sparsity
            .iter()
            .map(|s| {
                (
                    (
                        (s.dataset.clone(), s.model.clone(), s.training.clone()),
                        s.seed,
                    ),
                    s.hoyer,
                )
            })
            .collect();
        cols.push(Column::new(
            "hoyer_sparsity".into(),
            keys.iter().map(|k| s.get(k).copied()).collect::<Vec<_>>(),
        ));
    }
    Ok(DataFrame::new(cols)?)
}

/// Robust accuracy (%) on train and test and their gap (train − test) per model[, seed] and
/// attack.
pub fn generalization_gap(evals: &[EvalResult]) -> Result<DataFrame> {
    let mut by: BTreeMap<(SeedKey, String), (Option<f64>, Option<f64>)> = BTreeMap::new();
    for e in evals.iter().filter(|e| !e.is_curve_point()) {
        let slot = by.entry((seed_key(e), e.attack.clone())).or_default();
        let acc = Some(100.0 * e.robust_accuracy);
        if e.split == "train" {
            slot.0 = acc
        } else {
            slot.1 = acc
        }
    }
    let keys: Vec<SeedKey> = by.keys().map(|(k, _)| k.clone()).collect();
    let mut cols = key_cols(&keys, seeded(evals));
    cols.push(Column::new(
        "attack".into(),
        by.keys().map(|(_, a)| a.as_str()).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "train_accuracy".into(),
        by.values().map(|v| v.0).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "test_accuracy".into(),
        by.values().map(|v| v.1).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "gap".into(),
        by.values()
            .map(|v| v.0.zip(v.1).map(|(a, b)| a - b))
            .collect::<Vec<_>>(),
    ));
    Ok(DataFrame::new(cols)?)
}

/// Analysis measures of one trained model: column name → value.
#[derive(Debug, Clone)]
pub struct ModelMeasures {
    /// The analysis that measured them (`analysis::REGISTRY`).
    pub analysis: &'static str,
    pub key: RowKey,
    pub seed: Option<u64>,
    pub values: Vec<(String, Option<f64>)>,
}

/// The whole-model Hoyer sparsity of every model the `sparsity` analysis measured (the
/// `robust_accuracy` table's last column).
pub fn sparsity_results(measures: &[ModelMeasures]) -> Vec<SparsityResult> {
    measures
        .iter()
        .filter(|m| m.analysis == crate::analysis::sparsity::Sparsity::NAME)
        .filter_map(|m| {
            let hoyer = m.values.iter().find(|(n, _)| n == "hoyer")?.1?;
            Some(SparsityResult {
                dataset: m.key.0.clone(),
                model: m.key.1.clone(),
                training: m.key.2.clone(),
                seed: m.seed,
                hoyer,
            })
        })
        .collect()
}

/// One row per trained model (and seed) with every analysis measure (columns in first-seen
/// order).
pub fn analysis(measures: &[ModelMeasures]) -> Result<DataFrame> {
    let keys: Vec<SeedKey> = measures
        .iter()
        .map(|m| (m.key.clone(), m.seed))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut names: Vec<String> = Vec::new();
    let mut table: BTreeMap<(SeedKey, String), Option<f64>> = BTreeMap::new();
    for m in measures {
        for (n, v) in &m.values {
            if !names.contains(n) {
                names.push(n.clone());
            }
            table.insert(((m.key.clone(), m.seed), n.clone()), *v);
        }
    }
    let mut cols = key_cols(&keys, measures.iter().any(|m| m.seed.is_some()));
    for n in &names {
        let v: Vec<Option<f64>> = keys
            .iter()
            .map(|k| table.get(&(k.clone(), n.clone())).copied().flatten())
            .collect();
        cols.push(Column::new(n.as_str().into(), v));
    }
    Ok(DataFrame::new(cols)?)
}

/// One row per (dataset, training, measure, gap): n, Kendall's τ and Spearman's ρ with their
/// bootstrap intervals.
pub fn correlation(rows: &[crate::analysis::correlation::Row]) -> Result<DataFrame> {
    let s =
        |f: fn(&crate::analysis::correlation::Row) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let f = |f: fn(&crate::analysis::correlation::Row) -> Option<f64>| {
        rows.iter().map(f).collect::<Vec<_>>()
    };
    Ok(DataFrame::new(vec![
        Column::new("dataset".into(), s(|r| &r.dataset)),
        Column::new("training".into(), s(|r| &r.training)),
        Column::new("measure".into(), s(|r| &r.measure)),
        Column::new("gap".into(), s(|r| &r.gap)),
        Column::new(
            "n".into(),
            rows.iter().map(|r| r.stat.n as u32).collect::<Vec<_>>(),
        ),
        Column::new("kendall_tau".into(), f(|r| r.stat.kendall_tau.value)),
        Column::new("tau_lo".into(), f(|r| r.stat.kendall_tau.lo)),
        Column::new("tau_hi".into(), f(|r| r.stat.kendall_tau.hi)),
        Column::new("spearman_rho".into(), f(|r| r.stat.spearman_rho.value)),
        Column::new("rho_lo".into(), f(|r| r.stat.spearman_rho.lo)),
        Column::new("rho_hi".into(), f(|r| r.stat.spearman_rho.hi)),
    ])?)
}

/// The correlation table as people read it (Markdown, LaTeX, HTML): each statistic's bootstrap
/// interval as one `[lo, hi]` cell, or `n = 4: too few` over fewer than
/// [`crate::analysis::correlation::MIN_ARCHS`] architectures, where an interval would read as
/// certainty; CSV and Parquet keep the bounds as numbers.
pub fn correlation_for_people(df: &DataFrame) -> Result<DataFrame> {
    let n: Vec<Option<u32>> = df.column("n")?.u32()?.into_iter().collect();
    let interval = |lo: &str, hi: &str| -> Result<Vec<String>> {
        let lo: Vec<Option<f64>> = df.column(lo)?.f64()?.into_iter().collect();
        let hi: Vec<Option<f64>> = df.column(hi)?.f64()?.into_iter().collect();
        Ok(n.iter()
            .zip(lo.iter().zip(&hi))
            .map(|(n, (lo, hi))| match (n, lo, hi) {
                (Some(n), _, _) if (*n as usize) < crate::analysis::correlation::MIN_ARCHS => {
                    format!("n = {n}: too few")
                }
                (_, Some(lo), Some(hi)) => format!("[{lo:.2}, {hi:.2}]"),
                _ => "–".into(),
            })
            .collect())
    };
    let mut cols: Vec<Column> = Vec::new();
    for name in ["dataset", "training", "measure", "gap", "n", "kendall_tau"] {
        cols.push(df.column(name)?.clone());
    }
    cols.push(Column::new("tau_ci".into(), interval("tau_lo", "tau_hi")?));
    cols.push(df.column("spearman_rho")?.clone());
    cols.push(Column::new("rho_ci".into(), interval("rho_lo", "rho_hi")?));
    Ok(DataFrame::new(cols)?)
}

/// Directory of an entry's tables (and `index.html`, `report.tex`, `cells.json`): copied flat to
/// `<reports>/<pipeline>/`.
pub const TABLES_DIR: &str = "tables";
/// Directory of an entry's plots: copied to `<reports>/<pipeline>/plots/`.
pub const PLOTS_DIR: &str = "plots";
/// The report's numbers, one per table cell, for `robarch report --compare`.
pub const CELLS: &str = "cells.json";

// Long because it is the report's one writing pass: each table in every format, then the plots,
// the page and the cells, sharing what was written so far.
/// Writes every table in every format of `spec`, the plots, `index.html` and `cells.json` under
/// `out`; returns the files written, relative to `out`. `missing` lists the stages whose results
/// are not in the cache (the report is partial).
pub fn write(
    title: &Title,
    spec: &spec::ReportSpec,
    inputs: &Inputs,
    warnings: &[String],
    missing: &[String],
    out: &Path,
) -> Result<Vec<String>> {
    use spec::Format;
    let dir = out.join(TABLES_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rel = |name: &str| format!("{TABLES_DIR}/{name}");
    let mut written = Vec::new();
    let mut cells = compare::Cells::default();
    // The HTML of each table: the study's layouts first (the page is read as the paper's
    // tables), then the long tables.
    let (mut study_pages, mut long_pages) = (Vec::new(), Vec::<(String, String)>::new());
    let mut fragments = Vec::new();
    for t in tables_for(&spec.tables, inputs) {
        let Some(built) = (t.build)(inputs)? else {
            continue;
        };
        let mut df = built.frame()?;
        cells.add(t.file, &built, &df);
        // What people read (Markdown, LaTeX, HTML) of a long table.
        let people = match (&built, t.kind) {
            (Built::Long(df), TableKind::Correlation) => correlation_for_people(df)?,
            (Built::Long(df), TableKind::EpsCurve) => eps_curve_for_people(df)?,
            (Built::Long(df), _) => df.clone(),
            (Built::Study(_), _) => DataFrame::empty(),
        };
        let note = t.note(inputs);
        for f in &spec.formats {
            let name = match f {
                Format::Csv => {
                    let name = format!("{}.csv", t.file);
                    write_csv(&mut df, &dir.join(&name))?;
                    name
                }
                Format::Parquet => {
                    let name = format!("{}.parquet", t.file);
                    write_parquet(&mut df, &dir.join(&name))?;
                    name
                }
                Format::Md => {
                    let name = format!("{}.md", t.file);
                    let text = match &built {
                        Built::Long(_) => to_markdown(&people)?,
                        Built::Study(s) => render::study_markdown(s)?,
                    };
                    let text = match &note {
                        Some(n) => format!("{text}\n{n}\n"),
                        None => text,
                    };
                    write_file(&dir.join(&name), &text)?;
                    name
                }
                Format::Tex => {
                    let name = format!("{}.tex", t.file);
                    let text = match &built {
                        Built::Long(_) => render::frame_latex(&people, t.caption)?,
                        Built::Study(s) => render::study_latex(s)?,
                    };
                    let text = match &note {
                        Some(n) => format!(
                            "{text}{{\\footnotesize\\noindent {}\\par}}\n",
                            render::tex_escape(n)
                        ),
                        None => text,
                    };
                    write_file(&dir.join(&name), &text)?;
                    fragments.push(name.clone());
                    name
                }
            };
            written.push(rel(&name));
        }
        if spec.html {
            let mut page = match &built {
                Built::Long(_) => render::frame_html(&people, t.file, t.caption)?,
                Built::Study(s) => render::study_html(s)?,
            };
            if let Some(n) = &note {
                page.push_str(&format!(
                    "<p class=\"note\">{}</p>\n",
                    render::html_escape(n)
                ));
            }
            match &built {
                Built::Long(_) => long_pages.push((t.file.to_string(), page)),
                Built::Study(_) => study_pages.push((t.file.to_string(), page)),
            }
        }
    }
    if !fragments.is_empty() {
        let doc = render::latex_document(title, &fragments);
        write_file(&dir.join("report.tex"), &doc)?;
        written.push(rel("report.tex"));
    }
    if !warnings.is_empty() {
        let body: String = warnings.iter().map(|w| format!("- {w}\n")).collect();
        write_file(&dir.join("warnings.md"), &format!("# Warnings\n\n{body}"))?;
        written.push(rel("warnings.md"));
    }
    let mut figures = Vec::new();
    if spec.plots {
        let pdir = out.join(PLOTS_DIR);
        let plots = plots::plots(inputs);
        if !plots.is_empty() {
            std::fs::create_dir_all(&pdir)
                .with_context(|| format!("creating {}", pdir.display()))?;
        }
        for p in &plots {
            let (files, png) = p.save(&pdir)?;
            written.extend(files.iter().map(|f| format!("{PLOTS_DIR}/{f}")));
            figures.push(html::Figure {
                file: p.file.clone(),
                caption: p.caption.clone(),
                png,
            });
        }
    }
    if spec.html {
        study_pages.extend(long_pages);
        let page = html::page(title, &study_pages, &figures, warnings, missing);
        write_file(&dir.join("index.html"), &page)?;
        written.push(rel("index.html"));
    }
    write_file(&dir.join(CELLS), &serde_json::to_string(&cells)?)?;
    written.push(rel(CELLS));
    Ok(written)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(f).finish(df)?;
    Ok(())
}

pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    CsvWriter::new(&mut f).include_header(true).finish(df)?;
    Ok(())
}

/// A GitHub-flavoured Markdown table; floats with two decimals, missing values as `–`.
pub fn to_markdown(df: &DataFrame) -> Result<String> {
    render::frame_markdown(df)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::verdict::testing::{ev, flags};
    use crate::attacks::verdict::CurvePoint;
    use crate::attacks::AttackClass;
    use crate::vocab::Norm;

    #[test]
    fn eps_curve_lists_every_radius_in_order() {
        let mut a = flags(
            "pgd@0.06",
            Norm::Linf,
            0.06,
            AttackClass::Iterative,
            &[0, 0, 0, 1],
        );
        a.attack = "pgd@0.06".into();
        a.curve = Some(CurvePoint {
            attack: "pgd".into(),
            eps: 0.06,
        });
        let b = flags(
            "pgd",
            Norm::Linf,
            0.03,
            AttackClass::Iterative,
            &[1, 1, 0, 1],
        );
        let mut c = flags(
            "pgd@0",
            Norm::Linf,
            0.0,
            AttackClass::Iterative,
            &[1, 1, 1, 1],
        );
        c.curve = Some(CurvePoint {
            attack: "pgd".into(),
            eps: 0.0,
        });
        let other = flags(
            "fgsm",
            Norm::Linf,
            0.03,
            AttackClass::SingleStep,
            &[1, 1, 1, 1],
        );
        let df = eps_curve(&[a.clone(), b.clone(), c, other]).unwrap();
        assert_eq!(df.height(), 3);
        let md = to_markdown(&df).unwrap();
        let lines: Vec<&str> = md.lines().skip(2).collect();
        assert!(lines[0].contains("| pgd | test | 0.00 | 100.00 |"), "{md}");
        assert!(lines[2].contains("| pgd | test | 0.06 | 25.00 |"), "{md}");
        // Curve points stay out of the main table.
        let ra = robust_accuracy(&[a, b], &[]).unwrap();
        assert_eq!(
            ra.get_column_names(),
            ["dataset", "model", "training", "clean", "pgd"]
        );
    }

    #[test]
    fn radii_read_as_written() {
        assert_eq!(eps_text(8.0 / 255.0), "8/255");
        assert_eq!(eps_text(0.5), "0.5");
        assert_eq!(eps_text(0.062745), "0.062745");
        assert_eq!(eps_text(1.0), "1", "an ℓ2 radius");
    }

    #[test]
    fn correlations_over_too_few_architectures_show_no_interval() {
        let df = DataFrame::new(vec![
            Column::new("dataset".into(), ["d", "d"]),
            Column::new("training".into(), ["t", "t"]),
            Column::new("measure".into(), ["hoyer", "hoyer"]),
            Column::new("gap".into(), ["robust_gap:pgd", "robust_gap:l2"]),
            Column::new("n".into(), [4u32, 8]),
            Column::new("kendall_tau".into(), [-0.67, 0.5]),
            Column::new("tau_lo".into(), [-1.0, 0.1]),
            Column::new("tau_hi".into(), [1.0, 0.8]),
            Column::new("spearman_rho".into(), [-0.8, 0.6]),
            Column::new("rho_lo".into(), [-1.0, 0.2]),
            Column::new("rho_hi".into(), [1.0, 0.9]),
        ])
        .unwrap();
        let md = to_markdown(&correlation_for_people(&df).unwrap()).unwrap();
        assert!(
            md.contains("| 4 | -0.67 | n = 4: too few | -0.80 | n = 4: too few |"),
            "{md}"
        );
        assert!(md.contains("| 8 | 0.50 | [0.10, 0.80] | 0.60 | [0.20, 0.90] |"), "{md}");
        assert!(md.starts_with("| Dataset | Training | Measure | Gap | n | Kendall τ | τ 95% interval |"), "{md}");
    }

    #[test]
    fn tables_have_the_paper_layout() {
        let evals = vec![
            ev("cnn", "clean", "test", 0.9),
            ev("cnn", "pgd", "test", 0.4),
            ev("cnn", "pgd", "train", 0.6),
            ev("vit", "pgd", "test", 0.3),
        ];
        let ra = robust_accuracy(
            &evals,
            &[SparsityResult {
                dataset: "d".into(),
                model: "cnn".into(),
                training: "t".into(),
                seed: None,
                hoyer: 0.25,
            }],
        )
        .unwrap();
        assert_eq!(
            ra.get_column_names(),
            [
                "dataset",
                "model",
                "training",
                "clean",
                "pgd",
                "hoyer_sparsity"
            ]
        );
        assert_eq!(ra.height(), 2);
        let md = to_markdown(&ra).unwrap();
        assert!(
            md.contains("| d | cnn | t | 90.00 | 40.00 | 0.25 |"),
            "{md}"
        );
        assert!(md.contains("| d | vit | t | 90.00 | 30.00 | – |"), "{md}");
        let gap = generalization_gap(&evals).unwrap();
        let md = to_markdown(&gap).unwrap();
        assert!(
            md.contains("| d | cnn | t | pgd | 60.00 | 40.00 | 20.00 |"),
            "{md}"
        );
        assert!(md.contains("| d | vit | t | pgd | – | 30.00 | – |"), "{md}");
    }

    /// With `seeds:`, each seed keeps its own row in every long table (before, the last seed's
    /// result overwrote the others'), and `clean` comes from the evaluation on the most points.
    #[test]
    fn long_tables_keep_each_seed() {
        let seeded = |model: &str, attack: &str, split: &str, seed, robust, n, clean| {
            let mut e = ev(model, attack, split, robust);
            (e.seed, e.n, e.clean_accuracy) = (Some(seed), n, clean);
            e
        };
        let evals = vec![
            // AutoAttack on 16 points, sorted before `pgd`: its clean accuracy is not the row's.
            seeded("cnn", "aa", "test", 0, 0.5, 16, 1.0),
            seeded("cnn", "pgd", "test", 0, 0.4, 200, 0.9),
            seeded("cnn", "pgd", "train", 0, 0.6, 200, 0.95),
            seeded("cnn", "aa", "test", 1, 0.25, 16, 0.5),
            seeded("cnn", "pgd", "test", 1, 0.3, 200, 0.8),
            seeded("cnn", "pgd", "train", 1, 0.7, 200, 0.85),
        ];
        let sparsity = [0, 1].map(|seed| SparsityResult {
            dataset: "d".into(),
            model: "cnn".into(),
            training: "t".into(),
            seed: Some(seed),
            hoyer: 0.25 + seed as f64 / 10.0,
        });
        let ra = robust_accuracy(&evals, &sparsity).unwrap();
        assert_eq!(
            ra.get_column_names(),
            [
                "dataset",
                "model",
                "training",
                "seed",
                "clean",
                "aa",
                "pgd",
                "hoyer_sparsity"
            ]
        );
        let md = to_markdown(&ra).unwrap();
        assert!(
            md.contains("| d | cnn | t | 0 | 90.00 | 50.00 | 40.00 | 0.25 |"),
            "{md}"
        );
        assert!(
            md.contains("| d | cnn | t | 1 | 80.00 | 25.00 | 30.00 | 0.35 |"),
            "{md}"
        );
        let md = to_markdown(&generalization_gap(&evals).unwrap()).unwrap();
        assert!(
            md.contains("| d | cnn | t | 0 | pgd | 60.00 | 40.00 | 20.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| d | cnn | t | 1 | pgd | 70.00 | 30.00 | 40.00 |"),
            "{md}"
        );
        let measures = [0, 1].map(|seed| ModelMeasures {
            analysis: "sparsity",
            key: ("d".into(), "cnn".into(), "t".into()),
            seed: Some(seed),
            values: vec![("hoyer".into(), Some(seed as f64))],
        });
        let an = analysis(&measures).unwrap();
        assert_eq!(an.height(), 2);
        assert_eq!(
            an.get_column_names(),
            ["dataset", "model", "training", "seed", "hoyer"]
        );
        // `report --compare` names the rows by their seed, so both seeds' cells are kept.
        let mut cells = compare::Cells::default();
        cells.add("robust_accuracy", &Built::Long(ra.clone()), &ra);
        let ids: BTreeSet<&str> = cells.cells.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(ids, BTreeSet::from(["d/cnn/t/seed-0", "d/cnn/t/seed-1"]));
        // Without seeds the tables have no `seed` column (the quickstart's are unchanged).
        let plain: Vec<EvalResult> = evals[..3]
            .iter()
            .cloned()
            .map(|mut e| {
                e.seed = None;
                e
            })
            .collect();
        assert!(!robust_accuracy(&plain, &[])
            .unwrap()
            .get_column_names()
            .iter()
            .any(|c| c.as_str() == SEED_COLUMN));
    }
}
