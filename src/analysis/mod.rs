//! Analyses of trained weights (weight sparsity now; norm-based bounds build on the same walk).
pub mod sparsity;
