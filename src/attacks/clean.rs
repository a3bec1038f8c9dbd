//! `clean`: no perturbation, the clean accuracy as an evaluation entry.
use super::Attack;
use super::AttackClass;
use super::AttackType;
use super::{Fields, Name};
use crate::vocab::Norm;
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clean {}

impl AttackType for Clean {
    const NAMES: &'static [Name] = &[Name {
        radius: false,
        ..Name::new("clean", "no perturbation: clean accuracy", &[])
    }];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        let s = f.spec;
        for (field, set) in [
            ("norm", s.norm.is_some()),
            ("eps", s.eps.is_some()),
            ("curve", s.curve.is_some()),
        ] {
            if set {
                return Err(Fields::remove(field, "does not apply to `clean`"));
            }
        }
        Ok(Clean {})
    }
}

impl Attack for Clean {
    fn class(&self) -> AttackClass {
        AttackClass::Clean
    }
    fn eps(&self) -> f64 {
        0.0
    }
    fn norm(&self) -> Option<Norm> {
        None
    }
    fn set_eps(&mut self, _: f64) {}
    fn passes(&self, _: usize) -> super::Passes {
        // The evaluation's clean forward pass is counted by the evaluation, once per point.
        super::Passes::default()
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{outcome, AttackRun, Model, Outcome, Streams, Use};
    use tch::Tensor;

    impl AttackRun for Clean {
        fn run(&self, _: &dyn Model, x: &Tensor, _: &Tensor, _: &Streams, _: Use) -> Outcome {
            outcome(x.shallow_clone())
        }
    }
}
