//! `report`: the paper's tables from every evaluation and analysis of a pipeline.
use super::inputs::{self, load_evals, Labels};
use super::{StageContext, StageKind};
use crate::attacks::verdict;
use crate::report::spec::ReportSpec;
use crate::report::{self, Sides};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const TABLES: &str = report::TABLES_DIR;

/// The report stage: its spec and what it is made of; both enter its key.
#[derive(Serialize, Deserialize)]
pub struct Report {
    #[serde(rename = "report")]
    pub spec: ReportSpec,
    #[serde(flatten)]
    pub parts: Parts,
}

/// What a report is made of, beyond its spec: the inputs' labels and how to group them.
#[derive(Serialize, Deserialize)]
pub struct Parts {
    /// `evaluation.groups`: per-sample worst case over member attacks.
    pub groups: BTreeMap<String, Vec<String>>,
    pub evals: Vec<Labels>,
    /// Per-model analysis name → the inputs behind its measures (each appears under its name in
    /// the key).
    #[serde(flatten)]
    pub per_model: inputs::PerModel,
    /// The training stages, whose histories the per-epoch plots show.
    pub histories: Vec<Labels>,
    /// Whether the `correlation` stage is an input.
    pub correlation: bool,
    /// Model name → architecture kind: how tables group rows and plots colour points.
    pub kinds: BTreeMap<String, String>,
    /// Training name → the attacks of its threat model (seen) and of other norms (unseen).
    pub gaps: BTreeMap<String, Sides>,
    /// The pipeline's name, in the report's title.
    pub pipeline: String,
    /// `evaluation.attacks` in the spec's order: the order of the tables' attack columns.
    pub attack_order: Vec<String>,
}

impl Report {
    pub fn new(spec: ReportSpec, parts: Parts) -> Self {
        Self { spec, parts }
    }

    /// Gives a report rebuilt from its key the curve points of its evaluations' labels back, from
    /// its [`StageKind::locations`].
    pub fn restore_curves(&mut self, locations: &Value) -> Result<()> {
        if locations.is_null() {
            return Ok(());
        }
        let curves: BTreeMap<String, verdict::CurvePoint> =
            serde_json::from_value(locations["curves"].clone())
                .context("the report's curve points")?;
        for l in &mut self.parts.evals {
            l.curve = curves.get(&l.role).cloned();
        }
        Ok(())
    }

    /// The title: the pipeline, today's date, and a fingerprint of the report's settings and of
    /// the keys of the results it reads (what a reader compares to tell two reports apart).
    fn title(&self, cx: &StageContext) -> Result<report::Title> {
        let mut h = blake3::Hasher::new();
        h.update(serde_json::to_string(self)?.as_bytes());
        for (role, e) in cx.inputs {
            h.update(role.as_bytes());
            h.update(e.meta.key.as_bytes());
        }
        let stamp = crate::report::publish::utc_stamp(std::time::SystemTime::now());
        Ok(report::Title {
            pipeline: self.parts.pipeline.clone(),
            spec: h.finalize().to_hex()[..12].to_string(),
            date: format!("{}-{}-{}", &stamp[..4], &stamp[4..6], &stamp[6..8]),
        })
    }

    /// The stage ids of the inputs this report reads that `cx` lacks (a partial report).
    fn missing(&self, cx: &StageContext) -> Vec<String> {
        let p = &self.parts;
        let mut roles: Vec<&str> = p
            .evals
            .iter()
            .chain(p.per_model.labels())
            .chain(&p.histories)
            .map(|l| l.role.as_str())
            .collect();
        if p.correlation {
            roles.push("correlation");
        }
        roles
            .into_iter()
            .filter(|r| !cx.inputs.contains_key(*r))
            .map(String::from)
            .collect()
    }
}

impl StageKind for Report {
    fn kind(&self) -> &'static str {
        "report"
    }
    fn version(&self) -> u32 {
        // 5: the long tables keep each seed's row (a `seed` column where seeds repeat).
        // 6: a title (pipeline, date, version, fingerprint), human column labels, attacks in
        // the spec's order, LaTeX tables split to print size.
        6
    }
    /// The curve points of its evaluations by stage id: their labels hold them outside the key
    /// (`Labels::curve`), so a rebuilt report ([`Report::restore_curves`]) gets them from here.
    fn locations(&self) -> Value {
        let curves: BTreeMap<&str, &verdict::CurvePoint> = self
            .parts
            .evals
            .iter()
            .filter_map(|l| Some((l.role.as_str(), l.curve.as_ref()?)))
            .collect();
        if curves.is_empty() {
            Value::Null
        } else {
            json!({ "curves": curves })
        }
    }
    fn work(&self) -> super::Work<'_> {
        super::Work::Here(self)
    }
}

impl super::ControlStage for Report {
    /// The report of every input `cx` has: inside a pipeline run all of them; `robarch report`
    /// on a partly computed pipeline passes the cached ones and the page lists the rest.
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let have = |ls: &[Labels]| -> Vec<Labels> {
            ls.iter()
                .filter(|l| cx.inputs.contains_key(&l.role))
                .cloned()
                .collect()
        };
        let missing = self.missing(cx);
        let mut evals = load_evals(cx, &have(&self.parts.evals))?;
        // Attacks in the spec's order (a curve point with its attack); others (groups) after.
        let rank = |a: &str| {
            let base = a.split('@').next().unwrap_or(a);
            let order = &self.parts.attack_order;
            order.iter().position(|o| o == base).unwrap_or(order.len())
        };
        evals.sort_by_key(|e| rank(&e.attack));
        let mut measures: Vec<report::ModelMeasures> = Vec::new();
        for a in crate::analysis::REGISTRY {
            let Some(labels) = self.parts.per_model.get(a.name) else {
                continue;
            };
            for (l, values) in inputs::load_measures(cx, a, &have(labels), true)? {
                measures.push(report::ModelMeasures {
                    analysis: a.name,
                    key: (l.dataset.clone(), l.model.clone(), l.training.clone()),
                    seed: l.seed,
                    values,
                });
            }
        }
        let hl = have(&self.parts.histories);
        let histories = inputs::load_histories(cx, &hl)?
            .into_iter()
            .map(|(l, epochs)| report::History {
                key: (l.dataset.clone(), l.model.clone(), l.training.clone()),
                seed: l.seed,
                epochs,
            })
            .collect();
        let correlation: Option<crate::analysis::correlation::Output> =
            match cx.inputs.get("correlation").filter(|_| self.parts.correlation) {
                Some(input) => {
                    let file = input.dir.join(crate::analysis::correlation::OUTPUT);
                    Some(
                        serde_json::from_slice(&std::fs::read(&file)?)
                            .with_context(|| format!("reading {}", file.display()))?,
                    )
                }
                None => None,
            };
        let grouped = verdict::group_results(&evals, &self.parts.groups);
        evals.extend(grouped);
        let mut warnings = verdict::warnings(&evals);
        if let Some(c) = &correlation {
            warnings.extend(c.warnings.iter().cloned());
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let inputs = report::Inputs {
            evals,
            measures,
            correlation,
            kinds: self.parts.kinds.clone(),
            gaps: self.parts.gaps.clone(),
            histories,
        };
        let written = report::write(&self.title(cx)?, &self.spec, &inputs, &warnings, &missing, cx.out)?;
        let mut summary = json!({"files": written, "warnings": warnings});
        if !missing.is_empty() {
            summary["missing"] = json!(missing);
        }
        Ok(summary)
    }
}
