//! Attack configuration: the registry, validation of spec entries with every default filled in
//! (the resolved JSON is part of stage keys), ε-curves, and dispatch to the attack modules.
use super::apgd::{ApgdLoss, ApgdParams};
use super::cw::CwParams;
use super::fab::FabParams;
use super::mim::MimParams;
use super::pgd::{L1Step, PgdLoss, PgdParams};
use super::spec::AttackSpec;
use super::square::{SquareLoss, SquareParams};
use super::{Attack, AttackClass, Model, Outcome, Use};
use crate::vocab::{typo_hint, Norm};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Registry: name and one-line description.
pub static REGISTRY: &[(&str, &str)] = &[
    ("clean", "no perturbation: clean accuracy"),
    ("fgsm", "fast gradient sign method, ℓ∞ (Goodfellow et al. 2015)"),
    ("pgd", "projected gradient descent, ℓ∞/ℓ2/ℓ1 (SLIDE or dense ℓ1), CE or CW loss, restarts (Madry et al. 2018)"),
    ("mim", "momentum iterative FGSM, ℓ∞ (Dong et al. 2018)"),
    ("cw", "Carlini–Wagner ℓ2 with binary search over c; broken only if ‖δ‖₂ ≤ ε (2017)"),
    ("apgd", "auto-PGD, ℓ∞/ℓ2/ℓ1, loss ce, dlr or dlr-t (Croce & Hein 2020, 2021)"),
    ("apgd-ce", "APGD on cross-entropy"),
    ("apgd-dlr", "APGD on the DLR loss"),
    ("apgd-t", "targeted APGD on the DLR loss over the top `targets` classes"),
    ("fab", "fast adaptive boundary attack, untargeted, ℓ∞/ℓ2/ℓ1: minimum-norm, broken if ‖δ‖ ≤ ε (Croce & Hein 2020)"),
    ("fab-t", "targeted FAB over the top `targets` classes"),
    ("square", "Square attack: score-based random search, no gradients, ℓ∞/ℓ2/ℓ1 (Andriushchenko et al. 2020)"),
    ("autoattack", "AutoAttack `standard` or `plus`: each member on the points still robust (Croce & Hein 2020)"),
    ("aa", "alias of autoattack"),
];

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
        restarts: usize,
        loss: PgdLoss,
        /// Only for ℓ1.
        l1_step: Option<L1Step>,
    },
    Mim {
        eps: f64,
        steps: usize,
        step_size: f64,
        decay: f64,
    },
    Cw {
        eps: f64,
        steps: usize,
        lr: f64,
        c: f64,
        binary_search_steps: usize,
        kappa: f64,
    },
    Apgd {
        norm: Norm,
        eps: f64,
        steps: usize,
        restarts: usize,
        loss: String,
        targets: usize,
        rho: f64,
        large_eps: bool,
    },
    Fab {
        norm: Norm,
        eps: f64,
        steps: usize,
        restarts: usize,
        /// `None`: untargeted FAB; `Some(k)`: FAB-T over the top k classes after the true one.
        targets: Option<usize>,
    },
    Square {
        norm: Norm,
        eps: f64,
        queries: usize,
        p_init: f64,
        restarts: usize,
        loss: String,
    },
    Autoattack {
        norm: Norm,
        eps: f64,
        version: Version,
    },
}

/// The attack type of an entry: its `type`, else its key if that is a registry name, else the
/// longest registry name the key starts with followed by `-` or `_` (`pgd-linf` is a `pgd`,
/// `apgd-t-l2` an `apgd-t`), else the key's prefix before the first `-`/`_`.
pub fn kind_for(key: &str, a: &AttackSpec) -> String {
    if let Some(k) = &a.kind {
        return k.clone();
    }
    let names = || REGISTRY.iter().map(|(n, _)| *n);
    if names().any(|n| n == key) {
        return key.to_string();
    }
    if let Some(n) = names()
        .filter(|n| {
            key.strip_prefix(n)
                .is_some_and(|rest| rest.starts_with(['-', '_']))
        })
        .max_by_key(|n| n.len())
    {
        return n.to_string();
    }
    key.split(['-', '_']).next().unwrap_or(key).to_string()
}

