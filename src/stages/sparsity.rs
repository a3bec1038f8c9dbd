//! `sparsity`: weight sparsity of a trained model (see `analysis::sparsity`).
use super::{write_json, Stage, StageContext};
use crate::analysis::sparsity;
use anyhow::Result;
use serde_json::{json, Value};

pub const OUTPUT: &str = "sparsity.json";

pub struct Sparsity;

impl Stage for Sparsity {
    fn kind(&self) -> &'static str {
        "sparsity"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({"measures": ["hoyer", "frac_below_rel_0_01", "l1_over_l2"]})
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let net = super::train::load_network(&cx.input("model")?.dir, tch::Device::Cpu)?;
        let r = sparsity::analyse(&net.named_tensors());
        write_json(&cx.out.join(OUTPUT), &r)?;
        Ok(json!({"overall": r.overall, "by_type": r.by_type}))
    }
}
