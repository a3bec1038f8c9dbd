//! Analyses of trained weights: sparsity, layer norms, norm-based (adversarial) Rademacher bounds,
//! and rank correlations of those measures with measured gaps (docs/theory.md).
pub mod bounds;
pub mod correlation;
pub mod norms;
pub mod sparsity;
