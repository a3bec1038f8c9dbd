//! `analysis:` — which analyses run, as a list of names (defaults) or a mapping from name to
//! settings:
//! ```yaml
//! analysis: [sparsity, bounds, correlation]
//! analysis:
//!   sparsity: {absolute: [1e-3, 1e-2], relative: [0.01, 0.1]}
//!   bounds: {conv_grid: 16}
//!   correlation: {bootstrap: 2000, confidence: 0.9}
//! ```
pub use super::correlation::Over;
use super::correlation::NAME as CORRELATION;
use crate::vocab::{Problem, Real};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The `analysis:` section, resolved: each per-model analysis's settings (canonical JSON, typed
/// by its file in the registry, every default filled in) and the correlation's.
#[derive(Debug, Clone, Default)]
pub struct AnalysisSpec {
    /// Per-model analysis name → its settings.
    pub per_model: BTreeMap<String, Value>,
    pub correlation: Option<CorrelationSpec>,
    /// Names that are no analysis (reported by validation, with a did-you-mean).
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorrelationSpec {
    /// Bootstrap resamples of the architectures.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Coverage of the percentile intervals.
    #[serde(default = "default_confidence")]
    pub confidence: Real,
    /// The evaluation attack (or group) of the robust generalization gap (train − test robust
    /// accuracy); default: the evaluation attacks with the training attack's norm and ε.
    #[serde(default)]
    pub gap: Option<Vec<String>>,
    /// Evaluation attacks (or groups) whose clean-to-robust drop on the test split is correlated;
    /// default: every attack of another norm than the training attack's, and every group with one.
    #[serde(default)]
    pub unseen: Option<Vec<String>>,
    /// Where `seeds:` repeats the training: correlate per-architecture means over the seeds
    /// (`means`, the default) or every (architecture, seed) pair (`seeds`, bootstrap over whole
    /// architectures).
    #[serde(default)]
    pub over: Over,
}

fn default_bootstrap() -> usize {
    1000
}
fn default_confidence() -> Real {
    Real(0.95)
}

impl Default for CorrelationSpec {
    fn default() -> Self {
        Self {
            bootstrap: default_bootstrap(),
            confidence: default_confidence(),
            gap: None,
            unseen: None,
            over: Over::Means,
        }
    }
}

impl AnalysisSpec {
    pub fn is_empty(&self) -> bool {
        self.per_model.is_empty() && self.correlation.is_none()
    }

    /// The settings of per-model analysis `name`, where the pipeline runs it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.per_model.get(name)
    }

    fn set(&mut self, name: &str) -> bool {
        if let Some(e) = super::find(name) {
            self.per_model.insert(name.to_string(), (e.defaults)());
        } else if name == CORRELATION {
            self.correlation = Some(CorrelationSpec::default());
        } else {
            return false;
        }
        true
    }

    /// Range checks and names; attack names are checked against the evaluation by the caller.
    pub fn validate(&self, out: &mut Vec<Problem>) {
        for a in &self.unknown {
            let known: Vec<&str> = super::names().collect();
            out.push(
                Problem::new(&["analysis"], format!("unknown analysis `{a}`")).hint(
                    crate::vocab::typo_hint(a, known.iter().copied(), || {
                        format!("known analyses: {}", known.join(", "))
                    }),
                ),
            );
        }
        for e in super::REGISTRY {
            if let Some(s) = self.per_model.get(e.name) {
                e.check(s, out);
            }
        }
        if let Some(c) = &self.correlation {
            let conf = c.confidence.get();
            if !(conf > 0.0 && conf < 1.0) {
                out.push(
                    Problem::new(
                        &["analysis", "correlation", "confidence"],
                        format!("{conf} is out of range"),
                    )
                    .hint("a coverage in (0, 1), e.g. 0.95"),
                );
            }
            if c.bootstrap < 100 {
                out.push(
                    Problem::new(
                        &["analysis", "correlation", "bootstrap"],
                        format!("{} resamples are too few for an interval", c.bootstrap),
                    )
                    .hint("use at least 100 (1000 by default)"),
                );
            }
            if self.per_model.is_empty() {
                let names: Vec<String> = super::REGISTRY
                    .iter()
                    .map(|e| format!("`{}`", e.name))
                    .collect();
                out.push(
                    Problem::new(&["analysis", "correlation"], "has no measures to correlate")
                        .hint(format!("add {} to `analysis`", names.join(" and/or "))),
                );
            }
        }
    }
}

