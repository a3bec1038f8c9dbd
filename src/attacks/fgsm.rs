//! FGSM (Goodfellow et al. 2015): one signed-gradient step of size ε, clipped to [0,1].
use crate::models::Network;
use tch::Tensor;

pub fn fgsm(model: &Network, x: &Tensor, y: &Tensor, eps: f64, train_mode: bool) -> Tensor {
    let g = super::input_grad(model, x, y, train_mode);
    tch::no_grad(|| (x + g.sign() * eps).clamp(0.0, 1.0))
}
