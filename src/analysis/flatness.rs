//! Robust flatness (Stutz, Hein & Schiele, "Relating Adversarially Robust Generalization to Flat
//! Minima", ICCV 2021): how much the robust loss on a fixed set of training points rises when the
//! weights move within a ball relative to each layer's norm (docs/theory.md, "Robust flatness").
//!
//! The robust loss L(w) is the mean cross-entropy at PGD adversarials computed against the weights
//! w (no random start, so L is a function of w). With ν a perturbation whose every layer l has
//! ‖ν_l‖₂ ≤ ξ‖w_l‖₂:
//! - average-case flatness: E_ν[L(w + ν)] − L(w) over random ν on the sphere of radius ξ‖w_l‖₂
//!   per layer (Gaussian directions), with fresh adversarials for every perturbed model;
//! - worst-case flatness: max_ν L(w + ν) − L(w), ν found by normalised gradient ascent on the
//!   robust loss jointly with the adversarials (AWP-style), projected back onto the ball.
//!
//! Both are increases in nats: lower is flatter. Perturbed are the weights of convolutions,
//! linear maps, attention and embeddings (trainable tensors of two or more dimensions) and their
//! biases; normalisation layers are not, as in the authors' code.
use super::bounds::Threat;
use super::{Measure, PerModel, PlanContext, Scatter};
use crate::models::saved::Checkpoint;
use crate::vocab::{Problem, Real};
use serde::{Deserialize, Serialize};

/// `analysis.flatness`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The first `points` training points (in the prepared order, without augmentation).
    #[serde(default = "default_points")]
    pub points: usize,
    /// Points per forward pass.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The evaluation attack whose norm and ε define the robust loss; default: the training
    /// attack (the clean loss for standard training).
    #[serde(default)]
    pub attack: Option<String>,
    /// PGD steps of the robust loss (step size 2.5·ε/steps).
    #[serde(default = "default_attack_steps")]
    pub attack_steps: usize,
    #[serde(default)]
    pub average: AverageSettings,
    #[serde(default)]
    pub worst: WorstSettings,
}

/// `analysis.flatness.average`: random weight perturbations.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AverageSettings {
    /// ξ: each layer moves by ξ times its norm.
    #[serde(default = "default_average_radius")]
    pub radius: Real,
    /// Random perturbations averaged.
    #[serde(default = "default_samples")]
    pub samples: usize,
}

/// `analysis.flatness.worst`: adversarial weight perturbations.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorstSettings {
    /// ξ: each layer moves by at most ξ times its norm.
    #[serde(default = "default_worst_radius")]
    pub radius: Real,
    /// Gradient steps on the weights.
    #[serde(default = "default_weight_steps")]
    pub steps: usize,
}

fn default_points() -> usize {
    1000
}
fn default_batch_size() -> usize {
    128
}
fn default_attack_steps() -> usize {
    20
}
fn default_average_radius() -> Real {
    Real(0.5)
}
fn default_samples() -> usize {
    10
}
fn default_worst_radius() -> Real {
    Real(0.003)
}
fn default_weight_steps() -> usize {
    7
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            points: default_points(),
            batch_size: default_batch_size(),
            attack: None,
            attack_steps: default_attack_steps(),
            average: AverageSettings::default(),
            worst: WorstSettings::default(),
        }
    }
}

impl Default for AverageSettings {
    fn default() -> Self {
        Self {
            radius: default_average_radius(),
            samples: default_samples(),
        }
    }
}

impl Default for WorstSettings {
    fn default() -> Self {
        Self {
            radius: default_worst_radius(),
            steps: default_weight_steps(),
        }
    }
}

