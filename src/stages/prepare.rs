//! `prepare`: decode, split, subset and resize a dataset into uint8 tensors.
use super::{Stage, StageContext};
use crate::data::{prepared, DatasetParams};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::PathBuf;

pub struct Prepare {
    pub dataset: DatasetParams,
    /// Where a file-backed source lives; not part of the key (its contents are, via
    /// `dataset.source_hash`), so moving the directory does not re-prepare.
    pub root: Option<PathBuf>,
    pub seed: u64,
}

impl Stage for Prepare {
    fn kind(&self) -> &'static str {
        "prepare"
    }
    fn version(&self) -> u32 {
        2
    }
    fn params(&self) -> Value {
        json!({"dataset": self.dataset, "seed": self.seed})
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let d = prepared::prepare(&self.dataset, self.root.as_deref(), self.seed)?;
        prepared::save(cx.out, &d)?;
        Ok(serde_json::to_value(&d.info)?)
    }
}
