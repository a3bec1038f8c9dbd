//! libtorch glue: what robarch needs from libtorch beyond tch's safe API, in one place. Device
//! names and selection, the CPU kernel path results depend on, bfloat16 autocast through libtorch's C++ ABI (its assumptions are written
//! beside the bindings in `autocast.rs`), the channels-last memory format, and seeded access to
//! libtorch's global generators.
//!
//! This module imports nothing else of the crate: every layer may use it, and it can be read and
//! re-checked against a new libtorch on its own.
pub mod alloc;
pub mod autocast;
pub mod cpu;
pub mod device;
pub mod layout;
pub mod script;
pub mod seed;

pub use autocast::autocast;
pub use layout::{channels_last, is_channels_last};
pub use seed::with_seed;

/// The Python interpreter of the environment libtorch comes from (for the stages that run timm or
/// read pickled checkpoints): `ROBARCH_PYTHON`, else the one the build found (`build.rs`), else
/// `python3`.
pub fn python() -> std::path::PathBuf {
    std::env::var_os("ROBARCH_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| option_env!("ROBARCH_BUILD_PYTHON").map(std::path::PathBuf::from))
        .unwrap_or_else(|| "python3".into())
}

/// The setting a result computed on `device` depends on beyond its inputs, written the way
/// `cache::Provenance::setting` writes it: on CPU the intra-op thread count this thread's libtorch
/// calls use and the CPU kernel path (`cpu, 2 threads, <kernel path>`); on a GPU the device kind.
pub fn setting(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => cpu::setting(cpu::threads(), &cpu::kernel_path()),
        d => device::describe(d)
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
