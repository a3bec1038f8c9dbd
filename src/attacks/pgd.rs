//! Projected gradient descent (Madry et al. 2018) for ℓ∞, ℓ2 and ℓ1, following the reference update
//! rules (docs/attacks.md, "Reference update rules: PGD-ℓ∞", "PGD-ℓ2" and "PGD-ℓ1"):
//! - ℓ∞: signed step of size α, clip to the ε-box and [0,1] (torchattacks `PGD`);
//! - ℓ2: step α·g/(‖g‖₂+1e-10), rescale δ into the ball, clip (torchattacks `PGDL2`), with the
//!   gradient of the batch-mean loss so trajectories agree bit for bit;
//! - ℓ1 `slide`: SLIDE (Tramèr & Boneh 2019, `MultiRobustness/pgd_attack.py`): gradient
//!   coordinates pointing out of the box are zeroed, the top (100 − percentile)% of |g| move by
//!   α/#moved each (‖step‖₁ = α), Duchi projection onto the ℓ1 ball, clip;
//! - ℓ1 `dense`: step α·g/‖g‖₁, rescale δ by min(1, ε/‖δ‖₁), clip (foolbox `L1PGD`, what the
//!   paper's code uses).
//!
//! Random starts: uniform in the ℓ∞ ball; ℓ2: a random direction scaled by r·ε, r ~ U(0,1)
//! (torchattacks); ℓ1: Laplace noise rescaled to ‖δ‖₁ = ε (MultiRobustness), then the box.
//! Restarts run on the points not yet broken. In evaluation (`early_stop`), a point leaves the
//! batch at its first misclassified iterate, which is kept: a point the reference's last iterate
//! would have "un-broken" counts as broken, so the attack is never weaker, and unbroken points
//! follow exactly the reference trajectory. In training every point takes every step and the last
//! iterate is returned (highest loss over restarts).
use super::Attack;
use super::AttackType;
use super::{scale_with_eps, AttackClass, Fields, Name};
use crate::vocab::Norm;
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "name")]
pub enum PgdLoss {
    Ce,
    /// Carlini–Wagner margin `−relu(z_y − max_{i≠y} z_i + κ)`.
    Cw {
        kappa: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "name")]
pub enum L1Step {
    Slide { percentile: f64 },
    Dense,
}

#[derive(Debug, Clone, Copy)]
pub struct PgdParams {
    pub norm: Norm,
    pub steps: usize,
    pub step_size: f64,
    pub random_start: bool,
    pub restarts: usize,
    pub loss: PgdLoss,
    pub l1: L1Step,
    /// Evaluation: keep a point's first misclassified iterate and stop attacking it.
    pub early_stop: bool,
}

/// A resolved `pgd` entry (docs/attacks.md, "pgd").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pgd {
    pub norm: Norm,
    pub eps: f64,
    pub steps: usize,
    pub step_size: f64,
    pub random_start: bool,
    pub restarts: usize,
    pub loss: PgdLoss,
    /// Only for ℓ1.
    pub l1_step: Option<L1Step>,
}

impl Pgd {
    /// The run parameters; `early_stop` in evaluation.
    pub fn params(&self, early_stop: bool) -> PgdParams {
        PgdParams {
            norm: self.norm,
            steps: self.steps,
            step_size: self.step_size,
            random_start: self.random_start,
            restarts: self.restarts,
            loss: self.loss,
            l1: self.l1_step.unwrap_or(L1Step::Dense),
            early_stop,
        }
    }
}

impl AttackType for Pgd {
    const NAMES: &'static [Name] = &[Name::new(
        "pgd",
        "projected gradient descent, ℓ∞/ℓ2/ℓ1 (SLIDE or dense ℓ1), CE or CW loss, restarts (Madry et al. 2018)",
        &[
            "steps",
            "step_size",
            "random_start",
            "restarts",
            "loss",
            "kappa",
            "l1_step",
            "percentile",
        ],
    )];
    fn resolve(f: &Fields) -> Result<Self, Problem> {
        let (norm, eps) = (f.norm(), f.eps);
        let steps = f.count("steps", 10)?;
        let loss = match f.choice("loss", &["ce", "cw"], "ce", "PGD loss")? {
            "cw" => PgdLoss::Cw {
                kappa: f.real("kappa")?.unwrap_or(0.0),
            },
            _ if f.has("kappa") => {
                return Err(Problem::at("kappa", "applies to `loss: cw` only")
                    .hint("set `loss: cw` or remove it"))
            }
            _ => PgdLoss::Ce,
        };
        let l1_step = match (norm, f.has("l1_step")) {
            (Norm::L1, _) => match f.choice("l1_step", &["slide", "dense"], "slide", "ℓ1 step")? {
                "slide" => {
                    let p = f.real("percentile")?.unwrap_or(99.0);
                    if !(0.0..100.0).contains(&p) {
                        return Err(Problem::at("percentile", format!("{p} is not in [0, 100)"))
                            .hint("e.g. 99 moves the top 1% of coordinates"));
                    }
                    Some(L1Step::Slide { percentile: p })
                }
                _ if f.has("percentile") => {
                    return Err(Fields::remove(
                        "percentile",
                        "applies to `l1_step: slide` only",
                    ))
                }
                _ => Some(L1Step::Dense),
            },
            (_, true) => return Err(Fields::remove("l1_step", "applies to `norm: l1` only")),
            (_, false) if f.has("percentile") => {
                return Err(Fields::remove("percentile", "applies to `norm: l1` only"))
            }
            _ => None,
        };
        Ok(Pgd {
            norm,
            eps,
            steps,
            step_size: f.positive("step_size", 2.5 * eps / steps as f64)?,
            random_start: f.get("random_start")?.unwrap_or(true),
            restarts: f.count("restarts", 1)?,
            loss,
            l1_step,
        })
    }
}

