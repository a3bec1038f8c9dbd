//! What a stage tells the compute estimate (`plan::cost`): the images a `prepare` stage will hold,
//! the model a `train`/`import` stage provides, and the FLOPs a stage spends given those of its
//! inputs. Counts follow the attacks' [`Passes`](crate::attacks::Passes): a forward pass of F
//! FLOPs per image, a gradient pass 3F.
use crate::attacks::{Attack, AttackConfig, Passes};
use crate::data::SplitSizes;
use crate::train::spec::TrainMethod;

/// A model as the estimate sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCost {
    /// Forward FLOPs per image.
    pub forward: f64,
    pub classes: usize,
    /// Scaled from another resolution (`models::flops`).
    pub scaled: bool,
}

/// What a stage's inputs provide.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostInputs {
    pub images: Option<SplitSizes>,
    pub model: Option<ModelCost>,
}

/// The FLOPs of attacking `n` points with `attack` after their clean forward pass.
pub fn evaluation(attack: &AttackConfig, n: usize, m: &ModelCost) -> f64 {
    let passes = Passes::forwards(1) + attack.passes(m.classes);
    n as f64 * passes.flops(m.forward)
}

/// The FLOPs of one training epoch per training image: the inner attack's passes, then the
/// update's forward and backward passes (TRADES: on the clean and the adversarial batch).
pub fn training_step(method: TrainMethod, attack: Option<&AttackConfig>, m: &ModelCost) -> f64 {
    let inner = attack.map_or(Passes::default(), |a| a.passes(m.classes));
    let update = match method {
        TrainMethod::Trades => Passes::grads(2),
        _ => Passes::grads(1),
    };
    (inner + update).flops(m.forward)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::spec::AttackSpec;

    fn attack(yaml: &str) -> AttackConfig {
        let spec: AttackSpec = serde_yaml::from_str(yaml).unwrap();
        AttackConfig::resolve(&crate::attacks::kind_for("a", &spec), &spec).unwrap()
    }

    #[test]
    fn passes_count_every_iteration() {
        let m = ModelCost {
            forward: 1.0,
            classes: 10,
            scaled: false,
        };
        // PGD-10: 10 gradient passes and the final check, after the clean forward: 1 + 30 + 1.
        let pgd = attack("{type: pgd, eps: 0.03, steps: 10}");
        assert_eq!(evaluation(&pgd, 2, &m), 2.0 * 32.0);
        assert_eq!(evaluation(&attack("{type: fgsm, eps: 0.03}"), 1, &m), 4.0);
        // Square: forward passes only.
        let sq = attack("{type: square, eps: 0.03, queries: 100}");
        assert_eq!(evaluation(&sq, 1, &m), 101.0);
        // AutoAttack standard ℓ∞: APGD-CE (101 gradient passes) on every point; APGD-T (9 × 101),
        // FAB-T (9 × 100 gradient + 9 × 100 forward) and Square (5000) on the surviving half.
        let aa = attack("{type: autoattack, eps: 0.03}");
        let later = 9.0 * 101.0 * 3.0 + 9.0 * 100.0 * 4.0 + 5000.0;
        let want = 1.0 + 101.0 * 3.0 + crate::attacks::autoattack::SURVIVING * later;
        assert!((evaluation(&aa, 1, &m) - want).abs() < 1e-9);
        // Targets are capped at classes − 1.
        let few = ModelCost { classes: 3, ..m };
        let apgd_t = attack("{type: apgd-t, eps: 0.03}");
        assert_eq!(evaluation(&apgd_t, 1, &few), 1.0 + 2.0 * 101.0 * 3.0);
        // PGD-AT with 5 steps: 5 gradient passes and a check, then the update's; standard
        // training the update alone; TRADES updates on two batches.
        let inner = attack("{type: pgd, eps: 0.03, steps: 5}");
        assert_eq!(training_step(TrainMethod::PgdAt, Some(&inner), &m), 15.0 + 1.0 + 3.0);
        assert_eq!(training_step(TrainMethod::Standard, None, &m), 3.0);
        assert_eq!(training_step(TrainMethod::Trades, Some(&inner), &m), 15.0 + 1.0 + 6.0);
    }
}
