//! Analyses of trained models, and rank correlations of their measures with the measured gaps
//! (docs/theory.md); `spec` is the pipeline's `analysis:` section.
//!
//! A per-model analysis is one file implementing [`PerModel`]: its typed settings (the YAML under
//! `analysis.<name>`, defaults and checks), its stage's key parameters, its computation on one
//! trained model (`Compute`, in the worker, with the `torch` feature), and its typed output with
//! the measures the correlation ranks and the report shows. The [`registry!`] below lists them,
//! one line each; the planner, the correlation stage, the report's tables and scatter plots,
//! `robarch ls analyses` and the executor's `resources` keys all go through [`REGISTRY`], so
//! adding an analysis is its file plus one line there (and docs, tests).
//!
//! `correlation` is not per model: it ranks every per-model measure against the gaps
//! (`analysis::correlation`, the `correlation` stage).
pub mod bounds;
pub mod correlation;
pub mod flatness;
pub mod norms;
pub mod sparsity;
pub mod spec;

use crate::attacks::AttackConfig;
use crate::models::saved::Checkpoint;
use crate::vocab::Problem;
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One measured value of a model: a column name and its value (`None` where undefined).
pub type Measure = (String, Option<f64>);

/// What the planner knows of one trained model when it makes an analysis stage.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    /// The weights `evaluation.checkpoint` evaluates.
    pub checkpoint: Checkpoint,
    /// The evaluation attack the analysis's settings name ([`PerModel::attack`]), resolved.
    pub named: Option<&'a AttackConfig>,
    /// The model's training attack (none: standard training, or an imported model).
    pub training: Option<&'a AttackConfig>,
    /// The seed of the model's evaluations.
    pub seed: u64,
}

/// A per-model analysis: one file, one [`registry!`] line (its computation is `Compute`, with
/// the tensor code).
pub trait PerModel {
    /// Its name in `analysis:`, its stage kind and the first segment of its stage ids.
    const NAME: &'static str;
    /// One line for `robarch ls analyses`.
    const ABOUT: &'static str;
    /// Its stage's version, bumped whenever the computation's semantics change.
    const VERSION: u32;
    /// Whether the stage reads the prepared dataset (input `data`) besides the model.
    const NEEDS_DATA: bool;
    /// Key compatibility: whether the correlation and report stages list this analysis (an
    /// empty list where it is not configured) in their keys. True only for the analyses that
    /// existed when those keys were fixed; a new analysis appears in them only when configured.
    const ALWAYS_LISTED: bool = false;
    /// Whether the stage computes on the compute device (and so takes a device slot); otherwise
    /// it reads weights on the CPU.
    const USES_DEVICE: bool = false;
    /// The YAML under `analysis.<NAME>`, every field defaulted.
    type Settings: DeserializeOwned + Serialize + Default;
    /// The stage's key parameters (its serialised stage).
    type Params: DeserializeOwned + Serialize;
    /// What the stage returns as its summary; the correlation and the report read it typed.
    type Output: DeserializeOwned + Serialize;

    /// Range checks, with paths relative to `analysis.<NAME>`.
    fn check(_: &Self::Settings, _: &mut Vec<Problem>) {}
    /// The evaluation attack the settings name (checked against `evaluation.attacks`).
    fn attack(_: &Self::Settings) -> Option<&str> {
        None
    }
    /// The stage's parameters for one trained model.
    fn params(settings: &Self::Settings, cx: &PlanContext) -> Self::Params;
    /// Fails on an output the readers cannot use.
    fn verify(_: &Self::Output) -> Result<()> {
        Ok(())
    }
    /// The whole-model measures the correlation ranks against the gaps.
    fn measures(out: &Self::Output) -> Vec<Measure>;
    /// The `analysis` table's columns (by default the measures).
    fn columns(out: &Self::Output) -> Vec<Measure> {
        Self::measures(out)
    }
    /// For compute estimates: the stage's FLOPs given one forward pass's per image (`None` where
    /// unknown; the default: negligible beside training and evaluation).
    fn flops(_: &Self::Params, _forward: f64) -> Option<f64> {
        Some(0.0)
    }
    /// The figure of its measures against the robust gap, if it draws one.
    const SCATTER: Option<Scatter> = None;
}

