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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Md,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    #[serde(default = "default_tables")]
    pub tables: Vec<TableKind>,
    #[serde(default = "default_formats")]
    pub formats: Vec<Format>,
}

fn default_tables() -> Vec<TableKind> {
    vec![TableKind::RobustAccuracy, TableKind::GeneralizationGap]
}
fn default_formats() -> Vec<Format> {
    vec![Format::Csv, Format::Md]
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            tables: default_tables(),
            formats: default_formats(),
        }
    }
}
