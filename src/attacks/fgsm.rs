//! FGSM (Goodfellow et al. 2015): one signed-gradient step of size ε on the batch-mean
//! cross-entropy, clipped to [0,1] (torchattacks `FGSM`).
use super::Attack;
use super::AttackClass;
use super::AttackType;
use super::{Fields, Name};
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fgsm {
    pub eps: f64,
}

impl AttackType for Fgsm {
    const NAMES: &'static [Name] = &[Name::new(
        "fgsm",
        "fast gradient sign method, ℓ∞ (Goodfellow et al. 2015)",
        &[],
    )];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        f.norm_in(&[Norm::Linf], "ℓ∞")
            .map_err(|p| p.hint("use `type: pgd, norm: l2, steps: 1`"))?;
        Ok(Fgsm { eps: f.eps })
    }
}

impl Attack for Fgsm {
    fn class(&self) -> AttackClass {
        AttackClass::SingleStep
    }
    radius_from_fields!(Norm::Linf);
    fn passes(&self, _: usize) -> super::Passes {
        super::Passes::grads(1)
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        input_grad, outcome, project::col, radii, AttackRun, Model, Outcome, Streams, Use,
    };
    use tch::Tensor;

    pub fn fgsm(model: &dyn Model, x: &Tensor, y: &Tensor, eps: &Tensor) -> Tensor {
        let g = input_grad(model, x, y);
        tch::no_grad(|| (x + g.sign() * col(eps, x)).clamp(0.0, 1.0))
    }

    impl AttackRun for Fgsm {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, _: &Streams, _: Use) -> Outcome {
            outcome(fgsm(model, x, y, &radii(x, self.eps)))
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
