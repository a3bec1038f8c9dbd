//! The shared vocabulary of every layer: threat-model norms, dataset splits, real numbers as the
//! spec writes them, and problems with their hints. A leaf: it imports nothing else of the crate,
//! so the spec, the planner and every domain module can speak it without depending on each other.
pub mod device;
pub mod problem;
pub mod real;

pub use problem::{did_you_mean, type_hint, typo_hint, Problem};
pub use real::Real;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How CPU kernels are chosen (`numerics:` in a pipeline); enters no key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Numerics {
    /// Each library picks the fastest kernels for this CPU: results may differ in their last bits
    /// (and a trained model in its accuracies) between CPUs.
    #[default]
    Default,
    /// Kernels that compute the same bits on every x86-64 CPU (ATen's baseline kernels, MKL's
    /// compatible code path, no oneDNN or NNPACK), at a speed cost; the thread count must still
    /// match.
    Portable,
}

impl Numerics {
    /// The environment portable numerics compute under, set before libtorch computes anything:
    /// ATen's baseline kernels (built without instruction-set flags: the same code on every
    /// x86-64 CPU) and MKL's conditional numerical reproducibility on its one cross-vendor code
    /// path (`COMPATIBLE`: SSE2, the same results on Intel and AMD CPUs). The worker also turns
    /// oneDNN and NNPACK off (`torch::cpu::portable`).
    pub const PORTABLE_ENV: [(&'static str, &'static str); 2] =
        [("ATEN_CPU_CAPABILITY", "default"), ("MKL_CBWR", "COMPATIBLE")];
}

/// A threat model's norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    Linf,
    L2,
    L1,
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
            Norm::L1 => "l1",
        })
    }
}

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    /// Held out from the training split by `val_fraction`.
    Val,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}
