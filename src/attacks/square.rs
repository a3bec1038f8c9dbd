// TEMPORARY STUB (the lead's compile placeholder) — replaced by the full Square port.
use super::Model;
use crate::spec::Norm;
use tch::Tensor;
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SquareLoss { Margin, Ce }
#[derive(Debug, Clone, Copy)]
pub struct SquareParams { pub norm: Norm, pub queries: usize, pub p_init: f64, pub restarts: usize, pub loss: SquareLoss, pub rescale_schedule: bool }
pub fn square(_model: &dyn Model, x: &Tensor, _y: &Tensor, _eps: &Tensor, _p: &SquareParams, _seed: u64) -> Tensor { x.shallow_clone() }
