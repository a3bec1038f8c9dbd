//! Carlini–Wagner ℓ2 (2017) with a binary search over the trade-off constant c, as foolbox
//! `L2CarliniWagnerAttack` / advertorch write it: optimise w with x' = ½(tanh(w) + 1) by Adam on
//! `‖x' − x‖₂² + c·max(z_y − max_{i≠y} z_i, −κ)` (true class masked, so negative logits are
//! handled), keep the smallest-norm misclassified x' per sample, and move c down after a success
//! and up (×10 until bracketed) after a failure. For *bounded* robust accuracy a point counts as
//! broken only if its smallest adversarial has ‖δ‖₂ ≤ ε; elsewhere the clean point is returned.
use super::Attack;
use super::AttackType;
use super::{Fields, Name};
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy)]
pub struct CwParams {
    pub steps: usize,
    pub lr: f64,
    pub c: f64,
    pub binary_search_steps: usize,
    pub kappa: f64,
}

/// A resolved `cw` entry (ℓ2 only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cw {
    pub eps: f64,
    pub steps: usize,
    pub lr: f64,
    pub c: f64,
    pub binary_search_steps: usize,
    pub kappa: f64,
}

impl AttackType for Cw {
    const NAMES: &'static [Name] = &[Name::new(
        "cw",
        "Carlini–Wagner ℓ2 with binary search over c; broken only if ‖δ‖₂ ≤ ε (2017)",
        &["steps", "lr", "c", "binary_search_steps", "kappa"],
    )];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        if f.spec.norm.is_some() {
            f.norm_in(&[Norm::L2], "ℓ2")?;
        }
        Ok(Cw {
            eps: f.eps,
            steps: f.count("steps", 100)?,
            lr: f.positive("lr", 0.01)?,
            c: f.positive("c", 0.1)?,
            binary_search_steps: f.count("binary_search_steps", 5)?,
            kappa: f.real("kappa")?.unwrap_or(0.0),
        })
    }
}

impl Attack for Cw {
    radius_from_fields!(Norm::L2);
    fn passes(&self, _: usize) -> super::Passes {
        super::Passes::grads(self.steps * self.binary_search_steps)
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        loss, outcome,
        project::{self, col},
        radii, select, AttackRun, Model, Outcome, Streams, Use,
    };
    use tch::{Kind, Tensor};

    /// Minimum-norm CW adversarials, returned only where ‖δ‖₂ ≤ ε.
    pub fn cw(model: &dyn Model, x: &Tensor, y: &Tensor, eps: &Tensor, p: &CwParams) -> Tensor {
        let n = x.size()[0];
        let dev = x.device();
        let opts = (Kind::Float, dev);
        let w0 = ((x * 2.0 - 1.0) * (1.0 - 1e-6)).atanh();
        let mut c = Tensor::full([n], p.c, opts);
        let mut lower = Tensor::zeros([n], opts);
        let mut upper = Tensor::full([n], 1e10, opts);
        let mut best_l2 = Tensor::full([n], f64::INFINITY, opts);
        let mut best_adv = x.shallow_clone();
        let (b1, b2, adam_eps) = (0.9f64, 0.999f64, 1e-8);
        for _ in 0..p.binary_search_steps.max(1) {
            let mut w = w0.copy();
            let (mut m, mut v) = (w.zeros_like(), w.zeros_like());
            let mut success = Tensor::zeros([n], (Kind::Bool, dev));
            let mut prev = f64::INFINITY;
            for t in 1..=p.steps {
                let wv = w.detach().set_requires_grad(true);
                let adv = (wv.tanh() + 1.0) * 0.5;
                let l2sq =
                    (&adv - x)
                        .square()
                        .flatten(1, -1)
                        .sum_dim_intlist([1].as_slice(), false, None);
                let logits = model.logits(&adv);
                let f = loss::margin(&logits, y).clamp_min(-p.kappa);
                let total = (&l2sq + &c * &f).sum(Kind::Float);
                let g = Tensor::run_backward(&[&total], &[&wv], false, false)
                    .pop()
                    .expect("one gradient");
                tch::no_grad(|| {
                    let (adv, l2sq, logits) = (adv.detach(), l2sq.detach(), logits.detach());
                    let fooled = logits
                        .argmax(1, false)
                        .ne_tensor(y)
                        .logical_and(&loss::margin(&logits, y).le(-p.kappa));
                    let l2 = l2sq.sqrt();
                    let better = fooled.logical_and(&l2.lt_tensor(&best_l2));
                    best_l2 = select(&better, &l2, &best_l2);
                    best_adv = select(&col(&better, x), &adv, &best_adv);
                    success = success.logical_or(&fooled);
                    // Adam on w (bias-corrected, as torch.optim.Adam).
                    m = &m * b1 + &g * (1.0 - b1);
                    v = &v * b2 + g.square() * (1.0 - b2);
                    let mh = &m / (1.0 - b1.powi(t as i32));
                    let vh = &v / (1.0 - b2.powi(t as i32));
                    w = &w - mh * p.lr / (vh.sqrt() + adam_eps);
                });
                // Abort early when the objective stopped decreasing (checked every tenth of the steps).
                let check = (p.steps / 10).max(1);
                if t % check == 0 {
                    let now = f64::try_from(total.detach()).unwrap_or(f64::INFINITY);
                    if now > prev * 0.9999 {
                        break;
                    }
                    prev = now;
                }
            }
            tch::no_grad(|| {
                upper = select(&success, &upper.min_other(&c), &upper);
                lower = select(&success, &lower, &lower.max_other(&c));
                let bracketed = upper.lt(1e9);
                c = select(&bracketed, &((&lower + &upper) / 2.0), &(&c * 10.0));
            });
        }
        let ok = best_l2.le_tensor(&(eps.to_kind(Kind::Float) * (1.0 + 1e-6)));
        let out = select(&col(&ok, x), &best_adv, x);
        debug_assert!(
            f64::try_from(project::norm(&(&out - x), Norm::L2).max()).unwrap_or(0.0)
                <= f64::try_from(eps.max()).unwrap_or(0.0) * (1.0 + 1e-5) + 1e-6
        );
        out
    }

