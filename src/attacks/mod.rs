//! Adversarial attacks on [0,1] inputs with per-sample radii: the shared model interface and
//! gradient helper, and one file per attack. Each attack file owns its typed parameters (the
//! resolved form that stage keys hash), how they are read from the spec with their defaults and
//! checks ([`AttackType`]), what it is ([`Attack`]) and, in a gated `net` module, how it runs
//! (`AttackRun`, the tensor code); `config` holds the registry, one line per attack type. Update
//! rules follow the reference libraries (docs/attacks.md, "Reference update rules");
//! docs/attacks.md also lists every attack's fields and defaults.
/// `eps`, `norm` and `set_eps` of an [`Attack`] whose radius is its own `eps` field, with nothing
/// else scaled with ε (used inside `impl Attack` blocks of the child modules): the norm is its own
/// `norm` field, or the fixed norm given (`radius_from_fields!(Norm::L2)`).
macro_rules! radius_from_fields {
    () => {
        radius_from_fields!(self => self.norm);
    };
    ($norm:expr) => {
        radius_from_fields!(self => $norm);
    };
    ($s:ident => $norm:expr) => {
        fn eps(&$s) -> f64 {
            $s.eps
        }
        fn norm(&$s) -> Option<crate::vocab::Norm> {
            Some($norm)
        }
        fn set_eps(&mut self, e: f64) {
            self.eps = e;
        }
    };
}

pub mod apgd;
pub mod autoattack;
pub mod clean;
pub mod config;
pub mod cw;
pub mod deepfool;
pub mod fab;
pub mod fgsm;
#[cfg(feature = "torch")]
pub mod loss;
pub mod mim;
pub mod pgd;
#[cfg(feature = "torch")]
pub mod project;
pub mod spec;
pub mod square;
pub mod streams;
pub mod sweep;
pub mod verdict;

pub use config::{kind_for, names, AttackConfig};
pub use spec::Fields;

use crate::vocab::Norm;
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};

/// Where an attack is used: evaluation keeps each point's first misclassified iterate and drops it
/// from the batch; training takes every step on every point (BN batch statistics stay whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Training,
    Evaluation,
}

/// How an attack uses the model, for the gradient-masking checks of Carlini et al. (2019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackClass {
    Clean,
    SingleStep,
    Iterative,
    BlackBox,
}

/// A resolved attack: what evaluation, training and a composition (AutoAttack) need of it, less
/// the run itself (`AttackRun`, with the tensor code).
pub trait Attack {
    /// How the attack uses the model (gradient-masking checks); most attacks are iterative.
    fn class(&self) -> AttackClass {
        AttackClass::Iterative
    }
    /// The configured radius (0 for `clean`).
    fn eps(&self) -> f64;
    /// The threat model's norm (`None` for `clean`).
    fn norm(&self) -> Option<Norm>;
    /// Moves the attack to radius `e`; parameters that are fractions of ε (step sizes) scale with
    /// it, so a curve point is the same attack at another radius.
    fn set_eps(&mut self, e: f64);
    /// The model passes it spends on one attacked point of a `classes`-way model at most (every
    /// iteration run: no early stop, no point broken early), for compute estimates.
    fn passes(&self, classes: usize) -> Passes;
}

/// Model passes per point: input-gradient passes (forward + backward) and forward-only passes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Passes {
    pub grads: f64,
    pub forwards: f64,
}

impl Passes {
    /// `n` input-gradient passes.
    pub fn grads(n: usize) -> Self {
        Self {
            grads: n as f64,
            forwards: 0.0,
        }
    }
    /// `n` forward passes.
    pub fn forwards(n: usize) -> Self {
        Self {
            grads: 0.0,
            forwards: n as f64,
        }
    }
    /// The FLOPs of these passes for a model of `forward` FLOPs per image: a backward pass costs
    /// about two forwards (Kaplan et al. 2020, §2.1), so a gradient pass counts three.
    pub fn flops(&self, forward: f64) -> f64 {
        (GRAD_PASS * self.grads + self.forwards) * forward
    }
    pub fn scaled(self, f: f64) -> Self {
        Self {
            grads: self.grads * f,
            forwards: self.forwards * f,
        }
    }
}

impl std::ops::Add for Passes {
    type Output = Passes;
    fn add(self, o: Passes) -> Passes {
        Passes {
            grads: self.grads + o.grads,
            forwards: self.forwards + o.forwards,
        }
    }
}

