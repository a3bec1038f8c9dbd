//! `analysis:` — which analyses run, as a list of names (defaults) or a mapping from name to
//! settings:
//! ```yaml
//! analysis: [sparsity, bounds, correlation]
//! analysis:
//!   sparsity: {absolute: [1e-3, 1e-2], relative: [0.01, 0.1]}
//!   bounds: {conv_grid: 16}
//!   correlation: {bootstrap: 2000, confidence: 0.9}
//! ```
use crate::vocab::{Problem, Real};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Analyses known to `analysis:`.
pub const ANALYSES: &[&str] = &["sparsity", "bounds", "correlation"];

#[derive(Debug, Clone, Default)]
pub struct AnalysisSpec {
    pub sparsity: Option<SparsitySpec>,
    pub bounds: Option<BoundsSpec>,
    pub correlation: Option<CorrelationSpec>,
    /// Names that are no analysis (reported by validation, with a did-you-mean).
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SparsitySpec {
    /// Fractions of |w| below each of these.
    #[serde(default = "default_absolute")]
    pub absolute: Vec<Real>,
    /// Fractions of |w| below each of these times the tensor's largest |w|.
    #[serde(default = "default_relative")]
    pub relative: Vec<Real>,
}

fn default_absolute() -> Vec<Real> {
    vec![Real(1e-3)]
}
fn default_relative() -> Vec<Real> {
    vec![Real(0.01)]
}

impl Default for SparsitySpec {
    fn default() -> Self {
        Self {
            absolute: default_absolute(),
            relative: default_relative(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoundsSpec {
    /// Convolutions are measured as operators on `conv_grid`×`conv_grid` periodic inputs.
    #[serde(default = "default_conv_grid")]
    pub conv_grid: i64,
    /// Most Lanczos steps (operator products) per spectral norm.
    #[serde(default = "default_iterations")]
    pub iterations: u32,
    /// The evaluation attack whose norm and ε enter the adversarial bounds; default: the training
    /// attack (ε = 0 for standard training).
    #[serde(default)]
    pub attack: Option<String>,
}

fn default_conv_grid() -> i64 {
    8
}
fn default_iterations() -> u32 {
    100
}

impl Default for BoundsSpec {
    fn default() -> Self {
        Self {
            conv_grid: default_conv_grid(),
            iterations: default_iterations(),
            attack: None,
        }
    }
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

/// What one point of a correlation is where seeds repeat.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Over {
    #[default]
    Means,
    Seeds,
}

impl Over {
    pub fn is_means(&self) -> bool {
        *self == Over::Means
    }
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
        self.sparsity.is_none() && self.bounds.is_none() && self.correlation.is_none()
    }

    fn set(&mut self, name: &str) -> bool {
        match name {
            "sparsity" => self.sparsity = Some(SparsitySpec::default()),
            "bounds" => self.bounds = Some(BoundsSpec::default()),
            "correlation" => self.correlation = Some(CorrelationSpec::default()),
            _ => return false,
        }
        true
    }

    /// Range checks and names; attack names are checked against the evaluation by the caller.
    pub fn validate(&self, out: &mut Vec<Problem>) {
        for a in &self.unknown {
            out.push(
                Problem::new(&["analysis"], format!("unknown analysis `{a}`")).hint(
                    crate::vocab::typo_hint(a, ANALYSES.iter().copied(), || {
                        format!("known analyses: {}", ANALYSES.join(", "))
                    }),
                ),
            );
        }
        if let Some(s) = &self.sparsity {
            for (field, list, max) in [
                ("absolute", &s.absolute, f64::INFINITY),
                ("relative", &s.relative, 1.0),
            ] {
                for t in list {
                    let t = t.get();
                    if !(t > 0.0 && t <= max) {
                        out.push(
                            Problem::new(
                                &["analysis", "sparsity", field],
                                format!("threshold {t} is out of range"),
                            )
                            .hint(if max == 1.0 {
                                "relative thresholds are fractions of the largest |w|, in (0, 1]"
                            } else {
                                "absolute thresholds are positive"
                            }),
                        );
                    }
                }
            }
        }
        if let Some(b) = &self.bounds {
            if !(1..=256).contains(&b.conv_grid) {
                out.push(
                    Problem::new(
                        &["analysis", "bounds", "conv_grid"],
                        format!("{} is out of range", b.conv_grid),
                    )
                    .hint("use a grid side from 1 to 256 (8 by default)"),
                );
            }
            if b.iterations == 0 {
                out.push(
                    Problem::new(&["analysis", "bounds", "iterations"], "must be at least 1")
                        .hint("100 by default"),
                );
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
            if self.sparsity.is_none() && self.bounds.is_none() {
                out.push(
                    Problem::new(&["analysis", "correlation"], "has no measures to correlate")
                        .hint("add `sparsity` and/or `bounds` to `analysis`"),
                );
            }
        }
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
                    match key.as_str() {
                        "sparsity" => {
                            a.sparsity = Some(
                                map.next_value::<Option<SparsitySpec>>()?
                                    .unwrap_or_default(),
                            )
                        }
                        "bounds" => {
                            a.bounds =
                                Some(map.next_value::<Option<BoundsSpec>>()?.unwrap_or_default())
                        }
                        "correlation" => {
                            a.correlation = Some(
                                map.next_value::<Option<CorrelationSpec>>()?
                                    .unwrap_or_default(),
                            )
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            a.unknown.push(key);
                        }
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
        let a: AnalysisSpec = serde_yaml::from_str("[sparsity, bounds]").unwrap();
        assert_eq!(a.sparsity, Some(SparsitySpec::default()));
        assert_eq!(a.bounds, Some(BoundsSpec::default()));
        assert!(a.correlation.is_none() && a.unknown.is_empty());
        let a: AnalysisSpec = serde_yaml::from_str(
            "sparsity: {absolute: [0.5]}\nbounds:\ncorrelation: {bootstrap: 200}\nsparsty: {}",
        )
        .unwrap();
        assert_eq!(a.sparsity.as_ref().unwrap().absolute, vec![Real(0.5)]);
        assert_eq!(a.sparsity.as_ref().unwrap().relative, vec![Real(0.01)]);
        assert_eq!(a.bounds, Some(BoundsSpec::default()));
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
