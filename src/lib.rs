//! robarch: YAML experiment specs → a cached DAG of adversarial-robustness stages (data
//! preparation, adversarial training, attacks, analyses, reports).
//!
//! Data flows one way: the [`spec`] is parsed, checked and resolved once into typed values
//! ([`spec::Resolved`]), [`plan`] turns those into stages with content keys (each stage kind
//! constructs itself), [`exec`] runs the missing ones into the [`cache`], each stage kind in [`stages`]
//! calling the domain libraries, and the report stage writes tables through [`report`]. So the
//! modules form layers; a module may import only modules of the layers below its own, top to
//! bottom (`tests/it/layering.rs` checks this list against every import, and that no files import
//! each other in a cycle):
//!
//! 1. `cli` — the command line (the control plane; the stage worker process is the `worker/`
//!    package, which uses this library with the `torch` feature)
//! 2. `exec` — the scheduler: runs a plan's missing stages (in worker processes, or here for
//!    those without tensors), commits entries
//! 3. `plan` — stages and their keys from a resolved spec; the DAG
//! 4. `spec` — the pipeline file: parsing, locations, checks and resolution (composes the domain
//!    specs, each owned by its domain module)
//! 5. `stages` — one file per stage kind: inputs and outputs in the cache, calls into the domains
//! 6. `report` — the paper's tables from stage results
//! 7. `train`, `analysis` — adversarial training; analyses of trained models (sparsity, norms,
//!    bounds, robust flatness: each computes on a model, its data and attacks) and correlations
//! 8. `attacks`, `data` — attacks; datasets, preparation and loading
//! 9. `models`, `augment` — the model zoo; augmentation
//! 10. `cache`, `progress`, `rng`, `torch`, `vocab` — leaves: the content-addressed store,
//!     progress bars, seeds, libtorch glue, the shared vocabulary (norms, splits, problems)
//! 11. `fault`, `stop` — the fault-injection points the crash tests kill processes at (any layer
//!     may place one); requests from a signal handler that the running stage save its progress
pub mod analysis;
pub mod attacks;
pub mod augment;
pub mod cache;
pub mod cli;
pub mod data;
pub mod exec;
pub mod fault;
pub mod models;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rng;
pub mod spec;
pub mod stages;
pub mod stop;
#[cfg(feature = "torch")]
pub mod torch;
pub mod train;
pub mod vocab;
