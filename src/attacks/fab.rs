//! FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020; ℓ1 from "Mind the box", 2021):
//! a port of fra31 AutoAttack's PyTorch path — `fab_base.FABAttack.attack_single_run` / `perturb`,
//! `fab_pt.FABAttack_PT.get_diff_logits_grads_batch{,_targeted}` and
//! `fab_projections.projection_{linf,l2,l1}` (docs/attacks.md, "Reference update rules: FAB").
//!
//! FAB looks for the *smallest* adversarial perturbation: each step linearises the decision
//! boundary between the true class and one other class (the closest in the dual norm, or the
//! target), projects both the current iterate and the clean point onto that hyperplane ∩ [0,1]^d,
//! moves to a convex combination of the two projections with overshoot η, and after each success
//! steps back towards the clean point by β. AutoAttack uses it as FAB-T (`standard`: 9 target
//! classes, 1 restart, 100 iterations) and as untargeted FAB (`plus`: 5 restarts); ε only enters
//! through the random-start radius and the final check ‖δ‖ ≤ ε.
//!
//! Deviations, none of which changes an update rule:
//! - ε is per sample (`[N]`) instead of one scalar.
//! - Random starts draw from our seeded streams (`draw(seed, [0, target rank, restart])`) instead of
//!   the global generator seeded once per `perturb`.
//! - `attack_single_run` re-predicts the clean points it is given and skips misclassified ones;
//!   [`fab`] only passes points it has just found correctly classified, so we skip that re-check.
//! - More target classes than `classes − 1` are capped (the reference raises an `IndexError`).
//! - The projections compute every row and select with masks where the reference boolean-indexes
//!   subsets of rows; rows are independent, so the results are the same (the tests compare with
//!   outputs of the reference on fixed inputs).
use super::Attack;
use super::AttackType;
use super::{Fields, Name};
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy)]
pub struct FabParams {
    pub norm: Norm,
    /// Iterations per run (`n_iter`).
    pub steps: usize,
    /// Runs per target class (FAB-T) or in all (FAB); runs after the first start at random points.
    pub restarts: usize,
    /// None: untargeted
    pub targets: Option<usize>,
    /// Largest weight of the clean point's projection in the convex combination.
    pub alpha_max: f64,
    /// Overshoot factor applied to both projections.
    pub eta: f64,
    /// Backward step towards the clean point after a success.
    pub beta: f64,
}

/// A resolved FAB entry (`fab`, `fab-t`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fab {
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    pub restarts: usize,
    /// `None`: untargeted FAB; `Some(k)`: FAB-T over the top k classes after the true one.
    pub targets: Option<usize>,
}

impl Fab {
    /// The run parameters, with AutoAttack's α_max, η and β.
    pub fn params(&self) -> FabParams {
        FabParams {
            norm: self.norm,
            steps: self.steps,
            restarts: self.restarts,
            targets: self.targets,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
        }
    }
}

impl AttackType for Fab {
    const NAMES: &'static [Name] = &[
        Name::new(
            "fab",
            "fast adaptive boundary attack, untargeted, ℓ∞/ℓ2/ℓ1: minimum-norm, broken if ‖δ‖ ≤ ε (Croce & Hein 2020)",
            &["steps", "restarts"],
        ),
        Name::new(
            "fab-t",
            "targeted FAB over the top `targets` classes",
            &["steps", "restarts", "targets"],
        ),
    ];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        Ok(Fab {
            norm: f.norm(),
            eps: f.eps,
            steps: f.count("steps", 100)?,
            restarts: f.count("restarts", 1)?,
            targets: if f.name == "fab-t" {
                Some(f.count("targets", 9)?)
            } else {
                None
            },
        })
    }
}

impl Attack for Fab {
    radius_from_fields!();
    fn passes(&self, classes: usize) -> super::Passes {
        // Per restart (and per target class): `steps` iterations, each a linearisation. The
        // targeted one differentiates one logit difference; the untargeted one the Jacobian of
        // every class's logit (one backward pass per class, as the reference's).
        let per_step = match self.targets {
            Some(_) => 1,
            None => classes,
        };
        let runs = self.restarts * self.targets.map_or(1, |t| t.min(classes.saturating_sub(1)));
        super::Passes::grads(self.steps * per_step * runs)
            + super::Passes::forwards(self.steps * runs)
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        loss_grad, on_robust_points, outcome,
        project::{self, col},
        radii, ranked_class, AttackRun, Model, Outcome, Reduce, Streams, Use,
    };
    use tch::{Kind, Tensor};

    /// Tag of the random-start draws.
    const TAG_START: u64 = 0;

    /// Minimum-norm adversarials found by FAB; a point counts (is returned perturbed) only where
    /// ‖δ‖_p ≤ eps; elsewhere x itself is returned.
    ///
    /// `FABAttack.perturb`: the points still robust (correctly classified, not yet broken) go through
    /// one `attack_single_run` per restart (untargeted) or per target class and restart (FAB-T, the
    /// target of rank r = 2, 3, … being the r-th largest clean logit); a point is broken when the run's
    /// result is misclassified with ‖δ‖ ≤ ε, and that result is kept.
    pub fn fab(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        eps: &Tensor,
        p: &FabParams,
        rng: &Streams,
    ) -> Tensor {
        let n = x.size()[0];
        if n == 0 {
            return x.shallow_clone();
        }
        // One clean forward pass gives the points to attack and the class count.
        let clean = tch::no_grad(|| model.logits(x));
        let robust = clean.argmax(1, false).eq_tensor(y);
        let rounds: Vec<(Option<i64>, usize)> = match p.targets {
            None => (0..p.restarts).map(|r| (None, r)).collect(),
            Some(t) => {
                let classes = clean.size()[1];
                let t = t.min((classes - 1).max(0) as usize) as i64;
                (2..t + 2)
                    .flat_map(|rank| (0..p.restarts).map(move |r| (Some(rank), r)))
                    .collect()
            }
        };
        on_robust_points(x, robust, rounds, |(rank, restart), idx| {
            let (xs, ys, es) = (
                x.index_select(0, idx),
                y.index_select(0, idx),
                eps.index_select(0, idx),
            );
            let parts = [TAG_START, rank.unwrap_or(0) as u64, restart as u64];
            let target = rank.map(|r| ranked_class(&clean.index_select(0, idx), r));
            let cand = single_run(
                model,
                &xs,
                &ys,
                &es,
                target.as_ref(),
                restart > 0,
                p,
                &rng.select(idx),
                &parts,
            );
            let res = project::norm(&(&xs - &cand), p.norm);
            let still = crate::attacks::correct(model, &cand, &ys).logical_or(&res.gt_tensor(&es));
            (cand, still.logical_not())
        })
    }

