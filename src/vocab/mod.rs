//! The shared vocabulary of every layer: threat-model norms, dataset splits, real numbers as the
//! spec writes them, and problems with their hints. A leaf: it imports nothing else of the crate,
//! so the spec, the planner and every domain module can speak it without depending on each other.
pub mod device;
pub mod problem;
pub mod real;

pub use problem::{did_you_mean, typo_hint, Problem};
pub use real::Real;
use serde::{Deserialize, Serialize};
use std::fmt;

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
