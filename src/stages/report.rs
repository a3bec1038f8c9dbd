//! `report`: the paper's tables from every evaluation and analysis of a pipeline.
use super::{Stage, StageContext};
use crate::report::{self, EvalResult, SparsityResult};
use crate::spec::{Format, ReportSpec, TableKind};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

pub const TABLES: &str = "tables";

/// Labels of one input: which spec names produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Labels {
    pub role: String,
    pub dataset: String,
    pub model: String,
    pub training: String,
    pub attack: Option<String>,
    pub split: Option<String>,
}

pub struct Report {
    pub spec: ReportSpec,
    pub evals: Vec<Labels>,
    pub sparsity: Vec<Labels>,
}

impl Stage for Report {
    fn kind(&self) -> &'static str {
        "report"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({"report": self.spec, "evals": self.evals, "sparsity": self.sparsity})
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let mut evals = Vec::new();
        for l in &self.evals {
            let m: super::evaluate::EvalMetrics =
                serde_json::from_value(cx.input(&l.role)?.meta.summary.clone())
                    .context("evaluation summary")?;
            evals.push(EvalResult {
                dataset: l.dataset.clone(),
                model: l.model.clone(),
                training: l.training.clone(),
                attack: l.attack.clone().unwrap_or_default(),
                split: l.split.clone().unwrap_or_default(),
                n: m.n,
                clean_accuracy: m.clean_accuracy,
                robust_accuracy: m.robust_accuracy,
            });
        }
        let mut sparsity = Vec::new();
        for l in &self.sparsity {
            let s = &cx.input(&l.role)?.meta.summary;
            let hoyer = s["overall"]["hoyer"]
                .as_f64()
                .context("sparsity summary lacks overall.hoyer")?;
            sparsity.push(SparsityResult {
                dataset: l.dataset.clone(),
                model: l.model.clone(),
                training: l.training.clone(),
                hoyer,
            });
        }
        let dir = cx.out.join(TABLES);
        std::fs::create_dir_all(&dir)?;
        let mut written = Vec::new();
        for t in &self.spec.tables {
            let (name, mut df) = match t {
                TableKind::RobustAccuracy => (
                    "robust_accuracy",
                    report::robust_accuracy(&evals, &sparsity)?,
                ),
                TableKind::GeneralizationGap => {
                    ("generalization_gap", report::generalization_gap(&evals)?)
                }
            };
            for f in &self.spec.formats {
                let file = match f {
                    Format::Csv => {
                        let p = dir.join(format!("{name}.csv"));
                        report::write_csv(&mut df, &p)?;
                        p
                    }
                    Format::Md => {
                        let p = dir.join(format!("{name}.md"));
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
        Ok(json!({"files": written}))
    }
}