    /// `[N]` bool mask shaped `[N, 1, 1, …]` to select rows of `like`.
    fn row_mask(mask: &Tensor, like: &Tensor) -> Tensor {
        let mut shape = vec![like.size()[0]];
        shape.extend(std::iter::repeat_n(1, like.dim() - 1));
        mask.view(shape.as_slice())
    }

    /// `attack_single_run` on correctly classified points: `steps` FAB iterations from `x` (or from a
    /// random point at radius ε/2 when `rand_start`), towards `target` (FAB-T) or the nearest boundary;
    /// returns, per point, the adversarial iterate of smallest norm, or `x` where none was adversarial.
    #[allow(clippy::too_many_arguments)]
    fn single_run(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        eps: &Tensor,
        target: Option<&Tensor>,
        rand_start: bool,
        p: &FabParams,
        rng: &Streams,
        parts: &[u64],
    ) -> Tensor {
        let bs = x.size()[0];
        let norm = p.norm;
        let x0 = x.reshape([bs, -1]);
        let mut x1 = if rand_start {
            random_start(x, eps, norm, rng, parts)
        } else {
            x.shallow_clone()
        };
        let mut adv = x.shallow_clone();
        let mut res2 = Tensor::full([bs], 1e10, (x.kind(), x.device()));
        for _ in 0..p.steps {
            let (df, dg) = match target {
                Some(t) => diff_logits_grads_targeted(model, &x1, y, t),
                None => diff_logits_grads(model, &x1, y),
            };
            let (next, next_adv, next_res) = tch::no_grad(|| {
                let dual = match norm {
                    Norm::Linf => dg.abs().sum_dim_intlist([2i64].as_slice(), false, None),
                    Norm::L2 => dg
                        .square()
                        .sum_dim_intlist([2i64].as_slice(), false, None)
                        .sqrt(),
                    Norm::L1 => dg.abs().amax([2i64], false),
                };
                // Distance to each linearised boundary; the true class has df = 1e10 and dg = 0.
                let dist1 = df.abs() / (dual + 1e-12);
                let ind = dist1.argmin(1, false);
                let d = dg.size()[2];
                let w = dg
                    .gather(1, &ind.view([bs, 1, 1]).expand([bs, 1, d], false), false)
                    .squeeze_dim(1);
                let x1f = x1.reshape([bs, -1]);
                let b = -df.gather(1, &ind.unsqueeze(1), false).squeeze_dim(1)
                    + (&w * &x1f).sum_dim_intlist([1i64].as_slice(), false, None);
                let d3 = projection(
                    norm,
                    &Tensor::cat(&[&x1f, &x0], 0),
                    &Tensor::cat(&[&w, &w], 0),
                    &Tensor::cat(&[&b, &b], 0),
                );
                let d1 = d3.narrow(0, 0, bs).reshape(x.size().as_slice());
                let d2 = d3.narrow(0, bs, bs).reshape(x.size().as_slice());
                let a0 = project::norm(&d3, norm).clamp_min(1e-8);
                let (a1, a2) = (a0.narrow(0, 0, bs), a0.narrow(0, bs, bs));
                let alpha = col(
                    &(&a1 / (&a1 + &a2)).clamp_min(0.0).clamp_max(p.alpha_max),
                    x,
                );
                let x1n = ((&x1 + &d1 * p.eta) * (-&alpha + 1.0) + (x + &d2 * p.eta) * &alpha)
                    .clamp(0.0, 1.0);
                let is_adv = model.logits(&x1n).argmax(1, false).ne_tensor(y);
                let t = project::norm(&(&x1n - x), norm);
                let better = is_adv.logical_and(&t.lt_tensor(&res2));
                let adv = x1n.where_self(&row_mask(&better, x), &adv);
                let res = t.where_self(&better, &res2);
                let back = x + (&x1n - x) * p.beta;
                (back.where_self(&row_mask(&is_adv, x), &x1n), adv, res)
            });
            x1 = next;
            adv = next_adv;
            res2 = next_res;
        }
        adv
    }

    /// The reference's `use_rand_start` point: `x + min(res2, ε)·t/‖t‖·½` clipped to the box, with t
    /// uniform in [−1,1] (ℓ∞) or Gaussian (ℓ2, ℓ1); res2 is still 1e10 there, so the radius is ε/2.
    fn random_start(x: &Tensor, eps: &Tensor, norm: Norm, rng: &Streams, parts: &[u64]) -> Tensor {
        let t = rng.draw(parts, |d| match norm {
            Norm::Linf => d.uniform_like(x) * 2.0 - 1.0,
            Norm::L2 | Norm::L1 => d.normal_like(x),
        });
        (x + col(eps, x) * &t / col(&project::norm(&t, norm), x) * 0.5).clamp(0.0, 1.0)
    }

    /// `get_diff_logits_grads_batch`: `df[:, k] = z_k − z_y` (1e10 at k = y) and
    /// `dg[:, k] = ∇z_k − ∇z_y`, flattened to `[N, K, D]`; one backward pass per class, as the
    /// reference (the untargeted FAB's cost grows with the number of classes).
    fn diff_logits_grads(model: &dyn Model, x: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
        let n = x.size()[0];
        let xg = x.detach().set_requires_grad(true);
        let logits = model.logits(&xg);
        let k = logits.size()[1];
        let grads: Vec<Tensor> = (0..k)
            .map(|c| {
                let s = logits.select(1, c).sum(Kind::Float);
                Tensor::run_backward(&[&s], &[&xg], true, false)
                    .pop()
                    .expect("one input, one gradient")
            })
            .collect();
        let g = Tensor::stack(&grads, 1).reshape([n, k, -1]);
        let d = g.size()[2];
        let z = logits.detach();
        let yi = y.unsqueeze(1);
        let df =
            (&z - z.gather(1, &yi, false)).masked_fill(&y.one_hot(k).to_kind(Kind::Bool), 1e10);
        let gy = g.gather(1, &yi.unsqueeze(2).expand([n, 1, d], false), false);
        (df, &g - gy)
    }

