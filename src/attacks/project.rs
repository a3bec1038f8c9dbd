//! Norms and projections for perturbations of images in [0,1] (docs/attacks.md, "Reference update
//! rules: Projections"). Per-sample radii `eps` are `[N]` tensors; perturbations are `[N, …]`.
use crate::vocab::Norm;
use tch::{Kind, Tensor};

/// `[N]` radii as `[N, 1, 1, …]`, to broadcast against `like`.
pub fn col(eps: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![like.size()[0]];
    shape.extend(std::iter::repeat_n(1, like.dim() - 1));
    eps.to_kind(like.kind()).view(shape.as_slice())
}

/// Per-sample ℓp norm of `t`, `[N]`.
pub fn norm(t: &Tensor, p: Norm) -> Tensor {
    let flat = t.flatten(1, -1);
    match p {
        Norm::Linf => flat.abs().amax([1].as_slice(), false),
        Norm::L2 => flat
            .square()
            .sum_dim_intlist([1].as_slice(), false, None)
            .sqrt(),
        Norm::L1 => flat.abs().sum_dim_intlist([1].as_slice(), false, None),
    }
}

/// Per-sample ℓ0 "norm" (number of non-zero coordinates), `[N]` float.
pub fn l0(t: &Tensor) -> Tensor {
    t.flatten(1, -1)
        .ne(0.0)
        .sum_dim_intlist([1].as_slice(), false, Kind::Float)
}

/// Projection onto {‖z − x‖∞ ≤ ε} ∩ [0,1]^d: exact (the two clips commute because x ∈ [0,1]).
pub fn linf(x: &Tensor, adv: &Tensor, eps: &Tensor) -> Tensor {
    let e = col(eps, x);
    adv.max_other(&(x - &e))
        .min_other(&(x + &e))
        .clamp(0.0, 1.0)
}

/// Rescales δ into the ℓ2 ball, then clips to [0,1]: what every reference library does; feasible
/// but not the exact projection onto the intersection.
pub fn l2(x: &Tensor, adv: &Tensor, eps: &Tensor) -> Tensor {
    let delta = adv - x;
    let factor = (col(eps, x) / (col(&norm(&delta, Norm::L2), x) + 1e-12)).clamp_max(1.0);
    (x + delta * factor).clamp(0.0, 1.0)
}

/// Euclidean projection of δ onto the ℓ1 ball of radius ε (Duchi et al. 2008; sort-based), applied
/// only to samples outside the ball. Used by SLIDE, followed by a clip to the box.
pub fn l1_ball(delta: &Tensor, eps: &Tensor) -> Tensor {
    let n = delta.size()[0];
    let v = delta.flatten(1, -1).to_kind(Kind::Double);
    let d = v.size()[1];
    let e = eps.to_kind(Kind::Double).view([n, 1]);
    let a = v.abs();
    let (mu, _) = a.sort(1, true);
    let c = mu.cumsum(1, Kind::Double);
    let j = Tensor::arange_start(1, d + 1, (Kind::Double, v.device())).view([1, d]);
    // ρ = the largest j with μ_j − (c_j − ε)/j > 0 (count of those, since the condition is monotone).
    let pos = (&mu - (&c - &e) / &j).gt(0.0);
    let rho = pos
        .sum_dim_intlist([1].as_slice(), true, Kind::Int64)
        .clamp_min(1);
    let theta = ((c.gather(1, &(&rho - 1), false) - &e) / rho.to_kind(Kind::Double)).clamp_min(0.0);
    let outside = a.sum_dim_intlist([1].as_slice(), true, None).gt_tensor(&e);
    let proj = v.sign() * (&a - &theta).clamp_min(0.0);
    v.where_self(&outside.logical_not(), &proj)
        .to_kind(delta.kind())
        .view(delta.size().as_slice())
}

