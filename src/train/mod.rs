//! Adversarial training: the epoch loop (standard, PGD-AT, fast AT or TRADES), per-epoch
//! checkpoints for resuming, and per-epoch metrics.
// `checkpoint`, `optim` and `trades` are tensor-only (the worker build): each file gates itself
// once, with an inner `#![cfg]` at its top, so that this file's only gate is its `net` module.
pub mod checkpoint;
pub mod optim;
pub mod precision;
pub mod resolve;
pub mod schedule;
pub mod spec;
pub mod trades;

use crate::attacks::AttackConfig;
use crate::augment::Augment;
use crate::models::{ModelIo, ModelParams};
use precision::{Amp, ChannelsLast};
use serde::{Deserialize, Serialize};
use spec::{ModelMode, OptimizerSpec, ScheduleSpec, TrainMethod};

/// Canonical training parameters (part of the train stage's key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainParams {
    pub model: ModelParams,
    pub io: ModelIo,
    pub method: TrainMethod,
    pub attack: Option<AttackConfig>,
    pub attack_mode: ModelMode,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub schedule: ScheduleSpec,
    /// Training-time augmentation, applied in order (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub augment: Vec<Augment>,
    pub seed: u64,
    /// TRADES' β.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// Per-epoch evaluation and best-checkpoint selection (none: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    /// Mixed precision and memory format; `auto` resolves per device (not part of the key beyond
    /// the setting itself, like the device).
    #[serde(default, skip_serializing_if = "Amp::is_auto")]
    pub amp: Amp,
    #[serde(default, skip_serializing_if = "ChannelsLast::is_auto")]
    pub channels_last: ChannelsLast,
}

impl TrainParams {
    /// Whether this model trains channels-last: `channels_last` resolved for its architecture's
    /// kind (decided here once, for the training loop and the stage's summary alike).
    pub fn uses_channels_last(&self) -> bool {
        let kind = crate::models::find(&self.model.arch)
            .map_or(crate::models::ArchKind::External, |a| a.kind);
        self.channels_last.resolve(kind)
    }
}

/// Accuracies measured after every epoch on `n` fixed points of the training split and of the
/// test split, clean and (with an attack) robust; the epoch maximising `best_by` is kept as the
/// best checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Monitor {
    pub n: usize,
    pub attack: Option<AttackConfig>,
    pub best_by: String,
}

/// Metrics `monitor.best_by` may name.
pub const METRICS: [&str; 4] = [
    "test_robust_accuracy",
    "test_clean_accuracy",
    "train_robust_accuracy",
    "train_clean_accuracy",
];

/// Weights of the best epoch, kept next to the epoch checkpoints.
pub const BEST: &str = "best.safetensors";

/// TRADES' β when the spec leaves it unset (Zhang et al.'s CIFAR-10 setting).
pub const TRADES_BETA: f64 = 6.0;

/// Metrics of one finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss (on adversarial inputs for PGD-AT and fast AT; TRADES' combined loss).
    pub loss: f64,
    /// Accuracy on the inputs trained on (adversarial for PGD-AT and fast AT, clean for TRADES).
    pub train_accuracy: f64,
    /// Learning rate at the epoch's last batch.
    pub lr: f64,
    /// Monitored accuracies (fixed subsets, model in eval mode), when monitoring is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_clean_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_robust_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clean_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_robust_accuracy: Option<f64>,
}

impl EpochRecord {
    /// The value of a monitored metric (one of [`METRICS`]).
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "test_robust_accuracy" => self.test_robust_accuracy,
            "test_clean_accuracy" => self.test_clean_accuracy,
            "train_robust_accuracy" => self.train_robust_accuracy,
            "train_clean_accuracy" => self.train_clean_accuracy,
            _ => None,
        }
    }
}

/// The epochs of a training that ran under one setting (`torch::setting`: thread count and
/// kernel path on CPU, device kind on a GPU), from `from_epoch` (1-based) to the next span's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSpan {
    pub from_epoch: usize,
    pub setting: String,
}