    /// `get_diff_logits_grads_batch_targeted`: `df = z_t − z_y` and its gradient, as `[N, 1]` and
    /// `[N, 1, D]`.
    fn diff_logits_grads_targeted(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        t: &Tensor,
    ) -> (Tensor, Tensor) {
        let n = x.size()[0];
        let (diffy, _, g) = loss_grad(model, x, Reduce::Sum, |z| {
            let pick = |c: &Tensor| z.gather(1, &c.unsqueeze(1), false).squeeze_dim(1);
            -(pick(y) - pick(t))
        });
        (diffy.unsqueeze(1), g.reshape([n, 1, -1]))
    }

    fn projection(norm: Norm, points: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        match norm {
            Norm::Linf => projection_linf(points, w, b),
            Norm::L2 => projection_l2(points, w, b),
            Norm::L1 => projection_l1(points, w, b),
        }
    }

    /// Row sums of `[M, D]`, `[M]`.
    fn rowsum(t: &Tensor) -> Tensor {
        t.sum_dim_intlist([1i64].as_slice(), false, None)
    }

    /// Halvings of the reference's bisection over sorted positions: `⌈log2 d⌉` of them.
    fn halvings(d: i64) -> usize {
        (d as f64).log2().ceil() as usize
    }

    /// The bisection the three projections share: `n` halvings of the float index interval
    /// `[lb, ub]` (per row), moving `lb` up to the midpoint where `above(midpoint)` holds and `ub` down
    /// elsewhere; returns `lb`.
    fn bisect(
        m: i64,
        ub: f64,
        n: usize,
        dev: tch::Device,
        above: impl Fn(&Tensor) -> Tensor,
    ) -> Tensor {
        let mut lb = Tensor::zeros([m], (Kind::Float, dev));
        let mut ub = Tensor::full([m], ub, (Kind::Float, dev));
        for _ in 0..n {
            let mid = ((&lb + &ub) / 2.0).floor();
            let c = above(&mid.to_kind(Kind::Int64).unsqueeze(1));
            lb = mid.where_self(&c, &lb);
            ub = ub.where_self(&c, &mid);
        }
        lb
    }

    /// `fab_projections.projection_linf`: per row, the step `d` of least ℓ∞ norm with
    /// `w·(points + d) = b` and `points + d ∈ [0,1]^D` (batched `[M, D]`, `w` `[M, D]`, `b` `[M]`).
    /// After flipping the signs so that w·points ≥ b, the solution is `d(λ)_i = −sign(w_i)·min(λ, room_i)`
    /// for the smallest λ reaching the plane, found by sorting the box rooms; where the plane cannot
    /// be reached inside the box, every coordinate moves to its face (`d = a − points`).
    /// Coordinates with `w_i = 0` do not move.
    pub(crate) fn projection_linf(points: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        let t = points;
        let (m, dd) = (t.size()[0], t.size()[1]);
        let k = t.kind();
        let (c, w) = signed_gap(t, w, b);
        let a = w.lt(0.0).to_kind(k);
        let nz = w.ne(0.0).to_kind(k);
        let d = (&a - t) * &nz;
        let p = &a - t * (&a * 2.0 - 1.0);
        let indp = p.argsort(1, false);
        let b = -c;
        let b0 = rowsum(&(&w * &d));
        let indp2 = indp.flip([1i64]);
        let ws = w.gather(1, &indp2, false);
        let bs2 = -&ws * d.gather(1, &indp2, false);
        let s = ws.abs().cumsum(1, k);
        let sb = bs2.cumsum(1, k) + b0.unsqueeze(1);
        let last = |v: &Tensor| v.select(1, dd - 1);
        let b2 = last(&sb) - last(&s) * p.gather(1, &indp.narrow(1, 0, 1), false).squeeze_dim(1);
        let c_l = (&b - &b2).gt(0.0);
        let c2 = (&b - &b0).gt(0.0).logical_and(&c_l.logical_not());
        let lb = bisect(m, (dd - 1) as f64, halvings(dd), t.device(), |i| {
            let cur = indp.gather(1, &((dd - 1) - i), false);
            let b2 = (sb.gather(1, i, false) - s.gather(1, i, false) * p.gather(1, &cur, false))
                .squeeze_dim(1);
            (&b - b2).gt(0.0)
        });
        let lb = lb.to_kind(Kind::Int64).unsqueeze(1);
        let lmbd_l = ((&b - last(&sb)) / (-last(&s))).clamp_min(0.0).unsqueeze(1);
        let d_l = (&a * 2.0 - 1.0) * lmbd_l;
        let lmbd = ((&b - sb.gather(1, &lb, false).squeeze_dim(1))
            / (-s.gather(1, &lb, false).squeeze_dim(1)))
        .clamp_min(0.0)
        .unsqueeze(1);
        let d_2 = lmbd.min_other(&d) * &a + (-&lmbd).max_other(&d) * (-&a + 1.0);
        let d = d_l.where_self(&c_l.unsqueeze(1), &d);
        let d = d_2.where_self(&c2.unsqueeze(1), &d);
        d * nz
    }

    /// The gap `c = w·t − b` of each row with the plane oriented so that `c ≥ 0` (`w` and `c` flipped
    /// where the point lies on the negative side), as every projection starts.
    fn signed_gap(t: &Tensor, w: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
        let c = rowsum(&(w * t)) - b;
        let sign = c.ge(0.0).to_kind(t.kind()) * 2.0 - 1.0;
        (&c * &sign, w * sign.unsqueeze(1))
    }

