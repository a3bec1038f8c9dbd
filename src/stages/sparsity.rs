//! `sparsity`: weight sparsity of a trained model (see `analysis::sparsity`).
use super::StageKind;
#[cfg(feature = "torch")]
use {
    crate::analysis::sparsity,
    serde_json::Value,
    super::{write_json, StageContext},
};
use crate::analysis::sparsity::{Summary, Thresholds};
use crate::models::saved::Checkpoint;
use anyhow::{Context, Result};
use serde::Serialize;

pub const OUTPUT: &str = "sparsity.json";

/// What the stage measures, in its key as the list `["hoyer", "l1_over_l2", "below"]`: a measure
/// added to the analysis must extend it (and bump the version), so old entries are not reused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measures;

impl Serialize for Measures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ["hoyer", "l1_over_l2", "below"].serialize(s)
    }
}

#[derive(Serialize)]
pub struct Sparsity {
    pub measures: Measures,
    pub thresholds: Thresholds,
    /// Which weights: those `evaluation.checkpoint` evaluates.
    pub checkpoint: Checkpoint,
}

impl Sparsity {
    /// The `analysis.sparsity` settings `sp`, on the weights `checkpoint` names.
    pub fn new(sp: &crate::analysis::spec::SparsitySpec, checkpoint: Checkpoint) -> Self {
        Self {
            measures: Measures,
            thresholds: Thresholds {
                absolute: sp.absolute.iter().map(|t| t.get()).collect(),
                relative: sp.relative.iter().map(|t| t.get()).collect(),
            },
            checkpoint,
        }
    }
}

impl StageKind for Sparsity {
    fn kind(&self) -> &'static str {
        "sparsity"
    }
    fn version(&self) -> u32 {
        2
    }
    #[cfg(feature = "torch")]
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let net = super::analysed_network(cx, self.checkpoint)?;
        let r = sparsity::analyse(&net.named_tensors(), &self.thresholds);
        write_json(&cx.out.join(OUTPUT), &r)?;
        Ok(serde_json::to_value(Summary {
            overall: r.overall,
            by_type: r.by_type,
        })?)
    }
}

/// The output of a `sparsity` stage, typed.
pub fn read(input: &crate::cache::Entry) -> Result<Summary> {
    serde_json::from_value(input.meta.summary.clone()).context("reading a sparsity summary")
}
