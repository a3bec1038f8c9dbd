//! `report`: the paper's tables from every evaluation and analysis of a pipeline.
use super::inputs::{self, load_evals, Labels};
use super::{StageContext, StageKind};
use crate::attacks::verdict;
use crate::report::spec::{Format, ReportSpec};
use crate::report::{self, SparsityResult};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const TABLES: &str = "tables";

#[derive(Serialize)]
pub struct Report {
    #[serde(rename = "report")]
    pub spec: ReportSpec,
    /// `evaluation.groups`: per-sample worst case over member attacks.
    pub groups: BTreeMap<String, Vec<String>>,
    pub evals: Vec<Labels>,
    pub sparsity: Vec<Labels>,
    pub bounds: Vec<Labels>,
    /// Whether the `correlation` stage is an input.
    pub correlation: bool,
}

impl Report {
    /// The report of the evaluations, sparsity and bounds behind `evals`, `sparsity` and
    /// `bounds` (and the correlation stage when `correlation`).
    pub fn new(
        spec: ReportSpec,
        groups: BTreeMap<String, Vec<String>>,
        evals: Vec<Labels>,
        sparsity: Vec<Labels>,
        bounds: Vec<Labels>,
        correlation: bool,
    ) -> Self {
        Self {
            spec,
            groups,
            evals,
            sparsity,
            bounds,
            correlation,
        }
    }
}

impl StageKind for Report {
    fn kind(&self) -> &'static str {
        "report"
    }
    fn version(&self) -> u32 {
        3
    }
    fn in_worker(&self) -> bool {
        false
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let mut evals = load_evals(cx, &self.evals)?;
        let mut sparsity = Vec::new();
        let mut measures: Vec<report::ModelMeasures> = Vec::new();
        for (l, s) in inputs::load_sparsity(cx, &self.sparsity)? {
            sparsity.push(SparsityResult {
                dataset: l.dataset.clone(),
                model: l.model.clone(),
                training: l.training.clone(),
                hoyer: s.overall.hoyer,
            });
            measures.push(report::ModelMeasures::from_sparsity(
                &l.dataset,
                &l.model,
                &l.training,
                &s,
            ));
        }
        for (l, b) in inputs::load_bounds(cx, &self.bounds)? {
            measures.push(report::ModelMeasures::from_bounds(
                &l.dataset,
                &l.model,
                &l.training,
                &b,
            ));
        }
        let correlation: Option<crate::analysis::correlation::Output> = if self.correlation {
            let dir = &cx.input("correlation")?.dir;
            let file = dir.join(crate::analysis::correlation::OUTPUT);
            Some(
                serde_json::from_slice(&std::fs::read(&file)?)
                    .with_context(|| format!("reading {}", file.display()))?,
            )
        } else {
            None
        };
        let grouped = verdict::group_results(&evals, &self.groups);
        evals.extend(grouped);
        let mut warnings = verdict::warnings(&evals);
        if let Some(c) = &correlation {
            warnings.extend(c.warnings.iter().cloned());
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let dir = cx.out.join(TABLES);
        std::fs::create_dir_all(&dir)?;
        let mut written = Vec::new();
        let inputs = report::Inputs {
            evals,
            sparsity,
            measures,
            correlation,
        };
        for t in report::tables_for(&self.spec.tables, &inputs) {
            let Some(mut df) = (t.build)(&inputs)? else {
                continue;
            };
            for f in &self.spec.formats {
                let file = match f {
                    Format::Csv => {
                        let p = dir.join(format!("{}.csv", t.file));
                        report::write_csv(&mut df, &p)?;
                        p
                    }
                    Format::Md => {
                        let p = dir.join(format!("{}.md", t.file));
                        std::fs::write(&p, report::to_markdown(&df)?)?;
                        p
                    }
                };
                written.push(format!(
                    "{TABLES}/{}",
                    file.file_name().unwrap().to_string_lossy()
                ));
            }
        }
        if !warnings.is_empty() {
            let p = dir.join("warnings.md");
            let body: String = warnings.iter().map(|w| format!("- {w}\n")).collect();
            std::fs::write(&p, format!("# Warnings\n\n{body}"))?;
            written.push(format!("{TABLES}/warnings.md"));
        }
        Ok(json!({"files": written, "warnings": warnings}))
    }
}
