//! `evaluate`: accuracy of a trained model under one attack on one split, with per-sample flags.
//!
//! A point counts as robust only if it is classified correctly both clean and under attack, so
//! attacks run only on clean-correct points (as AutoAttack does).
use super::StageKind;
#[cfg(feature = "torch")]
use {
    anyhow::Result,
    crate::{
        attacks::{self, project, verdict::{EvalMetrics, PER_SAMPLE}, Net}, data::prepared,
        models::saved,
    },
    serde_json::Value,
    super::{write_json, StageContext},
    tch::{Kind, Tensor},
};
use crate::attacks::AttackConfig;
use crate::models::saved::Checkpoint;
use crate::vocab::Split;
use serde::{Deserialize, Serialize};

pub const METRICS: &str = "metrics.json";

#[derive(Serialize, Deserialize)]
pub struct Evaluate {
    pub attack: AttackConfig,
    pub split: Split,
    pub limit: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
    /// In the key only when it is not the default (`last`), so keys from before the setting
    /// existed stay valid.
    #[serde(default, skip_serializing_if = "Checkpoint::is_last")]
    pub checkpoint: Checkpoint,
}

/// Largest allowed overshoot of ‖δ‖_p over ε (float32 rounding of projections and rescaling).
#[cfg(feature = "torch")]
const EPS_SLACK: f64 = 1e-4;

impl Evaluate {
    /// `attack` on `split` (the first `limit` points), in batches of `batch_size`, on the
    /// weights `checkpoint` names.
    pub fn new(
        attack: AttackConfig,
        split: Split,
        limit: Option<usize>,
        batch_size: usize,
        seed: u64,
        checkpoint: Checkpoint,
    ) -> Self {
        Self {
            attack,
            split,
            limit,
            batch_size,
            seed,
            checkpoint,
        }
    }
}

impl StageKind for Evaluate {
    fn kind(&self) -> &'static str {
        "evaluate"
    }
    /// 3: attacks draw from per-point streams (`attacks::Streams`), so verdicts no longer depend
    /// on the batch a point ran in.
    fn version(&self) -> u32 {
        3
    }
    fn flops(&self, inputs: &super::cost::CostInputs) -> Option<f64> {
        let n = inputs.images?.of(self.split);
        let n = self.limit.map_or(n, |l| n.min(l));
        Some(super::cost::evaluation(&self.attack, n, &inputs.model?))
    }
    fn uses_device(&self) -> bool {
        true
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Evaluate {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let started = std::time::Instant::now();
        let net = saved::load(&cx.input("model")?.dir, self.checkpoint, cx.device())?;
        let model = Net {
            net: &net,
            train: false,
        };
        let data = prepared::load(&cx.input("data")?.dir)?;
        let (x_all, y_all) = data.split(self.split)?;
        let n = self
            .limit
            .map_or(x_all.size()[0], |l| (l as i64).min(x_all.size()[0]));
        let batches = (n as usize).div_ceil(self.batch_size);
        cx.progress
            .phase(format!("{} split: points", self.split), n as u64);
        let (mut clean_flags, mut robust_flags, mut broken) = (Vec::new(), Vec::new(), Vec::new());
        let mut member_names: Option<Vec<String>> = None;
        let mut notes: Vec<String> = Vec::new();
        for b in 0..batches {
            let lo = (b * self.batch_size) as i64;
            let hi = (lo + self.batch_size as i64).min(n);
            let x = x_all
                .narrow(0, lo, hi - lo)
                .to_device(cx.device())
                .to_kind(Kind::Float)
                / 255.0;
            let y = y_all.narrow(0, lo, hi - lo).to_device(cx.device());
            let rng = attacks::Streams::range(self.seed, lo as u64, (hi - lo) as usize);
            let e = attacks::evaluate_batch(&model, &x, &y, &self.attack, &rng);
            let mut by = Tensor::full([hi - lo], -1, (Kind::Int64, cx.device()));
            if let Some((idx, xs, out)) = e.attacked {
                self.check_feasible(&xs, &out.adv)?;
                for note in out.notes {
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
                if let Some((names, member)) = out.broken_by {
                    by = by.index_copy(0, &idx, &member);
                    member_names = Some(names);
                }
            }
            clean_flags.push(e.clean.to_device(tch::Device::Cpu));
            robust_flags.push(e.robust.to_device(tch::Device::Cpu));
            broken.push(by.to_device(tch::Device::Cpu));
            cx.progress.inc((hi - lo) as u64);
        }
        let clean = Tensor::cat(&clean_flags, 0).to_kind(Kind::Uint8);
        let robust = Tensor::cat(&robust_flags, 0).to_kind(Kind::Uint8);
        let by = Tensor::cat(&broken, 0);
        let mut tensors = vec![("clean_correct", &clean), ("robust_correct", &robust)];
        if member_names.is_some() {
            tensors.push(("broken_by", &by));
        }
        Tensor::write_safetensors(&tensors, cx.out.join(PER_SAMPLE))?;
        let frac =
            |t: &Tensor| f64::try_from(t.to_kind(Kind::Double).mean(Kind::Double)).unwrap_or(0.0);
        // Robust accuracy after each member: clean-correct points no member up to i broke.
        let members = member_names
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let still = clean
                    .to_kind(Kind::Bool)
                    .logical_and(&by.lt(0).logical_or(&by.gt(i as i64)));
                (name, frac(&still))
            })
            .collect();
        for note in &notes {
            tracing::warn!(attack = ?self.attack, split = %self.split, "{note}");
        }
        let m = EvalMetrics {
            n: n as usize,
            clean_accuracy: frac(&clean),
            robust_accuracy: frac(&robust),
            eps: self.attack.eps(),
            norm: self.attack.norm(),
            class: self.attack.class(),
            members,
            notes,
            seconds: started.elapsed().as_secs_f64(),
        };
        write_json(&cx.out.join(METRICS), &m)?;
        Ok(serde_json::to_value(&m)?)
    }
}

impl Evaluate {
    #[cfg(feature = "torch")]
    /// Every attack must return points inside its threat model: an infeasible point would report
    /// robustness that was never tested, so it fails the stage instead of entering the cache.
    fn check_feasible(&self, x: &Tensor, adv: &Tensor) -> Result<()> {
        let (lo, hi) = (f64::try_from(adv.min())?, f64::try_from(adv.max())?);
        if lo < -1e-5 || hi > 1.0 + 1e-5 {
            anyhow::bail!(
                "attack {:?} returned pixels outside [0,1] ({lo}..{hi}): a bug in the attack",
                self.attack
            );
        }
        if let Some(norm) = self.attack.norm() {
            let eps = self.attack.eps();
            let d = f64::try_from(project::norm(&(adv - x), norm).max())?;
            if d > eps * (1.0 + EPS_SLACK) + 1e-6 {
                anyhow::bail!("attack {:?} returned a perturbation of {norm} norm {d} > ε = {eps}: a bug in the attack", self.attack);
            }
        }
        Ok(())
    }
}
