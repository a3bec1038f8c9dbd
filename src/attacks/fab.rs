// TEMPORARY STUB (the lead's compile placeholder) — replaced by the full FAB port.
use super::Model;
use crate::spec::Norm;
use tch::Tensor;
#[derive(Debug, Clone, Copy)]
pub struct FabParams { pub norm: Norm, pub steps: usize, pub restarts: usize, pub targets: Option<usize>, pub alpha_max: f64, pub eta: f64, pub beta: f64 }
pub fn fab(_model: &dyn Model, x: &Tensor, _y: &Tensor, _eps: &Tensor, _p: &FabParams, _seed: u64) -> Tensor { x.shallow_clone() }
