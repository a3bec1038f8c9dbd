//! libtorch glue: what robarch needs from libtorch beyond tch's safe API, in one place. Device
//! names and selection, bfloat16 autocast through libtorch's C++ ABI (its assumptions are written
//! beside the bindings in `autocast.rs`), the channels-last memory format, and seeded access to
//! libtorch's global generators.
//!
//! This module imports nothing else of the crate: every layer may use it, and it can be read and
//! re-checked against a new libtorch on its own.
pub mod autocast;
pub mod device;
pub mod layout;
pub mod seed;

pub use autocast::autocast;
pub use layout::{channels_last, is_channels_last};
pub use seed::with_seed;
