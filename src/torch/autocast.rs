//! Mixed precision: libtorch's device-typed autocast, called through its C++ ABI.
//!
//! tch's `autocast` only switches on libtorch's CUDA autocast with its default dtype (float16, which
//! needs a gradient scaler). We call libtorch's own device-typed autocast functions instead, so a
//! region runs in bfloat16 (no scaler: same exponent range as float32) on CUDA or on the CPU.
//! These are the functions `torch.autocast(device_type, dtype)` calls; the symbols are resolved
//! against the pinned libtorch (2.13) we link.
//!
//! ABI assumptions (all checked against libtorch 2.13; re-check them when `tch` and the pinned
//! torch wheel move):
//! - The symbols are bound by their Itanium-mangled C++ names. Mangling encodes the parameter
//!   types but not the return type: a renamed function or a changed parameter type fails at link
//!   time (loud), but a changed return type would not. `get_autocast_dtype` returns
//!   `c10::ScalarType`, which must stay an `enum class : int8_t` (read as `i8`);
//!   `is_autocast_enabled` returns `bool`; the nesting counters return `int`.
//! - `c10::DeviceType` is an `enum class : int8_t` with CPU = 0 and CUDA = 1.
//! - `c10::ScalarType` codes are positional in `c10/core/ScalarType.h`: Half = 5, BFloat16 = 15.
//! - Autocast state is thread-local in libtorch: a region must run on the thread that opened it,
//!   so `f` must not move its tensor work to another thread (a rayon hop) inside the region.
use tch::{Device, Kind};

// c10::DeviceType and c10::ScalarType are `enum class : int8_t`.
const CPU: i8 = 0;
const CUDA: i8 = 1;

extern "C" {
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn set_autocast_enabled(device: i8, enabled: bool);
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn is_autocast_enabled(device: i8) -> bool;
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn set_autocast_dtype(device: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn get_autocast_dtype(device: i8) -> i8;
    #[link_name = "_ZN2at8autocast17increment_nestingEv"]
    fn increment_nesting() -> i32;
    #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
    fn decrement_nesting() -> i32;
    #[link_name = "_ZN2at8autocast11clear_cacheEv"]
    fn clear_cache();
}

fn scalar_type(kind: Kind) -> i8 {
    match kind {
        Kind::BFloat16 => 15,
        Kind::Half => 5,
        other => panic!("autocast to {other:?} is not supported"),
    }
}

/// Runs `f` with autocast to `dtype` on `device`'s type, as `with torch.autocast(...)`: matmuls and
/// convolutions run in `dtype`, reductions and losses in float32. Weight casts cached inside the
/// region are dropped when the outermost region ends, so an optimiser step between two regions is
/// always seen.
pub fn autocast<T>(device: Device, dtype: Kind, f: impl FnOnce() -> T) -> T {
    let d = match device {
        Device::Cpu => CPU,
        Device::Cuda(_) => CUDA,
        other => panic!("autocast on {other:?} is not supported"),
    };
    // SAFETY: plain libtorch calls on thread-local autocast state, restored below.
    let (enabled, dt) = unsafe { (is_autocast_enabled(d), get_autocast_dtype(d)) };
    unsafe {
        set_autocast_dtype(d, scalar_type(dtype));
        set_autocast_enabled(d, true);
        increment_nesting();
    }
    struct Restore(i8, bool, i8);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: as above; runs on unwinding too.
            unsafe {
                if decrement_nesting() == 0 {
                    clear_cache();
                }
                set_autocast_enabled(self.0, self.1);
                set_autocast_dtype(self.0, self.2);
            }
        }
    }
    let _restore = Restore(d, enabled, dt);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;
    #[test]
    fn autocast_runs_matmuls_in_bf16_and_restores_the_state() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        let (inside, nested) = autocast(Device::Cpu, Kind::BFloat16, || {
            let nested = autocast(Device::Cpu, Kind::BFloat16, || a.matmul(&b).kind());
            (a.matmul(&b), nested)
        });
        assert_eq!((inside.kind(), nested), (Kind::BFloat16, Kind::BFloat16));
        // Close to float32, but rounded.
        let exact = a.matmul(&b);
        let err = f64::try_from((inside.to_kind(Kind::Float) - &exact).abs().max()).unwrap();
        assert!(err > 0.0 && err < 0.1, "{err}");
        // Off again outside, and the CPU default dtype is back.
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        unsafe {
            assert!(!is_autocast_enabled(CPU));
            assert_eq!(get_autocast_dtype(CPU), scalar_type(Kind::BFloat16));
        }
    }

    #[test]
    fn weights_updated_between_regions_are_seen() {
        // A cached bf16 cast of a leaf weight must not survive the region.
        let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
        let first = autocast(Device::Cpu, Kind::BFloat16, || x.matmul(&w));
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(3.0);
        });
        let second = autocast(Device::Cpu, Kind::BFloat16, || x.matmul(&w));
        assert_eq!(f64::try_from(first.sum(Kind::Float)).unwrap(), 4.0);
        assert_eq!(f64::try_from(second.sum(Kind::Float)).unwrap(), 12.0);
    }
}