/// How the report draws an analysis's measures against the robust generalization gap (one figure
/// per dataset and training, one panel per measure that has a correlation row).
#[derive(Debug, Clone, Copy)]
pub struct Scatter {
    /// File name prefix: `<file>_<dataset>_<training>`.
    pub file: &'static str,
    /// The measures drawn, in panel order.
    pub measures: fn() -> Vec<String>,
    /// A measure's axis label.
    pub axis: fn(&str) -> String,
    /// The figure's title, given the gap's attack.
    pub title: fn(&str) -> String,
    /// The vertical axis label, given the gap's attack.
    pub y: fn(&str) -> String,
    /// The caption, given the gap's attack, the dataset, the training and what a point is.
    pub caption: fn(&str, &str, &str, &str) -> String,
}

/// A registered analysis, as the rest of the crate sees it (no generics).
pub struct Entry {
    pub name: &'static str,
    pub about: &'static str,
    pub version: u32,
    pub needs_data: bool,
    pub always_listed: bool,
    pub uses_device: bool,
    pub scatter: Option<Scatter>,
    /// The default settings, canonical.
    pub defaults: fn() -> Value,
    check: fn(&Value, &mut Vec<Problem>),
    attack: fn(&Value) -> Option<String>,
    params: fn(&Value, &PlanContext) -> Value,
    measures: fn(&Value) -> Result<Vec<Measure>>,
    columns: fn(&Value) -> Result<Vec<Measure>>,
    flops: fn(&Value, f64) -> Option<f64>,
}

fn typed<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T> {
    serde_json::from_value(v.clone()).with_context(|| format!("reading {what}"))
}

/// Settings that already passed the spec's typed deserialisation.
fn settings<A: PerModel>(v: &Value) -> A::Settings {
    serde_json::from_value(v.clone()).expect("analysis settings were resolved typed")
}

fn output<A: PerModel>(v: &Value) -> Result<A::Output> {
    let o: A::Output = typed(v, &format!("a {} summary", A::NAME))?;
    A::verify(&o)?;
    Ok(o)
}

impl Entry {
    /// The entry of analysis `A`.
    pub const fn of<A: PerModel>() -> Entry {
        Entry {
            name: A::NAME,
            about: A::ABOUT,
            version: A::VERSION,
            needs_data: A::NEEDS_DATA,
            always_listed: A::ALWAYS_LISTED,
            uses_device: A::USES_DEVICE,
            scatter: A::SCATTER,
            defaults: || serde_json::to_value(A::Settings::default()).expect("settings serialise"),
            check: |v, out| A::check(&settings::<A>(v), out),
            attack: |v| A::attack(&settings::<A>(v)).map(String::from),
            params: |v, cx| {
                serde_json::to_value(A::params(&settings::<A>(v), cx)).expect("params serialise")
            },
            measures: |v| output::<A>(v).map(|o| A::measures(&o)),
            columns: |v| output::<A>(v).map(|o| A::columns(&o)),
            flops: |p, forward| {
                let p: A::Params = typed(p, A::NAME).ok()?;
                A::flops(&p, forward)
            },
        }
    }

    /// Range checks of resolved settings, located under `analysis.<name>`.
    pub fn check(&self, settings: &Value, out: &mut Vec<Problem>) {
        let mut mine = Vec::new();
        (self.check)(settings, &mut mine);
        out.extend(mine.into_iter().map(|p| p.under(&["analysis", self.name])));
    }

    /// The evaluation attack the settings name.
    pub fn attack(&self, settings: &Value) -> Option<String> {
        (self.attack)(settings)
    }

    /// The stage's key parameters for one trained model.
    pub fn params(&self, settings: &Value, cx: &PlanContext) -> Value {
        (self.params)(settings, cx)
    }

    /// The correlated measures of a stage's summary, read typed.
    pub fn measures(&self, summary: &Value) -> Result<Vec<Measure>> {
        (self.measures)(summary)
    }

    /// The `analysis` table's columns of a stage's summary, read typed.
    pub fn columns(&self, summary: &Value) -> Result<Vec<Measure>> {
        (self.columns)(summary)
    }

