//! A training entry as the spec writes it (`training.<name>`): method, inner attack, model mode
//! of the inner attack, optimiser, learning-rate schedule, monitor and overrides.
use crate::attacks::spec::AttackSpec;
use crate::vocab::Real;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `training.<name>.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainMethod {
    /// Plain empirical risk minimisation on clean inputs.
    Standard,
    /// Madry et al. 2018: minimise the loss on adversarial examples only.
    PgdAt,
    /// Zhang et al. 2019: clean cross-entropy + β · KL(f(x) ‖ f(x′)), x′ maximising the KL term.
    Trades,
    /// Wong et al. 2020 ("fast is better than free"): PGD-AT with one FGSM step of 1.25ε from a
    /// uniform random start.
    FastAt,
}

/// `training.<name>.attack_mode`: the mode the model is in while the inner attack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelMode {
    Train,
    Eval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    pub name: OptimizerName,
    pub lr: Real,
    #[serde(default = "zero")]
    pub weight_decay: Real,
    /// SGD momentum.
    #[serde(default = "default_momentum")]
    pub momentum: Real,
    /// AdamW betas.
    #[serde(default = "default_betas")]
    pub betas: (Real, Real),
    /// SGD with Nesterov momentum.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nesterov: bool,
    /// Exempt biases and normalisation parameters (every tensor with ≤ 1 dimension, as timm's
    /// `param_groups_weight_decay`) from weight decay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_decay_1d: bool,
}

fn zero() -> Real {
    Real(0.0)
}
fn default_momentum() -> Real {
    Real(0.9)
}
fn default_betas() -> (Real, Real) {
    (Real(0.9), Real(0.999))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    Constant,
    Cosine,
    /// Multiply by `gamma` at each epoch in `milestones`.
    Multistep,
    /// PyTorch's `OneCycleLR` (cosine): from lr/25 up to lr over the first `pct_start` of the
    /// steps, then down to lr/(25·10⁴).
    Onecycle,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default = "default_schedule")]
    pub name: ScheduleName,
    /// Linear warm-up from 0 over this many epochs (applied per batch).
    #[serde(default)]
    pub warmup_epochs: usize,
    /// Learning-rate floor the cosine decays to.
    #[serde(default = "zero")]
    pub min_lr: Real,
    /// `multistep`: epochs at which the rate is multiplied by `gamma`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<usize>,
    /// `multistep`: the factor (0.1 if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<Real>,
    /// `onecycle`: the fraction of steps spent increasing the rate (0.3 if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_start: Option<Real>,
}

fn default_schedule() -> ScheduleName {
    ScheduleName::Constant
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            name: ScheduleName::Constant,
            warmup_epochs: 0,
            min_lr: Real(0.0),
            milestones: Vec::new(),
            gamma: None,
            pct_start: None,
        }
    }
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default = "default_method")]
    pub method: TrainMethod,
    /// The inner attack for adversarial training.
    pub attack: Option<AttackSpec>,
    pub epochs: usize,
    #[serde(default = "default_train_batch")]
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// Model mode while generating training attacks; the authors' code uses `eval`.
    #[serde(default = "default_attack_mode")]
    pub attack_mode: ModelMode,
    /// Augmentation steps applied in order to every training image, e.g.
    /// `[random_crop: {padding: 4}, hflip, autoaugment: cifar10]`.
    #[serde(default)]
    pub augment: Vec<serde_yaml::Value>,
    /// TRADES' β (weight of the KL term; 6 in Zhang et al.). Only with `method: trades`.
    pub beta: Option<Real>,
    /// Label smoothing of the training cross-entropy (0 = none).
    pub label_smoothing: Option<Real>,
    /// Clip the global gradient ℓ2 norm to this value before each step.
    pub grad_clip: Option<Real>,
    /// Per-epoch accuracies on fixed train and test subsets, and the best checkpoint.
    pub monitor: Option<MonitorSpec>,
    /// Mixed precision of the training forward passes: `auto` (bfloat16 on CUDA), `bf16`, `off`.
    #[serde(default)]
    pub amp: super::precision::Amp,
    /// Channels-last memory format: `auto` (on for convolutional networks), `on`, `off`.
    #[serde(default)]
    pub channels_last: super::precision::ChannelsLast,
    /// Partial entries merged over this one for some models: keys are model names of the
    /// pipeline or architecture kinds (`cnn`, `transformer`, `hybrid`, `mlp`).
    #[serde(default)]
    pub overrides: BTreeMap<String, serde_yaml::Value>,
}

/// What is measured after every epoch (robust-overfitting curves) and which epoch is "best".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// Points of the training split and of the test split evaluated (0 turns monitoring off).
    #[serde(default = "default_monitor_n")]
    pub n: usize,
    /// Attack for the robust accuracies (default: the training attack).
    pub attack: Option<AttackSpec>,
    /// The metric whose maximum picks the best checkpoint: `test_robust_accuracy` (default with an
    /// attack), `test_clean_accuracy` (default without), `train_robust_accuracy`,
    /// `train_clean_accuracy`.
    pub best_by: Option<String>,
}

pub fn default_monitor_n() -> usize {
    256
}

fn default_method() -> TrainMethod {
    TrainMethod::PgdAt
}
fn default_train_batch() -> usize {
    128
}
fn default_attack_mode() -> ModelMode {
    ModelMode::Eval
}