/// Forward-pass equivalents of one forward + backward pass.
pub const GRAD_PASS: f64 = 3.0;

/// An attack type as the registry (`config.rs`) lists it: the names it answers to and how a spec
/// entry becomes its typed parameters (each type also implements [`Attack`], and `AttackRun` with
/// the tensor code).
pub trait AttackType: Sized {
    /// Registry names of this type; several when a name presets fields (`apgd-t` is APGD with the
    /// targeted loss).
    const NAMES: &'static [Name];
    /// Reads the type's fields from `f` (the entry resolved to `f.name`), fills the defaults and
    /// checks them. Problems are relative to the entry (`Problem::at(field, …)`).
    fn resolve(f: &Fields) -> Result<Self, Problem>;
}

/// One registry name: its one-line description (`robarch ls attacks`) and the type's own fields
/// it reads besides `type`, `norm`, `eps` and `curve` (any other field set is an error).
#[derive(Debug)]
pub struct Name {
    pub name: &'static str,
    pub about: &'static str,
    pub fields: &'static [&'static str],
    /// Whether the entry needs a radius (`eps`); only `clean` does not.
    pub radius: bool,
}

impl Name {
    pub const fn new(
        name: &'static str,
        about: &'static str,
        fields: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            about,
            fields,
            radius: true,
        }
    }
}

/// `*s *= new / old` when `old > 0`: a parameter that is a fraction of ε follows it to a new radius.
pub fn scale_with_eps(s: &mut f64, old: f64, new: f64) {
    if old > 0.0 {
        *s *= new / old
    }
}

/// How the gradient of a per-sample loss is reduced over the batch. Sign and per-sample-normalised
/// steps do not care; it matters for bit-level agreement with a reference (torchattacks uses the
/// mean, AutoAttack the sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Mean,
    Sum,
}

