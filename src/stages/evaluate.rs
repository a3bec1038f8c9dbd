//! `evaluate`: accuracy of a trained model under one attack on one split, with per-sample flags.
//!
//! A point counts as robust only if it is classified correctly both clean and under attack, so
//! attacks run only on clean-correct points (as AutoAttack does).
use super::StageKind;
#[cfg(feature = "torch")]
use {
    anyhow::Result,
    crate::{
        attacks::{
            autoattack, loss, project, sweep::{self, Sweep}, verdict::PER_SAMPLE, AttackClass, Model,
            Net, Streams, Use,
        },
        data::prepared,
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

pub use crate::attacks::verdict::METRICS;

#[derive(Clone, Serialize, Deserialize)]
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
    /// A shard (`evaluation.shard`): the points `lo..hi` of the split (`hi` unset: to its end),
    /// `limit` unset. In the key only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<(usize, Option<usize>)>,
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
            points: None,
        }
    }

    /// The shard of the points `lo..hi` (`None`: to the split's end) of this evaluation; its
    /// limit no longer applies.
    pub fn shard(mut self, lo: usize, hi: Option<usize>) -> Self {
        self.limit = None;
        self.points = Some((lo, hi));
        self
    }

    /// The points evaluated, of a split of `size` points: the shard's range (empty where the
    /// split ends before it), or the first `limit`.
    pub fn range(&self, size: usize) -> (usize, usize) {
        match self.points {
            Some((lo, hi)) => (lo.min(size), hi.unwrap_or(size).clamp(lo.min(size), size)),
            None => (0, self.limit.map_or(size, |l| l.min(size))),
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
        let size = inputs.images?.of(self.split);
        let (lo, hi) = self.range(size);
        Some(super::cost::evaluation(&self.attack, hi - lo, &inputs.model?))
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
    // Long because it is the evaluation's one loop, read top to bottom: resume, the clean pass,
    // each member on the points still robust, checkpoints between batches, then the outputs.
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let started = std::time::Instant::now();
        let net = saved::load(&cx.input("model")?.dir, self.checkpoint, cx.device())?;
        let model = Net {
            net: &net,
            train: false,
        };
        let data = prepared::load(&cx.input("data")?.dir)?;
        let (x_all, y_all) = data.split(self.split)?;
        let (lo, hi) = self.range(x_all.size()[0] as usize);
        let n = hi - lo;
        let composite = self.attack.members();
        let members = composite
            .clone()
            .unwrap_or_else(|| {
                // The attack by its type (`pgd`, `square`), for progress and logs.
                let kind = serde_json::to_value(&self.attack).ok().and_then(|v| {
                    v["type"].as_str().map(String::from)
                });
                vec![(kind.unwrap_or_else(|| "attack".into()), self.attack.clone())]
            });
        let ckpt = cx.checkpoints.join("sweep");
        let mut s = match Sweep::resume(&ckpt, lo as u64, n, members.len())? {
            Some(s) => {
                tracing::info!(
                    points = s.clean_done,
                    attacked = i64::try_from(s.tried.gt(0).sum(Kind::Int64)).unwrap_or(0),
                    "resuming the evaluation from its checkpoint"
                );
                s
            }
            None => Sweep::new(lo as u64, n, members.len()),
        };
        let every = sweep::checkpoint_every();
        let mut last_save = std::time::Instant::now();
        let _done = sweep::Listening::start();
        // Where the stage is, in the stage log, at each checkpoint: e.g. `apgd-t: 40/300 points`.
        let mut maybe_save = |s: &Sweep, at: &dyn Fn() -> String| -> Result<()> {
            if crate::stop::asked() || last_save.elapsed() >= every {
                s.save(&ckpt, s.seconds + started.elapsed().as_secs_f64(), cx.id)?;
                crate::stop::saved();
                last_save = std::time::Instant::now();
                tracing::info!(at = %at(), "evaluation checkpoint saved");
            }
            Ok(())
        };
        let batch = |idx: &Tensor| {
            let at = idx + lo as i64;
            let x = x_all
                .index_select(0, &at)
                .to_device(cx.device())
                .to_kind(Kind::Float)
                / 255.0;
            (x, y_all.index_select(0, &at).to_device(cx.device()))
        };
        let score = |x: &Tensor, y: &Tensor| {
            let logits = tch::no_grad(|| model.logits(x));
            (logits.argmax(1, false).eq_tensor(y), loss::margin(&logits, y))
        };
        // The clean pass.
        cx.progress.phase_of(
            format!("{} split: clean, points", self.split),
            n as u64,
            Some([0, 1 + members.len() as u64]),
        );
        cx.progress.inc(s.clean_done as u64);
        while s.clean_done < n {
            let k = self.batch_size.min(n - s.clean_done) as i64;
            let (x, y) = batch(&Tensor::arange_start(
                s.clean_done as i64,
                s.clean_done as i64 + k,
                (Kind::Int64, tch::Device::Cpu),
            ));
            let (ok, margin) = score(&x, &y);
            s.record_clean(&ok, &margin);
            cx.progress.inc(k as u64);
            maybe_save(&s, &|| format!("clean: {}/{n} points", s.clean_done))?;
        }
        let attacks = self.attack.moves_points();
        for (i, (name, cfg)) in members.iter().enumerate().filter(|_| attacks) {
            let pending = s.pending(i);
            let reaching = s.reaching(i);
            cx.progress.phase_of(
                format!("{} split: {name}, points", self.split),
                reaching as u64,
                Some([1 + i as u64, 1 + members.len() as u64]),
            );
            cx.progress.inc((reaching - pending.len()) as u64);
            if !pending.is_empty() {
                tracing::info!(member = %name, points = pending.len(), "attacking");
            }
            for chunk in pending.chunks(self.batch_size) {
                let idx = Tensor::from_slice(chunk);
                let (x, y) = batch(&idx);
                let ids = chunk.iter().map(|&p| lo as u64 + p as u64).collect();
                let mut rng = Streams::points(self.seed, ids);
                if composite.is_some() {
                    rng = rng.sub(&[i as u64]);
                }
                let out = cfg.run(&model, &x, &y, &rng, Use::Evaluation);
                check_feasible(cfg, &x, &out.adv)?;
                let (ok, margin) = score(&out.adv, &y);
                s.record_member(i, chunk, &ok, &margin);
                for note in out.notes {
                    s.note(match composite {
                        Some(_) => format!("{name}: {note}"),
                        None => note,
                    });
                }
                cx.progress.inc(chunk.len() as u64);
                let at = || format!("{name}: {}/{reaching} points", reaching - s.pending(i).len());
                maybe_save(&s, &at)?;
            }
            if composite.is_some() && cfg.class() == AttackClass::BlackBox && s.broke[i] > 0 {
                s.note(autoattack::black_box_note(name, s.broke[i]));
            }
        }
        let names = composite.map(|m| m.into_iter().map(|(n, _)| n).collect::<Vec<_>>());
        for note in &s.notes {
            tracing::warn!(attack = ?self.attack, split = %self.split, "{note}");
        }
        let seconds = s.seconds + started.elapsed().as_secs_f64();
        let points = s.points(names.is_some());
        points.write(&cx.out.join(PER_SAMPLE))?;
        let m = points.metrics(&self.attack, names.as_deref(), s.notes.clone(), seconds);
        write_json(&cx.out.join(METRICS), &m)?;
        Ok(serde_json::to_value(&m)?)
    }
}

/// Every attack must return points inside its threat model: an infeasible point would report
/// robustness that was never tested, so it fails the stage instead of entering the cache.
#[cfg(feature = "torch")]
fn check_feasible(attack: &AttackConfig, x: &Tensor, adv: &Tensor) -> Result<()> {
    let (lo, hi) = (f64::try_from(adv.min())?, f64::try_from(adv.max())?);
    if lo < -1e-5 || hi > 1.0 + 1e-5 {
        anyhow::bail!(
            "attack {attack:?} returned pixels outside [0,1] ({lo}..{hi}): a bug in the attack"
        );
    }
    if let Some(norm) = attack.norm() {
        let eps = attack.eps();
        let d = f64::try_from(project::norm(&(adv - x), norm).max())?;
        if d > eps * (1.0 + EPS_SLACK) + 1e-6 {
            anyhow::bail!("attack {attack:?} returned a perturbation of {norm} norm {d} > ε = {eps}: a bug in the attack");
        }
    }
    Ok(())
}
