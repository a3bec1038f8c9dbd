//! robarch: YAML experiment specs → a cached DAG of adversarial-robustness stages (data
//! preparation, adversarial training, attacks, analyses, reports).
//!
//! Data flows one way: [`spec`] → [`plan`] → [`exec`] → [`cache`] → [`report`]. Stage kinds live in
//! [`stages`] and call the domain libraries: [`data`], [`models`], [`attacks`], [`train`],
//! [`analysis`].
pub mod analysis;
pub mod attacks;
pub mod augment;
pub mod cache;
pub mod cli;
pub mod data;
pub mod exec;
pub mod models;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rng;
pub mod spec;
pub mod stages;
pub mod train;