/// The tensor half (libtorch, the worker build): the epoch loop and its helpers.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{Net, Use};
    use crate::data::loader::{HostData, Loader};
    use crate::data::prepared::Prepared;
    use crate::models::Network;
    use crate::progress::StageProgress;
    use anyhow::{bail, Result};
    use rand::{seq::SliceRandom, SeedableRng};
    use std::path::Path;
    use tch::{Device, Kind, Tensor};

    /// Mean cross-entropy with label smoothing `smoothing` (0: plain).
    pub fn cross_entropy(logits: &Tensor, y: &Tensor, smoothing: f64) -> Tensor {
        logits.cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Mean, -100, smoothing)
    }

    /// Scales the gradients so their global ℓ2 norm is at most `max` (`clip_grad_norm_`: the norm of
    /// the per-tensor norms, computed on the device with one transfer; factor max/(norm + 1e-6) when
    /// below 1). Returns the norm before clipping.
    pub fn clip_grad_norm(params: &[Tensor], max: f64) -> f64 {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = f64::try_from(Tensor::stack(&norms, 0).norm()).unwrap_or(f64::NAN);
        let coef = max / (total + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            });
        }
        total
    }

    /// Batches assembled ahead of the training step (host memory: a few batches).
    const PREFETCH: usize = 3;

    /// The first epoch with the largest value of `metric` in `history`, and that value.
    pub fn best_epoch(history: &[EpochRecord], metric: &str) -> Option<(usize, f64)> {
        history
            .iter()
            .filter_map(|r| r.metric(metric).map(|v| (r.epoch, v)))
            .fold(None, |best, (e, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((e, v)),
            })
    }

    /// Clean and robust accuracy of `net` (eval mode) on uint8 images `x`, in batches of 256; the
    /// attack's draws are seeded by `seed` and the batch, so every epoch sees the same ones.
    fn accuracies(
        net: &Network,
        x: &Tensor,
        y: &Tensor,
        attack: Option<&AttackConfig>,
        device: Device,
        seed: u64,
    ) -> (Option<f64>, Option<f64>) {
        let model = Net { net, train: false };
        let n = x.size()[0];
        let (mut clean, mut robust) = (0i64, 0i64);
        for (b, lo) in (0..n).step_by(256).enumerate() {
            let len = 256.min(n - lo);
            let xb = x.narrow(0, lo, len).to_device(device).to_kind(Kind::Float) / 255.0;
            let yb = y.narrow(0, lo, len).to_device(device);
            let a = attack.unwrap_or(&crate::attacks::config::CLEAN);
            let e = crate::attacks::evaluate_batch(
                &model,
                &xb,
                &yb,
                a,
                &crate::attacks::Streams::Batch(crate::rng::derive(seed, &[b as u64])),
            );
            clean += i64::try_from(e.clean.sum(Kind::Int64)).unwrap_or(0);
            robust += i64::try_from(e.robust.sum(Kind::Int64)).unwrap_or(0);
        }
        let frac = |k: i64| k as f64 / n.max(1) as f64;
        (Some(frac(clean)), attack.map(|_| frac(robust)))
    }

    /// The order in which epoch `epoch` (from 0) of a training seeded `seed` visits `n` training
    /// points: a seeded shuffle, so a reference loop outside robarch can take the same batches.
    pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand_pcg::Pcg64::seed_from_u64(crate::rng::derive(
            seed,
            &[1, epoch as u64],
        )));
        order
    }

    /// `n` points of a split drawn once (seeded), the same every epoch.
    fn subset(x: &Tensor, y: &Tensor, n: usize, seed: u64) -> (Tensor, Tensor) {
        let total = x.size()[0] as usize;
        let mut idx: Vec<i64> = (0..total as i64).collect();
        idx.shuffle(&mut rand_pcg::Pcg64::seed_from_u64(seed));
        idx.truncate(n.min(total));
        idx.sort_unstable();
        let idx = Tensor::from_slice(&idx);
        (x.index_select(0, &idx), y.index_select(0, &idx))
    }

    /// A finished training: the model, its per-epoch records, and the settings its epochs ran
    /// under (one span unless it resumed under another).
    pub struct Trained {
        pub net: Network,
        pub history: Vec<EpochRecord>,
        pub settings: Vec<SettingSpan>,
    }

    impl Trained {
        /// The setting the epochs ran under, for the entry's provenance: one span's, or
        /// `mixed (epochs 1–2 under `…`; epochs 3–4 under `…`)`, which no other setting equals.
        pub fn setting(&self) -> String {
            match (self.mixed_settings(), self.settings.first()) {
                (Some(spans), _) => format!("mixed ({spans})"),
                (None, Some(one)) => one.setting.clone(),
                (None, None) => String::new(),
            }
        }

        /// For the entry's provenance when the epochs ran under more than one setting:
        /// `epochs 1–2 under `…`; epochs 3–4 under `…``.
        pub fn mixed_settings(&self) -> Option<String> {
            if self.settings.len() < 2 {
                return None;
            }
            let last = self.history.len();
            let spans: Vec<String> = self
                .settings
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let to = self
                        .settings
                        .get(i + 1)
                        .map_or(last, |n| n.from_epoch.saturating_sub(1));
                    format!("epochs {}–{to} under `{}`", s.from_epoch, s.setting)
                })
                .collect();
            Some(spans.join("; "))
        }
    }

    /// Hook called after each epoch's checkpoint is safely on disk.
    pub type EpochHook<'a> = &'a dyn Fn(&EpochRecord);

    /// Trains (or resumes training of) a model; checkpoints go under `ckpt_dir` after every epoch.
    pub fn train(
        p: &TrainParams,
        data: &Prepared,
        device: Device,
        ckpt_dir: &Path,
        progress: &StageProgress,
        on_epoch: EpochHook,
    ) -> Result<Trained> {
        let start = Start {
            mean: &data.info.mean,
            std: &data.info.std,
            weights: None,
        };
        train_from(p, &start, data, device, ckpt_dir, progress, on_epoch)
    }

    /// What a training starts from besides its parameters.
    pub struct Start<'a> {
        /// The normalisation in front of the network ([0, 1] units): the dataset's statistics, or
        /// an imported or loaded model's input contract.
        pub mean: &'a [f64],
        pub std: &'a [f64],
        /// Initial weights (a loaded checkpoint's), instead of the seeded initialisation.
        pub weights: Option<&'a Path>,
    }

    // Long because it is the epoch loop of the reference recipe in one place: resume, schedule,
    // the batch loop with its attack, the monitor, the checkpoint and the hook, in the order a
    // reader checks them against the authors' training code.
    /// [`train`] from `start`: an imported module's input contract rather than the dataset's
    /// statistics, a loaded checkpoint's weights rather than the seeded initialisation.
    pub fn train_from(
        p: &TrainParams,
        start: &Start,
        data: &Prepared,
        device: Device,
        ckpt_dir: &Path,
        progress: &StageProgress,
        on_epoch: EpochHook,
    ) -> Result<Trained> {
        let mut net = Network::new(
            &p.model,
            &p.io,
            start.mean,
            start.std,
            device,
            crate::rng::derive(p.seed, &[0]),
        )?;
        if let Some(w) = start.weights {
            net.load(w)?;
        }
        if p.uses_channels_last() {
            net.to_channels_last();
        }
        net.set_autocast(p.amp.resolve(device));
        let mut opt = optim::Optimizer::new(&p.optimizer, &net.vs);
        let mut history = Vec::new();
        let mut start = 0;
        let current = crate::torch::setting(device);
        let mut settings = vec![SettingSpan {
            from_epoch: 1,
            setting: current.clone(),
        }];
        if let Some(r) = checkpoint::resume(ckpt_dir, &mut net, &mut opt)? {
            tracing::info!(epoch = r.epoch, "resuming from checkpoint");
            start = r.epoch;
            history = r.history;
            opt.step = r.opt_step;
            settings = r.settings;
            if settings.is_empty() {
                settings.push(SettingSpan {
                    from_epoch: 1,
                    setting: "not recorded".into(),
                });
            }
            let before = &settings.last().expect("one at least").setting;
            // A resume after the last epoch (killed before its commit) runs no epoch.
            if *before != current && r.epoch < p.epochs {
                tracing::warn!(
                    "resuming after epoch {} under `{current}`; the epochs so far ran under \
                     `{before}`. The rest run under the new setting, so the weights can differ in \
                     their last bits from an uninterrupted run under either; the entry's provenance \
                     records both (`robarch explain`), and `--force` on the stage recomputes it \
                     under one",
                    r.epoch
                );
                settings.push(SettingSpan {
                    from_epoch: r.epoch + 1,
                    setting: current.clone(),
                });
            }
        }
        let host = HostData::from_tensors(&data.train_x, &data.train_y)?;
        let steps = std::sync::Arc::new(p.augment.clone());
        let n = host.len();
        let steps_per_epoch = n.div_ceil(p.batch_size);
        // The monitored points: drawn once, the same every epoch.
        let monitored = p.monitor.as_ref().map(|m| {
            (
                subset(
                    &data.train_x,
                    &data.train_y,
                    m.n,
                    crate::rng::derive(p.seed, &[5]),
                ),
                subset(
                    &data.test_x,
                    &data.test_y,
                    m.n,
                    crate::rng::derive(p.seed, &[6]),
                ),
            )
        });
        let total = steps_per_epoch * p.epochs;
        for epoch in start..p.epochs {
            progress.phase_of(
                format!("epoch {}/{}", epoch + 1, p.epochs),
                steps_per_epoch as u64,
                Some([epoch as u64, p.epochs as u64]),
            );
            let order = epoch_order(p.seed, epoch, n);
            let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0usize);
            let loader = Loader::start(
                host.clone(),
                order,
                p.batch_size,
                steps.clone(),
                crate::rng::derive(p.seed, &[3, epoch as u64]),
                PREFETCH,
            );
            for (b, batch) in loader.enumerate() {
                let lr = schedule::lr_at(
                    &p.schedule,
                    p.optimizer.lr.get(),
                    epoch * steps_per_epoch + b,
                    steps_per_epoch,
                    total,
                );
                opt.lr = lr;
                let (x, y) = batch.to_device(device);
                let seed = crate::rng::derive(p.seed, &[2, epoch as u64, b as u64]);
                let attacker = Net {
                    net: &net,
                    train: p.attack_mode == ModelMode::Train,
                };
                let smoothing = p.label_smoothing.unwrap_or(0.0);
                let (logits, loss) = match (p.method, &p.attack) {
                    (TrainMethod::Trades, Some(a)) => {
                        let adv = trades::adversarial(&attacker, &x, a, seed).detach();
                        let clean = net.forward_t(&x, true);
                        let robust = net.forward_t(&adv, true);
                        let beta = p.beta.unwrap_or(TRADES_BETA);
                        let loss = trades::loss(&clean, &robust, &y, beta, smoothing);
                        (clean, loss)
                    }
                    (TrainMethod::PgdAt | TrainMethod::FastAt, Some(a)) => {
                        let adv = a.perturb(&attacker, &x, &y, &seed.into(), Use::Training).detach();
                        let logits = net.forward_t(&adv, true);
                        let loss = cross_entropy(&logits, &y, smoothing);
                        (logits, loss)
                    }
                    _ => {
                        let logits = net.forward_t(&x, true);
                        let loss = cross_entropy(&logits, &y, smoothing);
                        (logits, loss)
                    }
                };
                let loss_v = f64::try_from(&loss)?;
                tracing::debug!(epoch, batch = b, loss = loss_v, lr, "batch");
                if !loss_v.is_finite() {
                    bail!("training diverged: loss is {loss_v} at epoch {} batch {} (lr {lr:.3e}); lower optimizer.lr or check the data", epoch + 1, b + 1);
                }
                opt.zero_grad();
                loss.backward();
                if let Some(max) = p.grad_clip {
                    clip_grad_norm(&opt.parameters(), max);
                }
                opt.step();
                loss_sum += loss_v * batch.len() as f64;
                correct += i64::try_from(logits.argmax(1, false).eq_tensor(&y).sum(Kind::Int64))?;
                seen += batch.len();
                progress.inc(1);
            }
            let finite = net
                .vs
                .trainable_variables()
                .iter()
                .all(|t| bool::try_from(t.isfinite().all()).unwrap_or(false));
            if !finite {
                bail!("training diverged: weights became NaN/inf in epoch {} (lr {:.3e}); lower optimizer.lr", epoch + 1, opt.lr);
            }
            let mut rec = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seen as f64,
                train_accuracy: correct as f64 / seen as f64,
                lr: opt.lr,
                train_clean_accuracy: None,
                train_robust_accuracy: None,
                test_clean_accuracy: None,
                test_robust_accuracy: None,
            };
            if let (Some(m), Some(((tx, ty), (vx, vy)))) = (&p.monitor, &monitored) {
                progress.phase_of(
                    format!("epoch {}/{}: monitor", epoch + 1, p.epochs),
                    1,
                    Some([epoch as u64 + 1, p.epochs as u64]),
                );
                let seed = crate::rng::derive(p.seed, &[4]);
                let a = m.attack.as_ref();
                (rec.train_clean_accuracy, rec.train_robust_accuracy) =
                    accuracies(&net, tx, ty, a, device, seed);
                (rec.test_clean_accuracy, rec.test_robust_accuracy) =
                    accuracies(&net, vx, vy, a, device, seed);
                let value = rec.metric(&m.best_by);
                let previous = best_epoch(&history, &m.best_by).map(|b| b.1);
                if value.is_some_and(|v| previous.is_none_or(|b| v > b)) {
                    std::fs::create_dir_all(ckpt_dir)?;
                    // Written before the epoch's checkpoint commits; a rerun of the epoch rewrites it.
                    let tmp = tempfile::Builder::new()
                        .prefix(".partial-best")
                        .suffix(".safetensors")
                        .tempfile_in(ckpt_dir)?;
                    net.save(tmp.path())?;
                    tmp.persist(ckpt_dir.join(BEST))?;
                }
            }
            history.push(rec.clone());
            checkpoint::save(ckpt_dir, epoch + 1, &net, &opt, &history, &settings)?;
            tracing::info!(
                epoch = epoch + 1,
                of = p.epochs,
                loss = format_args!("{:.4}", rec.loss),
                train_accuracy = format_args!("{:.4}", rec.train_accuracy),
                "checkpoint saved"
            );
            on_epoch(&rec);
        }
        Ok(Trained {
            net,
            history,
            settings,
        })
    }
}

#[cfg(feature = "torch")]
pub use net::*;
