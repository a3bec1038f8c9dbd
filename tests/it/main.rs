//! robarch's integration tests, one module per area, built as a single test binary so that
//! libtorch and the rest of the crate are linked once rather than once per file. Tests drive the
//! real `robarch` binary on tiny pipelines (see `common`) or call the library directly; the
//! cross-checks run the reference implementations from the project's `.venv`.
mod common;

mod analysis;
mod attacks;
mod attacks_crosscheck;
mod byo_timm;
mod byo_training;
mod byo_weights;
mod augment_crosscheck;
mod cache;
mod cli;
mod corpus;
mod cost;
mod datasets;
mod evaluation;
mod export;
mod faults;
mod flatness;
mod hardening;
mod incremental;
mod keys;
mod layering;
mod locks;
mod masking;
mod mini_study;
mod numerics;
mod model_zoo;
mod models_crosscheck;
mod provenance;
mod recipes;
mod report;
mod seeds;
mod slurm;
mod slurm_nodes;
mod torchscript;
mod training;
mod terminal;
mod workers;
