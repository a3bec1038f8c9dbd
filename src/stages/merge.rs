//! `merge`: the shards of one evaluation (`evaluation.shard`) joined into the result the
//! unsharded `evaluate` stage writes: `per_sample.safetensors` with every point in order, and
//! `metrics.json` recomputed from them (the shards' notes in order, their seconds added up). It
//! reads results only, so it runs in the control plane, in well under a second.
use super::{write_json, StageContext, StageKind};
use crate::attacks::verdict::{EvalMetrics, Points, METRICS, PER_SAMPLE};
use crate::attacks::AttackConfig;
use crate::vocab::Split;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize)]
pub struct Merge {
    pub attack: AttackConfig,
    pub split: Split,
    /// How many shards, read from the inputs [`shard_role`]`(0..shards)` in point order.
    pub shards: usize,
}

/// The input role of shard `k`.
pub fn shard_role(k: usize) -> String {
    format!("shard-{k:05}")
}

impl StageKind for Merge {
    fn kind(&self) -> &'static str {
        "merge"
    }
    fn version(&self) -> u32 {
        1
    }
    fn work(&self) -> super::Work<'_> {
        super::Work::Here(self)
    }
}

impl super::ControlStage for Merge {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let (mut parts, mut notes, mut seconds) = (Vec::new(), Vec::<String>::new(), 0.0);
        for k in 0..self.shards {
            let input = cx.input(&shard_role(k))?;
            let m: EvalMetrics = serde_json::from_value(input.meta.summary.clone())
                .with_context(|| format!("the summary of shard {k}"))?;
            let p = Points::read(&input.dir.join(PER_SAMPLE))?;
            anyhow::ensure!(
                p.len() == m.n,
                "shard {k} has {} points and a summary of {}",
                p.len(),
                m.n
            );
            for note in m.notes {
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            seconds += m.seconds;
            parts.push(p);
        }
        let points = Points::concat(&parts);
        let names = self
            .attack
            .members()
            .map(|m| m.into_iter().map(|(n, _)| n).collect::<Vec<_>>());
        points.write(&cx.out.join(PER_SAMPLE))?;
        let m = points.metrics(&self.attack, names.as_deref(), notes, seconds);
        write_json(&cx.out.join(METRICS), &m)?;
        Ok(serde_json::to_value(&m)?)
    }
}
