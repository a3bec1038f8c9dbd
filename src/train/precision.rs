//! `training.<name>.amp` and `training.<name>.channels_last`: the settings, and what `auto`
//! resolves to. The mechanisms (autocast, the NHWC layout) are libtorch glue in `crate::torch`.
use crate::models::ArchKind;
use serde::{Deserialize, Serialize};

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

/// `training.<name>.channels_last`: the memory format of convolutional activations and weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelsLast {
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
}

impl ChannelsLast {
    pub fn is_auto(&self) -> bool {
        *self == ChannelsLast::Auto
    }
    /// Whether an architecture of kind `kind` runs channels-last.
    pub fn resolve(self, kind: ArchKind) -> bool {
        match self {
            ChannelsLast::Auto => kind == ArchKind::Cnn,
            ChannelsLast::On => true,
            ChannelsLast::Off => false,
        }
    }
}

/// The tensor half (libtorch, the worker build): what `amp` resolves to on a device.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use tch::{Device, Kind};

    impl Amp {
        /// The autocast dtype on `device` (none: float32).
        pub fn resolve(self, device: Device) -> Option<Kind> {
            match self {
                Amp::Auto if device.is_cuda() => Some(Kind::BFloat16),
                Amp::Bf16 => Some(Kind::BFloat16),
                _ => None,
            }
        }
    }
}
