//! MIM / MI-FGSM (Dong et al. 2018), ℓ∞, as torchattacks `MIFGSM` writes it: the gradient is
//! divided by its per-sample mean absolute value, accumulated with decay μ
//! (`m ← μ·m + g/mean|g|`), and the iterate moves by α·sign(m), then is clipped to the ε-box and
//! [0,1]. No random start. In evaluation, points leave the batch at their first misclassified
//! iterate (kept), as in PGD.
use super::project;
use super::{loss, loss_grad, Model, Reduce};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct MimParams {
    pub steps: usize,
    pub step_size: f64,
    pub decay: f64,
    pub early_stop: bool,
}

pub fn mim(model: &dyn Model, x: &Tensor, y: &Tensor, eps: &Tensor, p: &MimParams) -> Tensor {
    let n = x.size()[0];
    let mut out = x.shallow_clone();
    let mut ids = Tensor::arange(n, (Kind::Int64, x.device()));
    let (mut xs, mut ys, mut es) = (x.shallow_clone(), y.shallow_clone(), eps.shallow_clone());
    let mut adv = x.shallow_clone();
    let mut momentum = x.zeros_like();
    for k in 0..=p.steps {
        let last = k == p.steps;
        let (logits, g) = if last {
            (tch::no_grad(|| model.logits(&adv)), Tensor::new())
        } else {
            let (_, z, g) = loss_grad(model, &adv, Reduce::Mean, |z| loss::ce(z, &ys));
            (z, g)
        };
        if last {
            out = out.index_copy(0, &ids, &adv);
            break;
        }
        let mut g = g;
        if p.early_stop {
            let fooled = logits.argmax(1, false).ne_tensor(&ys);
            if bool::try_from(fooled.any()).unwrap_or(false) {
                let hit = fooled.nonzero().squeeze_dim(1);
                out = out.index_copy(0, &ids.index_select(0, &hit), &adv.index_select(0, &hit));
                let keep = fooled.logical_not().nonzero().squeeze_dim(1);
                let s = |t: &Tensor| t.index_select(0, &keep);
                (ids, xs, ys, es, adv, momentum, g) = (
                    s(&ids),
                    s(&xs),
                    s(&ys),
                    s(&es),
                    s(&adv),
                    s(&momentum),
                    s(&g),
                );
                if ids.size()[0] == 0 {
                    return out;
                }
            }
        }
        adv = tch::no_grad(|| {
            let scale = g.abs().mean_dim([1, 2, 3].as_slice(), true, None);
            momentum = &momentum * p.decay + &g / scale;
            let stepped = &adv + momentum.sign() * p.step_size;
            project::linf(&xs, &stepped, &es)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Norm;
    use tch::Device;

    #[test]
    fn mim_is_feasible_and_breaks_a_linear_model() {
        tch::manual_seed(0);
        let w = Tensor::randn([10, 48], (Kind::Float, Device::Cpu));
        let m = move |x: &Tensor| x.flatten(1, -1).matmul(&w.tr());
        let x = Tensor::rand([32, 3, 4, 4], (Kind::Float, Device::Cpu)) * 0.5 + 0.25;
        let y = tch::no_grad(|| m(&x)).argmax(1, false);
        let e = Tensor::full([32], 0.2, (Kind::Float, Device::Cpu));
        for early_stop in [false, true] {
            let adv = mim(
                &m,
                &x,
                &y,
                &e,
                &MimParams {
                    steps: 10,
                    step_size: 0.02,
                    decay: 1.0,
                    early_stop,
                },
            );
            let d = project::norm(&(&adv - &x), Norm::Linf);
            assert!(f64::try_from(d.max()).unwrap() <= 0.2 + 1e-6);
            let acc = f64::try_from(
                super::super::correct(&m, &adv, &y)
                    .to_kind(Kind::Float)
                    .mean(Kind::Float),
            )
            .unwrap();
            // ε = 0.2 over 48 inputs moves a N(0,1)-weight logit gap by ~0.2·48·1.13 ≈ 11: nothing survives.
            assert!(acc < 0.1, "MIM left {acc} accuracy");
        }
    }
}