    /// `fab_projections.projection_l2`: per row, the step of least ℓ2 norm onto
    /// `{z : w·z = b} ∩ [0,1]^D`. The solution is `d(μ)_i = clip(−μ w_i)` to the box for the μ reaching
    /// the plane; the breakpoints where coordinates hit the box are sorted and the segment holding μ
    /// found by bisection. Unreachable planes: every coordinate moves to its face. Coordinates with
    /// `|w_i| ≤ 1e-8` do not move.
    pub(crate) fn projection_l2(points: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        let t = points;
        let (m, dd) = (t.size()[0], t.size()[1]);
        let k = t.kind();
        let (c, w) = signed_gap(t, w, b);
        let r = (t / &w).max_other(&((t - 1.0) / &w)).clamp(-1e12, 1e12);
        let r = r.masked_fill(&w.abs().lt(1e-8), 1e12);
        let r = (-&r).where_self(&r.eq(-1e12), &r);
        let (rs, indr) = r.sort(1, false);
        let rs2 = Tensor::cat(
            &[
                rs.narrow(1, 1, dd - 1),
                Tensor::zeros([m, 1], (k, t.device())),
            ],
            1,
        );
        let rs = rs.masked_fill(&rs.eq(1e12), 0.0);
        let rs2 = rs2.masked_fill(&rs2.eq(1e12), 0.0);
        let w3s = w.square().gather(1, &indr, false);
        let w5 = w3s.sum_dim_intlist([1i64].as_slice(), true, None);
        let ws = &w5 - w3s.cumsum(1, k);
        let big = w.abs().gt(1e-8).to_kind(k);
        let d = -(&r * &w) * &big;
        let s0 = -&w5 * rs.narrow(1, 0, 1);
        let s = Tensor::cat(
            &[s0.shallow_clone(), ((&rs - &rs2) * &ws).cumsum(1, k) + &s0],
            1,
        );
        let c4 = (s.select(1, 0) + &c).lt(0.0);
        let c3 = (rowsum(&(&d * &w)) + &c).gt(0.0);
        let c2 = c4.logical_or(&c3).logical_not();
        let lb = bisect(m, (dd - 1) as f64, halvings(dd), t.device(), |i| {
            (s.gather(1, i, false).squeeze_dim(1) + &c).gt(0.0)
        });
        let lb = lb.to_kind(Kind::Int64).unsqueeze(1);
        let d_4 = -(&c / w5.squeeze_dim(1)).unsqueeze(1) * &w;
        let at = |v: &Tensor| v.gather(1, &lb, false).squeeze_dim(1);
        let ws_lb = at(&ws);
        let alpha = ((at(&s) + &c) / &ws_lb + at(&rs))
            .masked_fill(&ws_lb.eq(0.0), 0.0)
            .unsqueeze(1);
        let c5 = alpha.gt_tensor(&r).to_kind(k);
        let d_2 = &d * &c5 - &alpha * &w * (-&c5 + 1.0);
        let d = d_4.where_self(&c4.unsqueeze(1), &d);
        let d = d_2.where_self(&c2.unsqueeze(1), &d);
        d * big
    }

    /// `fab_projections.projection_l1`: per row, the step of least ℓ1 norm onto
    /// `{z : w·z = b} ∩ [0,1]^D` — a fractional knapsack: coordinates in order of decreasing `|w_i|`
    /// move to their box face until the next one can close the remaining gap, which it does partially.
    /// Unreachable planes: every coordinate moves to its face. Coordinates with `|w_i| ≤ 1e-8` do not
    /// move.
    pub(crate) fn projection_l1(points: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        let t = points;
        let (m, dd) = (t.size()[0], t.size()[1]);
        let k = t.kind();
        let (c, w) = signed_gap(t, w, b);
        let r = w.reciprocal().abs().clamp_max(1e12);
        let indr = r.argsort(1, false);
        let indr_rev = indr.argsort(1, false);
        let c6 = w.lt(0.0).to_kind(k);
        let d = (&c6 - t) * w.ne(0.0).to_kind(k);
        let ds = (-&w * t)
            .min_other(&(&w * (1.0 - t)))
            .gather(1, &indr, false);
        let s = Tensor::cat(&[c.unsqueeze(1), ds], 1).cumsum(1, k);
        let c2 = s.select(1, dd).lt(0.0);
        let lb = bisect(m, (dd + 1) as f64, halvings(dd), t.device(), |i| {
            s.gather(1, i, false).squeeze_dim(1).gt(0.0)
        });
        // Rows outside c2 may end at lb = D; the reference never indexes them, we clamp to stay in range.
        let lb2 = lb.to_kind(Kind::Int64).clamp_max(dd - 1).unsqueeze(1);
        let idx = indr.gather(1, &lb2, false);
        let alpha = -s.gather(1, &lb2, false) / w.gather(1, &idx, false);
        let u2 = Tensor::arange(dd, (Kind::Float, t.device())).unsqueeze(0);
        let c5 = u2.lt_tensor(&lb.unsqueeze(1));
        let u3 = c5.gather(1, &indr_rev, false).to_kind(k);
        let d_2 = (&d * u3).scatter(1, &idx, &alpha);
        let d = d_2.where_self(&c2.unsqueeze(1), &d);
        d * w.abs().gt(1e-8).to_kind(k)
    }

    impl AttackRun for Fab {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, rng: &Streams, _: Use) -> Outcome {
            outcome(fab(model, x, y, &radii(x, self.eps), &self.params(), rng))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tch::Device;

        const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

        fn rows(t: &Tensor) -> Vec<Vec<f64>> {
            Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).unwrap()
        }
        fn vals(t: &Tensor) -> Vec<f64> {
            Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
        }
        fn dot(a: &[f64], b: &[f64]) -> f64 {
            a.iter().zip(b).map(|(x, y)| x * y).sum()
        }
        fn pnorm(v: &[f64], norm: Norm) -> f64 {
            match norm {
                Norm::Linf => v.iter().fold(0f64, |m, x| m.max(x.abs())),
                Norm::L2 => dot(v, v).sqrt(),
                Norm::L1 => v.iter().map(|x| x.abs()).sum(),
            }
        }