/// The tensor half (libtorch, the worker build): the model interface, the gradient helpers
/// and batch evaluation.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::models::Network;
    pub use super::streams::Streams;
    use tch::{Kind, Tensor};

    /// The tensor half of an [`Attack`] (libtorch, the worker build): running it on a batch.
    pub trait AttackRun: Attack {
        /// Runs the attack on a batch of points (in evaluation, only the clean-correct ones); `rng`
        /// holds the points' random streams (one row each), which drive every random draw.
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, rng: &Streams, usage: Use)
            -> Outcome;
    }

    /// Number of classes the model outputs (one forward on one point).
    pub fn classes(model: &dyn Model, x: &Tensor) -> i64 {
        tch::no_grad(|| model.logits(&x.narrow(0, 0, x.size()[0].min(1)))).size()[1]
    }

    /// Per-sample radii `[N]` for a batch `x`, all `eps`.
    pub fn radii(x: &Tensor, eps: f64) -> Tensor {
        Tensor::full([x.size()[0]], eps, (Kind::Float, x.device()))
    }

    /// An outcome with no composition details.
    pub fn outcome(adv: Tensor) -> Outcome {
        Outcome {
            adv,
            broken_by: None,
            notes: Vec::new(),
        }
    }

    /// A classifier attacked: [0,1] images in, logits out. Implemented by [`Net`] and by closures
    /// (tests use linear models and gradient-masking wrappers).
    pub trait Model {
        fn logits(&self, x: &Tensor) -> Tensor;
    }

    impl<F: Fn(&Tensor) -> Tensor> Model for F {
        fn logits(&self, x: &Tensor) -> Tensor {
            self(x)
        }
    }

    /// A [`Network`] in evaluation mode (`train: false`, running BN statistics) or training mode.
    pub struct Net<'a> {
        pub net: &'a Network,
        pub train: bool,
    }

    impl Model for Net<'_> {
        fn logits(&self, x: &Tensor) -> Tensor {
            self.net.forward_t(x, self.train)
        }
    }

    /// Per-sample loss `[N]`, logits, and the gradient of the reduced loss with respect to `x` only.
    pub fn loss_grad(
        model: &dyn Model,
        x: &Tensor,
        reduce: Reduce,
        loss: impl Fn(&Tensor) -> Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let logits = model.logits(&x);
        let l = loss(&logits);
        let total = match reduce {
            Reduce::Mean => l.mean(Kind::Float),
            Reduce::Sum => l.sum(Kind::Float),
        };
        let g = Tensor::run_backward(&[&total], &[&x], false, false)
            .pop()
            .expect("one input, one gradient");
        (l.detach(), logits.detach(), g)
    }

    /// Gradient of the mean cross-entropy with respect to the input only (parameters untouched).
    pub fn input_grad(model: &dyn Model, x: &Tensor, y: &Tensor) -> Tensor {
        loss_grad(model, x, Reduce::Mean, |z| loss::ce(z, y)).2
    }

    /// The loop every multi-run attack shares (restarts, target classes, AutoAttack's members): each
    /// round runs on the points still `robust` — `run(round, indices)` returns candidates for those
    /// points and which of them are broken — and a broken point keeps its candidate and sits out the
    /// later rounds. Returns the adversarials (`x` where nothing broke).
    pub(crate) fn on_robust_points<R>(
        x: &Tensor,
        mut robust: Tensor,
        rounds: impl IntoIterator<Item = R>,
        mut run: impl FnMut(R, &Tensor) -> (Tensor, Tensor),
    ) -> Tensor {
        let mut adv = x.shallow_clone();
        for round in rounds {
            let idx = robust.nonzero().squeeze_dim(1);
            if idx.size()[0] == 0 {
                break;
            }
            let (candidates, broken) = run(round, &idx);
            let hit = broken.nonzero().squeeze_dim(1);
            if hit.size()[0] > 0 {
                let at = idx.index_select(0, &hit);
                adv = adv.index_copy(0, &at, &candidates.index_select(0, &hit));
                robust = robust.index_fill(0, &at, 0);
            }
        }
        adv
    }

    /// Per row, the class with the `rank`-th largest logit (2: the runner-up), the target classes of
    /// APGD-T and FAB-T (`logits.sort()[1][:, -rank]`).
    pub(crate) fn ranked_class(logits: &Tensor, rank: i64) -> Tensor {
        let (_, order) = logits.sort(1, false);
        order.select(1, logits.size()[1] - rank)
    }

    /// `cond ? yes : no`, elementwise with broadcasting (`cond` of any kind, non-zero = true).
    pub fn select(cond: &Tensor, yes: &Tensor, no: &Tensor) -> Tensor {
        yes.where_self(&cond.to_kind(Kind::Bool), no)
    }

    /// Per-sample correctness of `model` on `x`, `[N]` bool, without a graph.
    pub fn correct(model: &dyn Model, x: &Tensor, y: &Tensor) -> Tensor {
        tch::no_grad(|| model.logits(x).argmax(1, false).eq_tensor(y))
    }

    /// One batch evaluated under an attack: per-point `clean` and `robust` flags (`[N]` bool).
    pub struct BatchEval {
        pub clean: Tensor,
        pub robust: Tensor,
    }

    /// Evaluates `attack` on one batch (training's monitor, tests) as the evaluate stage does: the
    /// clean pass decides which points are attacked (a point misclassified clean is not robust), the
    /// attack runs on those only, and a point is robust when its adversarial is still classified
    /// correctly. `clean` and ε = 0 attack nothing ([`AttackConfig::moves_points`]).
    pub fn evaluate_batch(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        attack: &AttackConfig,
        rng: &Streams,
    ) -> BatchEval {
        let clean = correct(model, x, y);
        let idx = clean.nonzero().squeeze_dim(1);
        if !attack.moves_points() || idx.size()[0] == 0 {
            return BatchEval {
                robust: clean.shallow_clone(),
                clean,
            };
        }
        let (xs, ys) = (x.index_select(0, &idx), y.index_select(0, &idx));
        let out = attack.run(model, &xs, &ys, &rng.select(&idx), Use::Evaluation);
        let ok = correct(model, &out.adv, &ys);
        BatchEval {
            robust: clean.zeros_like().index_copy(0, &idx, &ok),
            clean,
        }
    }

    /// The result of an attack on a batch: adversarial images (the clean image where the attack
    /// failed) and, for compositions, which member broke each point.
    pub struct Outcome {
        pub adv: Tensor,
        /// For compositions (AutoAttack): member names and, per point, the index of the first member
        /// that broke it (−1: none, or misclassified clean).
        pub broken_by: Option<(Vec<String>, Tensor)>,
        /// Warnings worth a user's attention (gradient-masking signs, skipped members).
        pub notes: Vec<String>,
    }
}

#[cfg(feature = "torch")]
pub use net::*;
