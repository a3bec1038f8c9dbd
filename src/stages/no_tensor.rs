//! The control plane's side of the tensor boundary: it has no tensor code, so a stage that
//! computes with tensors is only a marker here (the worker's build has `stages::tensor`).
use super::Work;
use std::marker::PhantomData;

/// A stage's tensor half: absent from the control plane.
pub struct TensorHalf<'a>(PhantomData<&'a ()>);

/// The [`Work`] of a stage that computes with tensors (in the worker's build, it must implement
/// `TensorStage`).
pub fn in_worker<T>(_: &T) -> Work<'_> {
    Work::Worker(TensorHalf(PhantomData))
}