        /// The problem every projection solves (step `d` with `w·(t + d) = b`, `t + d ∈ [0,1]^D`),
        /// restated in f64: with signs flipped so that `gap = |w·t − b|` must be removed, coordinate i
        /// removes |w_i| per unit it moves along `dir_i` (towards lowering the signed w·z), by at most
        /// `room_i`, its distance to the box face in that direction.
        struct Problem {
            dir: Vec<f64>,
            room: Vec<f64>,
            aw: Vec<f64>,
            gap: f64,
        }

        fn problem(t: &[f64], w: &[f64], b: f64) -> Problem {
            let c = dot(t, w) - b;
            let s = if c >= 0.0 { 1.0 } else { -1.0 };
            let mut p = Problem {
                dir: vec![],
                room: vec![],
                aw: vec![],
                gap: c.abs(),
            };
            for (&ti, &wi) in t.iter().zip(w) {
                let v = wi * s;
                p.dir.push(if v > 0.0 {
                    -1.0
                } else if v < 0.0 {
                    1.0
                } else {
                    0.0
                });
                p.room.push(if v > 0.0 { ti } else { 1.0 - ti });
                p.aw.push(v.abs());
            }
            p
        }

        impl Problem {
            fn removed(&self, moves: &[f64]) -> f64 {
                dot(moves, &self.aw)
            }
            /// Whether the plane can be reached inside the box (with slack, to keep rounding out).
            fn reachable(&self) -> bool {
                self.removed(&self.room) > self.gap * (1.0 + 1e-3)
            }
        }

        /// The smallest multiplier whose moves `at(·)` (non-decreasing in it) remove the gap, by
        /// bisection; `at(hi)` (every coordinate at its face) when even that does not.
        fn solve(p: &Problem, at: impl Fn(f64) -> Vec<f64>, hi: f64) -> Vec<f64> {
            if p.removed(&at(hi)) <= p.gap {
                return at(hi);
            }
            let (mut lo, mut hi) = (0.0, hi);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if p.removed(&at(mid)) < p.gap {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            at(hi)
        }

        /// Exact projections in f64, written independently of the reference: the KKT form of each
        /// problem — ℓ∞: every coordinate moves min(λ, room_i); ℓ2: min(μ|w_i|, room_i) — with the
        /// multiplier found by bisection; ℓ1 is a fractional knapsack (one linear constraint, box
        /// bounds), solved exactly by moving coordinates in order of decreasing |w_i|. Where the plane
        /// is out of reach every coordinate ends on its face, which is also what the reference returns.
        fn oracle(norm: Norm, t: &[f64], w: &[f64], b: f64) -> Vec<f64> {
            let p = problem(t, w, b);
            let n = t.len();
            let moves = match norm {
                Norm::Linf => solve(&p, |lam| p.room.iter().map(|&r| lam.min(r)).collect(), 1.0),
                Norm::L2 => {
                    let hi = (0..n)
                        .filter(|&i| p.aw[i] > 0.0)
                        .map(|i| p.room[i] / p.aw[i])
                        .fold(0.0, f64::max);
                    solve(
                        &p,
                        |mu| (0..n).map(|i| (mu * p.aw[i]).min(p.room[i])).collect(),
                        hi,
                    )
                }
                Norm::L1 => {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.sort_by(|&i, &j| p.aw[j].total_cmp(&p.aw[i]));
                    let (mut m, mut left) = (vec![0.0; n], p.gap);
                    for i in order {
                        if p.aw[i] == 0.0 || left <= 0.0 {
                            break;
                        }
                        m[i] = p.room[i].min(left / p.aw[i]);
                        left -= m[i] * p.aw[i];
                    }
                    m
                }
            };
            (0..n).map(|i| p.dir[i] * moves[i]).collect()
        }

        /// `m` problems in `d` dimensions: half the rows on a quarter grid (coordinates on the box
        /// faces, ties in the sort keys), a fifth of the weights zero, planes offset from t by
        /// Gaussian amounts of scale 0.05, 0.5, 2 and 8 in turn (box free, binding, out of reach).
        fn random_problems(seed: i64, m: i64, d: i64) -> (Tensor, Tensor, Tensor) {
            tch::manual_seed(seed);
            let t = Tensor::rand([m, d], CPU) * 0.9 + 0.05;
            let grid = (Tensor::rand([m, d], CPU) * 4.0).round() / 4.0;
            let even = Tensor::arange(m, (Kind::Int64, Device::Cpu))
                .remainder(2)
                .eq(0)
                .unsqueeze(1);
            let t = grid.where_self(&even, &t);
            let w =
                Tensor::randn([m, d], CPU) * Tensor::rand([m, d], CPU).gt(0.2).to_kind(Kind::Float);
            let scale = Tensor::from_slice(&[0.05f32, 0.5, 2.0, 8.0]).repeat([m / 4]);
            let b = rowsum(&(&w * &t)) + Tensor::randn([m], CPU) * scale;
            (t, w, b)
        }

        fn fixed_problem() -> (Tensor, Tensor, Tensor) {
            let t = Tensor::from_slice(&[
                0.5f32, 0.2, 0.8, 0.4, 0.6, 0.1, 0.9, 0.5, 0.3, 0.7, 0.25, 0.5, 0.75, 0.0, 1.0,
                0.6, 0.4, 0.3, 0.9, 0.05,
            ])
            .view([4, 5]);
            let w = Tensor::from_slice(&[
                1.0f32, -0.5, 0.25, 2.0, -1.5, 0.3, 1.2, -0.8, 0.0, 0.6, -1.0, 0.5, 1.5, -0.25,
                0.75, 2.0, 0.0, -1.0, 0.5, 1.0,
            ])
            .view([4, 5]);
            let b = Tensor::from_slice(&[0.3f32, -0.5, 12.0, 3.0]);
            (t, w, b)
        }

        #[test]
        fn projections_match_the_reference_on_fixed_inputs() {
            // Outputs of `fab_projections.projection_{linf,l2,l1}` from pyautoattack 0.2.0 (the same
            // code as fra31/auto-attack @ a3922004) under torch 2.13, float32, on `fixed_problem()`.
            // Rows: plane reachable with the box free; box binding (coordinates 0 and 2 end on their
            // faces, w_3 = 0); plane out of reach (every coordinate on its face); w·t < b (signs
            // flipped), box binding, w_1 = 0.
            let linf = [
                [
                    -3.80952246e-02,
                    3.80952246e-02,
                    -3.80952246e-02,
                    -3.80952246e-02,
                    3.80952246e-02,
                ],
                [
                    -1.00000001e-01,
                    -6.66666687e-01,
                    5.00000000e-01,
                    -0.0,
                    -6.66666687e-01,
                ],
                [-2.50000000e-01, 5.00000000e-01, 2.50000000e-01, 0.0, 0.0],
                [
                    3.99999976e-01,
                    -0.0,
                    -3.00000012e-01,
                    1.00000024e-01,
                    4.50000167e-01,
                ],
            ];
            let l2 = [
                [
                    -2.64462717e-02,
                    1.32231358e-02,
                    -6.61156792e-03,
                    -5.28925434e-02,
                    3.96694094e-02,
                ],
                [
                    -1.00000001e-01,
                    -8.00000012e-01,
                    5.00000000e-01,
                    -0.0,
                    -4.00000006e-01,
                ],
                [-2.50000000e-01, 5.00000000e-01, 2.50000000e-01, -0.0, -0.0],
                [
                    3.99999976e-01,
                    0.0,
                    -3.00000012e-01,
                    1.00000024e-01,
                    4.50000107e-01,
                ],
            ];
            let l1 = [
                [-0.0, 0.0, -0.0, -9.99999642e-02, 0.0],
                [-0.0, -8.99999976e-01, 5.00000000e-01, -0.0, -2.50000089e-01],
                [-2.50000000e-01, 5.00000000e-01, 2.50000000e-01, 0.0, 0.0],
                [3.99999976e-01, -0.0, -3.00000012e-01, 0.0, 5.00000060e-01],
            ];
            let (t, w, b) = fixed_problem();
            for (norm, want) in [(Norm::Linf, linf), (Norm::L2, l2), (Norm::L1, l1)] {
                let got = rows(&projection(norm, &t, &w, &b));
                for (i, (g, e)) in got.iter().zip(want.iter()).enumerate() {
                    // The same float32 operations in the same order: only the 9 printed digits differ.
                    let err = g
                        .iter()
                        .zip(e)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f64, f64::max);
                    assert!(err < 1e-6, "{norm:?} row {i}: {g:?} vs {e:?}");
                }
            }
        }

