//! `models.<name>`: a model as the spec writes it (resolved by `models::resolve`).
use serde::Deserialize;
use std::collections::BTreeMap;

/// An architecture from the registry, a preset, and field overrides (e.g. `depth: 2`).
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    /// Registry name; defaults to the model's key in `models:`.
    pub arch: Option<String>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(flatten)]
    pub overrides: BTreeMap<String, serde_yaml::Value>,
}

fn default_preset() -> String {
    "tiny".into()
}
