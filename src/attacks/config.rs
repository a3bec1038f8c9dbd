//! The attack registry, one line per attack type, and what every attack entry goes through:
//! its type found from its name, fields that do not apply rejected, the radius checked, then the
//! type's own file reads the rest with every default filled in (the resolved JSON is part of
//! stage keys). Adding an attack is its file plus one line in [`registry!`] below (and docs).
use super::clean::Clean;
use super::pgd::PgdParams;
use super::spec::{AttackSpec, Fields};
use super::Attack;
use super::AttackClass;
use super::AttackType;
use super::Name;
use crate::vocab::Problem;
use crate::vocab::{did_you_mean, typo_hint, Norm};
use serde::{Deserialize, Serialize};

/// Declares [`AttackConfig`] (one variant per attack type; serialised `{"type": <variant in
/// lowercase>, …fields}`), its delegation to [`Attack`] (and, in the worker build, to
/// `AttackRun`), and the registry of names.
macro_rules! registry {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A fully resolved attack: every default filled in. Its JSON is part of stage keys.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        pub enum AttackConfig {
            $($variant($ty),)*
        }

        impl AttackConfig {
            fn attack(&self) -> &dyn Attack {
                match self {
                    $(AttackConfig::$variant(a) => a,)*
                }
            }
            fn attack_mut(&mut self) -> &mut dyn Attack {
                match self {
                    $(AttackConfig::$variant(a) => a,)*
                }
            }
        }

        #[cfg(feature = "torch")]
        impl AttackConfig {
            fn attack_run(&self) -> &dyn super::AttackRun {
                match self {
                    $(AttackConfig::$variant(a) => a,)*
                }
            }
        }

        /// Every attack type's registry names, type by type.
        pub static REGISTRY: &[&[Name]] = &[$(<$ty as AttackType>::NAMES,)*];

        /// Resolves `f` with the type that answers to `f.name` (`None`: no type does).
        fn resolve_named(f: &Fields) -> Option<Result<AttackConfig, Problem>> {
            $(
                if <$ty as AttackType>::NAMES.iter().any(|n| n.name == f.name) {
                    return Some(<$ty as AttackType>::resolve(f).map(AttackConfig::$variant));
                }
            )*
            None
        }
    };
}

// The registry: one line per attack type, `Variant(its parameters)`; the variant in lowercase is
// the `type` of its resolved JSON (stage keys), the type's `NAMES` what specs write.
registry! {
    Clean(super::clean::Clean),
    Fgsm(super::fgsm::Fgsm),
    Pgd(super::pgd::Pgd),
    Mim(super::mim::Mim),
    Cw(super::cw::Cw),
    Apgd(super::apgd::Apgd),
    Fab(super::fab::Fab),
    Square(super::square::Square),
    Autoattack(super::autoattack::AutoAttack),
    Deepfool(super::deepfool::DeepFool),
}

/// `clean`: the attack of unattacked evaluation.
pub const CLEAN: AttackConfig = AttackConfig::Clean(Clean {});

/// Every registry name, in registry order.
pub fn names() -> impl Iterator<Item = &'static Name> {
    REGISTRY.iter().flat_map(|t| t.iter())
}

fn find(name: &str) -> Option<&'static Name> {
    names().find(|n| n.name == name)
}

