//! Adversarial training: the epoch loop (standard, PGD-AT, fast AT or TRADES), per-epoch
//! checkpoints for resuming, and per-epoch metrics.
pub mod checkpoint;
pub mod optim;
pub mod schedule;
pub mod trades;

use crate::attacks::config::FieldError;
use crate::attacks::{AttackConfig, Net, Use};
use crate::augment::Augment;
use crate::data::loader::{HostData, Loader};
use crate::data::prepared::Prepared;
use crate::models::{ModelIo, ModelParams, Network};
use crate::progress::StageProgress;
use crate::spec::{AttackSpec, ModelMode, Norm, OptimizerSpec, Real, ScheduleSpec, TrainMethod};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

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
}

/// TRADES' β when the spec leaves it unset (Zhang et al.'s CIFAR-10 setting).
pub const TRADES_BETA: f64 = 6.0;

/// The inner attack of an adversarial training method, resolved from the spec's `attack:` (a PGD
/// configuration): fast AT fills one step of 1.25ε from a random start (Wong et al. 2020); TRADES
/// uses norm, ε, steps and step size only.
pub fn inner_attack(method: TrainMethod, a: &AttackSpec) -> Result<AttackConfig, FieldError> {
    let mut a = a.clone();
    let err = |f: &'static str, m: &str, h: &str| Err((f, m.to_string(), Some(h.to_string())));
    match method {
        TrainMethod::FastAt => {
            if a.steps.is_some_and(|s| s != 1) {
                return err(
                    "steps",
                    "fast AT takes one step",
                    "remove it, or use `method: pgd-at`",
                );
            }
            if a.random_start == Some(false) {
                return err(
                    "random_start",
                    "fast AT starts at a random point",
                    "remove it",
                );
            }
            if a.norm.is_some_and(|n| n != Norm::Linf) {
                return err(
                    "norm",
                    "fast AT is an ℓ∞ method",
                    "use `method: pgd-at` for ℓ2/ℓ1",
                );
            }
            a.steps = Some(1);
            if a.step_size.is_none() {
                a.step_size = a.eps.map(|e| Real(1.25 * e.get()));
            }
        }
        TrainMethod::Trades => {
            for (f, set) in [
                ("loss", a.loss.is_some()),
                ("restarts", a.restarts.is_some()),
                ("random_start", a.random_start.is_some()),
            ] {
                if set {
                    return err(
                        f,
                        "does not apply to TRADES (KL loss, one run from x + 0.001·N(0, I))",
                        "remove it",
                    );
                }
            }
        }
        _ => {}
    }
    match AttackConfig::resolve("pgd", &a, Use::Training)? {
        c @ (AttackConfig::Pgd { .. } | AttackConfig::Fgsm { .. }) => Ok(c),
        _ => err(
            "type",
            "adversarial training needs a perturbing attack",
            "use a `pgd` configuration",
        ),
    }
}

/// Mean cross-entropy with label smoothing `smoothing` (0: plain).
pub fn cross_entropy(logits: &Tensor, y: &Tensor, smoothing: f64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Mean, -100, smoothing)
}

/// Scales the gradients so their global ℓ2 norm is at most `max` (`clip_grad_norm_`: factor
/// max/(norm + 1e-6) when below 1). Returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max: f64) -> f64 {
    let grads: Vec<Tensor> = params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect();
    let total = grads
        .iter()
        .map(|g| f64::try_from(g.square().sum(Kind::Float)).unwrap_or(f64::NAN))
        .sum::<f64>()
        .sqrt();
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
) -> Result<(Network, Vec<EpochRecord>)> {
    let mut net = Network::new(
        &p.model,
        &p.io,
        &data.info.mean,
        &data.info.std,
        device,
        crate::rng::derive(p.seed, &[0]),
    )?;
    let mut opt = optim::Optimizer::new(&p.optimizer, &net.vs);
    let mut history = Vec::new();
    let mut start = 0;
    if let Some(state) = checkpoint::latest(ckpt_dir)? {
        let (epoch, records, step) = checkpoint::restore(&state, &mut net, &mut opt)?;
        tracing::info!(epoch, "resuming from checkpoint");
        start = epoch;
        history = records;
        opt.step = step;
    }
    let host = HostData::from_tensors(&data.train_x, &data.train_y)?;
    let steps = std::sync::Arc::new(p.augment.clone());
    let n = host.len();
    let steps_per_epoch = n.div_ceil(p.batch_size);
    let total = steps_per_epoch * p.epochs;
    for epoch in start..p.epochs {
        progress.phase(
            format!("epoch {}/{}", epoch + 1, p.epochs),
            steps_per_epoch as u64,
        );
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand_pcg::Pcg64::seed_from_u64(crate::rng::derive(
            p.seed,
            &[1, epoch as u64],
        )));
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
                    let adv = a.perturb(&attacker, &x, &y, seed, Use::Training).detach();
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
        let rec = EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            lr: opt.lr,
        };
        history.push(rec.clone());
        checkpoint::save(ckpt_dir, epoch + 1, &net, &opt, &history)?;
        tracing::info!(
            epoch = epoch + 1,
            loss = rec.loss,
            train_accuracy = rec.train_accuracy,
            "checkpoint saved"
        );
        on_epoch(&rec);
    }
    Ok((net, history))
}
