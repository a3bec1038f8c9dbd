//! Device names in provenance. Which devices exist and which stage runs where is the control
//! plane's business (`exec::devices`); a worker turns its slot into a `tch::Device`.
use tch::Device;

pub fn describe(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// How many CUDA devices libtorch sees in this process.
pub fn cuda_count() -> usize {
    tch::Cuda::device_count().max(0) as usize
}
