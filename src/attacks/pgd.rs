//! Projected gradient descent (Madry et al. 2018) for ℓ∞ and ℓ2, following the reference update
//! rules (../shared/reference-attacks.md §1.2–1.3): signed (ℓ∞) or ℓ2-normalised steps of size α,
//! projection onto the ε-ball, then the [0,1] box; the last iterate is returned.
use crate::models::Network;
use crate::spec::Norm;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct PgdParams {
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    pub random_start: bool,
}

/// Per-sample ℓ2 norm, shaped to broadcast over NCHW.
fn l2_norm(t: &Tensor) -> Tensor {
    let n = t.size()[0];
    t.reshape([n, -1])
        .norm_scalaropt_dim(2, [1], false)
        .reshape([n, 1, 1, 1])
}

/// Projection onto {‖z − x‖∞ ≤ ε} ∩ [0,1]^d (exact: the two clips commute because x ∈ [0,1]).
pub fn project_linf(x: &Tensor, adv: &Tensor, eps: f64) -> Tensor {
    adv.max_other(&(x - eps))
        .min_other(&(x + eps))
        .clamp(0.0, 1.0)
}

/// Rescales δ into the ℓ2 ball, then clips to [0,1] — what every reference library does; feasible
/// but not the exact projection onto the intersection.
pub fn project_l2(x: &Tensor, adv: &Tensor, eps: f64) -> Tensor {
    let delta = adv - x;
    let factor = (eps / (l2_norm(&delta) + 1e-12)).clamp_max(1.0);
    (x + delta * factor).clamp(0.0, 1.0)
}

/// Random start: uniform in the ℓ∞ ball; for ℓ2, a random direction scaled by r·ε with r ~ U(0,1)
/// (torchattacks' PGDL2 init).
fn random_start(x: &Tensor, norm: Norm, eps: f64, seed: u64) -> Tensor {
    let opts = (Kind::Float, x.device());
    crate::rng::with_seed(seed, || match norm {
        Norm::Linf => (x + (Tensor::rand(x.size(), opts) * 2.0 - 1.0) * eps).clamp(0.0, 1.0),
        Norm::L2 => {
            let z = Tensor::randn(x.size(), opts);
            let r = Tensor::rand([x.size()[0], 1, 1, 1], opts);
            (x + &z / (l2_norm(&z) + 1e-12) * r * eps).clamp(0.0, 1.0)
        }
    })
}

pub fn pgd(
    model: &Network,
    x: &Tensor,
    y: &Tensor,
    p: &PgdParams,
    seed: u64,
    train_mode: bool,
) -> Tensor {
    let mut adv = if p.random_start && p.eps > 0.0 {
        random_start(x, p.norm, p.eps, seed)
    } else {
        x.shallow_clone()
    };
    for _ in 0..p.steps {
        let g = super::input_grad(model, &adv, y, train_mode);
        adv = tch::no_grad(|| match p.norm {
            Norm::Linf => project_linf(x, &(&adv + g.sign() * p.step_size), p.eps),
            Norm::L2 => project_l2(x, &(&adv + &g / (l2_norm(&g) + 1e-10) * p.step_size), p.eps),
        });
    }
    adv
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn max(t: Tensor) -> f64 {
        f64::try_from(t.max()).unwrap()
    }

    #[test]
    fn linf_projection_is_feasible_idempotent_and_nearest() {
        tch::manual_seed(0);
        let x = Tensor::rand([4, 3, 5, 5], (Kind::Float, Device::Cpu));
        let v = &x + Tensor::randn([4, 3, 5, 5], (Kind::Float, Device::Cpu)) * 0.3;
        let p = project_linf(&x, &v, 0.1);
        assert!(max((&p - &x).abs()) <= 0.1 + 1e-6);
        assert!(max(p.shallow_clone()) <= 1.0 && f64::try_from(p.min()).unwrap() >= 0.0);
        assert!(p.equal(&project_linf(&x, &p, 0.1)));
        // Coordinate-wise clipping is the nearest point: any other feasible point is farther.
        let z = project_linf(&x, &(&x + Tensor::rand_like(&x) * 0.2 - 0.1), 0.1);
        let d_p = f64::try_from((&v - &p).square().sum(Kind::Double)).unwrap();
        let d_z = f64::try_from((&v - &z).square().sum(Kind::Double)).unwrap();
        assert!(d_p <= d_z);
    }

    #[test]
    fn l2_projection_rescales_only_outside_the_ball() {
        let x = Tensor::full([2, 1, 2, 2], 0.5, (Kind::Float, Device::Cpu));
        // sample 0: δ with ‖δ‖₂ = 0.4 (inside ε = 0.5); sample 1: ‖δ‖₂ = 0.8 (outside).
        let d = Tensor::from_slice(&[0.2f32, 0.2, 0.2, 0.2, 0.4, 0.4, 0.4, 0.4]).view([2, 1, 2, 2]);
        let p = project_l2(&x, &(&x + &d), 0.5);
        let n = l2_norm(&(&p - &x)).flatten(0, -1);
        assert!((f64::try_from(n.get(0)).unwrap() - 0.4).abs() < 1e-6);
        assert!((f64::try_from(n.get(1)).unwrap() - 0.5).abs() < 1e-6);
    }
}
