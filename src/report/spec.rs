//! `report:`: which tables, in which formats.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Clean and robust accuracy per model and attack on the test split.
    RobustAccuracy,
    /// Train − test accuracy per model and attack (the robust generalization gap).
    GeneralizationGap,
    /// Robust accuracy against ε for every attack with a `curve` (one row per radius).
    EpsCurve,
    /// Per model: the sparsity measures and the log10 bounds (added when an analysis runs).
    Analysis,
    /// Rank correlations of measures with gaps (added with the `correlation` analysis).
    Correlation,
    /// Study layout: clean and robust accuracy per architecture and attack, train and test side
    /// by side, architectures grouped by kind.
    AccuracyByAttack,
    /// Study layout: the robust generalization gap per architecture and attack.
    GapByAttack,
    /// Study layout: accuracy drop under seen (training threat model) and unseen attacks.
    UnseenDrop,
    /// Study layout: Hoyer sparsity of all weights and per layer type.
    SparsityByLayer,
    /// Study layout: the norm products and bounds (log10).
    Bounds,
    /// Study layout: τ and ρ of each measure (rows) with each gap (columns).
    CorrelationMatrix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    Md,
    /// LaTeX (booktabs) fragments, one per table, and `report.tex`, a document with them all.
    Tex,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    #[serde(default = "default_tables")]
    pub tables: Vec<TableKind>,
    #[serde(default = "default_formats")]
    pub formats: Vec<Format>,
    /// PNG and SVG plots under `plots/`.
    #[serde(default = "yes")]
    pub plots: bool,
    /// `index.html`: every table and plot (inlined) and the warnings on one page.
    #[serde(default = "yes")]
    pub html: bool,
}

fn yes() -> bool {
    true
}

fn default_tables() -> Vec<TableKind> {
    vec![TableKind::RobustAccuracy, TableKind::GeneralizationGap]
}
fn default_formats() -> Vec<Format> {
    vec![Format::Csv, Format::Parquet, Format::Md, Format::Tex]
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            tables: default_tables(),
            formats: default_formats(),
            plots: true,
            html: true,
        }
    }
}
