//! FGSM (Goodfellow et al. 2015): one signed-gradient step of size ε on the batch-mean
//! cross-entropy, clipped to [0,1] (torchattacks `FGSM`).
use super::project::col;
use super::{input_grad, Model};
use tch::Tensor;

pub fn fgsm(model: &dyn Model, x: &Tensor, y: &Tensor, eps: &Tensor) -> Tensor {
    let g = input_grad(model, x, y);
    tch::no_grad(|| (x + g.sign() * col(eps, x)).clamp(0.0, 1.0))
}
