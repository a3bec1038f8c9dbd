//! Adversarial attacks on [0,1] inputs: configuration (with defaults and validation), the registry,
//! and the shared input-gradient helper. One file per attack.
pub mod fgsm;
pub mod pgd;

use crate::models::Network;
use crate::spec::{did_you_mean, AttackSpec, Norm};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Registry: name and one-line description, one line per attack.
pub static REGISTRY: &[(&str, &str)] = &[
    ("clean", "no perturbation: clean accuracy"),
    (
        "fgsm",
        "fast gradient sign method, ℓ∞ (Goodfellow et al. 2015)",
    ),
    (
        "pgd",
        "projected gradient descent, ℓ∞ or ℓ2, random start (Madry et al. 2018)",
    ),
];

/// Where an attack is used; only the error wording depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Training,
    Evaluation,
}

/// A fully resolved attack: every default filled in. Its JSON is part of stage keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AttackConfig {
    Clean,
    Fgsm {
        eps: f64,
    },
    Pgd {
        norm: Norm,
        eps: f64,
        steps: usize,
        step_size: f64,
        random_start: bool,
    },
}

/// The attack type of an entry: its `type`, else its key if that is a registry name, else the
/// key's prefix before `-`/`_` (so `pgd-linf` is a `pgd`).
pub fn kind_for(key: &str, a: &AttackSpec) -> String {
    if let Some(k) = &a.kind {
        return k.clone();
    }
    let names = || REGISTRY.iter().map(|(n, _)| *n);
    if names().any(|n| n == key) {
        return key.to_string();
    }
    let prefix = key.split(['-', '_']).next().unwrap_or(key);
    prefix.to_string()
}

type FieldError = (&'static str, String, Option<String>);

impl AttackConfig {
    /// Validates `a` as an attack of type `kind` and fills defaults: 10 steps, step size 2.5·ε/steps
    /// (Madry et al.), random start on.
    pub fn resolve(kind: &str, a: &AttackSpec, _use: Use) -> Result<Self, FieldError> {
        let unknown = || {
            let hint = match did_you_mean(kind, REGISTRY.iter().map(|(n, _)| *n)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "known attacks: {}; or set `type:`",
                    REGISTRY
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            ("type", format!("unknown attack `{kind}`"), Some(hint))
        };
        let eps = |required: bool| -> Result<f64, FieldError> {
            match a.eps {
                None if required => Err((
                    "eps",
                    "is required".into(),
                    Some("e.g. `eps: 8/255`".into()),
                )),
                None => Ok(0.0),
                Some(e) if e.get() < 0.0 => Err((
                    "eps",
                    format!("{} is negative", e.get()),
                    Some("ε must be ≥ 0, in [0,1] pixel units".into()),
                )),
                Some(e) => Ok(e.get()),
            }
        };
        let no = |field: &'static str, set: bool| -> Result<(), FieldError> {
            if set {
                Err((
                    field,
                    format!("does not apply to `{kind}`"),
                    Some("remove it".into()),
                ))
            } else {
                Ok(())
            }
        };
        match kind {
            "clean" => {
                no("norm", a.norm.is_some())?;
                no("eps", a.eps.is_some())?;
                no("steps", a.steps.is_some())?;
                no("step_size", a.step_size.is_some())?;
                no("random_start", a.random_start.is_some())?;
                Ok(AttackConfig::Clean)
            }
            "fgsm" => {
                if a.norm == Some(Norm::L2) {
                    return Err((
                        "norm",
                        "FGSM is an ℓ∞ attack".into(),
                        Some("use `type: pgd, norm: l2, steps: 1`".into()),
                    ));
                }
                no("steps", a.steps.is_some())?;
                no("step_size", a.step_size.is_some())?;
                no("random_start", a.random_start.is_some())?;
                Ok(AttackConfig::Fgsm { eps: eps(true)? })
            }
            "pgd" => {
                let eps = eps(true)?;
                let steps = a.steps.unwrap_or(10);
                if steps == 0 {
                    return Err(("steps", "must be at least 1".into(), None));
                }
                let step_size = a
                    .step_size
                    .map(|s| s.get())
                    .unwrap_or(2.5 * eps / steps as f64);
                if a.step_size.is_some() && step_size <= 0.0 {
                    return Err(("step_size", "must be positive".into(), None));
                }
                Ok(AttackConfig::Pgd {
                    norm: a.norm.unwrap_or(Norm::Linf),
                    eps,
                    steps,
                    step_size,
                    random_start: a.random_start.unwrap_or(true),
                })
            }
            _ => Err(unknown()),
        }
    }

    /// Adversarial examples for `(x, y)`; `seed` drives random starts. `train_mode` runs the model
    /// in training mode while attacking (BN batch statistics).
    pub fn perturb(
        &self,
        model: &Network,
        x: &Tensor,
        y: &Tensor,
        seed: u64,
        train_mode: bool,
    ) -> Tensor {
        match *self {
            AttackConfig::Clean => x.shallow_clone(),
            AttackConfig::Fgsm { eps } => fgsm::fgsm(model, x, y, eps, train_mode),
            AttackConfig::Pgd {
                norm,
                eps,
                steps,
                step_size,
                random_start,
            } => pgd::pgd(
                model,
                x,
                y,
                &pgd::PgdParams {
                    norm,
                    eps,
                    steps,
                    step_size,
                    random_start,
                },
                seed,
                train_mode,
            ),
        }
    }
}

/// Gradient of the mean cross-entropy with respect to the input only (parameters untouched).
pub fn input_grad(model: &Network, x: &Tensor, y: &Tensor, train_mode: bool) -> Tensor {
    let x = x.detach().set_requires_grad(true);
    let loss = model.forward_t(&x, train_mode).cross_entropy_for_logits(y);
    Tensor::run_backward(&[&loss], &[&x], false, false)
        .pop()
        .expect("one input, one gradient")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Real;

    fn spec(eps: Option<f64>) -> AttackSpec {
        AttackSpec {
            eps: eps.map(Real),
            ..Default::default()
        }
    }

    #[test]
    fn kind_inference_and_defaults() {
        assert_eq!(kind_for("pgd-linf", &spec(None)), "pgd");
        assert_eq!(kind_for("clean", &spec(None)), "clean");
        let c = AttackConfig::resolve("pgd", &spec(Some(8.0 / 255.0)), Use::Evaluation).unwrap();
        assert_eq!(
            c,
            AttackConfig::Pgd {
                norm: Norm::Linf,
                eps: 8.0 / 255.0,
                steps: 10,
                step_size: 2.5 * 8.0 / 255.0 / 10.0,
                random_start: true
            }
        );
    }

    #[test]
    fn bad_attacks_name_the_field() {
        assert_eq!(
            AttackConfig::resolve("pgd", &spec(Some(-0.1)), Use::Evaluation)
                .unwrap_err()
                .0,
            "eps"
        );
        assert_eq!(
            AttackConfig::resolve("fgsm", &spec(None), Use::Evaluation)
                .unwrap_err()
                .0,
            "eps"
        );
        let e = AttackConfig::resolve("pdg", &spec(Some(0.1)), Use::Evaluation).unwrap_err();
        assert_eq!(e.2.as_deref(), Some("did you mean `pgd`?"));
        assert_eq!(
            AttackConfig::resolve("clean", &spec(Some(0.1)), Use::Evaluation)
                .unwrap_err()
                .0,
            "eps"
        );
    }
}
