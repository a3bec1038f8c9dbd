//! Adversarial training: the epoch loop (standard or PGD-AT), per-epoch checkpoints for resuming,
//! and per-epoch metrics.
pub mod checkpoint;
pub mod optim;
pub mod schedule;

use crate::attacks::{AttackConfig, Net, Use};
use crate::augment::Augment;
use crate::data::loader::{HostData, Loader};
use crate::data::prepared::Prepared;
use crate::models::{ModelIo, ModelParams, Network};
use crate::progress::StageProgress;
use crate::spec::{ModelMode, OptimizerSpec, ScheduleSpec, TrainMethod};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind};

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
}

/// Batches assembled ahead of the training step (host memory: a few batches).
const PREFETCH: usize = 3;

/// Metrics of one finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss (on adversarial inputs for PGD-AT).
    pub loss: f64,
    /// Accuracy on the inputs trained on (adversarial for PGD-AT).
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
            let x = match (p.method, &p.attack) {
                (TrainMethod::PgdAt, Some(a)) => {
                    let seed = crate::rng::derive(p.seed, &[2, epoch as u64, b as u64]);
                    a.perturb(
                        &Net {
                            net: &net,
                            train: p.attack_mode == ModelMode::Train,
                        },
                        &x,
                        &y,
                        seed,
                        Use::Training,
                    )
                    .detach()
                }
                _ => x,
            };
            let logits = net.forward_t(&x, true);
            let loss = logits.cross_entropy_for_logits(&y);
            let loss_v = f64::try_from(&loss)?;
            tracing::debug!(epoch, batch = b, loss = loss_v, lr, "batch");
            if !loss_v.is_finite() {
                bail!("training diverged: loss is {loss_v} at epoch {} batch {} (lr {lr:.3e}); lower optimizer.lr or check the data", epoch + 1, b + 1);
            }
            opt.zero_grad();
            loss.backward();
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
