//! libtorch has one global generator per device. Every libtorch draw that affects results runs
//! under [`with_seed`], which serialises access and reseeds it, so concurrent stages never see each
//! other's draws.
use std::sync::Mutex;

static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Runs `f` with libtorch's generators seeded to `seed`, excluding other seeded sections.
pub fn with_seed<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed((seed & (i64::MAX as u64)) as i64);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn seeded_draws_repeat() {
        let a = with_seed(12345, || Tensor::rand([4], (Kind::Float, Device::Cpu)));
        let b = with_seed(12345, || Tensor::rand([4], (Kind::Float, Device::Cpu)));
        let c = with_seed(12346, || Tensor::rand([4], (Kind::Float, Device::Cpu)));
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
    }
}