/// Exact Euclidean projection of `x + delta` onto {‖z − x‖₁ ≤ ε} ∩ [0,1]^d; returns the projected
/// perturbation. KKT form: `δ_i(λ) = sign(δ_i)·min(max(|δ_i| − λ, 0), c_i)` with `c_i` the room to the
/// box in the direction of `δ_i`, and λ ≥ 0 the smallest value with ‖δ(λ)‖₁ ≤ ε. ‖δ(λ)‖₁ is piecewise
/// linear and non-increasing in λ with breakpoints `|δ_i| − c_i` (slope starts) and `|δ_i|` (slope
/// ends); sorting them gives every kink's value in one cumulative sum, and λ is interpolated on the
/// segment that crosses ε. Computed in f64, so the result is feasible to ~1e-7 (AutoAttack's float32
/// version overshoots ε by up to 1e-4).
pub fn l1_box(x: &Tensor, delta: &Tensor, eps: &Tensor) -> Tensor {
    let n = delta.size()[0];
    let dev = delta.device();
    let v = delta.flatten(1, -1).to_kind(Kind::Double);
    let xf = x.flatten(1, -1).to_kind(Kind::Double);
    let e = eps.to_kind(Kind::Double).view([n, 1]);
    let a = v.abs();
    let room = super::select(&v.gt(0.0), &(-&xf + 1.0), &xf).clamp_min(0.0);
    let capped = a.min_other(&room);
    let f0 = capped.sum_dim_intlist([1].as_slice(), true, None);
    let start = (&a - &room).clamp_min(0.0);
    let points = Tensor::cat(&[&start, &a], 1);
    let ones = a.ones_like();
    let steps = Tensor::cat(&[&ones, &(-&ones)], 1);
    let (pts, order) = points.sort(1, false);
    let slope = steps.gather(1, &order, false).cumsum(1, Kind::Double);
    let m = pts.size()[1];
    // f at each sorted breakpoint: f(p_0) = f0, f(p_{k+1}) = f(p_k) − slope_k·(p_{k+1} − p_k).
    let seg = slope.narrow(1, 0, m - 1) * (pts.narrow(1, 1, m - 1) - pts.narrow(1, 0, m - 1));
    let f = Tensor::cat(&[f0.shallow_clone(), &f0 - seg.cumsum(1, Kind::Double)], 1);
    // k* = the last breakpoint with f ≥ ε; λ on the segment after it.
    let k = (f
        .ge_tensor(&e)
        .sum_dim_intlist([1].as_slice(), true, Kind::Int64)
        - 1)
    .clamp(0, m - 1);
    let pk = pts.gather(1, &k, false);
    let fk = f.gather(1, &k, false);
    let sk = slope.gather(1, &k, false);
    let lambda = (pk + (fk - &e) / sk.clamp_min(1e-300)).clamp_min(0.0);
    let lambda = super::select(
        &f0.gt_tensor(&e),
        &lambda,
        &Tensor::zeros([n, 1], (Kind::Double, dev)),
    );
    let out = v.sign() * (&a - lambda).clamp_min(0.0).min_other(&room);
    out.to_kind(delta.kind()).view(delta.size().as_slice())
}