    /// The stage's FLOPs given one forward pass's per image.
    pub fn flops(&self, params: &Value, forward: f64) -> Option<f64> {
        (self.flops)(params, forward)
    }
}

/// Declares [`REGISTRY`], the typed reading of each analysis's settings and (in the worker build)
/// the dispatch of a computation by name.
macro_rules! registry {
    ($($ty:ty),* $(,)?) => {
        /// Every per-model analysis, in the order of the report's columns and figures.
        pub static REGISTRY: &[Entry] = &[$(Entry::of::<$ty>(),)*];

        /// Reads the settings of analysis `name` typed (errors located by the deserializer) and
        /// returns them canonical, defaults filled in; `None`: no analysis is called `name`.
        pub fn read_settings<'de, D: serde::Deserializer<'de>>(
            name: &str,
            d: D,
        ) -> Option<Result<Value, D::Error>> {
            use serde::Deserialize;
            $(
                if name == <$ty as PerModel>::NAME {
                    return Some(
                        Option::<<$ty as PerModel>::Settings>::deserialize(d).map(|s| {
                            serde_json::to_value(s.unwrap_or_default())
                                .expect("settings serialise")
                        }),
                    );
                }
            )*
            None
        }

        /// Computes analysis `name` on one model (the worker): `None`: no analysis is called
        /// `name`.
        #[cfg(feature = "torch")]
        fn compute_named(name: &str, params: &Value, s: &Subject) -> Option<Result<Value>> {
            $(
                if name == <$ty as PerModel>::NAME {
                    return Some(net::compute::<$ty>(params, s));
                }
            )*
            None
        }
    };
}

// The registry: one line per per-model analysis.
registry! {
    sparsity::Sparsity,
    bounds::Bounds,
    flatness::Flatness,
}

/// The analysis called `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// Every analysis name `analysis:` takes: the per-model ones, then `correlation`.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|e| e.name).chain([correlation::NAME])
}

/// The (norm, ε) of an attack as a threat model; `None` for clean evaluation or ε = 0.
pub fn threat_of(c: &AttackConfig) -> Option<bounds::Threat> {
    c.norm()
        .filter(|_| c.eps() > 0.0)
        .map(|norm| bounds::Threat { norm, eps: c.eps() })
}

/// The tensor half (libtorch, the worker build): what an analysis computes on, and the
/// computation itself.
#[cfg(feature = "torch")]
mod net {
    use super::*;

    pub(crate) use crate::cache::write_json;

    /// What an analysis stage computes on: its inputs' cache entries and where its outputs go.
    pub struct Subject<'a> {
        /// The model entry's directory (`models::saved`).
        pub model: &'a std::path::Path,
        /// The prepared dataset's directory, for analyses with [`PerModel::NEEDS_DATA`].
        pub data: Option<&'a std::path::Path>,
        /// The staging directory the outputs are written to.
        pub out: &'a std::path::Path,
        /// Where to compute.
        pub device: tch::Device,
    }

    /// The tensor half of a [`PerModel`] analysis, implemented in its file's gated module.
    pub trait Compute: PerModel {
        /// Computes the analysis of one model, writes its files into `s.out`, returns its output.
        fn compute(params: &Self::Params, s: &Subject) -> Result<Self::Output>;
    }

    /// `A`'s computation on JSON: its parameters read typed, its output serialised.
    pub(super) fn compute<A: Compute>(p: &Value, s: &Subject) -> Result<Value> {
        let params: A::Params = typed(p, &format!("{} parameters", A::NAME))?;
        let out = A::compute(&params, s)?;
        Ok(serde_json::to_value(out)?)
    }

    impl Entry {
        /// Runs the analysis on one model (the worker).
        pub fn compute(&self, params: &Value, s: &Subject) -> Result<Value> {
            match compute_named(self.name, params, s) {
                Some(out) => out,
                None => anyhow::bail!("no analysis is called `{}`", self.name),
            }
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_check_clean() {
        let all: Vec<&str> = names().collect();
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "{all:?}");
        for e in REGISTRY {
            let mut p = Vec::new();
            e.check(&(e.defaults)(), &mut p);
            assert!(p.is_empty(), "{}: {p:?}", e.name);
            assert!(!e.about.is_empty());
        }
    }
}
