//! Mixed precision (autocast) and channels-last memory format.
//!
//! tch's `autocast` only switches on libtorch's CUDA autocast with its default dtype (float16, which
//! needs a gradient scaler). We call libtorch's own device-typed autocast functions instead, so a
//! region runs in bfloat16 (no scaler: same exponent range as float32) on CUDA or on the CPU.
//! These are the functions `torch.autocast(device_type, dtype)` calls; the symbols are resolved
//! against the pinned libtorch (2.13) we link.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

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

/// The same NCHW tensor stored channels-last (NHWC strides), as `x.to(memory_format=
/// torch.channels_last)`; other ranks are returned unchanged.
pub fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether a 4-D tensor is stored channels-last (strides of size-1 dimensions do not matter, as in
/// `is_contiguous(memory_format=torch.channels_last)`).
pub fn is_channels_last(x: &Tensor) -> bool {
    if x.dim() != 4 {
        return false;
    }
    let (s, z) = (x.stride(), x.size());
    let (c, h, w) = (z[1], z[2], z[3]);
    // NHWC order: C fastest, then W, then H, then N.
    [(1, 1), (3, c), (2, c * w), (0, c * h * w)]
        .iter()
        .all(|&(d, want)| z[d] == 1 || s[d] == want)
}

/// `training.<name>.amp`: mixed precision of the training forward passes (the attack's and the
/// update's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Amp {
    /// bfloat16 on CUDA, float32 on the CPU.
    #[default]
    Auto,
    Bf16,
    Off,
}

/// `training.<name>.channels_last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    /// On for convolutional networks (on CUDA and on the CPU, where oneDNN's NHWC convolutions were
    /// faster in scripts/bench-train.sh), off for the others.
    #[default]
    Auto,
    On,
    Off,
}

impl Amp {
    pub fn is_auto(&self) -> bool {
        *self == Amp::Auto
    }
    /// The autocast dtype on `device` (none: float32).
    pub fn resolve(self, device: Device) -> Option<Kind> {
        match self {
            Amp::Auto if device.is_cuda() => Some(Kind::BFloat16),
            Amp::Bf16 => Some(Kind::BFloat16),
            _ => None,
        }
    }
}

impl Toggle {
    pub fn is_auto(&self) -> bool {
        *self == Toggle::Auto
    }
    /// Channels-last for an architecture of kind `kind` on `device`.
    pub fn resolve(self, kind: crate::models::ArchKind) -> bool {
        match self {
            Toggle::Auto => kind == crate::models::ArchKind::Cnn,
            Toggle::On => true,
            Toggle::Off => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let y = channels_last(&x);
        assert!(!is_channels_last(&x) && is_channels_last(&y));
        assert_eq!(y.size(), x.size());
        assert!(bool::try_from(y.eq_tensor(&x).all()).unwrap());
    }
}
