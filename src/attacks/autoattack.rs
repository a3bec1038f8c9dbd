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
//! The members are built by `config::autoattack_members`; this file only runs a composition.
use super::{correct, on_robust_points, Attack, AttackClass, Model, Outcome, Use};
use tch::{Kind, Tensor};

/// Runs the composition `ms` (named members, in order); `broken_by[i]` is the index of the first
/// member that broke point i (−1 where none did, or the point was misclassified clean).
pub fn autoattack(
    model: &dyn Model,
    x: &Tensor,
    y: &Tensor,
    ms: &[(&'static str, impl Attack)],
    seed: u64,
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
            let out = cfg.run(
                model,
                &xs,
                &ys,
                crate::rng::derive(seed, &[i as u64]),
                Use::Evaluation,
            );
            notes.extend(out.notes.into_iter().map(|m| format!("{name}: {m}")));
            let broken = correct(model, &out.adv, &ys).logical_not();
            let hit = broken.nonzero().squeeze_dim(1);
            if hit.size()[0] > 0 {
                broken_by = broken_by.index_fill(0, &idx.index_select(0, &hit), i as i64);
                if cfg.class() == AttackClass::BlackBox {
                    notes.push(format!(
                    "{name} broke {} points the gradient-based members before it left robust: a sign of gradient masking (Croce & Hein 2020, §5)",
                    hit.size()[0]
                ));
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
