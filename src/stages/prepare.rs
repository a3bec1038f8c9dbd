//! `prepare`: decode, split, subset and resize a dataset into uint8 tensors.
#[cfg(feature = "torch")]
use {
    anyhow::Result,
    crate::data::prepared,
    serde_json::Value,
    super::StageContext,
};
use super::StageKind;
use crate::data::DatasetParams;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Serialize, Deserialize)]
pub struct Prepare {
    pub dataset: DatasetParams,
    /// Where a file-backed source lives. Not part of the key: its contents are (via
    /// `dataset.source_hash`), so moving the directory does not re-prepare.
    #[serde(skip)]
    pub root: Option<PathBuf>,
    pub seed: u64,
}

impl Prepare {
    /// Prepares the resolved dataset `d`.
    pub fn new(d: crate::data::Resolved, seed: u64) -> Self {
        Self {
            dataset: d.params,
            root: d.root,
            seed,
        }
    }
}

impl StageKind for Prepare {
    fn kind(&self) -> &'static str {
        "prepare"
    }
    fn version(&self) -> u32 {
        2
    }
    fn images(&self) -> Option<crate::data::SplitSizes> {
        crate::data::expected_sizes(&self.dataset)
    }
    fn locations(&self) -> serde_json::Value {
        serde_json::json!({ "root": self.root })
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Prepare {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let d = prepared::prepare(&self.dataset, self.root.as_deref(), self.seed)?;
        prepared::save(cx.out, &d)?;
        Ok(serde_json::to_value(&d.info)?)
    }
}