/// The attack type of an entry: its `type`, else its key if that is a registry name, else the
/// longest registry name the key starts with followed by `-` or `_` (`pgd-linf` is a `pgd`,
/// `apgd-t-l2` an `apgd-t`), else the key's prefix before the first `-`/`_`.
pub fn kind_for(key: &str, a: &AttackSpec) -> String {
    if let Some(k) = &a.kind {
        return k.clone();
    }
    if find(key).is_some() {
        return key.to_string();
    }
    if let Some(n) = names()
        .map(|n| n.name)
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

fn radius(field: &str, e: f64) -> Result<f64, Problem> {
    if e < 0.0 || !e.is_finite() {
        let hint = if field == "curve" {
            "list radii ≥ 0, e.g. `curve: [2/255, 4/255, 16/255]`"
        } else {
            "ε must be a finite number ≥ 0, in [0,1] pixel units"
        };
        return Err(Problem::at(field, format!("{e} is not a radius")).hint(hint));
    }
    Ok(e)
}

impl AttackConfig {
    /// Whether the attack can move a point: not `clean`, and a radius above 0. At ε = 0 (the first
    /// point of an ε-curve) no attack can, so the robust points are the clean-correct ones by
    /// definition; scoring them again in a batch of another shape could flip a near-tied
    /// prediction (GEMM blocking depends on the batch size).
    pub fn moves_points(&self) -> bool {
        !matches!(self, AttackConfig::Clean(_)) && self.eps() > 0.0
    }

    /// A composition's members, named, in the order an evaluation runs them (AutoAttack's);
    /// `None` for an attack that runs as itself.
    pub fn members(&self) -> Option<Vec<(String, AttackConfig)>> {
        match self {
            AttackConfig::Autoattack(a) => Some(
                super::autoattack::members(a.norm, a.eps, a.version)
                    .into_iter()
                    .map(|(n, c)| (n.to_string(), c))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Validates `a` as an attack of type `kind` and fills defaults (docs/attacks.md). Problems
    /// are relative to the entry: the caller places them with `Problem::under`.
    pub fn resolve(kind: &str, a: &AttackSpec) -> Result<Self, Problem> {
        let Some(name) = find(kind) else {
            let hint = typo_hint(kind, names().map(|n| n.name), || {
                format!(
                    "known attacks: {}; or set `type:`",
                    names().map(|n| n.name).collect::<Vec<_>>().join(", ")
                )
            });
            return Err(Problem::at("type", format!("unknown attack `{kind}`")).hint(hint));
        };
        for field in a.params.keys() {
            if name.fields.contains(&field.as_str()) {
                continue;
            }
            let elsewhere = names().any(|n| n.fields.contains(&field.as_str()));
            return Err(if elsewhere {
                Fields::remove(field, format!("does not apply to `{kind}`"))
            } else {
                let shared = ["type", "norm", "eps", "curve"];
                let known = shared.into_iter().chain(name.fields.iter().copied());
                let hint = match did_you_mean(field, known.clone()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "`{kind}` reads {}",
                        known
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                Problem::at(field.as_str(), "unknown field").hint(hint)
            });
        }
        let eps = if name.radius {
            let e = a.eps.ok_or_else(|| {
                Problem::at("eps", "is required").hint(
                    "e.g. `eps: 8/255` (ℓ∞), `eps: 0.5` (ℓ2), `eps: 12` (ℓ1), in [0,1] pixel units",
                )
            })?;
            radius("eps", e.get())?
        } else {
            0.0
        };
        if name.radius {
            for e in a.curve.iter().flatten() {
                radius("curve", e.get())?;
            }
        }
        let f = Fields {
            name: name.name,
            spec: a,
            eps,
        };
        let c = resolve_named(&f).expect("a registry name has a type")?;
        if c.norm() == Some(Norm::Linf) {
            let beyond = |field: &str, e: f64| {
                Problem::at(field, format!("{e} is beyond the pixel range")).hint(
                    "ε is in [0,1] pixel units: write `8/255`, not `8`; an ℓ∞ ε of 1 already covers every image",
                )
            };
            if eps > 1.0 {
                return Err(beyond("eps", eps));
            }
            if let Some(e) = a.curve.iter().flatten().map(|e| e.get()).find(|&e| e > 1.0) {
                return Err(beyond("curve", e));
            }
        }
        Ok(c)
    }

    /// The PGD parameters of a `pgd` configuration (`None` for other attacks); `early_stop` in
    /// evaluation.
    pub fn pgd_params(&self, early_stop: bool) -> Option<PgdParams> {
        match self {
            AttackConfig::Pgd(p) => Some(p.params(early_stop)),
            _ => None,
        }
    }

    /// The configured radius (0 for `clean`).
    pub fn eps(&self) -> f64 {
        self.attack().eps()
    }

    /// The threat model's norm (`None` for `clean`).
    pub fn norm(&self) -> Option<Norm> {
        self.attack().norm()
    }

    /// How the attack uses the model: for the gradient-masking checks.
    pub fn class(&self) -> AttackClass {
        self.attack().class()
    }

    /// The same attack at radius `eps`; step sizes scale with ε (they are fractions of ε).
    pub fn with_eps(&self, e: f64) -> AttackConfig {
        let mut c = self.clone();
        c.attack_mut().set_eps(e);
        c
    }
}

impl Attack for AttackConfig {
    fn class(&self) -> AttackClass {
        AttackConfig::class(self)
    }
    fn eps(&self) -> f64 {
        AttackConfig::eps(self)
    }
    fn norm(&self) -> Option<Norm> {
        AttackConfig::norm(self)
    }
    fn passes(&self, classes: usize) -> super::Passes {
        self.attack().passes(classes)
    }
    fn set_eps(&mut self, e: f64) {
        self.attack_mut().set_eps(e)
    }
}

/// The tensor half (libtorch, the worker build): running a resolved attack.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{AttackRun, Model, Outcome, Streams, Use};
    use tch::Tensor;

    impl AttackConfig {
        /// Runs the attack on a batch of points (typically only the clean-correct ones). `rng`
        /// holds the points' random streams.
        pub fn run(
            &self,
            model: &dyn Model,
            x: &Tensor,
            y: &Tensor,
            rng: &Streams,
            usage: Use,
        ) -> Outcome {
            self.attack_run().run(model, x, y, rng, usage)
        }

        /// Adversarial examples for `(x, y)` (training and simple uses).
        pub fn perturb(
            &self,
            model: &dyn Model,
            x: &Tensor,
            y: &Tensor,
            rng: &Streams,
            usage: Use,
        ) -> Tensor {
            self.run(model, x, y, rng, usage).adv
        }
    }

    impl AttackRun for AttackConfig {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, rng: &Streams, usage: Use) -> Outcome {
            AttackConfig::run(self, model, x, y, rng, usage)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::autoattack::{AutoAttack, Version};
    use crate::attacks::deepfool::DeepFool;
    use crate::attacks::fab::Fab;
    use crate::attacks::pgd::{L1Step, Pgd, PgdLoss};
    use crate::attacks::square::{Square, SquareLoss};
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
        assert_eq!(kind_for("deepfool-l2", &spec(None)), "deepfool");
        let c = AttackConfig::resolve("pgd", &spec(Some(8.0 / 255.0))).unwrap();
        assert_eq!(
            c,
            AttackConfig::Pgd(Pgd {
                norm: Norm::Linf,
                eps: 8.0 / 255.0,
                steps: 10,
                step_size: 2.5 * 8.0 / 255.0 / 10.0,
                random_start: true,
                restarts: 1,
                loss: PgdLoss::Ce,
                l1_step: None,
            })
        );
        let l1 = AttackSpec {
            norm: Some(Norm::L1),
            ..spec(Some(12.0))
        };
        match AttackConfig::resolve("pgd", &l1).unwrap() {
            AttackConfig::Pgd(Pgd {
                l1_step: Some(L1Step::Slide { percentile }),
                ..
            }) => assert_eq!(percentile, 99.0),
            o => panic!("{o:?}"),
        }
        match AttackConfig::resolve("aa", &spec(Some(0.1))).unwrap() {
            AttackConfig::Autoattack(AutoAttack {
                version: Version::Standard,
                norm: Norm::Linf,
                ..
            }) => {}
            o => panic!("{o:?}"),
        }
        let sq = AttackConfig::resolve(
            &kind_for("square-l2", &spec(None)),
            &AttackSpec {
                norm: Some(Norm::L2),
                ..spec(Some(0.5))
            },
        )
        .unwrap();
        assert_eq!(
            sq,
            AttackConfig::Square(Square {
                norm: Norm::L2,
                eps: 0.5,
                queries: 5000,
                p_init: 0.8,
                restarts: 1,
                loss: SquareLoss::Margin,
                rescale_schedule: true,
            })
        );
        assert_eq!(sq.class(), AttackClass::BlackBox);
        // The stretched schedule is in the key; the unstretched one (before the field existed,
        // and AutoAttack's member) keeps the key it had.
        let json = |c: &AttackConfig| serde_json::to_string(c).unwrap();
        assert!(
            json(&sq).contains("\"rescale_schedule\":true"),
            "{}",
            json(&sq)
        );
        let off = AttackConfig::resolve("square", &spec(Some(0.5)).with("rescale_schedule", false))
            .unwrap();
        assert!(!json(&off).contains("rescale_schedule"), "{}", json(&off));
        let bad = AttackConfig::resolve("square", &spec(Some(0.5)).with("rescale_schedule", "yes"));
        assert!(bad.is_err());
        assert_eq!(kind_for("fab-t-linf", &spec(None)), "fab-t");
        assert_eq!(
            AttackConfig::resolve("fab-t", &spec(Some(0.1))).unwrap(),
            AttackConfig::Fab(Fab {
                norm: Norm::Linf,
                eps: 0.1,
                steps: 100,
                restarts: 1,
                targets: Some(9),
            })
        );
        assert_eq!(
            AttackConfig::resolve(
                "deepfool",
                &AttackSpec {
                    norm: Some(Norm::L2),
                    ..spec(Some(0.5))
                }
            )
            .unwrap(),
            AttackConfig::Deepfool(DeepFool {
                norm: Norm::L2,
                eps: 0.5,
                steps: 50,
                overshoot: 0.02,
            })
        );
        // Curve points keep step sizes as fractions of ε.
        let half = c.with_eps(4.0 / 255.0);
        match half {
            AttackConfig::Pgd(Pgd { eps, step_size, .. }) => {
                assert_eq!(eps, 4.0 / 255.0);
                assert!((step_size - 2.5 * 4.0 / 255.0 / 10.0).abs() < 1e-15);
            }
            o => panic!("{o:?}"),
        }
    }

    /// The resolved JSON is part of stage keys: each type serialises as before the registry
    /// (`{"type": …, fields in declaration order}`), losses as the strings specs write.
    #[test]
    fn resolved_json_keeps_its_shape() {
        let json = |kind: &str, a: AttackSpec| {
            serde_json::to_string(&AttackConfig::resolve(kind, &a).unwrap()).unwrap()
        };
        assert_eq!(json("clean", spec(None)), r#"{"type":"clean"}"#);
        assert_eq!(
            json("apgd-t", spec(Some(0.5))),
            r#"{"type":"apgd","norm":"linf","eps":0.5,"steps":100,"restarts":1,"loss":"dlr-t","targets":9,"rho":0.75,"large_eps":false}"#
        );
        // The unstretched schedule keeps the shape (and so the keys) of before `rescale_schedule`;
        // the stretched one, now the default, is a new key.
        assert_eq!(
            json(
                "square",
                spec(Some(0.5))
                    .with("loss", "ce")
                    .with("rescale_schedule", false)
            ),
            r#"{"type":"square","norm":"linf","eps":0.5,"queries":5000,"p_init":0.8,"restarts":1,"loss":"ce"}"#
        );
        assert_eq!(
            json("square", spec(Some(0.5)).with("loss", "ce")),
            r#"{"type":"square","norm":"linf","eps":0.5,"queries":5000,"p_init":0.8,"restarts":1,"loss":"ce","rescale_schedule":true}"#
        );
        assert_eq!(
            json("pgd", spec(Some(0.5)).with("loss", "cw")),
            r#"{"type":"pgd","norm":"linf","eps":0.5,"steps":10,"step_size":0.125,"random_start":true,"restarts":1,"loss":{"name":"cw","kappa":0.0},"l1_step":null}"#
        );
        // APGD-ℓ1's fix (fra31's arithmetic at its start points) moved its results, and
        // AutoAttack-ℓ1's: their keys carry the revision; ℓ∞/ℓ2 keys stay as they were.
        let l1 = |mut a: AttackSpec| {
            a.norm = Some(Norm::L1);
            a
        };
        assert_eq!(
            json("apgd-ce", l1(spec(Some(12.0)))),
            r#"{"type":"apgd","norm":"l1","eps":12.0,"steps":100,"restarts":1,"loss":"ce","targets":9,"rho":0.75,"large_eps":false,"revision":1}"#
        );
        assert_eq!(
            json("aa", l1(spec(Some(12.0)))),
            r#"{"type":"autoattack","norm":"l1","eps":12.0,"version":"standard","revision":1}"#
        );
        assert_eq!(
            json("aa", spec(Some(0.5))),
            r#"{"type":"autoattack","norm":"linf","eps":0.5,"version":"standard"}"#
        );
        let c = AttackConfig::resolve("aa", &l1(spec(Some(12.0)))).unwrap();
        let back: AttackConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let c = AttackConfig::resolve("aa", &spec(Some(0.5))).unwrap();
        let back: AttackConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            serde_json::from_str::<AttackConfig>(r#"{"type":"clean"}"#).unwrap(),
            CLEAN
        );
    }

    #[test]
    fn bad_attacks_name_the_field() {
        let field = |kind: &str, a: AttackSpec| {
            AttackConfig::resolve(kind, &a)
                .unwrap_err()
                .field()
                .to_string()
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
        let cases: [(&str, AttackSpec, &str); 19] = [
            // ℓ∞ radii beyond the pixel range (ε in 0–255 units by mistake); ℓ2 radii may be.
            ("fgsm", spec(Some(8.0)), "eps"),
            ("pgd", with(|a| a.curve = Some(vec![Real(4.0)])), "curve"),
            ("cw", spec(Some(8.0)).with("steps", 0), "steps"),
            ("fgsm", with(|a| a.norm = Some(Norm::L2)), "norm"),
            ("cw", with(|a| a.norm = Some(Norm::Linf)), "norm"),
            (
                "apgd-ce",
                with(|a| {
                    a.set("targets", 3);
                }),
                "targets",
            ),
            (
                "pgd",
                with(|a| {
                    a.set("l1_step", "slide");
                }),
                "l1_step",
            ),
            (
                "pgd",
                with(|a| {
                    a.set("loss", "dlr");
                }),
                "loss",
            ),
            (
                "aa",
                with(|a| {
                    a.set("version", "fast");
                }),
                "version",
            ),
            (
                "pgd",
                with(|a| {
                    a.set("version", "plus");
                }),
                "version",
            ),
            (
                "pgd",
                with(|a| a.curve = Some(vec![Real(f64::NAN)])),
                "curve",
            ),
            (
                "square",
                with(|a| {
                    a.set("steps", 100);
                }),
                "steps",
            ),
            (
                "square",
                with(|a| {
                    a.set("p_init", 1.5);
                }),
                "p_init",
            ),
            (
                "fab",
                with(|a| {
                    a.set("targets", 3);
                }),
                "targets",
            ),
            (
                "apgd",
                with(|a| {
                    a.set("queries", 10);
                }),
                "queries",
            ),
            (
                "clean",
                AttackSpec {
                    curve: Some(vec![Real(0.1)]),
                    ..spec(None)
                },
                "curve",
            ),
            ("deepfool", with(|a| a.norm = Some(Norm::L1)), "norm"),
            (
                "deepfool",
                with(|a| {
                    a.set("overshoot", -1.0);
                }),
                "overshoot",
            ),
            (
                "pgd",
                with(|a| {
                    a.set("stpes", 3);
                }),
                "stpes",
            ),
        ];
        for (kind, a, want) in cases {
            let got = AttackConfig::resolve(kind, &a);
            assert_eq!(
                got.as_ref().map_err(|e| e.field().to_string()),
                Err(want.to_string()),
                "{kind} {a:?}"
            );
        }
        let e = AttackConfig::resolve("pdg", &spec(Some(0.1))).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `pgd`?"));
        let e = AttackConfig::resolve("pgd", &spec(Some(0.1)).with("stpes", 3)).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `steps`?"));
    }
}
