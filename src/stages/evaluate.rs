//! `evaluate`: accuracy of a trained model under one attack on one split, with per-sample flags.
//!
//! A point counts as robust only if it is classified correctly both clean and under attack, so
//! attacks run only on clean-correct points (as AutoAttack does).
use super::{write_json, Stage, StageContext};
use crate::attacks::AttackConfig;
use crate::data::prepared;
use crate::spec::Split;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

pub const PER_SAMPLE: &str = "per_sample.safetensors";
pub const METRICS: &str = "metrics.json";

pub struct Evaluate {
    pub attack: AttackConfig,
    pub split: Split,
    pub limit: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalMetrics {
    pub n: usize,
    pub clean_accuracy: f64,
    pub robust_accuracy: f64,
}

impl Stage for Evaluate {
    fn kind(&self) -> &'static str {
        "evaluate"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        json!({"attack": self.attack, "split": self.split, "limit": self.limit, "batch_size": self.batch_size, "seed": self.seed})
    }
    fn uses_device(&self) -> bool {
        true
    }
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let net = super::train::load_network(&cx.input("model")?.dir, cx.device)?;
        let data = prepared::load(&cx.input("data")?.dir)?;
        let (x_all, y_all) = data.split(self.split)?;
        let n = self
            .limit
            .map_or(x_all.size()[0], |l| (l as i64).min(x_all.size()[0]));
        let batches = (n as usize).div_ceil(self.batch_size);
        cx.progress
            .phase(format!("{} split", self.split), batches as u64);
        let (mut clean_flags, mut robust_flags) = (Vec::new(), Vec::new());
        for b in 0..batches {
            let lo = (b * self.batch_size) as i64;
            let hi = (lo + self.batch_size as i64).min(n);
            let x = x_all
                .narrow(0, lo, hi - lo)
                .to_device(cx.device)
                .to_kind(Kind::Float)
                / 255.0;
            let y = y_all.narrow(0, lo, hi - lo).to_device(cx.device);
            let clean = tch::no_grad(|| net.forward_t(&x, false).argmax(1, false).eq_tensor(&y));
            let robust = match self.attack {
                AttackConfig::Clean => clean.shallow_clone(),
                _ => {
                    let idx = clean.nonzero().squeeze_dim(1);
                    let robust = clean.zeros_like();
                    if idx.size()[0] > 0 {
                        let (xs, ys) = (x.index_select(0, &idx), y.index_select(0, &idx));
                        let adv = self.attack.perturb(
                            &net,
                            &xs,
                            &ys,
                            crate::rng::derive(self.seed, &[b as u64]),
                            false,
                        );
                        let ok = tch::no_grad(|| {
                            net.forward_t(&adv, false).argmax(1, false).eq_tensor(&ys)
                        });
                        robust.index_copy(0, &idx, &ok)
                    } else {
                        robust
                    }
                }
            };
            clean_flags.push(clean.to_device(tch::Device::Cpu));
            robust_flags.push(robust.to_device(tch::Device::Cpu));
            cx.progress.inc(1);
        }
        let clean = Tensor::cat(&clean_flags, 0).to_kind(Kind::Uint8);
        let robust = Tensor::cat(&robust_flags, 0).to_kind(Kind::Uint8);
        Tensor::write_safetensors(
            &[("clean_correct", &clean), ("robust_correct", &robust)],
            cx.out.join(PER_SAMPLE),
        )?;
        let frac =
            |t: &Tensor| f64::try_from(t.to_kind(Kind::Double).mean(Kind::Double)).unwrap_or(0.0);
        let m = EvalMetrics {
            n: n as usize,
            clean_accuracy: frac(&clean),
            robust_accuracy: frac(&robust),
        };
        write_json(&cx.out.join(METRICS), &m)?;
        Ok(serde_json::to_value(&m)?)
    }
}