/// The `flatness` stage's key parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Params {
    pub points: usize,
    pub batch_size: usize,
    /// The robust loss's threat model in pixel units; `None`: the clean loss.
    pub threat: Option<Threat>,
    pub attack_steps: usize,
    pub average: Average,
    pub worst: Worst,
    /// Seeds the random perturbations (the model's evaluation seed).
    pub seed: u64,
    pub checkpoint: Checkpoint,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Average {
    pub radius: f64,
    pub samples: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Worst {
    pub radius: f64,
    pub steps: usize,
}

/// What the stage reports of a model (`flatness.json` and its summary).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Output {
    /// Training points measured.
    pub points: usize,
    pub threat: Option<Threat>,
    /// Weight tensors perturbed.
    pub perturbed: usize,
    /// L(w): the mean robust cross-entropy of the trained weights.
    pub robust_loss: f64,
    pub average: AverageOutput,
    pub worst: WorstOutput,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AverageOutput {
    pub radius: f64,
    pub samples: usize,
    /// L(w + ν_k) per random perturbation.
    pub losses: Vec<f64>,
    /// mean_k L(w + ν_k) − L(w).
    pub flatness: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorstOutput {
    pub radius: f64,
    pub steps: usize,
    /// L(w + ν*) at the adversarial weights.
    pub loss: f64,
    /// L(w + ν*) − L(w).
    pub flatness: f64,
}

/// Where the stage writes its output (also its summary).
pub const OUTPUT: &str = "flatness.json";

/// The `flatness` analysis.
pub struct Flatness;

impl PerModel for Flatness {
    const NAME: &'static str = "flatness";
    const ABOUT: &'static str = "per model: robust flatness (Stutz et al. 2021), the rise of the robust loss on training points under random (average-case) and adversarial (worst-case) weight perturbations relative to each layer's norm";
    const VERSION: u32 = 1;
    const NEEDS_DATA: bool = true;
    const USES_DEVICE: bool = true;
    type Settings = Settings;
    type Params = Params;
    type Output = Output;

    fn check(s: &Settings, out: &mut Vec<Problem>) {
        for (field, v, hint) in [
            (
                "points",
                s.points,
                "at least 1 training point (1000 by default)",
            ),
            ("batch_size", s.batch_size, "at least 1 (128 by default)"),
            (
                "attack_steps",
                s.attack_steps,
                "at least 1 PGD step (20 by default)",
            ),
        ] {
            if v == 0 {
                out.push(Problem::at(field, "must be at least 1").hint(hint));
            }
        }
        if s.average.samples == 0 {
            out.push(
                Problem::new(&["average", "samples"], "must be at least 1")
                    .hint("random perturbations to average (10 by default)"),
            );
        }
        if s.worst.steps == 0 {
            out.push(
                Problem::new(&["worst", "steps"], "must be at least 1")
                    .hint("gradient steps on the weights (7 by default)"),
            );
        }
        for (part, r) in [("average", s.average.radius), ("worst", s.worst.radius)] {
            let r = r.get();
            if !(r > 0.0 && r.is_finite()) {
                out.push(
                    Problem::new(&[part, "radius"], format!("{r} is out of range")).hint(
                        "a positive fraction of each layer's norm (0.5 average-case, 0.003 worst-case by default)",
                    ),
                );
            }
        }
    }

    fn attack(s: &Settings) -> Option<&str> {
        s.attack.as_deref()
    }

    fn params(s: &Settings, cx: &PlanContext) -> Params {
        Params {
            points: s.points,
            batch_size: s.batch_size,
            threat: cx
                .named
                .and_then(super::threat_of)
                .or_else(|| cx.training.and_then(super::threat_of)),
            attack_steps: s.attack_steps,
            average: Average {
                radius: s.average.radius.get(),
                samples: s.average.samples,
            },
            worst: Worst {
                radius: s.worst.radius.get(),
                steps: s.worst.steps,
            },
            seed: cx.seed,
            checkpoint: cx.checkpoint,
        }
    }

    fn measures(o: &Output) -> Vec<Measure> {
        vec![
            ("flatness_average".into(), Some(o.average.flatness)),
            ("flatness_worst".into(), Some(o.worst.flatness)),
        ]
    }

    const SCATTER: Option<Scatter> = Some(Scatter {
        file: "flatness_vs_gap",
        measures: || vec!["flatness_average".into(), "flatness_worst".into()],
        axis: |m| match m {
            "flatness_average" => "average-case robust flatness (Δ loss)".into(),
            "flatness_worst" => "worst-case robust flatness (Δ loss)".into(),
            _ => m.to_string(),
        },
        title: |a| format!("Robust flatness vs robust gap ({a})"),
        y: |_| "robust gap (points)".into(),
        caption: |a, d, t, per| {
            format!("Average- and worst-case robust flatness (the rise of the robust loss on training points under relative weight perturbations; lower is flatter) against the robust generalization gap under `{a}` ({d}, {t}), {per} coloured by kind; each panel's legend gives the rank correlations.")
        },
    });

    fn flops(p: &Params, forward: f64) -> Option<f64> {
        // A PGD step is a forward and a backward (≈ 3 forwards), the loss one more forward; a
        // weight step adds a backward through the network.
        let robust = p.points as f64 * forward * (3.0 * p.attack_steps as f64 + 1.0);
        let evaluations = 1 + p.average.samples + p.worst.steps + 1;
        Some(robust * evaluations as f64 + p.points as f64 * forward * 2.0 * p.worst.steps as f64)
    }
}

/// The tensor half: perturbing weights and measuring the robust loss.
#[cfg(feature = "torch")]
mod net {
    use super::{Average, AverageOutput, Flatness, Output, Params, Worst, WorstOutput};
    use crate::analysis::{Compute, Subject};
    use crate::attacks::pgd::{self, L1Step, PgdLoss, PgdParams};
    use crate::attacks::{loss, radii, Model, Net};
    use crate::models::Network;
    use anyhow::{Context, Result};
    use tch::{Device, Kind, Tensor};

    impl Compute for Flatness {
        fn compute(p: &Params, s: &Subject) -> anyhow::Result<Output> {
            self::compute(p, s)
        }
    }

    /// The perturbed tensors, by name (sorted): trainable tensors of two or more dimensions, and
    /// the `bias` beside each such `weight`.
    pub fn perturbed(net: &Network) -> Vec<(String, Tensor)> {
        let named = net.named_tensors();
        let weight = |t: &Tensor| t.requires_grad() && t.dim() >= 2;
        let weights: std::collections::HashSet<&str> = named
            .iter()
            .filter(|(_, t)| weight(t))
            .map(|(n, _)| n.as_str())
            .collect();
        named
            .iter()
            .filter(|(n, t)| {
                weight(t)
                    || (t.requires_grad()
                        && n.strip_suffix(".bias")
                            .is_some_and(|stem| weights.contains(format!("{stem}.weight").as_str())))
            })
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    /// The robust loss's inputs: points, labels, and the PGD that maximises it.
    struct Points {
        x: Tensor,
        y: Tensor,
        batch: i64,
        pgd: Option<(PgdParams, f64)>,
    }

    impl Points {
        fn batches(&self) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
            let n = self.x.size()[0];
            (0..n).step_by(self.batch as usize).map(move |lo| {
                let len = self.batch.min(n - lo);
                (self.x.narrow(0, lo, len), self.y.narrow(0, lo, len))
            })
        }

        /// Adversarials of one batch against the network's current weights.
        fn adversarial(&self, model: &Net, x: &Tensor, y: &Tensor) -> Tensor {
            match &self.pgd {
                Some((p, eps)) => pgd::pgd(model, x, y, &radii(x, *eps), p, &crate::attacks::Streams::Batch(0)).detach(),
                None => x.shallow_clone(),
            }
        }

        /// L(w) at the network's current weights: the mean robust cross-entropy.
        fn robust_loss(&self, model: &Net) -> f64 {
            let mut total = 0.0;
            for (x, y) in self.batches() {
                let adv = self.adversarial(model, &x, &y);
                let l = tch::no_grad(|| loss::ce(&model.logits(&adv), &y).sum(Kind::Double));
                total += f64::try_from(l).unwrap_or(f64::NAN);
            }
            total / self.x.size()[0] as f64
        }
    }

    /// Sets every perturbed tensor to `base + delta`.
    fn set(targets: &mut [(String, Tensor)], base: &[Tensor], delta: &[Tensor]) {
        tch::no_grad(|| {
            for ((_, t), (w, d)) in targets.iter_mut().zip(base.iter().zip(delta)) {
                t.copy_(&(w + d));
            }
        });
    }

    /// Sets every perturbed tensor back to the trained weights.
    fn restore(targets: &mut [(String, Tensor)], base: &[Tensor]) {
        tch::no_grad(|| {
            for ((_, t), w) in targets.iter_mut().zip(base) {
                t.copy_(w);
            }
        });
    }

    fn norm(t: &Tensor) -> f64 {
        f64::try_from(t.norm()).unwrap_or(0.0)
    }

    pub fn compute(p: &Params, s: &Subject) -> Result<Output> {
        let net = crate::models::saved::load(s.model, p.checkpoint, s.device)?;
        let data = crate::data::prepared::load(s.data.context("flatness needs the dataset")?)?;
        let (x_all, y_all) = data.split(crate::vocab::Split::Train)?;
        let n = (p.points as i64).min(x_all.size()[0]);
        anyhow::ensure!(n > 0, "the train split has no points");
        let points = Points {
            x: x_all
                .narrow(0, 0, n)
                .to_device(s.device)
                .to_kind(Kind::Float)
                / 255.0,
            y: y_all.narrow(0, 0, n).to_device(s.device),
            batch: p.batch_size as i64,
            pgd: p.threat.filter(|t| t.eps > 0.0).map(|t| {
                let params = PgdParams {
                    norm: t.norm,
                    steps: p.attack_steps,
                    step_size: 2.5 * t.eps / p.attack_steps as f64,
                    random_start: false,
                    restarts: 1,
                    loss: PgdLoss::Ce,
                    l1: L1Step::Dense,
                    early_stop: false,
                };
                (params, t.eps)
            }),
        };
        let model = Net {
            net: &net,
            train: false,
        };
        let mut targets = perturbed(&net);
        anyhow::ensure!(!targets.is_empty(), "the network has no weights to perturb");
        let base: Vec<Tensor> = targets.iter().map(|(_, t)| t.detach().copy()).collect();
        let norms: Vec<f64> = base.iter().map(norm).collect();
        let robust_loss = points.robust_loss(&model);
        let losses = average(
            p.average,
            p.seed,
            &points,
            &model,
            &mut targets,
            &base,
            &norms,
        );
        let mean = losses.iter().sum::<f64>() / losses.len() as f64;
        restore(&mut targets, &base);
        let worst_loss = worst(p.worst, &points, &model, &mut targets, &base, &norms);
        restore(&mut targets, &base);
        let out = Output {
            points: n as usize,
            threat: p.threat,
            perturbed: targets.len(),
            robust_loss,
            average: AverageOutput {
                radius: p.average.radius,
                samples: p.average.samples,
                flatness: mean - robust_loss,
                losses,
            },
            worst: WorstOutput {
                radius: p.worst.radius,
                steps: p.worst.steps,
                loss: worst_loss,
                flatness: worst_loss - robust_loss,
            },
        };
        crate::cache::write_json(&s.out.join(super::OUTPUT), &out)?;
        Ok(out)
    }

    /// L(w + ν_k) for random ν_k: Gaussian directions drawn on the CPU under the seed of sample
    /// k, tensor by tensor in name order, scaled to ξ‖w_l‖₂ per tensor.
    fn average(
        a: Average,
        seed: u64,
        points: &Points,
        model: &Net,
        targets: &mut [(String, Tensor)],
        base: &[Tensor],
        norms: &[f64],
    ) -> Vec<f64> {
        (0..a.samples)
            .map(|k| {
                let draws: Vec<Tensor> =
                    crate::torch::with_seed(crate::rng::derive(seed, &[k as u64]), || {
                        base.iter()
                            .map(|w| Tensor::randn(w.size(), (Kind::Float, Device::Cpu)))
                            .collect()
                    });
                let delta: Vec<Tensor> = draws
                    .iter()
                    .zip(base.iter().zip(norms))
                    .map(|(g, (w, wn))| {
                        let scale = a.radius * wn / norm(g);
                        (g * scale).to_device(w.device()).to_kind(w.kind())
                    })
                    .collect();
                set(targets, base, &delta);
                points.robust_loss(model)
            })
            .collect()
    }

    /// L(w + ν*) after `w.steps` normalised gradient steps of size 2.5·ξ‖w_l‖/steps on the robust
    /// loss, each projected back onto ‖ν_l‖₂ ≤ ξ‖w_l‖₂; the adversarials are recomputed against
    /// the perturbed weights before every step.
    fn worst(
        w: Worst,
        points: &Points,
        model: &Net,
        targets: &mut [(String, Tensor)],
        base: &[Tensor],
        norms: &[f64],
    ) -> f64 {
        let mut delta: Vec<Tensor> = base.iter().map(|b| b.zeros_like()).collect();
        let n = points.x.size()[0] as f64;
        for _ in 0..w.steps {
            set(targets, base, &delta);
            for (_, t) in targets.iter_mut() {
                t.zero_grad();
            }
            for (x, y) in points.batches() {
                let adv = points.adversarial(model, &x, &y);
                let l = loss::ce(&model.logits(&adv), &y).sum(Kind::Float) / n;
                l.backward();
            }
            tch::no_grad(|| {
                for ((d, (_, t)), &wn) in delta.iter_mut().zip(targets.iter()).zip(norms) {
                    let g = t.grad();
                    if !g.defined() {
                        continue;
                    }
                    let radius = w.radius * wn;
                    let step = 2.5 * radius / w.steps as f64;
                    let moved = &*d + &g * (step / (norm(&g) + 1e-12));
                    let len = norm(&moved);
                    *d = if len > radius {
                        moved * (radius / len)
                    } else {
                        moved
                    };
                }
            });
        }
        for (_, t) in targets.iter_mut() {
            t.zero_grad();
        }
        set(targets, base, &delta);
        points.robust_loss(model)
    }
}
