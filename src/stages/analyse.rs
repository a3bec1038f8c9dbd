//! A per-model analysis's stage (`sparsity`, `bounds`, `flatness`, …; see `analysis::REGISTRY`):
//! the analysis's file computes and types the output; this stage hands it its inputs (`model`, and
//! `data` where the analysis reads the dataset) and its staging directory.
use super::cost::CostInputs;
#[cfg(feature = "torch")]
use super::StageContext;
use super::StageKind;
use crate::analysis::Entry;
#[cfg(feature = "torch")]
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
pub struct Analyse {
    /// Not part of the key: the key's envelope holds the stage kind (the analysis's name) and
    /// its version.
    #[serde(skip)]
    pub analysis: &'static Entry,
    /// The analysis's parameters, as its file serialises them.
    #[serde(flatten)]
    pub params: Value,
}

impl Analyse {
    /// The stage of `analysis` with its parameters for one trained model.
    pub fn new(analysis: &'static Entry, params: Value) -> Self {
        Self { analysis, params }
    }
}

impl StageKind for Analyse {
    fn kind(&self) -> &'static str {
        self.analysis.name
    }
    fn version(&self) -> u32 {
        self.analysis.version
    }
    fn uses_device(&self) -> bool {
        self.analysis.uses_device
    }
    fn flops(&self, inputs: &CostInputs) -> Option<f64> {
        match &inputs.model {
            Some(m) => self.analysis.flops(&self.params, m.forward),
            // Unknown where the analysis's cost grows with the model's.
            None => self
                .analysis
                .flops(&self.params, f64::NAN)
                .filter(|f| !f.is_nan()),
        }
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Analyse {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let data = match self.analysis.needs_data {
            true => Some(cx.input("data")?.dir.as_path()),
            false => None,
        };
        let subject = crate::analysis::Subject {
            model: &cx.input("model")?.dir,
            data,
            out: cx.out,
            device: match self.analysis.uses_device {
                true => cx.device(),
                false => tch::Device::Cpu,
            },
        };
        self.analysis.compute(&self.params, &subject)
    }
}
