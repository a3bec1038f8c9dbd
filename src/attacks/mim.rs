//! MIM / MI-FGSM (Dong et al. 2018), ℓ∞, as torchattacks `MIFGSM` writes it: the gradient is
//! divided by its per-sample mean absolute value, accumulated with decay μ
//! (`m ← μ·m + g/mean|g|`), and the iterate moves by α·sign(m), then is clipped to the ε-box and
//! [0,1]. No random start. In evaluation, points leave the batch at their first misclassified
//! iterate (kept), as in PGD.
use super::scale_with_eps;
use super::Attack;
use super::AttackType;
use super::{Fields, Name};
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy)]
pub struct MimParams {
    pub steps: usize,
    pub step_size: f64,
    pub decay: f64,
    pub early_stop: bool,
}

/// A resolved `mim` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mim {
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    pub decay: f64,
}

impl AttackType for Mim {
    const NAMES: &'static [Name] = &[Name::new(
        "mim",
        "momentum iterative FGSM, ℓ∞ (Dong et al. 2018)",
        &["steps", "step_size", "decay"],
    )];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        f.norm_in(&[Norm::Linf], "ℓ∞")?;
        let steps = f.count("steps", 10)?;
        Ok(Mim {
            eps: f.eps,
            steps,
            step_size: f.positive("step_size", f.eps / steps as f64)?,
            decay: f.real("decay")?.unwrap_or(1.0),
        })
    }
}

impl Attack for Mim {
    fn eps(&self) -> f64 {
        self.eps
    }
    fn norm(&self) -> Option<Norm> {
        Some(Norm::Linf)
    }
    fn set_eps(&mut self, e: f64) {
        scale_with_eps(&mut self.step_size, self.eps, e);
        self.eps = e;
    }
    fn passes(&self, _: usize) -> super::Passes {
        super::Passes::grads(self.steps)
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        loss, loss_grad, outcome, project, radii, AttackRun, Model, Outcome, Streams, Reduce, Use,
    };
    use tch::{Kind, Tensor};

    pub fn mim(model: &dyn Model, x: &Tensor, y: &Tensor, eps: &Tensor, p: &MimParams) -> Tensor {
        let n = x.size()[0];
        let mut out = x.shallow_clone();
        let mut ids = Tensor::arange(n, (Kind::Int64, x.device()));
        let (mut xs, mut ys, mut es) = (x.shallow_clone(), y.shallow_clone(), eps.shallow_clone());
        let mut adv = x.shallow_clone();
        let mut momentum = x.zeros_like();
        for k in 0..=p.steps {
            let last = k == p.steps;
            let (logits, g) = if last {
                (tch::no_grad(|| model.logits(&adv)), Tensor::new())
            } else {
                let (_, z, g) = loss_grad(model, &adv, Reduce::Mean, |z| loss::ce(z, &ys));
                (z, g)
            };
            if last {
                out = out.index_copy(0, &ids, &adv);
                break;
            }
            let mut g = g;
            if p.early_stop {
                let fooled = logits.argmax(1, false).ne_tensor(&ys);
                if bool::try_from(fooled.any()).unwrap_or(false) {
                    let hit = fooled.nonzero().squeeze_dim(1);
                    out = out.index_copy(0, &ids.index_select(0, &hit), &adv.index_select(0, &hit));
                    let keep = fooled.logical_not().nonzero().squeeze_dim(1);
                    let s = |t: &Tensor| t.index_select(0, &keep);
                    (ids, xs, ys, es, adv, momentum, g) = (
                        s(&ids),
                        s(&xs),
                        s(&ys),
                        s(&es),
                        s(&adv),
                        s(&momentum),
                        s(&g),
                    );
                    if ids.size()[0] == 0 {
                        return out;
                    }
                }
            }
            adv = tch::no_grad(|| {
                let scale = g.abs().mean_dim([1, 2, 3].as_slice(), true, None);
                momentum = &momentum * p.decay + &g / scale;
                let stepped = &adv + momentum.sign() * p.step_size;
                project::linf(&xs, &stepped, &es)
            });
        }
        out
    }

    impl AttackRun for Mim {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, _: &Streams, usage: Use) -> Outcome {
            let p = MimParams {
                steps: self.steps,
                step_size: self.step_size,
                decay: self.decay,
                early_stop: usage == Use::Evaluation,
            };
            outcome(mim(model, x, y, &radii(x, self.eps), &p))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tch::Device;

        #[test]
        fn mim_is_feasible_and_breaks_a_linear_model() {
            tch::manual_seed(0);
            let w = Tensor::randn([10, 48], (Kind::Float, Device::Cpu));
            let m = move |x: &Tensor| x.flatten(1, -1).matmul(&w.tr());
            let x = Tensor::rand([32, 3, 4, 4], (Kind::Float, Device::Cpu)) * 0.5 + 0.25;
            let y = tch::no_grad(|| m(&x)).argmax(1, false);
            let e = Tensor::full([32], 0.2, (Kind::Float, Device::Cpu));
            for early_stop in [false, true] {
                let adv = mim(
                    &m,
                    &x,
                    &y,
                    &e,
                    &MimParams {
                        steps: 10,
                        step_size: 0.02,
                        decay: 1.0,
                        early_stop,
                    },
                );
                let d = project::norm(&(&adv - &x), Norm::Linf);
                assert!(f64::try_from(d.max()).unwrap() <= 0.2 + 1e-6);
                let acc = f64::try_from(
                    crate::attacks::correct(&m, &adv, &y)
                        .to_kind(Kind::Float)
                        .mean(Kind::Float),
                )
                .unwrap();
                // ε = 0.2 over 48 inputs moves a N(0,1)-weight logit gap by ~0.2·48·1.13 ≈ 11: nothing survives.
                assert!(acc < 0.1, "MIM left {acc} accuracy");
            }
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