/// The projection each norm's attacks use: exact for ℓ∞ and ℓ1 ∩ box, rescale-and-clip for ℓ2.
pub fn project(norm: Norm, x: &Tensor, adv: &Tensor, eps: &Tensor) -> Tensor {
    match norm {
        Norm::Linf => linf(x, adv, eps),
        Norm::L2 => l2(x, adv, eps),
        Norm::L1 => x + l1_box(x, &(adv - x), eps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn cpu() -> (Kind, Device) {
        (Kind::Float, Device::Cpu)
    }
    fn f(t: &Tensor) -> f64 {
        f64::try_from(t).unwrap()
    }
    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let n = t.size()[0];
        (0..n)
            .map(|i| Vec::<f64>::try_from(t.get(i).flatten(0, -1).to_kind(Kind::Double)).unwrap())
            .collect()
    }

    /// Oracle for ℓ1 ∩ box: bisection on λ in f64 over the KKT form, no sorting.
    fn oracle_l1_box(x: &[f64], d: &[f64], eps: f64) -> Vec<f64> {
        let at = |lam: f64| -> Vec<f64> {
            x.iter()
                .zip(d)
                .map(|(&xi, &di)| {
                    let v = di.signum() * (di.abs() - lam).max(0.0);
                    v.clamp(-xi, 1.0 - xi)
                })
                .collect()
        };
        let l1 = |v: &[f64]| v.iter().map(|a| a.abs()).sum::<f64>();
        if l1(&at(0.0)) <= eps {
            return at(0.0);
        }
        let (mut lo, mut hi) = (0.0, d.iter().fold(0f64, |m, a| m.max(a.abs())));
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if l1(&at(mid)) > eps {
                lo = mid
            } else {
                hi = mid
            }
        }
        at(hi)
    }

    /// Oracle for the ℓ1 ball alone: the same bisection without the box.
    fn oracle_l1_ball(d: &[f64], eps: f64) -> Vec<f64> {
        let x = vec![0.5; d.len()];
        // Scaling trick: with x = 0.5 and |d| < 0.5 the box never binds, so reuse the box oracle on d/K.
        let k = 4.0 * d.iter().fold(1f64, |m, a| m.max(a.abs()));
        let scaled: Vec<f64> = d.iter().map(|v| v / k).collect();
        oracle_l1_box(&x, &scaled, eps / k)
            .into_iter()
            .map(|v| v * k)
            .collect()
    }

    #[test]
    fn l1_box_projection_matches_the_bisection_oracle() {
        tch::manual_seed(3);
        for &(d, eps, scale) in &[
            (3072i64, 12.0, 0.5),
            (48, 2.0, 1.0),
            (300, 0.5, 0.05),
            (10, 100.0, 1.0),
        ] {
            let x = Tensor::rand([5, d], cpu());
            // Sample 2 sits on the box faces, sample 3 has a sparse δ.
            let _ = x.get(2).narrow(0, 0, d / 2).fill_(0.0);
            let _ = x.get(2).narrow(0, d / 2, d - d / 2).fill_(1.0);
            let delta = Tensor::randn([5, d], cpu()) * scale;
            let mask = Tensor::rand([d], cpu()).lt(0.1).to_kind(Kind::Float);
            let _ = delta.get(3).g_mul_(&mask);
            let eps_t = Tensor::full([5], eps, cpu());
            let p = l1_box(&x, &delta, &eps_t);
            for (i, ((xi, di), pi)) in rows(&x).iter().zip(rows(&delta)).zip(rows(&p)).enumerate() {
                let want = oracle_l1_box(xi, &di, eps);
                let err = want
                    .iter()
                    .zip(&pi)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f64, f64::max);
                assert!(err < 1e-5, "d={d} sample {i}: max |Δ| {err}");
                let n1: f64 = pi.iter().map(|v| v.abs()).sum();
                assert!(n1 <= eps * (1.0 + 2e-5), "‖δ‖₁ {n1} > ε {eps}");
                for (xv, pv) in xi.iter().zip(&pi) {
                    assert!(xv + pv >= -1e-6 && xv + pv <= 1.0 + 1e-6);
                }
            }
            // Idempotent, and nearer to the target than random feasible points.
            let pp = l1_box(&x, &p, &eps_t);
            assert!(f(&(&pp - &p).abs().max()) < 1e-5);
            let z = l1_box(&x, &(Tensor::randn([5, d], cpu()) * scale), &eps_t);
            let dp = (&delta - &p)
                .square()
                .sum_dim_intlist([1].as_slice(), false, None);
            let dz = (&delta - &z)
                .square()
                .sum_dim_intlist([1].as_slice(), false, None);
            assert!(bool::try_from(dp.le_tensor(&(dz + 1e-4)).all()).unwrap());
        }
    }

    #[test]
    fn l1_ball_projection_matches_the_oracle_and_leaves_inside_points() {
        tch::manual_seed(4);
        let delta = Tensor::randn([4, 200], cpu());
        let eps = Tensor::from_slice(&[5.0f32, 20.0, 1000.0, 0.1]);
        let p = l1_ball(&delta, &eps);
        for (i, (di, pi)) in rows(&delta).iter().zip(rows(&p)).enumerate() {
            let e = [5.0, 20.0, 1000.0, 0.1][i];
            let want = oracle_l1_ball(di, e);
            let err = want
                .iter()
                .zip(pi)
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max);
            assert!(err < 1e-5, "sample {i}: {err}");
        }
        // Sample 2 is inside (‖δ‖₁ ≈ 160 < 1000): untouched.
        assert!(p.get(2).equal(&delta.get(2)));
    }

    #[test]
    fn linf_projection_is_feasible_idempotent_and_nearest() {
        tch::manual_seed(0);
        let x = Tensor::rand([4, 3, 5, 5], cpu());
        let eps = Tensor::from_slice(&[0.1f32, 0.05, 0.2, 0.0]);
        let v = &x + Tensor::randn([4, 3, 5, 5], cpu()) * 0.3;
        let p = linf(&x, &v, &eps);
        let dist = norm(&(&p - &x), Norm::Linf);
        assert!(bool::try_from(dist.le_tensor(&(&eps + 1e-6)).all()).unwrap());
        assert!(f(&p.max()) <= 1.0 && f(&p.min()) >= 0.0);
        assert!(p.equal(&linf(&x, &p, &eps)));
        // Coordinate-wise clipping is the nearest point: any other feasible point is farther.
        for _ in 0..5 {
            let z = linf(&x, &(&x + Tensor::randn_like(&x) * 0.3), &eps);
            let d_p = (&v - &p)
                .square()
                .sum_dim_intlist([1, 2, 3].as_slice(), false, None);
            let d_z = (&v - &z)
                .square()
                .sum_dim_intlist([1, 2, 3].as_slice(), false, None);
            assert!(bool::try_from(d_p.le_tensor(&d_z).all()).unwrap());
        }
    }

    #[test]
    fn l2_projection_rescales_only_outside_the_ball() {
        let x = Tensor::full([2, 1, 2, 2], 0.5, cpu());
        // sample 0: ‖δ‖₂ = 0.4 (inside ε = 0.5); sample 1: ‖δ‖₂ = 0.8 (outside).
        let d = Tensor::from_slice(&[0.2f32, 0.2, 0.2, 0.2, 0.4, 0.4, 0.4, 0.4]).view([2, 1, 2, 2]);
        let p = l2(&x, &(&x + &d), &Tensor::from_slice(&[0.5f32, 0.5]));
        let n = norm(&(&p - &x), Norm::L2);
        assert!((f(&n.get(0)) - 0.4).abs() < 1e-6);
        assert!((f(&n.get(1)) - 0.5).abs() < 1e-6);
        // Without the box binding, rescaling is the exact ℓ2-ball projection: brute-force check
        // against random points of the ball.
        tch::manual_seed(1);
        let v = Tensor::randn([1, 1, 2, 2], cpu()) * 0.2;
        let xx = Tensor::full([1, 1, 2, 2], 0.5, cpu());
        let e = Tensor::from_slice(&[0.1f32]);
        let p = l2(&xx, &(&xx + &v), &e) - &xx;
        for _ in 0..200 {
            let z = Tensor::randn([1, 1, 2, 2], cpu());
            let z = &z / norm(&z, Norm::L2) * 0.1 * f(&Tensor::rand([1], cpu()));
            assert!(
                f(&(&v - &p).square().sum(Kind::Double))
                    <= f(&(&v - &z).square().sum(Kind::Double)) + 1e-9
            );
        }
    }
}
