//! AutoAttack (Croce & Hein 2020) compositions, as fra31's `autoattack.py::set_version` builds them
//! (docs/attacks.md, "Reference update rules: AutoAttack"): members run in order, each only on the
//! points every earlier member left robust, so robust accuracy is the per-sample worst case; the
//! member that broke each point is recorded.
//!
//! | version | ℓ∞ / ℓ2 | ℓ1 |
//! |---|---|---|
//! | standard | APGD-CE (1 restart), APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries) | APGD-CE (5 restarts, 3ε→2ε→ε), APGD-T (5 targets, 3ε→2ε→ε), FAB-T, Square |
//! | plus | APGD-CE, APGD-DLR (5 restarts each), FAB (5 restarts), Square, APGD-T (9 targets), FAB-T (9 targets) | same, no 3ε schedule |
//!
//! APGD and FAB run 100 iterations, Square 5000 queries with `p_init` 0.8 and the margin loss.
//! Targets are capped at classes − 1; DLR members are skipped (with a note) below 3/4 classes.
//!
use super::Attack;
use super::AttackType;
use super::{
    apgd::{Apgd, ApgdLoss},
    fab::Fab,
    square::{Square, SquareLoss},
};
use super::{AttackConfig, Fields, Name};
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};

/// The composition: `standard` (the leaderboard's) or `plus` (more restarts and members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    Standard,
    Plus,
}

/// A resolved `autoattack` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoAttack {
    pub norm: Norm,
    pub eps: f64,
    pub version: Version,
    /// Its APGD members' revision ([`super::apgd::L1_REVISION`] for ℓ1); in stage keys only when
    /// non-zero.
    #[serde(default, skip_serializing_if = "super::apgd::is_zero")]
    pub revision: u32,
}

impl AttackType for AutoAttack {
    const NAMES: &'static [Name] = &[
        Name::new(
            "autoattack",
            "AutoAttack `standard` or `plus`: each member on the points still robust (Croce & Hein 2020)",
            &["version"],
        ),
        Name::new("aa", "alias of autoattack", &["version"]),
    ];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        Ok(AutoAttack {
            revision: super::apgd::revision(f.norm()),
            norm: f.norm(),
            eps: f.eps,
            version: match f.choice(
                "version",
                &["standard", "plus"],
                "standard",
                "AutoAttack version",
            )? {
                "plus" => Version::Plus,
                _ => Version::Standard,
            },
        })
    }
}

impl Attack for AutoAttack {
    radius_from_fields!();
    fn passes(&self, classes: usize) -> super::Passes {
        // The first member attacks every point; each later one only the points still robust,
        // [`SURVIVING`] of them.
        members(self.norm, self.eps, self.version)
            .iter()
            .enumerate()
            .map(|(i, (_, m))| {
                let share = if i == 0 { 1.0 } else { SURVIVING };
                m.passes(classes).scaled(share)
            })
            .fold(super::Passes::default(), |a, b| a + b)
    }
}

/// For compute estimates: the share of points the members after the first still attack. Robust
/// accuracy under APGD-CE of PGD-trained CIFAR-10 models is 40–55% (Croce et al. 2021,
/// RobustBench), so half; the estimate of a composition scales with it.
pub const SURVIVING: f64 = 0.5;

/// The note of a black-box member (Square) that broke `n` points the gradient-based members
/// before it left robust.
pub fn black_box_note(member: &str, n: i64) -> String {
    format!("{member} broke {n} points the gradient-based members before it left robust: a sign of gradient masking (Croce & Hein 2020, §5)")
}

/// A named member of a composition.
pub type Member = (&'static str, AttackConfig);

/// The members of an AutoAttack composition, in order, with their names.
pub fn members(norm: Norm, eps: f64, version: Version) -> Vec<Member> {
    let l1 = norm == Norm::L1;
    let apgd = |loss, restarts, targets| -> AttackConfig {
        AttackConfig::Apgd(Apgd {
            norm,
            eps,
            steps: 100,
            restarts,
            loss,
            targets,
            rho: 0.75,
            large_eps: l1 && version == Version::Standard,
            revision: super::apgd::revision(norm),
        })
    };
    let fab = |restarts, targets| -> AttackConfig {
        AttackConfig::Fab(Fab {
            norm,
            eps,
            steps: 100,
            restarts,
            targets,
        })
    };
    let square = || -> AttackConfig {
        AttackConfig::Square(Square {
            norm,
            eps,
            queries: 5000,
            p_init: 0.8,
            restarts: 1,
            loss: SquareLoss::Margin,
            // AutoAttack's Square keeps the schedule of 10,000 iterations (`resc_schedule=False`).
            rescale_schedule: false,
        })
    };
    match version {
        Version::Standard => vec![
            ("apgd-ce", apgd(ApgdLoss::Ce, if l1 { 5 } else { 1 }, 9)),
            (
                "apgd-t",
                apgd(ApgdLoss::DlrTargeted, 1, if l1 { 5 } else { 9 }),
            ),
            ("fab-t", fab(1, Some(9))),
            ("square", square()),
        ],
        Version::Plus => vec![
            ("apgd-ce", apgd(ApgdLoss::Ce, 5, 9)),
            ("apgd-dlr", apgd(ApgdLoss::Dlr, 5, 9)),
            ("fab", fab(5, None)),
            ("square", square()),
            ("apgd-t", apgd(ApgdLoss::DlrTargeted, 1, 9)),
            ("fab-t", fab(1, Some(9))),
        ],
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        correct, on_robust_points, AttackClass, AttackRun, Model, Outcome, Streams, Use,
    };
    use tch::{Kind, Tensor};

    impl AttackRun for AutoAttack {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, rng: &Streams, _: Use) -> Outcome {
            autoattack(
                model,
                x,
                y,
                &members(self.norm, self.eps, self.version),
                rng,
            )
        }
    }

    /// Runs the composition `ms` (named members, in order); `broken_by[i]` is the index of the first
    /// member that broke point i (−1 where none did, or the point was misclassified clean).
    pub fn autoattack(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        ms: &[Member],
        rng: &Streams,
    ) -> Outcome {
        let n = x.size()[0];
        let mut broken_by = Tensor::full([n], -1, (Kind::Int64, x.device()));
        let mut notes = Vec::new();
        let adv = on_robust_points(
            x,
            correct(model, x, y),
            ms.iter().enumerate(),
            |(i, (name, cfg)), idx| {
                let (xs, ys) = (x.index_select(0, idx), y.index_select(0, idx));
                let started = std::time::Instant::now();
                let out = cfg.run(
                    model,
                    &xs,
                    &ys,
                    &rng.select(idx).sub(&[i as u64]),
                    Use::Evaluation,
                );
                notes.extend(out.notes.into_iter().map(|m| format!("{name}: {m}")));
                let broken = correct(model, &out.adv, &ys).logical_not();
                let hit = broken.nonzero().squeeze_dim(1);
                tracing::debug!(
                    member = name,
                    points = idx.size()[0],
                    broken = hit.size()[0],
                    secs = started.elapsed().as_secs_f64(),
                    "autoattack member done"
                );
                if hit.size()[0] > 0 {
                    broken_by = broken_by.index_fill(0, &idx.index_select(0, &hit), i as i64);
                    if cfg.class() == AttackClass::BlackBox {
                        notes.push(black_box_note(name, hit.size()[0]));
                    }
                }
                (out.adv, broken)
            },
        );
        Outcome {
            adv,
            broken_by: Some((ms.iter().map(|(n, _)| n.to_string()).collect(), broken_by)),
            notes,
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
