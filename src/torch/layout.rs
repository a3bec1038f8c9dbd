//! Memory formats: the channels-last (NHWC) layout of 4-D tensors.
use tch::Tensor;

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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let y = channels_last(&x);
        assert!(!is_channels_last(&x) && is_channels_last(&y));
        assert_eq!(y.size(), x.size());
        assert!(bool::try_from(y.eq_tensor(&x).all()).unwrap());
    }
}
