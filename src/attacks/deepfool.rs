//! DeepFool (Moosavi-Dezfooli et al. 2016), ℓ2 and ℓ∞: a minimal-perturbation attack that
//! linearises the classifier around the current iterate and steps to the nearest linearised
//! decision boundary, as torchattacks `DeepFool` writes it (docs/attacks.md, "Reference update
//! rules: DeepFool"):
//! - every class k ≠ y is a candidate: f'_k = z_k − z_y and w'_k = ∇z_k − ∇z_y at the iterate;
//! - the boundary chosen is l = argmin_k |f'_k| / ‖w'_k‖_q (the dual norm: q = 2 for ℓ2, q = 1
//!   for ℓ∞), ties to the lowest class;
//! - the step is r = |f'_l| · w'_l / ‖w'_l‖₂² (ℓ2) or r = |f'_l| / ‖w'_l‖₁ · sign(w'_l) (ℓ∞, the
//!   paper's ℓp case with p = ∞), and the iterate moves to clip(x_t + (1 + overshoot)·r, 0, 1):
//!   the overshoot applies to each step, not to an accumulated total;
//! - a point stops at its first misclassified iterate (checked before each step), and after
//!   `steps` steps the last iterate is returned unchecked.
//!
//! DeepFool finds *a* small adversarial, not one within ε; for robust accuracy at ε a point counts
//! as broken only if its adversarial is misclassified with ‖δ‖ ≤ ε. A point DeepFool fails to
//! break, or breaks only farther than ε, is robust.
//!
//! Deviations: the batch is attacked at once (the reference loops over single images); in eval
//! mode the per-sample gradients are the same and only float rounding differs, which decides the
//! verdict of the points that end within rounding of a boundary (docs/attacks.md, DeepFool,
//! pitfall). A zero gradient difference (a masked gradient) gives a zero step rather than the
//! reference's NaN.
use super::Attack;
use super::AttackType;
use super::{Fields, Name};
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};

/// A resolved `deepfool` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepFool {
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    pub overshoot: f64,
}

impl AttackType for DeepFool {
    const NAMES: &'static [Name] = &[Name::new(
        "deepfool",
        "DeepFool, ℓ2/ℓ∞: steps to the nearest linearised boundary; broken if ‖δ‖ ≤ ε (Moosavi-Dezfooli et al. 2016)",
        &["steps", "overshoot"],
    )];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        let norm = f
            .norm_in(&[Norm::Linf, Norm::L2], "ℓ2/ℓ∞")
            .map_err(|p| p.hint("use `norm: l2` or `norm: linf`"))?;
        let overshoot = f.real("overshoot")?.unwrap_or(0.02);
        if !(overshoot >= 0.0 && overshoot.is_finite()) {
            return Err(Problem::at("overshoot", format!("{overshoot} is not ≥ 0"))
                .hint("torchattacks and foolbox use 0.02"));
        }
        Ok(DeepFool {
            norm,
            eps: f.eps,
            steps: f.count("steps", 50)?,
            overshoot,
        })
    }
}

impl Attack for DeepFool {
    radius_from_fields!();
    fn passes(&self, classes: usize) -> super::Passes {
        // Each step differentiates every class's logit.
        super::Passes::grads(self.steps * classes)
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        correct, outcome, project, radii, select, AttackRun, Model, Outcome, Streams, Use,
    };
    use tch::{Kind, Tensor};

