//! Optimisers with PyTorch's exact update rules and serialisable state, so a checkpointed run
//! resumes bit-identically (tch's built-in optimisers cannot save their state).
#![cfg(feature = "torch")]
use super::spec::{OptimizerName, OptimizerSpec};
use anyhow::{Context, Result};
use tch::Tensor;

pub struct Optimizer {
    spec: OptimizerSpec,
    /// (name, parameter) in a fixed order.
    params: Vec<(String, Tensor)>,
    /// AdamW: first and second moments; SGD: momentum buffer (in `m`).
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
    pub lr: f64,
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, vs: &tch::nn::VarStore) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self {
            spec: spec.clone(),
            params,
            m,
            v,
            step: 0,
            lr: spec.lr.get(),
        }
    }

    /// The parameters updated, in a fixed order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p)| p.shallow_clone()).collect()
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with the current `lr`.
    pub fn step(&mut self) {
        self.step += 1;
        let lr = self.lr;
        let t = self.step as i32;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let wd = if self.spec.no_decay_1d && p.dim() <= 1 {
                    0.0
                } else {
                    self.spec.weight_decay.get()
                };
                match self.spec.name {
                    OptimizerName::Adamw => {
                        let (b1, b2) = (self.spec.betas.0.get(), self.spec.betas.1.get());
                        // torch.optim.AdamW: decoupled decay, then the bias-corrected Adam step.
                        let _ = p.g_mul_scalar_(1.0 - lr * wd);
                        let _ = self.m[i].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = self.v[i].g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                        let bc1 = 1.0 - b1.powi(t);
                        let bc2 = 1.0 - b2.powi(t);
                        let denom = self.v[i].sqrt() / bc2.sqrt() + 1e-8;
                        let _ = p.g_add_(&(&self.m[i] / denom * (-lr / bc1)));
                    }
                    OptimizerName::Sgd => {
                        // torch.optim.SGD (dampening 0): buf = μ·buf + g (buf₁ = g); the step
                        // is buf, or g + μ·buf with Nesterov.
                        let g = if wd != 0.0 { &g + &*p * wd } else { g };
                        let mu = self.spec.momentum.get();
                        let buf = if self.step == 1 || mu == 0.0 {
                            g.copy()
                        } else {
                            &self.m[i] * mu + &g
                        };
                        self.m[i] = buf;
                        let d = if self.spec.nesterov && mu != 0.0 {
                            &g + &self.m[i] * mu
                        } else {
                            self.m[i].shallow_clone()
                        };
                        let _ = p.g_add_(&(d * -lr));
                    }
                }
            }
        });
    }

    /// State tensors by name, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (n, _)) in self.params.iter().enumerate() {
            out.push((format!("opt.m.{n}"), self.m[i].shallow_clone()));
            out.push((format!("opt.v.{n}"), self.v[i].shallow_clone()));
        }
        out
    }

    /// Checks that `tensors` hold this optimiser's state, every tensor with its parameter's shape
    /// (so [`Optimizer::load_state`] cannot fail half-way).
    pub fn check_state(&self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        for (n, p) in &self.params {
            for kind in ["m", "v"] {
                let t = tensors
                    .get(&format!("opt.{kind}.{n}"))
                    .with_context(|| format!("checkpoint lacks optimiser state for {n}"))?;
                anyhow::ensure!(
                    t.size() == p.size(),
                    "optimiser state {kind} of {n} has shape {:?}, the parameter {:?}",
                    t.size(),
                    p.size()
                );
            }
        }
        Ok(())
    }

    pub fn load_state(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        for (i, (n, p)) in self.params.iter().enumerate() {
            let m = tensors
                .get(&format!("opt.m.{n}"))
                .with_context(|| format!("checkpoint lacks optimiser state for {n}"))?;
            let v = tensors
                .get(&format!("opt.v.{n}"))
                .with_context(|| format!("checkpoint lacks optimiser state for {n}"))?;
            self.m[i] = m.to_device(p.device());
            self.v[i] = v.to_device(p.device());
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Real;
    use tch::{nn, Device, Kind};

    fn spec(name: OptimizerName, wd: f64) -> OptimizerSpec {
        OptimizerSpec {
            name,
            lr: Real(0.1),
            weight_decay: Real(wd),
            momentum: Real(0.9),
            betas: (Real(0.9), Real(0.999)),
            nesterov: false,
            no_decay_1d: false,
        }
    }

    fn one_param(value: f64) -> (nn::VarStore, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[1], nn::Init::Const(value));
        (vs, w)
    }

    fn run(opt: &mut Optimizer, w: &Tensor, grads: &[f64]) {
        for &g in grads {
            opt.zero_grad();
            // loss = g·w has gradient g.
            (w * g).sum(Kind::Float).backward();
            opt.step();
        }
    }

    #[test]
    fn adamw_matches_hand_computed_pytorch_update() {
        let (vs, w) = one_param(1.0);
        let mut opt = Optimizer::new(&spec(OptimizerName::Adamw, 0.01), &vs);
        run(&mut opt, &w, &[0.5, -0.25]);
        // Step 1: w = 1·(1−0.001) = 0.999; m = 0.05, v = 0.00025·… → Adam step = lr·sign ≈ 0.1.
        let (mut p, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for (t, g) in [(1, 0.5f64), (2, -0.25)] {
            p *= 1.0 - 0.1 * 0.01;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let denom = (v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt()) + 1e-8;
            p -= 0.1 / (1.0 - 0.9f64.powi(t)) * m / denom;
        }
        let got = f64::try_from(&w).unwrap();
        assert!((got - p).abs() < 1e-6, "{got} vs {p}"); // float32 parameter vs f64 reference
    }

    #[test]
    fn sgd_momentum_matches_hand_computed_update() {
        let (vs, w) = one_param(1.0);
        let mut opt = Optimizer::new(&spec(OptimizerName::Sgd, 0.0), &vs);
        run(&mut opt, &w, &[1.0, 1.0]);
        // buf1 = 1 → w = 0.9; buf2 = 0.9 + 1 = 1.9 → w = 0.9 − 0.19 = 0.71.
        assert!((f64::try_from(&w).unwrap() - 0.71).abs() < 1e-6);
        // Nesterov: step g + μ·buf: 1 + 0.9 = 1.9 → w = 0.81; buf2 = 1.9, step 1 + 1.71 = 2.71 →
        // w = 0.81 − 0.271 = 0.539.
        let (vs, w) = one_param(1.0);
        let mut opt = Optimizer::new(
            &OptimizerSpec {
                nesterov: true,
                ..spec(OptimizerName::Sgd, 0.0)
            },
            &vs,
        );
        run(&mut opt, &w, &[1.0, 1.0]);
        assert!((f64::try_from(&w).unwrap() - 0.539).abs() < 1e-6);
    }

    #[test]
    fn one_dimensional_parameters_can_skip_weight_decay() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[1, 1], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[1], nn::Init::Const(1.0));
        let mut opt = Optimizer::new(
            &OptimizerSpec {
                no_decay_1d: true,
                momentum: Real(0.0),
                ..spec(OptimizerName::Sgd, 0.5)
            },
            &vs,
        );
        opt.zero_grad();
        ((&w + &b) * 0.0).sum(Kind::Float).backward();
        opt.step();
        // Zero loss gradient: only decay moves w (1 − 0.1·0.5); b is exempt.
        assert!((f64::try_from(&w.view([-1])).unwrap() - 0.95).abs() < 1e-6);
        assert_eq!(f64::try_from(&b).unwrap(), 1.0);
    }
}