impl Attack for Pgd {
    fn class(&self) -> AttackClass {
        if self.steps == 1 {
            AttackClass::SingleStep
        } else {
            AttackClass::Iterative
        }
    }
    fn eps(&self) -> f64 {
        self.eps
    }
    fn norm(&self) -> Option<Norm> {
        Some(self.norm)
    }
    fn set_eps(&mut self, e: f64) {
        scale_with_eps(&mut self.step_size, self.eps, e);
        self.eps = e;
    }
    fn passes(&self, _: usize) -> super::Passes {
        // Each restart ends with a forward pass that checks which points it broke (with one
        // restart it is skipped: an upper bound).
        super::Passes::grads(self.steps * self.restarts) + super::Passes::forwards(self.restarts)
    }
}

/// The tensor half (libtorch, the worker build): the attack itself and its `AttackRun`.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::attacks::{
        loss, loss_grad, outcome,
        project::{self, col},
        radii, AttackRun, Model, Outcome, Reduce, Streams, Use,
    };
    use tch::{Kind, Tensor};

    pub fn attack_loss(kind: PgdLoss, logits: &Tensor, y: &Tensor) -> Tensor {
        match kind {
            PgdLoss::Ce => loss::ce(logits, y),
            PgdLoss::Cw { kappa } => loss::cw(logits, y, kappa),
        }
    }

    /// A random point of the ε-ball around `x`, clipped to the box.
    pub fn random_start(x: &Tensor, norm: Norm, eps: &Tensor, rng: &Streams) -> Tensor {
        let e = col(eps, x);
        let delta = rng.draw(&[0], |d| match norm {
            Norm::Linf => (d.uniform_like(x) * 2.0 - 1.0) * &e,
            Norm::L2 => {
                let z = d.normal_like(x);
                let r = d.uniform(&[], x);
                &z / (col(&project::norm(&z, Norm::L2), x) + 1e-12) * col(&r, x) * &e
            }
            Norm::L1 => {
                // Laplace(0, 1) as −sign(u)·ln(1 − 2|u|), u ~ U(−½, ½).
                let u = d.uniform_like(x) - 0.5;
                let lap = -u.sign() * (u.abs() * -2.0 + 1.0).clamp_min(1e-12).log();
                &lap / (col(&project::norm(&lap, Norm::L1), x) + 1e-12) * &e
            }
        });
        (x + delta).clamp(0.0, 1.0)
    }

    /// One PGD step from `adv` along gradient `g`, projected back onto the feasible set.
    pub fn step(x: &Tensor, adv: &Tensor, g: &Tensor, eps: &Tensor, p: &PgdParams) -> Tensor {
        let a = p.step_size;
        match p.norm {
            Norm::Linf => project::linf(x, &(adv + g.sign() * a), eps),
            Norm::L2 => {
                let dir = g / (col(&project::norm(g, Norm::L2), g) + 1e-10);
                project::l2(x, &(adv + dir * a), eps)
            }
            Norm::L1 => {
                let delta = match p.l1 {
                    L1Step::Slide { percentile } => {
                        project::l1_ball(&(adv - x + slide_direction(adv, g, percentile) * a), eps)
                    }
                    L1Step::Dense => {
                        let d = adv - x + g / (col(&project::norm(g, Norm::L1), g) + 1e-12) * a;
                        let n = col(&project::norm(&d, Norm::L1), x);
                        &d * (col(eps, x) / (n + 1e-12)).clamp_max(1.0)
                    }
                };
                (x + delta).clamp(0.0, 1.0)
            }
        }
    }

    /// SLIDE's sparse direction: gradient coordinates that would leave the box are zeroed, then the
    /// coordinates with |g| at or above the per-sample `percentile` move by sign(g)/#moved (ties
    /// included, so ‖e‖₁ = 1).
    pub fn slide_direction(adv: &Tensor, g: &Tensor, percentile: f64) -> Tensor {
        let out = adv
            .ge(1.0)
            .logical_and(&g.gt(0.0))
            .logical_or(&adv.le(0.0).logical_and(&g.lt(0.0)));
        let g = g.masked_fill(&out, 0.0);
        let n = g.size()[0];
        let a = g.abs().view([n, -1]);
        let q = a.quantile_scalar(percentile / 100.0, 1, true, "linear");
        let sel = a.ge_tensor(&q).logical_and(&a.gt(0.0)).to_kind(g.kind());
        let count = sel
            .sum_dim_intlist([1].as_slice(), true, None)
            .clamp_min(1.0);
        (g.view([n, -1]).sign() * &sel / count).view(g.size().as_slice())
    }

    /// PGD on a batch. Returns, per point, its first misclassified iterate (evaluation) or the last
    /// iterate of the highest-loss restart (training).
    pub fn pgd(
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        eps: &Tensor,
        p: &PgdParams,
        rng: &Streams,
    ) -> Tensor {
        let n = x.size()[0];
        let mut out = x.shallow_clone();
        let mut done = Tensor::zeros([n], (Kind::Bool, x.device()));
        let mut best_loss = Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, x.device()));
        for r in 0..p.restarts.max(1) {
            let ids = done.logical_not().nonzero().squeeze_dim(1);
            if ids.size()[0] == 0 {
                break;
            }
            let (mut ids, mut xs, mut ys, mut es) = (
                ids.shallow_clone(),
                x.index_select(0, &ids),
                y.index_select(0, &ids),
                eps.index_select(0, &ids),
            );
            let mut adv = if p.random_start {
                random_start(&xs, p.norm, &es, &rng.select(&ids).sub(&[r as u64]))
            } else {
                xs.shallow_clone()
            };
            // One restart in training: the last iterate is the answer, no final forward needed.
            if !p.early_stop && p.restarts <= 1 {
                for _ in 0..p.steps {
                    let g = loss_grad(model, &adv, Reduce::Mean, |z| attack_loss(p.loss, z, &ys)).2;
                    adv = tch::no_grad(|| step(&xs, &adv, &g, &es, p));
                }
                return adv;
            }
            for k in 0..=p.steps {
                let last = k == p.steps;
                if last && p.restarts <= 1 {
                    // One restart: every point still in the batch ends at its last iterate,
                    // broken by it or not, so no forward pass is needed to check it.
                    out = out.index_copy(0, &ids, &adv);
                    break;
                }
                let (l, logits, g) = if last {
                    let z = tch::no_grad(|| model.logits(&adv));
                    (attack_loss(p.loss, &z, &ys), z, Tensor::new())
                } else {
                    loss_grad(model, &adv, Reduce::Mean, |z| attack_loss(p.loss, z, &ys))
                };
                if p.early_stop {
                    let fooled = logits.argmax(1, false).ne_tensor(&ys);
                    if bool::try_from(fooled.any()).unwrap_or(false) {
                        let hit = fooled.nonzero().squeeze_dim(1);
                        let at = ids.index_select(0, &hit);
                        out = out.index_copy(0, &at, &adv.index_select(0, &hit));
                        done = done.index_fill(0, &at, 1);
                        let keep = fooled.logical_not().nonzero().squeeze_dim(1);
                        let s = |t: &Tensor| t.index_select(0, &keep);
                        (ids, xs, ys, es, adv) = (s(&ids), s(&xs), s(&ys), s(&es), s(&adv));
                        if ids.size()[0] == 0 {
                            break;
                        }
                        if !last {
                            let g = s(&g);
                            adv = tch::no_grad(|| step(&xs, &adv, &g, &es, p));
                        }
                        continue;
                    }
                }
                if last {
                    // Unbroken points: the last iterate of the restart with the highest loss.
                    let prev = best_loss.index_select(0, &ids);
                    let better = l.gt_tensor(&prev).nonzero().squeeze_dim(1);
                    let at = ids.index_select(0, &better);
                    out = out.index_copy(0, &at, &adv.index_select(0, &better));
                    best_loss = best_loss.index_copy(0, &at, &l.index_select(0, &better));
                } else {
                    adv = tch::no_grad(|| step(&xs, &adv, &g, &es, p));
                }
            }
        }
        out
    }

    impl AttackRun for Pgd {
        fn run(&self, model: &dyn Model, x: &Tensor, y: &Tensor, rng: &Streams, usage: Use) -> Outcome {
            let p = self.params(usage == Use::Evaluation);
            outcome(pgd(model, x, y, &radii(x, self.eps), &p, rng))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use tch::Device;

        fn cpu() -> (Kind, Device) {
            (Kind::Float, Device::Cpu)
        }

        #[test]
        fn slide_direction_has_unit_l1_mass_on_the_top_coordinates_and_respects_the_box() {
            let adv = Tensor::from_slice(&[0.5f32, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
                .view([1, 10]);
            // Largest |g| at index 1 points out of the box (adv = 1, g > 0) and index 2 (adv = 0,
            // g < 0): both are masked, so the top-20% are indices 3 and 0.
            let g = Tensor::from_slice(&[0.8f32, 9.0, -9.0, -0.9, 0.1, 0.2, 0.3, 0.1, 0.2, 0.1])
                .view([1, 10]);
            let e = slide_direction(&adv, &g, 80.0);
            let v = Vec::<f32>::try_from(e.flatten(0, -1)).unwrap();
            assert_eq!(v, vec![0.5, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
            let l1: f32 = v.iter().map(|a| a.abs()).sum();
            assert!((l1 - 1.0).abs() < 1e-6);
        }

        fn linear(seed: i64) -> impl Fn(&Tensor) -> Tensor {
            tch::manual_seed(seed);
            let w = Tensor::randn([10, 48], cpu());
            move |x: &Tensor| x.flatten(1, -1).matmul(&w.tr())
        }

        #[test]
        fn every_variant_stays_feasible_and_eps_zero_is_clean() {
            let m = linear(0);
            let x = Tensor::rand([32, 3, 4, 4], cpu());
            let y = tch::no_grad(|| m(&x)).argmax(1, false);
            for (norm, eps, l1) in [
                (Norm::Linf, 8.0 / 255.0, L1Step::Dense),
                (Norm::L2, 0.5, L1Step::Dense),
                (Norm::L1, 3.0, L1Step::Slide { percentile: 90.0 }),
                (Norm::L1, 3.0, L1Step::Dense),
            ] {
                for early_stop in [false, true] {
                    let p = PgdParams {
                        norm,
                        steps: 7,
                        step_size: 2.5 * eps / 7.0,
                        random_start: true,
                        restarts: 2,
                        loss: PgdLoss::Ce,
                        l1,
                        early_stop,
                    };
                    let e = Tensor::full([32], eps, cpu());
                    let adv = pgd(&m, &x, &y, &e, &p, &Streams::Batch(3));
                    let d = project::norm(&(&adv - &x), norm);
                    assert!(
                        f64::try_from(d.max()).unwrap() <= eps * (1.0 + 1e-5),
                        "{norm:?}"
                    );
                    assert!(
                        f64::try_from(adv.min()).unwrap() >= 0.0
                            && f64::try_from(adv.max()).unwrap() <= 1.0
                    );
                    let z = Tensor::zeros([32], cpu());
                    let adv0 = pgd(&m, &x, &y, &z, &p, &Streams::Batch(3));
                    assert!(
                        adv0.equal(&x),
                        "ε = 0 must return the clean points ({norm:?})"
                    );
                }
            }
        }

        #[test]
        fn linf_pgd_reaches_the_linear_optimum() {
            // For a linear binary problem the optimal ℓ∞ attack is x − ε·sign(w_y − w_o) (when the box
            // does not bind); PGD with a sign step of size ε must find it in one step.
            let w = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 0.0, 3.0, -1.0, 1.0, 1.0]).view([2, 4]);
            let m = |x: &Tensor| x.flatten(1, -1).matmul(&w.tr());
            let x = Tensor::full([1, 1, 2, 2], 0.5, cpu());
            let y = Tensor::from_slice(&[0i64]);
            let e = Tensor::from_slice(&[0.1f32]);
            let p = PgdParams {
                norm: Norm::Linf,
                steps: 3,
                step_size: 0.1,
                random_start: false,
                restarts: 1,
                loss: PgdLoss::Ce,
                l1: L1Step::Dense,
                early_stop: false,
            };
            let adv = pgd(&m, &x, &y, &e, &p, &Streams::Batch(0));
            // w_o − w_y = (2, 1, 0.5, 1) > 0: increasing the loss moves every pixel by +ε.
            let want = Tensor::from_slice(&[0.6f32, 0.6, 0.6, 0.6]).view([1, 1, 2, 2]);
            assert!(f64::try_from((&adv - want).abs().max()).unwrap() < 1e-6);
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