    impl AttackRun for DeepFool {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, _: &Streams, _: Use) -> Outcome {
            let adv = deepfool(model, x, y, self.norm, self.steps, self.overshoot);
            outcome(within(model, x, y, &adv, &radii(x, self.eps), self.norm))
        }
    }

    /// `adv` where it is misclassified with ‖adv − x‖ ≤ ε, else `x`.
    pub fn within(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        adv: &Tensor,
        eps: &Tensor,
        norm: Norm,
    ) -> Tensor {
        let d = project::norm(&(adv - x), norm);
        let broken = correct(model, adv, y)
            .logical_not()
            .logical_and(&d.le_tensor(eps));
        select(&project::col(&broken, x), adv, x)
    }

    /// DeepFool's adversarials for `(x, y)`: each point's first misclassified iterate, or its iterate
    /// after `steps` steps (not filtered by any radius). `norm` is ℓ2 or ℓ∞.
    pub fn deepfool(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        norm: Norm,
        steps: usize,
        overshoot: f64,
    ) -> Tensor {
        assert!(norm != Norm::L1, "DeepFool is an ℓ2/ℓ∞ attack");
        let n = x.size()[0];
        let mut out = x.shallow_clone();
        let mut ids = Tensor::arange(n, (Kind::Int64, x.device()));
        let (mut adv, mut ys) = (x.shallow_clone(), y.shallow_clone());
        for _ in 0..steps {
            let xr = adv.detach().set_requires_grad(true);
            let logits = model.logits(&xr);
            let next = step(&xr, &logits, &ys, norm, overshoot);
            // Points already misclassified leave with their current iterate; the others step.
            let fooled = logits.argmax(1, false).ne_tensor(&ys);
            if bool::try_from(fooled.any()).unwrap_or(false) {
                let hit = fooled.nonzero().squeeze_dim(1);
                out = out.index_copy(0, &ids.index_select(0, &hit), &adv.index_select(0, &hit));
                let keep = fooled.logical_not().nonzero().squeeze_dim(1);
                if keep.size()[0] == 0 {
                    return out;
                }
                ids = ids.index_select(0, &keep);
                ys = ys.index_select(0, &keep);
                adv = next.index_select(0, &keep);
            } else {
                adv = next;
            }
        }
        out.index_copy(0, &ids, &adv)
    }

    /// The DeepFool step from the iterate `xr` (with its graph to `logits`) for labels `ys`.
    fn step(xr: &Tensor, logits: &Tensor, ys: &Tensor, norm: Norm, overshoot: f64) -> Tensor {
        let classes = logits.size()[1];
        let grad_of = |z: &Tensor| {
            Tensor::run_backward(&[&z.sum(Kind::Float)], &[xr], true, false)
                .pop()
                .expect("one input, one gradient")
        };
        let yc = ys.unsqueeze(1);
        let z = logits.detach();
        let w_y = grad_of(&logits.gather(1, &yc, false).squeeze_dim(1));
        let f_y = z.gather(1, &yc, false).squeeze_dim(1);
        let (mut best, mut best_f, mut best_w): (Option<Tensor>, Tensor, Tensor) =
            (None, Tensor::new(), Tensor::new());
        for k in 0..classes {
            let w = grad_of(&logits.select(1, k)) - &w_y;
            let f = z.select(1, k) - &f_y;
            let dual = match norm {
                Norm::L2 => Norm::L2,
                _ => Norm::L1,
            };
            let dist = f.abs() / project::norm(&w, dual).clamp_min(1e-30);
            // The true class is no candidate.
            let dist = dist.masked_fill(&ys.eq(k), f64::INFINITY);
            match &best {
                None => {
                    (best, best_f, best_w) = (Some(dist), f, w);
                }
                Some(b) => {
                    // Strictly closer: ties keep the lower class, as argmin does.
                    let closer = dist.lt_tensor(b);
                    best_f = select(&closer, &f, &best_f);
                    best_w = select(&project::col(&closer, &w), &w, &best_w);
                    best = Some(select(&closer, &dist, b));
                }
            }
        }
        tch::no_grad(|| {
            let f = project::col(&best_f.abs(), &best_w);
            let r = match norm {
                Norm::L2 => {
                    let sq = project::col(&project::norm(&best_w, Norm::L2), &best_w)
                        .square()
                        .clamp_min(1e-30);
                    f * &best_w / sq
                }
                _ => {
                    let l1 =
                        project::col(&project::norm(&best_w, Norm::L1), &best_w).clamp_min(1e-30);
                    f / l1 * best_w.sign()
                }
            };
            (xr.detach() + r * (1.0 + overshoot)).clamp(0.0, 1.0)
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tch::Device;

        /// A linear classifier is its own linearisation: one DeepFool step lands on the nearest
        /// boundary, at the closed-form distance |f'_l| / ‖w'_l‖_q, times the overshoot.
        #[test]
        fn one_step_reaches_the_nearest_boundary_of_a_linear_model() {
            let w =
                crate::torch::with_seed(1, || Tensor::randn([3, 12], (Kind::Float, Device::Cpu)));
            let wt = w.tr();
            let m = move |x: &Tensor| x.flatten(1, -1).matmul(&wt);
            let x = crate::torch::with_seed(2, || {
                Tensor::rand([16, 3, 2, 2], (Kind::Float, Device::Cpu)) * 0.2 + 0.4
            });
            let y = tch::no_grad(|| m(&x)).argmax(1, false);
            for (norm, dual) in [(Norm::L2, Norm::L2), (Norm::Linf, Norm::L1)] {
                let z = tch::no_grad(|| m(&x));
                // Closed-form distance to every other class's boundary; the nearest one.
                let mut want = Tensor::full([16], f64::INFINITY, (Kind::Float, Device::Cpu));
                for k in 0..3 {
                    let wk = w.get(k).unsqueeze(0) - w.index_select(0, &y);
                    let f = z.select(1, k) - z.gather(1, &y.unsqueeze(1), false).squeeze_dim(1);
                    let d =
                        (f.abs() / project::norm(&wk, dual)).masked_fill(&y.eq(k), f64::INFINITY);
                    want = want.minimum(&d);
                }
                let adv = deepfool(&m, &x, &y, norm, 1, 0.02);
                let got = project::norm(&(&adv - &x), norm);
                // The step stays inside [0,1] here (x ∈ [0.4, 0.6], small steps), so no clipping.
                let rel = f64::try_from(((&got / (want * 1.02)) - 1.0).abs().max()).unwrap();
                assert!(rel < 1e-4, "{norm}: ‖δ‖ off the closed form by {rel}");
                // Past the boundary by the overshoot: every point is misclassified.
                let fooled = correct(&m, &adv, &y).logical_not();
                assert!(bool::try_from(fooled.all()).unwrap(), "{norm}");
                // Robust at ε exactly when the boundary is farther than ε.
                let e = 0.5 * f64::try_from(got.median()).unwrap();
                let a = DeepFool {
                    norm,
                    eps: e,
                    steps: 50,
                    overshoot: 0.02,
                };
                let o = a.run(&m, &x, &y, &Streams::Batch(0), Use::Evaluation);
                let broken = correct(&m, &o.adv, &y).logical_not();
                let near = got.le(e);
                assert!(
                    bool::try_from(broken.eq_tensor(&near).all()).unwrap(),
                    "{norm}"
                );
            }
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
