//! `sparsity`: weight sparsity of a trained model (see `analysis::sparsity`).
use super::{write_json, Stage, StageContext};
use crate::analysis::sparsity::{self, Thresholds};
use crate::models::saved::Checkpoint;
use anyhow::Result;
use serde_json::{json, Value};

pub const OUTPUT: &str = "sparsity.json";

pub struct Sparsity {
    pub thresholds: Thresholds,
    /// Which weights: those `evaluation.checkpoint` evaluates.
    pub checkpoint: Checkpoint,
}

impl Stage for Sparsity {
    fn kind(&self) -> &'static str {
        "sparsity"
    }
    fn version(&self) -> u32 {
        2
    }
    fn params(&self) -> Value {
        json!({
            "measures": ["hoyer", "l1_over_l2", "below"],
            "thresholds": self.thresholds,
            "checkpoint": self.checkpoint,
        })
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let net = super::analysed_network(cx, self.checkpoint)?;
        let r = sparsity::analyse(&net.named_tensors(), &self.thresholds);
        write_json(&cx.out.join(OUTPUT), &r)?;
        Ok(json!({"overall": r.overall, "by_type": r.by_type}))
    }
}