pub type FieldError = (&'static str, String, Option<String>);

fn err(field: &'static str, msg: impl Into<String>, hint: Option<&str>) -> FieldError {
    (field, msg.into(), hint.map(String::from))
}

impl AttackConfig {
    /// Validates `a` as an attack of type `kind` and fills defaults (docs/attacks.md).
    pub fn resolve(kind: &str, a: &AttackSpec, _use: Use) -> Result<Self, FieldError> {
        let kind = if kind == "aa" { "autoattack" } else { kind };
        let unknown = || {
            let hint = typo_hint(kind, REGISTRY.iter().map(|(n, _)| *n), || {
                format!(
                    "known attacks: {}; or set `type:`",
                    REGISTRY
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            ("type", format!("unknown attack `{kind}`"), Some(hint))
        };
        if !REGISTRY.iter().any(|(n, _)| *n == kind) {
            return Err(unknown());
        }
        // Which optional fields this type reads; any other field set is an error.
        let allowed: &[&str] = match kind {
            "clean" => &[],
            "fgsm" => &["norm", "eps"],
            "pgd" => &[
                "norm",
                "eps",
                "steps",
                "step_size",
                "random_start",
                "restarts",
                "loss",
                "kappa",
                "l1_step",
                "percentile",
            ],
            "mim" => &["norm", "eps", "steps", "step_size", "decay"],
            "cw" => &[
                "norm",
                "eps",
                "steps",
                "lr",
                "c",
                "binary_search_steps",
                "kappa",
            ],
            "apgd" => &[
                "norm",
                "eps",
                "steps",
                "restarts",
                "loss",
                "targets",
                "rho",
                "large_eps",
            ],
            "apgd-ce" | "apgd-dlr" => &["norm", "eps", "steps", "restarts", "rho", "large_eps"],
            "apgd-t" => &["norm", "eps", "steps", "targets", "rho", "large_eps"],
            "fab" => &["norm", "eps", "steps", "restarts"],
            "fab-t" => &["norm", "eps", "steps", "restarts", "targets"],
            "square" => &["norm", "eps", "queries", "p_init", "restarts", "loss"],
            _ => &["norm", "eps", "version"],
        };
        let set: [(&'static str, bool); 20] = [
            ("norm", a.norm.is_some()),
            ("eps", a.eps.is_some()),
            ("steps", a.steps.is_some()),
            ("step_size", a.step_size.is_some()),
            ("random_start", a.random_start.is_some()),
            ("restarts", a.restarts.is_some()),
            ("loss", a.loss.is_some()),
            ("l1_step", a.l1_step.is_some()),
            ("percentile", a.percentile.is_some()),
            ("decay", a.decay.is_some()),
            ("kappa", a.kappa.is_some()),
            ("c", a.c.is_some()),
            ("binary_search_steps", a.binary_search_steps.is_some()),
            ("lr", a.lr.is_some()),
            ("targets", a.targets.is_some()),
            ("rho", a.rho.is_some()),
            ("large_eps", a.large_eps.is_some()),
            ("queries", a.queries.is_some()),
            ("p_init", a.p_init.is_some()),
            ("version", a.version.is_some()),
        ];
        for (field, is_set) in set {
            if is_set && !allowed.contains(&field) {
                return Err(err(
                    field,
                    format!("does not apply to `{kind}`"),
                    Some("remove it"),
                ));
            }
        }
        if a.curve.is_some() && kind == "clean" {
            return Err(err("curve", "does not apply to `clean`", Some("remove it")));
        }
        if kind == "clean" {
            if a.eps.is_some() {
                return Err(err("eps", "does not apply to `clean`", Some("remove it")));
            }
            return Ok(AttackConfig::Clean);
        }
        let eps = match a.eps {
            None => return Err(err(
                "eps",
                "is required",
                Some(
                    "e.g. `eps: 8/255` (ℓ∞), `eps: 0.5` (ℓ2), `eps: 12` (ℓ1), in [0,1] pixel units",
                ),
            )),
            Some(e) if e.get() < 0.0 || !e.get().is_finite() => {
                return Err(err(
                    "eps",
                    format!("{} is not a radius", e.get()),
                    Some("ε must be a finite number ≥ 0, in [0,1] pixel units"),
                ))
            }
            Some(e) => e.get(),
        };
        if let Some(curve) = &a.curve {
            if let Some(bad) = curve.iter().find(|e| e.get() < 0.0 || !e.get().is_finite()) {
                return Err(err(
                    "curve",
                    format!("{} is not a radius", bad.get()),
                    Some("list radii ≥ 0, e.g. `curve: [2/255, 4/255, 16/255]`"),
                ));
            }
        }
        let norm = a.norm.unwrap_or(Norm::Linf);
        let only = |allowed: &[Norm], what: &str| -> Result<(), FieldError> {
            if allowed.contains(&norm) {
                Ok(())
            } else {
                Err(err(
                    "norm",
                    format!("`{kind}` is an {what} attack, not {norm}"),
                    None,
                ))
            }
        };
        let positive =
            |field: &'static str, v: Option<f64>, default: f64| -> Result<f64, FieldError> {
                match v {
                    Some(x) if x <= 0.0 || !x.is_finite() => {
                        Err(err(field, format!("{x} must be positive"), None))
                    }
                    Some(x) => Ok(x),
                    None => Ok(default),
                }
            };
        let count =
            |field: &'static str, v: Option<usize>, default: usize| -> Result<usize, FieldError> {
                match v {
                    Some(0) => Err(err(field, "must be at least 1", None)),
                    Some(x) => Ok(x),
                    None => Ok(default),
                }
            };
        let steps = |default| count("steps", a.steps, default);
        Ok(match kind {
            "fgsm" => {
                only(&[Norm::Linf], "ℓ∞").map_err(|(f, m, _)| {
                    (f, m, Some("use `type: pgd, norm: l2, steps: 1`".into()))
                })?;
                AttackConfig::Fgsm { eps }
            }
            "pgd" => {
                let steps = steps(10)?;
                let loss = match a.loss.as_deref() {
                    None | Some("ce") => {
                        if a.kappa.is_some() {
                            return Err(err(
                                "kappa",
                                "applies to `loss: cw` only",
                                Some("set `loss: cw` or remove it"),
                            ));
                        }
                        PgdLoss::Ce
                    }
                    Some("cw") => PgdLoss::Cw {
                        kappa: a.kappa.map(|k| k.get()).unwrap_or(0.0),
                    },
                    Some(o) => {
                        return Err(err(
                            "loss",
                            format!("unknown PGD loss `{o}`"),
                            Some("use `ce` or `cw`"),
                        ))
                    }
                };
                let l1_step = match (norm, a.l1_step.as_deref()) {
                    (Norm::L1, None | Some("slide")) => {
                        let p = a.percentile.map(|p| p.get()).unwrap_or(99.0);
                        if !(0.0..100.0).contains(&p) {
                            return Err(err(
                                "percentile",
                                format!("{p} is not in [0, 100)"),
                                Some("e.g. 99 moves the top 1% of coordinates"),
                            ));
                        }
                        Some(L1Step::Slide { percentile: p })
                    }
                    (Norm::L1, Some("dense")) => {
                        if a.percentile.is_some() {
                            return Err(err(
                                "percentile",
                                "applies to `l1_step: slide` only",
                                Some("remove it"),
                            ));
                        }
                        Some(L1Step::Dense)
                    }
                    (Norm::L1, Some(o)) => {
                        return Err(err(
                            "l1_step",
                            format!("unknown ℓ1 step `{o}`"),
                            Some("use `slide` or `dense`"),
                        ))
                    }
                    (_, Some(_)) => {
                        return Err(err(
                            "l1_step",
                            "applies to `norm: l1` only",
                            Some("remove it"),
                        ))
                    }
                    (_, None) if a.percentile.is_some() => {
                        return Err(err(
                            "percentile",
                            "applies to `norm: l1` only",
                            Some("remove it"),
                        ))
                    }
                    _ => None,
                };
                AttackConfig::Pgd {
                    norm,
                    eps,
                    steps,
                    step_size: positive(
                        "step_size",
                        a.step_size.map(|s| s.get()),
                        2.5 * eps / steps as f64,
                    )?,
                    random_start: a.random_start.unwrap_or(true),
                    restarts: count("restarts", a.restarts, 1)?,
                    loss,
                    l1_step,
                }
            }
            "mim" => {
                only(&[Norm::Linf], "ℓ∞")?;
                let steps = steps(10)?;
                AttackConfig::Mim {
                    eps,
                    steps,
                    step_size: positive(
                        "step_size",
                        a.step_size.map(|s| s.get()),
                        eps / steps as f64,
                    )?,
                    decay: a.decay.map(|d| d.get()).unwrap_or(1.0),
                }
            }
            "cw" => {
                if a.norm.is_some() {
                    only(&[Norm::L2], "ℓ2")?;
                }
                AttackConfig::Cw {
                    eps,
                    steps: steps(100)?,
                    lr: positive("lr", a.lr.map(|s| s.get()), 0.01)?,
                    c: positive("c", a.c.map(|s| s.get()), 0.1)?,
                    binary_search_steps: count("binary_search_steps", a.binary_search_steps, 5)?,
                    kappa: a.kappa.map(|k| k.get()).unwrap_or(0.0),
                }
            }
            "apgd" | "apgd-ce" | "apgd-dlr" | "apgd-t" => {
                let loss = match kind {
                    "apgd-ce" => "ce".to_string(),
                    "apgd-dlr" => "dlr".to_string(),
                    "apgd-t" => "dlr-t".to_string(),
                    _ => match a.loss.as_deref() {
                        None => "ce".into(),
                        Some(l @ ("ce" | "dlr" | "dlr-t")) => l.into(),
                        Some(o) => {
                            return Err(err(
                                "loss",
                                format!("unknown APGD loss `{o}`"),
                                Some("use `ce`, `dlr` or `dlr-t`"),
                            ))
                        }
                    },
                };
                if a.targets.is_some() && loss != "dlr-t" {
                    return Err(err(
                        "targets",
                        "applies to the targeted loss only",
                        Some("use `type: apgd-t` or `loss: dlr-t`"),
                    ));
                }
                if loss == "dlr-t" && a.restarts.is_some() {
                    return Err(err(
                        "restarts",
                        "APGD-T runs once per target class",
                        Some("set `targets` instead"),
                    ));
                }
                let rho = a.rho.map(|r| r.get()).unwrap_or(0.75);
                if !(0.0..=1.0).contains(&rho) {
                    return Err(err("rho", format!("{rho} is not in [0, 1]"), None));
                }
                AttackConfig::Apgd {
                    norm,
                    eps,
                    steps: steps(100)?,
                    restarts: count("restarts", a.restarts, 1)?,
                    targets: count("targets", a.targets, 9)?,
                    rho,
                    large_eps: a.large_eps.unwrap_or(false),
                    loss,
                }
            }
            "fab" | "fab-t" => AttackConfig::Fab {
                norm,
                eps,
                steps: steps(100)?,
                restarts: count("restarts", a.restarts, 1)?,
                targets: if kind == "fab-t" {
                    Some(count("targets", a.targets, 9)?)
                } else {
                    None
                },
            },
            "square" => {
                let p_init = a.p_init.map(|p| p.get()).unwrap_or(0.8);
                if !(p_init > 0.0 && p_init <= 1.0) {
                    return Err(err(
                        "p_init",
                        format!("{p_init} is not in (0, 1]"),
                        Some("the initial fraction of pixels a window covers; AutoAttack uses 0.8"),
                    ));
                }
                AttackConfig::Square {
                    norm,
                    eps,
                    queries: count("queries", a.queries, 5000)?,
                    p_init,
                    restarts: count("restarts", a.restarts, 1)?,
                    loss: match a.loss.as_deref() {
                        None | Some("margin") => "margin".into(),
                        Some("ce") => "ce".into(),
                        Some(o) => {
                            return Err(err(
                                "loss",
                                format!("unknown Square loss `{o}`"),
                                Some("use `margin` or `ce`"),
                            ))
                        }
                    },
                }
            }
            _ => AttackConfig::Autoattack {
                norm,
                eps,
                version: match a.version.as_deref() {
                    None | Some("standard") => Version::Standard,
                    Some("plus") => Version::Plus,
                    Some(o) => {
                        return Err(err(
                            "version",
                            format!("unknown AutoAttack version `{o}`"),
                            Some("use `standard` or `plus`"),
                        ))
                    }
                },
            },
        })
    }

    /// The PGD parameters of a `pgd` configuration (`None` for other attacks); `early_stop` in
    /// evaluation.
    pub fn pgd_params(&self, early_stop: bool) -> Option<PgdParams> {
        match *self {
            AttackConfig::Pgd {
                norm,
                steps,
                step_size,
                random_start,
                restarts,
                loss,
                l1_step,
                ..
            } => Some(PgdParams {
                norm,
                steps,
                step_size,
                random_start,
                restarts,
                loss,
                l1: l1_step.unwrap_or(L1Step::Dense),
                early_stop,
            }),
            _ => None,
        }
    }

    /// The configured radius (0 for `clean`).
    pub fn eps(&self) -> f64 {
        match *self {
            AttackConfig::Clean => 0.0,
            AttackConfig::Fgsm { eps }
            | AttackConfig::Pgd { eps, .. }
            | AttackConfig::Mim { eps, .. }
            | AttackConfig::Cw { eps, .. }
            | AttackConfig::Apgd { eps, .. }
            | AttackConfig::Fab { eps, .. }
            | AttackConfig::Square { eps, .. }
            | AttackConfig::Autoattack { eps, .. } => eps,
        }
    }

    /// The threat model's norm (`None` for `clean`).
    pub fn norm(&self) -> Option<Norm> {
        match *self {
            AttackConfig::Clean => None,
            AttackConfig::Fgsm { .. } | AttackConfig::Mim { .. } => Some(Norm::Linf),
            AttackConfig::Cw { .. } => Some(Norm::L2),
            AttackConfig::Pgd { norm, .. }
            | AttackConfig::Apgd { norm, .. }
            | AttackConfig::Fab { norm, .. }
            | AttackConfig::Square { norm, .. }
            | AttackConfig::Autoattack { norm, .. } => Some(norm),
        }
    }

    /// How the attack uses the model: for the gradient-masking checks.
    pub fn class(&self) -> AttackClass {
        match self {
            AttackConfig::Clean => AttackClass::Clean,
            AttackConfig::Fgsm { .. } => AttackClass::SingleStep,
            AttackConfig::Pgd { steps: 1, .. } => AttackClass::SingleStep,
            AttackConfig::Square { .. } => AttackClass::BlackBox,
            _ => AttackClass::Iterative,
        }
    }

    /// The same attack at radius `eps`; step sizes scale with ε (they are fractions of ε).
    pub fn with_eps(&self, e: f64) -> AttackConfig {
        let mut c = self.clone();
        let old = self.eps();
        let scale = |s: &mut f64| {
            if old > 0.0 {
                *s *= e / old
            }
        };
        match &mut c {
            AttackConfig::Clean => {}
            AttackConfig::Fgsm { eps }
            | AttackConfig::Cw { eps, .. }
            | AttackConfig::Apgd { eps, .. }
            | AttackConfig::Fab { eps, .. }
            | AttackConfig::Square { eps, .. }
            | AttackConfig::Autoattack { eps, .. } => *eps = e,
            AttackConfig::Pgd { eps, step_size, .. } | AttackConfig::Mim { eps, step_size, .. } => {
                *eps = e;
                scale(step_size);
            }
        }
        c
    }

    /// Runs the attack on a batch of points (typically only the clean-correct ones). `seed`
    /// drives every random draw.
    pub fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64, usage: Use) -> Outcome {
        let eps = Tensor::full([x.size()[0]], self.eps(), (Kind::Float, x.device()));
        let mut notes = Vec::new();
        let early_stop = usage == Use::Evaluation;
        let adv = match self {
            AttackConfig::Clean => x.shallow_clone(),
            AttackConfig::Fgsm { .. } => super::fgsm::fgsm(model, x, y, &eps),
            AttackConfig::Pgd { .. } => {
                let p = self.pgd_params(early_stop).expect("a pgd configuration");
                super::pgd::pgd(model, x, y, &eps, &p, seed)
            }
            AttackConfig::Mim {
                steps,
                step_size,
                decay,
                ..
            } => {
                let p = MimParams {
                    steps: *steps,
                    step_size: *step_size,
                    decay: *decay,
                    early_stop,
                };
                super::mim::mim(model, x, y, &eps, &p)
            }
            AttackConfig::Cw {
                steps,
                lr,
                c,
                binary_search_steps,
                kappa,
                ..
            } => {
                let p = CwParams {
                    steps: *steps,
                    lr: *lr,
                    c: *c,
                    binary_search_steps: *binary_search_steps,
                    kappa: *kappa,
                };
                super::cw::cw(model, x, y, &eps, &p)
            }
            AttackConfig::Apgd {
                norm,
                steps,
                restarts,
                loss,
                targets,
                rho,
                large_eps,
                ..
            } => {
                let loss = match loss.as_str() {
                    "dlr" => ApgdLoss::Dlr,
                    "dlr-t" => ApgdLoss::DlrTargeted,
                    _ => ApgdLoss::Ce,
                };
                let classes = classes(model, x);
                let needed = match loss {
                    ApgdLoss::Ce => 2,
                    ApgdLoss::Dlr => 3,
                    ApgdLoss::DlrTargeted => 4,
                };
                if classes < needed {
                    notes.push(format!("skipped: the DLR loss needs at least {needed} classes, the model has {classes}"));
                    x.shallow_clone()
                } else {
                    let p = ApgdParams {
                        norm: *norm,
                        steps: *steps,
                        restarts: *restarts,
                        loss,
                        targets: *targets,
                        rho: *rho,
                        large_eps: *large_eps,
                    };
                    let mut zero = 0;
                    let adv = super::apgd::apgd(model, x, y, &eps, &p, seed, &mut zero);
                    if zero > 0 {
                        notes.push(format!("the DLR gradient was exactly zero at the start of {zero} runs (points × restarts or targets): a sign of gradient masking (AutoAttack check_zero_gradients)"));
                    }
                    adv
                }
            }
            AttackConfig::Fab {
                norm,
                steps,
                restarts,
                targets,
                ..
            } => {
                let p = FabParams {
                    norm: *norm,
                    steps: *steps,
                    restarts: *restarts,
                    targets: *targets,
                    alpha_max: 0.1,
                    eta: 1.05,
                    beta: 0.9,
                };
                super::fab::fab(model, x, y, &eps, &p, seed)
            }
            AttackConfig::Square {
                norm,
                queries,
                p_init,
                restarts,
                loss,
                ..
            } => {
                let p = SquareParams {
                    norm: *norm,
                    queries: *queries,
                    p_init: *p_init,
                    restarts: *restarts,
                    loss: if loss == "ce" {
                        SquareLoss::Ce
                    } else {
                        SquareLoss::Margin
                    },
                    rescale_schedule: false,
                };
                super::square::square(model, x, y, &eps, &p, seed)
            }
            AttackConfig::Autoattack {
                norm,
                eps: e,
                version,
            } => {
                let members = autoattack_members(*norm, *e, *version);
                return super::autoattack::autoattack(model, x, y, &members, seed);
            }
        };
        Outcome {
            adv,
            broken_by: None,
            notes,
        }
    }

    /// Adversarial examples for `(x, y)` (training and simple uses).
    pub fn perturb(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        seed: u64,
        usage: Use,
    ) -> Tensor {
        self.run(model, x, y, seed, usage).adv
    }
}

/// Number of classes the model outputs (one forward on one point).
pub fn classes(model: &dyn Model, x: &Tensor) -> i64 {
    tch::no_grad(|| model.logits(&x.narrow(0, 0, x.size()[0].min(1)))).size()[1]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    Standard,
    Plus,
}

impl Attack for AttackConfig {
    fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64, usage: Use) -> Outcome {
        AttackConfig::run(self, model, x, y, seed, usage)
    }
    fn class(&self) -> AttackClass {
        AttackConfig::class(self)
    }
}

/// The members of an AutoAttack composition (`autoattack.rs`), in order, with their names.
pub fn autoattack_members(
    norm: Norm,
    eps: f64,
    version: Version,
) -> Vec<(&'static str, AttackConfig)> {
    let l1 = norm == Norm::L1;
    let apgd = |loss: &str, restarts: usize, targets: usize| AttackConfig::Apgd {
        norm,
        eps,
        steps: 100,
        restarts,
        loss: loss.into(),
        targets,
        rho: 0.75,
        large_eps: l1 && version == Version::Standard,
    };
    let fab = |restarts: usize, targets: Option<usize>| AttackConfig::Fab {
        norm,
        eps,
        steps: 100,
        restarts,
        targets,
    };
    let square = AttackConfig::Square {
        norm,
        eps,
        queries: 5000,
        p_init: 0.8,
        restarts: 1,
        loss: "margin".into(),
    };
    match version {
        Version::Standard => vec![
            ("apgd-ce", apgd("ce", if l1 { 5 } else { 1 }, 9)),
            ("apgd-t", apgd("dlr-t", 1, if l1 { 5 } else { 9 })),
            ("fab-t", fab(1, Some(9))),
            ("square", square),
        ],
        Version::Plus => vec![
            ("apgd-ce", apgd("ce", 5, 9)),
            ("apgd-dlr", apgd("dlr", 5, 9)),
            ("fab", fab(5, None)),
            ("square", square),
            ("apgd-t", apgd("dlr-t", 1, 9)),
            ("fab-t", fab(1, Some(9))),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Real;

    fn spec(eps: Option<f64>) -> AttackSpec {
        AttackSpec {
            eps: eps.map(Real),
            ..Default::default()
        }
    }

    #[test]
    fn kind_inference_and_defaults() {
        assert_eq!(kind_for("pgd-linf", &spec(None)), "pgd");
        assert_eq!(kind_for("apgd-t-l2", &spec(None)), "apgd-t");
        assert_eq!(kind_for("apgd-dlr", &spec(None)), "apgd-dlr");
        assert_eq!(kind_for("aa-linf", &spec(None)), "aa");
        assert_eq!(kind_for("clean", &spec(None)), "clean");
        let c = AttackConfig::resolve("pgd", &spec(Some(8.0 / 255.0)), Use::Evaluation).unwrap();
        assert_eq!(
            c,
            AttackConfig::Pgd {
                norm: Norm::Linf,
                eps: 8.0 / 255.0,
                steps: 10,
                step_size: 2.5 * 8.0 / 255.0 / 10.0,
                random_start: true,
                restarts: 1,
                loss: PgdLoss::Ce,
                l1_step: None,
            }
        );
        let l1 = AttackSpec {
            norm: Some(Norm::L1),
            ..spec(Some(12.0))
        };
        match AttackConfig::resolve("pgd", &l1, Use::Evaluation).unwrap() {
            AttackConfig::Pgd {
                l1_step: Some(L1Step::Slide { percentile }),
                ..
            } => assert_eq!(percentile, 99.0),
            o => panic!("{o:?}"),
        }
        match AttackConfig::resolve("aa", &spec(Some(0.1)), Use::Evaluation).unwrap() {
            AttackConfig::Autoattack {
                version: Version::Standard,
                norm: Norm::Linf,
                ..
            } => {}
            o => panic!("{o:?}"),
        }
        let sq = AttackConfig::resolve(
            &kind_for("square-l2", &spec(None)),
            &AttackSpec {
                norm: Some(Norm::L2),
                ..spec(Some(0.5))
            },
            Use::Evaluation,
        )
        .unwrap();
        assert_eq!(
            sq,
            AttackConfig::Square {
                norm: Norm::L2,
                eps: 0.5,
                queries: 5000,
                p_init: 0.8,
                restarts: 1,
                loss: "margin".into(),
            }
        );
        assert_eq!(sq.class(), AttackClass::BlackBox);
        assert_eq!(kind_for("fab-t-linf", &spec(None)), "fab-t");
        assert_eq!(
            AttackConfig::resolve("fab-t", &spec(Some(0.1)), Use::Evaluation).unwrap(),
            AttackConfig::Fab {
                norm: Norm::Linf,
                eps: 0.1,
                steps: 100,
                restarts: 1,
                targets: Some(9),
            }
        );
        // Curve points keep step sizes as fractions of ε.
        let half = c.with_eps(4.0 / 255.0);
        match half {
            AttackConfig::Pgd { eps, step_size, .. } => {
                assert_eq!(eps, 4.0 / 255.0);
                assert!((step_size - 2.5 * 4.0 / 255.0 / 10.0).abs() < 1e-15);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn bad_attacks_name_the_field() {
        let field = |kind: &str, a: AttackSpec| {
            AttackConfig::resolve(kind, &a, Use::Evaluation)
                .unwrap_err()
                .0
        };
        assert_eq!(field("pgd", spec(Some(-0.1))), "eps");
        assert_eq!(field("fgsm", spec(None)), "eps");
        assert_eq!(field("clean", spec(Some(0.1))), "eps");
        // (type, the one bad field set on top of `eps: 0.1`, the field the error names)
        let with = |f: fn(&mut AttackSpec)| {
            let mut a = spec(Some(0.1));
            f(&mut a);
            a
        };
        let cases: [(&str, AttackSpec, &str); 13] = [
            ("fgsm", with(|a| a.norm = Some(Norm::L2)), "norm"),
            ("cw", with(|a| a.norm = Some(Norm::Linf)), "norm"),
            ("apgd-ce", with(|a| a.targets = Some(3)), "targets"),
            ("pgd", with(|a| a.l1_step = Some("slide".into())), "l1_step"),
            ("pgd", with(|a| a.loss = Some("dlr".into())), "loss"),
            ("aa", with(|a| a.version = Some("fast".into())), "version"),
            ("pgd", with(|a| a.version = Some("plus".into())), "version"),
            (
                "pgd",
                with(|a| a.curve = Some(vec![Real(f64::NAN)])),
                "curve",
            ),
            ("square", with(|a| a.steps = Some(100)), "steps"),
            ("square", with(|a| a.p_init = Some(Real(1.5))), "p_init"),
            ("fab", with(|a| a.targets = Some(3)), "targets"),
            ("apgd", with(|a| a.queries = Some(10)), "queries"),
            (
                "clean",
                AttackSpec {
                    curve: Some(vec![Real(0.1)]),
                    ..spec(None)
                },
                "curve",
            ),
        ];
        for (kind, a, want) in cases {
            let got = AttackConfig::resolve(kind, &a, Use::Evaluation);
            assert_eq!(got.as_ref().map_err(|e| e.0), Err(want), "{kind} {a:?}");
        }
        let e = AttackConfig::resolve("pdg", &spec(Some(0.1)), Use::Evaluation).unwrap_err();
        assert_eq!(e.2.as_deref(), Some("did you mean `pgd`?"));
    }
}
