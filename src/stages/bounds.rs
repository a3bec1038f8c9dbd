//! `bounds`: layer norms and norm-based (adversarial) Rademacher bounds of a trained model (see
//! `analysis::norms` and `analysis::bounds`).
use super::StageKind;
#[cfg(feature = "torch")]
use {
    crate::{
        analysis::{bounds::{self, DataStats, Threat}, norms::{self, Lanczos}},
        models::saved::SavedModel,
    },
    serde_json::Value,
    super::{write_json, StageContext},
    tch::Device,
};
use crate::models::saved::Checkpoint;
use crate::vocab::Norm;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const NORMS: &str = "norms.json";
pub const OUTPUT: &str = "bounds.json";

/// The attack of the adversarial bounds, in pixel units.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Attack {
    pub norm: Norm,
    pub eps: f64,
}

#[derive(Serialize)]
pub struct Bounds {
    pub conv_grid: i64,
    /// Most Lanczos steps per spectral norm.
    pub iterations: u32,
    /// `None`: ε = 0 (standard training without `analysis.bounds.attack`).
    pub attack: Option<Attack>,
    pub checkpoint: Checkpoint,
}

pub use crate::analysis::bounds::Output;

/// The output of a `bounds` stage, typed.
pub fn read(input: &crate::cache::Entry) -> Result<Output> {
    serde_json::from_value(input.meta.summary.clone()).context("reading a bounds summary")
}

impl Bounds {
    /// The `analysis.bounds` settings `b` with the attack of the adversarial bounds, on the
    /// weights `checkpoint` names.
    pub fn new(
        b: &crate::analysis::spec::BoundsSpec,
        attack: Option<Attack>,
        checkpoint: Checkpoint,
    ) -> Self {
        Self {
            conv_grid: b.conv_grid,
            iterations: b.iterations,
            attack,
            checkpoint,
        }
    }
}

impl StageKind for Bounds {
    fn kind(&self) -> &'static str {
        "bounds"
    }
    fn version(&self) -> u32 {
        1
    }
    #[cfg(feature = "torch")]
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let saved = SavedModel::open(&cx.input("model")?.dir)?;
        let net = saved.network(self.checkpoint, Device::Cpu)?;
        let named = net.named_tensors();
        // The normalisation the network applies to its inputs (identity for an imported model
        // that normalises inside itself).
        let (mean, std) = (saved.info.mean, saved.info.std);
        let data = crate::data::prepared::load(&cx.input("data")?.dir)?;
        let stats = DataStats::of_images(&data.train_x, &mean, &std);
        let pi = Lanczos {
            max_iters: self.iterations,
            ..Lanczos::default()
        };
        let layers = norms::analyse(&named, self.conv_grid, pi);
        let min_std = std.iter().copied().fold(f64::INFINITY, f64::min);
        let threat = self.attack.map(|a| Threat {
            norm: a.norm,
            eps: a.eps / min_std,
        });
        let log10 = bounds::compute(&layers, &stats, threat);
        write_json(&cx.out.join(NORMS), &layers)?;
        let out = Output {
            data: stats,
            threat,
            layers: layers.len(),
            log10,
        };
        write_json(&cx.out.join(OUTPUT), &out)?;
        Ok(serde_json::to_value(&out)?)
    }
}