        #[test]
        fn projections_match_exact_oracles_and_are_feasible() {
            let (mut unreachable, mut reachable) = (0, 0);
            for (seed, d) in [(0i64, 3i64), (1, 10), (2, 40)] {
                let (t, w, b) = random_problems(seed, 16, d);
                let (tr, wr, br) = (rows(&t), rows(&w), vals(&b));
                for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                    let got = rows(&projection(norm, &t, &w, &b));
                    for (i, (((ti, wi), &bi), gi)) in
                        tr.iter().zip(&wr).zip(&br).zip(&got).enumerate()
                    {
                        let want = oracle(norm, ti, wi, bi);
                        // float32 sums over ≤ 40 terms of size ≤ ~3 carry errors ~1e-6 (the reference
                        // agreed with these oracles to 2e-5 on 1600 random rows, checked in Python).
                        let err = gi
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0f64, f64::max);
                        assert!(err < 1e-4, "{norm:?} d={d} row {i}: {gi:?} vs {want:?}");
                        for (x, dx) in ti.iter().zip(gi) {
                            assert!(
                                x + dx >= -1e-6 && x + dx <= 1.0 + 1e-6,
                                "{norm:?} left the box"
                            );
                        }
                        if problem(ti, wi, bi).reachable() {
                            let z: Vec<f64> = ti.iter().zip(gi).map(|(x, dx)| x + dx).collect();
                            let off = dot(wi, &z) - bi;
                            assert!(off.abs() < 1e-4, "{norm:?} d={d} row {i}: w·z − b = {off}");
                            reachable += 1;
                        } else {
                            unreachable += 1;
                        }
                    }
                }
            }
            // Both branches were exercised.
            assert!(
                reachable > 30 && unreachable > 3,
                "{reachable} / {unreachable}"
            );
        }

        #[test]
        fn projections_are_nearer_than_random_feasible_points() {
            // Points of the plane ∩ box around the projection d: z = d + s·v with w·v = 0. The
            // problems are convex, so d is optimal iff no feasible point is nearer to t.
            let (t, w, b) = random_problems(5, 16, 8);
            let (tr, wr, br) = (rows(&t), rows(&w), vals(&b));
            tch::manual_seed(6);
            let dirs = rows(&Tensor::randn([400, 8], CPU));
            let steps = vals(&((Tensor::rand([400], CPU) * 2.0 - 1.0) * 0.02));
            for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                let got = rows(&projection(norm, &t, &w, &b));
                let mut tried = 0;
                for (i, (((ti, wi), &bi), gi)) in tr.iter().zip(&wr).zip(&br).zip(&got).enumerate()
                {
                    let ww = dot(wi, wi);
                    if !problem(ti, wi, bi).reachable() || ww == 0.0 {
                        continue;
                    }
                    let own = pnorm(gi, norm);
                    for (v, s) in dirs.iter().zip(&steps) {
                        let k = dot(wi, v) / ww;
                        let z: Vec<f64> = gi
                            .iter()
                            .zip(v)
                            .zip(wi)
                            .map(|((d, vj), wj)| d + s * (vj - k * wj))
                            .collect();
                        if ti
                            .iter()
                            .zip(&z)
                            .all(|(x, zj)| x + zj >= -1e-9 && x + zj <= 1.0 + 1e-9)
                        {
                            tried += 1;
                            // d is float32-rounded (~1e-6 off the exact optimum).
                            assert!(
                                pnorm(&z, norm) >= own - 1e-5,
                                "{norm:?} row {i}: nearer point found"
                            );
                        }
                    }
                }
                assert!(tried > 1000, "{norm:?}: only {tried} feasible points");
            }
        }

        #[test]
        fn l2_projection_is_the_closed_form_when_the_box_does_not_bind() {
            tch::manual_seed(7);
            let t = Tensor::rand([8, 20], CPU) * 0.2 + 0.4;
            let w = Tensor::randn([8, 20], CPU);
            let b = rowsum(&(&w * &t)) + Tensor::randn([8], CPU) * 0.1;
            // d = −(w·t − b)/‖w‖² · w, the projection onto the plane alone.
            let want =
                -(rowsum(&(&w * &t)) - &b).unsqueeze(1) / rowsum(&w.square()).unsqueeze(1) * &w;
            let z = &t + &want;
            assert!(f64::try_from(z.min()).unwrap() > 0.0 && f64::try_from(z.max()).unwrap() < 1.0);
            let got = projection_l2(&t, &w, &b);
            assert!(f64::try_from((&got - &want).abs().max()).unwrap() < 1e-6);
        }

        #[test]
        fn logit_differences_and_gradients_of_a_linear_model_are_exact() {
            tch::manual_seed(8);
            let w = Tensor::randn([5, 12], CPU);
            let wc = w.shallow_clone();
            let m = move |x: &Tensor| x.flatten(1, -1).matmul(&wc.tr());
            let x = Tensor::rand([3, 1, 3, 4], CPU);
            let y = Tensor::from_slice(&[0i64, 3, 4]);
            let z = m(&x);
            let (df, dg) = diff_logits_grads(&m, &x, &y);
            let want_df = (&z - z.gather(1, &y.unsqueeze(1), false))
                .masked_fill(&y.one_hot(5).to_kind(Kind::Bool), 1e10);
            let want_dg = w.unsqueeze(0) - w.index_select(0, &y).unsqueeze(1);
            assert_eq!(dg.size(), vec![3, 5, 12]);
            assert!(f64::try_from((&df - &want_df).abs().max()).unwrap() < 1e-5);
            assert!(f64::try_from((&dg - &want_dg).abs().max()).unwrap() < 1e-5);
            let t = Tensor::from_slice(&[2i64, 1, 0]);
            let (df, dg) = diff_logits_grads_targeted(&m, &x, &y, &t);
            let pick = |c: &Tensor| want_df.gather(1, &c.unsqueeze(1), false);
            assert!(f64::try_from((&df - pick(&t)).abs().max()).unwrap() < 1e-5);
            let want = want_dg.gather(1, &t.view([3, 1, 1]).expand([3, 1, 12], false), false);
            assert!(f64::try_from((&dg - want).abs().max()).unwrap() < 1e-5);
        }

        /// A linear 10-class model on 1×4×12 inputs whose weight rows are scaled from 0.5 to 3, so that
        /// the runner-up class is not always the nearest boundary; 64 inputs in [0.25, 0.75] labelled
        /// with its predictions.
        fn linear() -> (Tensor, impl Fn(&Tensor) -> Tensor, Tensor, Tensor) {
            tch::manual_seed(0);
            let w = Tensor::randn([10, 48], CPU) * Tensor::linspace(0.5, 3.0, 10, CPU).unsqueeze(1);
            let wc = w.shallow_clone();
            let m = move |x: &Tensor| x.flatten(1, -1).matmul(&wc.tr());
            let x = Tensor::rand([64, 1, 4, 12], CPU) * 0.5 + 0.25;
            let y = tch::no_grad(|| m(&x)).argmax(1, false);
            (w, m, x, y)
        }

        /// For the linear model, per point and class k: the exact ℓp distance from x to the boundary
        /// z_y = z_k ignoring the box (margin over the dual norm of w_y − w_k; +∞ at k = y), a lower
        /// bound on any adversarial's norm once minimised over k; and whether 1.05 times the minimal
        /// step to that boundary stays in [0,1]^D, in which case FAB's first step towards k (the exact
        /// projection for a linear model, overshot by η = 1.05) is adversarial at 1.05 × the distance.
        fn boundaries(w: &Tensor, x: &Tensor, y: &Tensor, norm: Norm) -> (Tensor, Tensor) {
            let xf = x.flatten(1, -1);
            let z = xf.matmul(&w.tr());
            let v = w.index_select(0, y).unsqueeze(1) - w.unsqueeze(0);
            let m = z.gather(1, &y.unsqueeze(1), false) - &z;
            let sum2 = |t: &Tensor| t.sum_dim_intlist([2i64].as_slice(), true, None);
            let dual = match norm {
                Norm::Linf => sum2(&v.abs()),
                Norm::L2 => sum2(&v.square()).sqrt(),
                Norm::L1 => v.abs().amax([2i64], true),
            };
            let mu = m.unsqueeze(2);
            let step = match norm {
                Norm::L2 => -&mu * &v / sum2(&v.square()),
                Norm::Linf => -&mu / sum2(&v.abs()) * v.sign(),
                Norm::L1 => {
                    let j = v.abs().argmax(2, true);
                    -&mu / v.gather(2, &j, false)
                        * j.squeeze_dim(2).one_hot(v.size()[2]).to_kind(Kind::Float)
                }
            };
            let is_y = y.one_hot(10).to_kind(Kind::Bool);
            let dist = (&mu / &dual)
                .squeeze_dim(2)
                .masked_fill(&is_y, f64::INFINITY);
            let p = xf.unsqueeze(1) + step * 1.05;
            let free = p
                .ge(0.0)
                .logical_and(&p.le(1.0))
                .all_dim(2, false)
                .logical_and(&is_y.logical_not());
            (dist, free)
        }

        fn params(norm: Norm, targets: Option<usize>, restarts: usize) -> FabParams {
            FabParams {
                norm,
                steps: 20,
                restarts,
                targets,
                alpha_max: 0.1,
                eta: 1.05,
                beta: 0.9,
            }
        }

        fn feasible(x: &Tensor, adv: &Tensor, eps: &Tensor, norm: Norm) {
            let d = project::norm(&(adv - x), norm);
            assert!(bool::try_from(d.le_tensor(&(eps * (1.0 + 1e-6))).all()).unwrap());
            assert!(
                f64::try_from(adv.min()).unwrap() >= 0.0
                    && f64::try_from(adv.max()).unwrap() <= 1.0
            );
        }

        /// Per point: lower ≤ n wherever the point moved (returned points are adversarial), n ≤ upper
        /// where `free`; at least 10 free points.
        fn within(n: &Tensor, lower: &Tensor, upper: &Tensor, free: &Tensor, what: &str) {
            // 1e-4: float32 rounding in the projections and norms at D = 48.
            let (n, lo, hi, fr) = (
                vals(n),
                vals(lower),
                vals(upper),
                Vec::<bool>::try_from(free).unwrap(),
            );
            for (i, (((&n, &lo), &hi), &fr)) in n.iter().zip(&lo).zip(&hi).zip(&fr).enumerate() {
                if n > 0.0 {
                    assert!(
                        n >= lo * (1.0 - 1e-4),
                        "{what} point {i}: ‖δ‖ {n} below the bound {lo}"
                    );
                }
                if fr {
                    assert!(
                        n <= hi * (1.0 + 1e-4),
                        "{what} point {i}: ‖δ‖ {n} above {hi}"
                    );
                }
            }
            assert!(
                fr.iter().filter(|&&f| f).count() >= 10,
                "{what}: too few points with a free box"
            );
        }

        #[test]
        fn untargeted_fab_reaches_the_nearest_boundary_of_a_linear_model() {
            let (w, m, x, y) = linear();
            let eps = Tensor::full([64], 100.0, CPU);
            for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                let (dist, free) = boundaries(&w, &x, &y, norm);
                let (dmin, nearest) = dist.min_dim(1, false);
                let free_nearest = free.gather(1, &nearest.unsqueeze(1), false).squeeze_dim(1);
                let adv = fab(&m, &x, &y, &eps, &params(norm, None, 1), &Streams::Batch(0));
                feasible(&x, &adv, &eps, norm);
                assert!(!bool::try_from(crate::attacks::correct(&m, &adv, &y).any()).unwrap());
                let n = project::norm(&(&adv - &x), norm);
                within(
                    &n,
                    &dmin,
                    &(&dmin * 1.05),
                    &free_nearest,
                    &format!("FAB {norm:?}"),
                );
            }
        }

        #[test]
        fn targeted_fab_tries_the_runner_up_first_and_then_the_other_classes() {
            let (w, m, x, y) = linear();
            let (_, order) = tch::no_grad(|| m(&x)).sort(1, false);
            let runner_up = order.select(1, 8).unsqueeze(1);
            for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                let (dist, free) = boundaries(&w, &x, &y, norm);
                let (dmin, nearest) = dist.min_dim(1, false);
                let free_nearest = free.gather(1, &nearest.unsqueeze(1), false).squeeze_dim(1);
                // Any ε: the first target (the runner-up) breaks every point, near its boundary.
                let eps = Tensor::full([64], 100.0, CPU);
                let adv = fab(&m, &x, &y, &eps, &params(norm, Some(9), 1), &Streams::Batch(0));
                feasible(&x, &adv, &eps, norm);
                assert!(!bool::try_from(crate::attacks::correct(&m, &adv, &y).any()).unwrap());
                let n = project::norm(&(&adv - &x), norm);
                let d1 = dist.gather(1, &runner_up, false).squeeze_dim(1);
                let free1 = free.gather(1, &runner_up, false).squeeze_dim(1);
                within(&n, &dmin, &(&d1 * 1.05), &free1, &format!("FAB-T {norm:?}"));
                // ε = 1.06 × the nearest boundary's distance, per point: results beyond ε are rejected
                // and the later targets reach the nearest boundary.
                let eps = &dmin * 1.06;
                let adv = fab(&m, &x, &y, &eps, &params(norm, Some(9), 1), &Streams::Batch(0));
                feasible(&x, &adv, &eps, norm);
                let broken = crate::attacks::correct(&m, &adv, &y).logical_not();
                let missed = free_nearest.logical_and(&broken.logical_not());
                assert!(
                    !bool::try_from(missed.any()).unwrap(),
                    "FAB-T {norm:?} missed free points"
                );
                let n = project::norm(&(&adv - &x), norm);
                within(
                    &n,
                    &dmin,
                    &eps,
                    &free_nearest,
                    &format!("FAB-T {norm:?}, ε per point"),
                );
                if norm != Norm::L1 {
                    // The runner-up is not the nearest class for some points, so later targets mattered.
                    let later = nearest
                        .ne_tensor(&runner_up.squeeze_dim(1))
                        .logical_and(&free_nearest);
                    assert!(bool::try_from(later.any()).unwrap());
                }
            }
        }

        #[test]
        fn points_out_of_reach_or_misclassified_are_returned_untouched() {
            let (w, m, x, y) = linear();
            let (x, y) = (x.narrow(0, 0, 16), y.narrow(0, 0, 16));
            for norm in [Norm::Linf, Norm::L2, Norm::L1] {
                let (dist, _) = boundaries(&w, &x, &y, norm);
                let (dmin, _) = dist.min_dim(1, false);
                // Nothing adversarial lies within 0.9 × the nearest boundary; random restarts run.
                for (eps, targets, restarts) in [
                    (&dmin * 0.9, None, 3),
                    (&dmin * 0.9, Some(9), 1),
                    (&dmin * 0.9, Some(3), 2),
                    (Tensor::full([16], 1e-6, CPU), None, 2),
                ] {
                    let adv = fab(&m, &x, &y, &eps, &params(norm, targets, restarts), &Streams::Batch(1));
                    assert!(adv.equal(&x), "{norm:?} {targets:?}: a point moved");
                }
            }
            // Misclassified points are not attacked; the others break.
            let wrong = (y.narrow(0, 0, 3) + 1).remainder(10);
            let y2 = Tensor::cat(&[wrong, y.narrow(0, 3, 13)], 0);
            let eps = Tensor::full([16], 100.0, CPU);
            let adv = fab(&m, &x, &y2, &eps, &params(Norm::L2, None, 1), &Streams::Batch(0));
            assert!(adv.narrow(0, 0, 3).equal(&x.narrow(0, 0, 3)));
            assert!(!bool::try_from(
                crate::attacks::correct(&m, &adv.narrow(0, 3, 13), &y.narrow(0, 3, 13)).any()
            )
            .unwrap());
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