/// Reads one per-model analysis's settings typed, through the registry.
struct SettingsOf<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for SettingsOf<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        super::read_settings(self.0, d).expect("only registered analyses are read")
    }
}

impl<'de> Deserialize<'de> for AnalysisSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnalysisSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of analyses ([sparsity, bounds, correlation]) or a mapping from analysis to its settings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnalysisSpec::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut a = AnalysisSpec::default();
                while let Some(name) = seq.next_element::<String>()? {
                    if !a.set(&name) {
                        a.unknown.push(name);
                    }
                }
                Ok(a)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut a = AnalysisSpec::default();
                while let Some(key) = map.next_key::<String>()? {
                    if super::find(&key).is_some() {
                        let s = map.next_value_seed(SettingsOf(&key))?;
                        a.per_model.insert(key, s);
                    } else if key == CORRELATION {
                        a.correlation = Some(
                            map.next_value::<Option<CorrelationSpec>>()?
                                .unwrap_or_default(),
                        );
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        a.unknown.push(key);
                    }
                }
                Ok(a)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_map_forms() {
        use crate::analysis::{bounds, sparsity, PerModel};
        let default = |e: &str| Some((crate::analysis::find(e).unwrap().defaults)());
        let a: AnalysisSpec = serde_yaml::from_str("[sparsity, bounds]").unwrap();
        assert_eq!(a.get("sparsity").cloned(), default("sparsity"));
        assert_eq!(a.get("bounds").cloned(), default("bounds"));
        assert!(a.correlation.is_none() && a.unknown.is_empty());
        let a: AnalysisSpec = serde_yaml::from_str(
            "sparsity: {absolute: [0.5]}\nbounds:\ncorrelation: {bootstrap: 200}\nsparsty: {}",
        )
        .unwrap();
        let sp: <sparsity::Sparsity as PerModel>::Settings =
            serde_json::from_value(a.get("sparsity").unwrap().clone()).unwrap();
        assert_eq!(sp.absolute, vec![Real(0.5)]);
        assert_eq!(sp.relative, vec![Real(0.01)]);
        let b: <bounds::Bounds as PerModel>::Settings =
            serde_json::from_value(a.get("bounds").unwrap().clone()).unwrap();
        assert_eq!(b, Default::default());
        assert_eq!(a.correlation.as_ref().unwrap().bootstrap, 200);
        assert_eq!(a.unknown, ["sparsty"]);
        let mut p = Vec::new();
        a.validate(&mut p);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].hint.as_deref(), Some("did you mean `sparsity`?"));
    }

    #[test]
    fn bad_settings_are_located() {
        let e = serde_yaml::from_str::<AnalysisSpec>("bounds: {conv_grd: 8}").unwrap_err();
        assert!(e.to_string().contains("conv_grd"), "{e}");
        assert!(e.location().is_some());
        let a: AnalysisSpec =
            serde_yaml::from_str("sparsity: {relative: [2]}\ncorrelation: {confidence: 1.5}")
                .unwrap();
        let mut p = Vec::new();
        a.validate(&mut p);
        let paths: Vec<String> = p.iter().map(|p| p.path.join(".")).collect();
        assert_eq!(
            paths,
            [
                "analysis.sparsity.relative",
                "analysis.correlation.confidence"
            ]
        );
    }
}