    impl AttackRun for Cw {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, _: &Streams, _: Use) -> Outcome {
            let p = CwParams {
                steps: self.steps,
                lr: self.lr,
                c: self.c,
                binary_search_steps: self.binary_search_steps,
                kappa: self.kappa,
            };
            outcome(cw(model, x, y, &radii(x, self.eps), &p))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tch::Device;

        #[test]
        fn cw_finds_near_minimal_l2_adversarials_on_a_linear_model() {
            // Binary linear model: the minimal ℓ2 distance to the boundary is margin/‖w_y − w_o‖₂.
            tch::manual_seed(0);
            let w = Tensor::randn([2, 16], (Kind::Float, Device::Cpu)) * 0.5;
            // Centred so the boundary passes near x = 0.5: most points are close to it.
            let m = {
                let w = w.shallow_clone();
                move |x: &Tensor| (x.flatten(1, -1) - 0.5).matmul(&w.tr())
            };
            let x = (Tensor::randn([16, 1, 4, 4], (Kind::Float, Device::Cpu)) * 0.1 + 0.5)
                .clamp(0.2, 0.8);
            let y = tch::no_grad(|| m(&x)).argmax(1, false);
            let z = tch::no_grad(|| m(&x));
            let gap = (z.select(1, 0) - z.select(1, 1)).abs();
            let dist = gap / (w.get(0) - w.get(1)).norm();
            let big = Tensor::full([16], 10.0, (Kind::Float, Device::Cpu));
            let p = CwParams {
                steps: 200,
                lr: 0.05,
                c: 1.0,
                binary_search_steps: 6,
                kappa: 0.0,
            };
            let adv = cw(&m, &x, &y, &big, &p);
            let found = project::norm(&(&adv - &x), Norm::L2);
            let fooled = crate::attacks::correct(&m, &adv, &y).logical_not();
            // Points whose boundary lies inside the box (distance < 0.3 keeps every pixel in [0,1]).
            let reachable = dist.lt(0.25);
            let n_reach = i64::try_from(reachable.sum(Kind::Int64)).unwrap();
            assert!(n_reach >= 3, "test needs reachable points");
            let ok = fooled
                .logical_and(&found.le_tensor(&(&dist * 1.1 + 1e-3)))
                .logical_or(&reachable.logical_not());
            assert!(
                bool::try_from(ok.all()).unwrap(),
                "found {found:?} vs minimal {dist:?}"
            );
            // Bounded: with ε below the minimal distance nothing is returned perturbed.
            let small = &dist * 0.5;
            let adv = cw(&m, &x, &y, &small, &p);
            assert!(adv.equal(&x));
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
