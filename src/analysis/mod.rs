//! Analyses of trained weights: sparsity, layer norms, norm-based (adversarial) Rademacher bounds,
//! and rank correlations of those measures with measured gaps (docs/theory.md); `spec` is the
//! pipeline's `analysis:` section.
pub mod bounds;
pub mod correlation;
pub mod norms;
pub mod sparsity;
pub mod spec;
