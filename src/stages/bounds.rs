//! `bounds`: layer norms and norm-based (adversarial) Rademacher bounds of a trained model (see
//! `analysis::norms` and `analysis::bounds`).
use super::{write_json, Stage, StageContext};
use crate::analysis::bounds::{self, DataStats, Threat};
use crate::analysis::norms::{self, Lanczos};
use crate::spec::{Checkpoint, Norm};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const NORMS: &str = "norms.json";
pub const OUTPUT: &str = "bounds.json";

/// The attack of the adversarial bounds, in pixel units.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Attack {
    pub norm: Norm,
    pub eps: f64,
}

pub struct Bounds {
    pub conv_grid: i64,
    /// Most Lanczos steps per spectral norm.
    pub iterations: u32,
    /// `None`: ε = 0 (standard training without `analysis.bounds.attack`).
    pub attack: Option<Attack>,
    pub checkpoint: Checkpoint,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    pub data: DataStats,
    /// The attack in the network's input space: ε / min(std).
    pub threat: Option<Threat>,
    pub layers: usize,
    pub log10: BTreeMap<String, Option<f64>>,
}

impl Stage for Bounds {
    fn kind(&self) -> &'static str {
        "bounds"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({
            "conv_grid": self.conv_grid,
            "iterations": self.iterations,
            "attack": self.attack,
            "checkpoint": self.checkpoint,
        })
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let net = super::analysed_network(cx, self.checkpoint)?;
        let named = net.named_tensors();
        let stat = |name: &str| -> Result<Vec<f64>> {
            let t = named
                .iter()
                .find(|(n, _)| n == name)
                .with_context(|| format!("the network has no `{name}` buffer"))?;
            Ok(Vec::<f64>::try_from(
                t.1.to_kind(tch::Kind::Double).flatten(0, -1),
            )?)
        };
        let data = crate::data::prepared::load(&cx.input("data")?.dir)?;
        // The network's own input normalisation; an imported model without one is taken to use
        // the dataset's statistics.
        let (mean, std) = match (stat("normalize.mean"), stat("normalize.std")) {
            (Ok(m), Ok(s)) => (m, s),
            _ => (data.info.mean.clone(), data.info.std.clone()),
        };
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
