//! TRADES (Zhang et al. 2019, `trades.py::trades_loss`): the inner maximisation of
//! KL(f(x) ‖ f(x′)) from x + 0.001·N(0, I), and the training loss
//! CE(f(x), y) + β/N · Σ KL(f(x) ‖ f(x′)).
//!
//! Deviations: the KL ascent takes our PGD step for the configured norm (the reference has ℓ∞ signed
//! steps, which ours equal, and an SGD-on-δ variant for ℓ2); the training loss computes f(x) once
//! (the reference runs the clean batch through the model twice, which updates batch-norm running
//! statistics twice with the same batch; the gradients are the same).
#![cfg(feature = "torch")]
use crate::attacks::{
    loss_grad, Streams,
    pgd::{self, PgdParams},
    AttackConfig, Model, Reduce,
};
use tch::{Kind, Tensor};

/// Per-sample KL(p ‖ softmax(logits)) = Σ_k p_k (log p_k − log q_k), with 0·log 0 = 0
/// (`F.kl_div(log_softmax(logits), p, reduction='none').sum(1)`).
pub fn kl(logits: &Tensor, p: &Tensor) -> Tensor {
    let log_q = logits.log_softmax(1, Kind::Float);
    (p * (p.clamp_min(1e-30).log() - log_q)).sum_dim_intlist([1i64].as_slice(), false, None)
}

/// The adversarial points of TRADES' inner loop for the PGD configuration `attack` (norm, ε, steps,
/// step size; its random start, restarts and loss do not apply).
pub fn adversarial(model: &dyn Model, x: &Tensor, attack: &AttackConfig, seed: u64) -> Tensor {
    let p = PgdParams {
        random_start: false,
        restarts: 1,
        ..attack
            .pgd_params(false)
            .expect("TRADES' inner attack is a PGD configuration (checked when the spec is read)")
    };
    let e = Tensor::full([x.size()[0]], attack.eps(), (Kind::Float, x.device()));
    let p_nat = tch::no_grad(|| model.logits(x).softmax(1, Kind::Float));
    let mut adv = x + Streams::Batch(seed).draw(&[0], |d| d.normal_like(x)) * 0.001;
    for _ in 0..p.steps {
        let g = loss_grad(model, &adv, Reduce::Sum, |z| kl(z, &p_nat)).2;
        adv = tch::no_grad(|| pgd::step(x, &adv, &g, &e, &p));
    }
    adv.clamp(0.0, 1.0)
}

/// The training loss from clean and adversarial logits (both with gradients):
/// CE(clean, y) (label-smoothed by `smoothing`) + β · mean KL(softmax(clean) ‖ softmax(adv)).
pub fn loss(clean: &Tensor, adv: &Tensor, y: &Tensor, beta: f64, smoothing: f64) -> Tensor {
    let natural = super::cross_entropy(clean, y, smoothing);
    let robust = kl(adv, &clean.softmax(1, Kind::Float)).mean(Kind::Float);
    natural + robust * beta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Norm;

    #[test]
    fn kl_matches_a_hand_computed_value_and_is_zero_on_equal_inputs() {
        let z = Tensor::from_slice(&[1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0]).view([2, 3]);
        let p = z.softmax(1, Kind::Float);
        assert!(f64::try_from(kl(&z, &p).abs().max()).unwrap() < 1e-6);
        // KL([0.5, 0.5, 0] ‖ softmax([0, 0, 0])) = 0.5·ln(1.5)·2 = ln 1.5.
        let p = Tensor::from_slice(&[0.5f32, 0.5, 0.0]).view([1, 3]);
        let got = f64::try_from(kl(
            &Tensor::zeros([1, 3], (Kind::Float, tch::Device::Cpu)),
            &p,
        ))
        .unwrap();
        assert!((got - 1.5f64.ln()).abs() < 1e-6, "{got}");
    }

    #[test]
    fn inner_maximisation_raises_the_kl_and_stays_feasible() {
        let w = crate::torch::with_seed(3, || {
            Tensor::randn([12, 4], (Kind::Float, tch::Device::Cpu))
        });
        let model = move |x: &Tensor| x.flatten(1, -1).matmul(&w);
        let x = crate::torch::with_seed(4, || {
            Tensor::rand([8, 3, 2, 2], (Kind::Float, tch::Device::Cpu))
        });
        let p_nat = model(&x).softmax(1, Kind::Float);
        for (norm, eps) in [(Norm::Linf, 0.05), (Norm::L2, 0.3)] {
            let cfg = AttackConfig::Pgd(pgd::Pgd {
                norm,
                eps,
                steps: 10,
                step_size: eps / 4.0,
                random_start: true,
                restarts: 1,
                loss: pgd::PgdLoss::Ce,
                l1_step: None,
            });
            let adv = adversarial(&model, &x, &cfg, 1);
            let d = crate::attacks::project::norm(&(&adv - &x), norm);
            assert!(
                f64::try_from(d.max()).unwrap() <= eps + 1e-6,
                "{norm}: outside the ball"
            );
            assert!(
                f64::try_from(adv.min()).unwrap() >= 0.0
                    && f64::try_from(adv.max()).unwrap() <= 1.0
            );
            let before = f64::try_from(kl(&model(&(&x + 0.0)), &p_nat).sum(Kind::Float)).unwrap();
            let after = f64::try_from(kl(&model(&adv), &p_nat).sum(Kind::Float)).unwrap();
            assert!(after > before + 1e-3, "{norm}: KL {before} → {after}");
        }
    }
}
