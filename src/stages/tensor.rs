//! The tensor half of the stage interface, in the worker's build only: running a stage that
//! computes with tensors, and the device it computes on.
use super::{StageContext, Work};
use crate::vocab::device::Slot;
use anyhow::Result;
use serde_json::Value;
use tch::Device;

/// A stage that computes with tensors, in a worker process.
pub trait TensorStage {
    /// Produces the outputs; returns a small JSON summary stored in the entry's metadata.
    fn run(&self, cx: &StageContext) -> Result<Value>;
}

/// A stage's tensor half.
pub type TensorHalf<'a> = &'a dyn TensorStage;

/// The [`Work`] of a stage that computes with tensors: it must implement [`TensorStage`].
pub fn in_worker<T: TensorStage>(stage: &T) -> Work<'_> {
    Work::Worker(stage)
}

impl StageContext<'_> {
    /// The libtorch device this process computes on for its slot. A worker placed on a GPU sees
    /// only that GPU (`CUDA_VISIBLE_DEVICES`), as device 0; under `ROBARCH_FAKE_GPUS` (tests of
    /// the placement on machines without one) it computes on the CPU.
    pub fn device(&self) -> Device {
        device_for(self.slot)
    }
}

/// The libtorch device a process computes on for `slot` (see [`StageContext::device`]).
pub fn device_for(slot: Slot) -> Device {
    match slot {
        Slot::Cpu => Device::Cpu,
        Slot::Cuda(_) if std::env::var_os(crate::vocab::device::FAKE_GPUS).is_some() => Device::Cpu,
        Slot::Cuda(_) if std::env::var_os("CUDA_VISIBLE_DEVICES").is_some() => Device::Cuda(0),
        Slot::Cuda(i) => Device::Cuda(i),
    }
}
