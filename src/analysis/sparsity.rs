//! Weight sparsity per layer and per layer type (docs/theory.md, "Weight sparsity").
//!
//! Only weight matrices and kernels count: normalisation parameters, biases and the input
//! normalisation buffers are excluded. Measures per tensor w with n entries:
//! - Hoyer sparsity (Hoyer 2004): (√n − ‖w‖₁/‖w‖₂) / (√n − 1), 0 for a flat tensor, 1 for one spike;
//! - the fraction of entries with |w| below absolute thresholds t (|w| < t) and below thresholds
//!   relative to the tensor's largest entry (|w| < t·max|w|);
//! - ‖w‖₁/‖w‖₂ itself.
//!
//! Layer types: `conv` (4-D kernels), `attention` (every weight inside an attention module,
//! including PVT's spatial-reduction convolution), `linear` (MLP, head and other matrices),
//! `embedding` (patch embeddings, position embeddings, class tokens, relative position biases).
//! Aggregates over a layer type (and overall) weight each tensor by its number of entries.
use super::{Measure, PerModel, PlanContext, Scatter};
use crate::models::saved::Checkpoint;
use crate::vocab::{Problem, Real};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Thresholds of the "fraction of small weights" measures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    /// |w| < t.
    pub absolute: Vec<f64>,
    /// |w| < t·max|w| over the tensor.
    pub relative: Vec<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            absolute: vec![1e-3],
            relative: vec![0.01],
        }
    }
}

impl Thresholds {
    /// The keys of [`TensorSparsity::below`], in order.
    pub fn keys(&self) -> Vec<String> {
        let a = self.absolute.iter().map(|t| abs_key(*t));
        a.chain(self.relative.iter().map(|t| rel_key(*t))).collect()
    }
}

/// Key of the fraction of |w| below an absolute threshold: `abs<0.001`.
pub fn abs_key(t: f64) -> String {
    format!("abs<{t}")
}
/// Key of the fraction of |w| below `t`·max|w|: `rel<0.01`.
pub fn rel_key(t: f64) -> String {
    format!("rel<{t}")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    /// Entries counted.
    pub numel: i64,
    /// Tensors counted.
    pub tensors: usize,
    /// NaN (written `null`) where undefined, e.g. for weights that are all zero.
    #[serde(deserialize_with = "nan_if_null")]
    pub hoyer: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub l1_over_l2: f64,
    #[serde(deserialize_with = "nan_if_null_map")]
    pub below: BTreeMap<String, f64>,
}

/// JSON writes a NaN as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_if_null_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// `Some(v)` unless `v` is NaN.
fn defined(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// What the `sparsity` stage reports of a model (its summary): the whole-model and per-layer-type
/// aggregates. The report and the correlation read it typed, so a renamed field fails the read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub overall: Aggregate,
    pub by_type: BTreeMap<String, Aggregate>,
}

impl Summary {
    /// The whole-model measures as report columns: `hoyer`, `l1_over_l2`, `below_<threshold>`.
    pub fn overall_measures(&self) -> Vec<(String, Option<f64>)> {
        let o = &self.overall;
        let mut values = vec![
            ("hoyer".to_string(), defined(o.hoyer)),
            ("l1_over_l2".to_string(), defined(o.l1_over_l2)),
        ];
        values.extend(
            o.below
                .iter()
                .map(|(k, v)| (format!("below_{k}"), defined(*v))),
        );
        values
    }

    /// Hoyer per layer type as report columns `hoyer_<type>` (`None` where the model has no such
    /// layer), in [`LAYER_TYPES`] order.
    pub fn hoyer_by_type(&self) -> Vec<(String, Option<f64>)> {
        LAYER_TYPES
            .iter()
            .map(|lt| {
                (
                    format!("hoyer_{lt}"),
                    self.by_type.get(*lt).and_then(|a| defined(a.hoyer)),
                )
            })
            .collect()
    }
}

/// The layer types, in table order.
pub const LAYER_TYPES: &[&str] = &["conv", "attention", "linear", "embedding"];

/// The layer type of a weight, or `None` when it is excluded (biases, normalisation parameters,
/// layer scales and other vectors, buffers).
pub fn layer_type(name: &str, dims: usize) -> Option<&'static str> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let excluded = dims <= 1
        || name.starts_with("normalize.")
        || leaf == "bias"
        || leaf.starts_with("running_")
        || leaf == "num_batches_tracked"
        || name
            .split('.')
            .any(|p| p.starts_with("bn") || p.starts_with("norm"));
    if excluded {
        return None;
    }
    let additive = matches!(
        leaf,
        "pos_embed"
            | "positional_emb"
            | "cls_token"
            | "dist_token"
            | "relative_position_bias_table"
    );
    if name.split('.').any(|p| p == "patch_embed") || additive {
        return Some("embedding");
    }
    if name
        .split('.')
        .any(|p| p == "attn" || p.starts_with("attention") || p.ends_with("_attn"))
    {
        return Some("attention");
    }
    match dims {
        4 => Some("conv"),
        2 => Some("linear"),
        _ => None,
    }
}

/// `analysis.sparsity`: the thresholds of the "fraction of small weights" measures.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            absolute: default_absolute(),
            relative: default_relative(),
        }
    }
}

/// What the stage measures, in its key as the list `["hoyer", "l1_over_l2", "below"]`: a measure
/// added to the analysis must extend it (and bump the version), so old entries are not reused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measures;

impl Serialize for Measures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ["hoyer", "l1_over_l2", "below"].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Measures {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(|_| Measures)
    }
}

/// The `sparsity` stage's key parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub measures: Measures,
    pub thresholds: Thresholds,
    /// Which weights: those `evaluation.checkpoint` evaluates.
    pub checkpoint: Checkpoint,
}

/// Where the stage writes every tensor's measures.
pub const OUTPUT: &str = "sparsity.json";

/// The `sparsity` analysis: weight sparsity of a trained model.
pub struct Sparsity;

impl PerModel for Sparsity {
    const NAME: &'static str = "sparsity";
    const ABOUT: &'static str = "per model: Hoyer sparsity, ‖w‖₁/‖w‖₂, fractions below absolute/relative thresholds, per layer and layer type";
    const VERSION: u32 = 2;
    const NEEDS_DATA: bool = false;
    const ALWAYS_LISTED: bool = true;
    type Settings = Settings;
    type Params = Params;
    type Output = Summary;

    fn check(s: &Settings, out: &mut Vec<Problem>) {
        for (field, list, max) in [
            ("absolute", &s.absolute, f64::INFINITY),
            ("relative", &s.relative, 1.0),
        ] {
            for t in list {
                let t = t.get();
                if !(t > 0.0 && t <= max) {
                    out.push(
                        Problem::at(field, format!("threshold {t} is out of range")).hint(
                            if max == 1.0 {
                                "relative thresholds are fractions of the largest |w|, in (0, 1]"
                            } else {
                                "absolute thresholds are positive"
                            },
                        ),
                    );
                }
            }
        }
    }

    fn params(s: &Settings, cx: &PlanContext) -> Params {
        Params {
            measures: Measures,
            thresholds: Thresholds {
                absolute: s.absolute.iter().map(|t| t.get()).collect(),
                relative: s.relative.iter().map(|t| t.get()).collect(),
            },
            checkpoint: cx.checkpoint,
        }
    }

    /// Every model's summary has a whole-model Hoyer measure.
    fn verify(s: &Summary) -> anyhow::Result<()> {
        anyhow::ensure!(
            !s.overall.hoyer.is_nan(),
            "the sparsity summary has no overall Hoyer measure"
        );
        Ok(())
    }

    fn measures(s: &Summary) -> Vec<Measure> {
        s.overall_measures()
    }

    /// The whole-model measures, then Hoyer per layer type.
    fn columns(s: &Summary) -> Vec<Measure> {
        let mut values = s.overall_measures();
        values.extend(s.hoyer_by_type());
        values
    }

    const SCATTER: Option<Scatter> = Some(Scatter {
        file: "sparsity_vs_gap",
        measures: || vec!["hoyer".to_string()],
        axis: |_| "Hoyer sparsity of all weights".to_string(),
        title: |a| format!("Sparsity vs robust gap ({a})"),
        y: |a| format!("robust gap, {a} (points)"),
        caption: |a, d, t, per| {
            format!("Hoyer weight sparsity against the robust generalization gap under `{a}` ({d}, {t}), {per} coloured by kind; the legend gives the rank correlations.")
        },
    });
}

/// The tensor half (libtorch, the worker build): sparsity computed on a model's tensors.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::analysis::Compute;
    use crate::analysis::Subject;
    use tch::{Kind, Tensor};

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct TensorSparsity {
        pub name: String,
        pub layer_type: String,
        pub numel: i64,
        pub hoyer: f64,
        pub l1_over_l2: f64,
        /// Fraction of entries below each threshold (keys from [`Thresholds::keys`]).
        pub below: BTreeMap<String, f64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct SparsityReport {
        pub thresholds: Thresholds,
        pub layers: Vec<TensorSparsity>,
        pub by_type: BTreeMap<String, Aggregate>,
        pub overall: Aggregate,
    }

    pub fn tensor_sparsity(
        name: &str,
        layer_type: &str,
        w: &Tensor,
        thresholds: &Thresholds,
    ) -> TensorSparsity {
        let w = w.to_kind(Kind::Double).flatten(0, -1);
        let n = w.numel() as f64;
        let abs = w.abs();
        let l1 = f64::try_from(abs.sum(Kind::Double)).unwrap_or(0.0);
        let l2 = f64::try_from(w.square().sum(Kind::Double))
            .unwrap_or(0.0)
            .sqrt();
        let max = f64::try_from(abs.max()).unwrap_or(0.0);
        let ratio = if l2 > 0.0 { l1 / l2 } else { 0.0 };
        let hoyer = if n > 1.0 && l2 > 0.0 {
            (n.sqrt() - ratio) / (n.sqrt() - 1.0)
        } else {
            0.0
        };
        let frac = |t: f64| f64::try_from(abs.lt(t).sum(Kind::Double)).unwrap_or(0.0) / n;
        let mut below = BTreeMap::new();
        for &t in &thresholds.absolute {
            below.insert(abs_key(t), frac(t));
        }
        for &t in &thresholds.relative {
            below.insert(rel_key(t), frac(t * max));
        }
        TensorSparsity {
            name: name.into(),
            layer_type: layer_type.into(),
            numel: n as i64,
            hoyer,
            l1_over_l2: ratio,
            below,
        }
    }

    /// Means weighted by the number of entries.
    fn aggregate<'a>(items: impl Iterator<Item = &'a TensorSparsity>) -> Aggregate {
        let mut a = Aggregate::default();
        for t in items {
            let w = t.numel as f64;
            a.numel += t.numel;
            a.tensors += 1;
            a.hoyer += t.hoyer * w;
            a.l1_over_l2 += t.l1_over_l2 * w;
            for (k, v) in &t.below {
                *a.below.entry(k.clone()).or_insert(0.0) += v * w;
            }
        }
        if a.numel > 0 {
            let n = a.numel as f64;
            a.hoyer /= n;
            a.l1_over_l2 /= n;
            a.below.values_mut().for_each(|v| *v /= n);
        }
        a
    }

    /// Sparsity of every counted weight in `named` (name, tensor) pairs.
    pub fn analyse(named: &[(String, Tensor)], thresholds: &Thresholds) -> SparsityReport {
        analyse_as(named, &layer_type, thresholds)
    }

    /// How `net`'s tensors are counted: an outside module's by the class of the module holding
    /// them, a native network's by name ([`layer_type`]).
    pub fn classifier(
        net: &crate::models::Network,
    ) -> impl Fn(&str, usize) -> Option<&'static str> + '_ {
        move |n, dims| match net.script() {
            Some(s) => s.layer_type(n),
            None => layer_type(n, dims),
        }
    }

    /// Sparsity of the weights `classify` counts (their layer type; `None`: left out).
    pub fn analyse_as(
        named: &[(String, Tensor)],
        classify: &dyn Fn(&str, usize) -> Option<&'static str>,
        thresholds: &Thresholds,
    ) -> SparsityReport {
        let layers: Vec<TensorSparsity> = named
            .iter()
            .filter_map(|(n, t)| {
                classify(n, t.dim()).map(|lt| tensor_sparsity(n, lt, t, thresholds))
            })
            .collect();
        let mut by_type = BTreeMap::new();
        for lt in LAYER_TYPES {
            if layers.iter().any(|l| l.layer_type == *lt) {
                by_type.insert(
                    lt.to_string(),
                    aggregate(layers.iter().filter(|l| l.layer_type == *lt)),
                );
            }
        }
        let overall = aggregate(layers.iter());
        SparsityReport {
            thresholds: thresholds.clone(),
            layers,
            by_type,
            overall,
        }
    }

    impl Compute for Sparsity {
        fn compute(p: &Params, s: &Subject) -> anyhow::Result<Summary> {
            let net = crate::models::saved::load(s.model, p.checkpoint, tch::Device::Cpu)?;
            let r = analyse_as(&net.named_tensors(), &classifier(&net), &p.thresholds);
            crate::analysis::write_json(&s.out.join(OUTPUT), &r)?;
            Ok(Summary {
                overall: r.overall,
                by_type: r.by_type,
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The report and the correlation read the summary typed: a field renamed on one side fails
        /// the read instead of leaving a report column empty; `null` (a NaN written as JSON) reads
        /// as an undefined measure.
        #[test]
        fn summaries_read_typed_and_fail_on_a_renamed_field() {
            let r = analyse(
                &[("conv.weight".into(), t(&[0.0, 1.0, 2.0, 3.0]))],
                &Thresholds {
                    absolute: vec![1e-3],
                    relative: vec![0.01],
                },
            );
            let s = Summary {
                overall: r.overall.clone(),
                by_type: r.by_type.clone(),
            };
            let json = serde_json::to_value(&s).unwrap();
            assert_eq!(serde_json::from_value::<Summary>(json.clone()).unwrap(), s);
            let names: Vec<String> = s.overall_measures().into_iter().map(|(n, _)| n).collect();
            assert_eq!(
                names,
                ["hoyer", "l1_over_l2", "below_abs<0.001", "below_rel<0.01"]
            );
            let mut renamed = json.clone();
            let o = renamed.as_object_mut().unwrap();
            let overall = o.remove("overall").unwrap();
            o.insert("whole".into(), overall);
            assert!(serde_json::from_value::<Summary>(renamed).is_err());
            let mut nan = json;
            nan["overall"]["hoyer"] = serde_json::Value::Null;
            let s = serde_json::from_value::<Summary>(nan).unwrap();
            assert_eq!(s.overall_measures()[0], ("hoyer".to_string(), None));
            assert_eq!(
                s.hoyer_by_type()[0].0,
                "hoyer_conv",
                "per-type columns in LAYER_TYPES order"
            );
        }

        fn t(v: &[f64]) -> Tensor {
            Tensor::from_slice(v).view([1, v.len() as i64])
        }

        fn th() -> Thresholds {
            Thresholds {
                absolute: vec![0.5, 3.5],
                relative: vec![0.01, 0.5],
            }
        }

        #[test]
        fn hoyer_is_zero_for_flat_and_one_for_a_spike() {
            let flat = tensor_sparsity("a", "linear", &t(&[2.0, -2.0, 2.0, 2.0]), &th());
            assert!(flat.hoyer.abs() < 1e-12);
            assert_eq!(flat.below["rel<0.01"], 0.0);
            let spike = tensor_sparsity("a", "linear", &t(&[0.0, 0.0, 5.0, 0.0]), &th());
            assert!((spike.hoyer - 1.0).abs() < 1e-12);
            assert_eq!(spike.below["rel<0.01"], 0.75);
            // Hand-computed: w = [3, 4, 0, 0]: ‖w‖₁ = 7, ‖w‖₂ = 5, √4 = 2 → (2 − 1.4)/(2 − 1) = 0.6.
            let mid = tensor_sparsity("a", "linear", &t(&[3.0, 4.0, 0.0, 0.0]), &th());
            assert!((mid.hoyer - 0.6).abs() < 1e-12);
            assert!((mid.l1_over_l2 - 1.4).abs() < 1e-12);
        }

        #[test]
        fn absolute_and_relative_thresholds() {
            // |w| = [0.1, 0.4, 1, 3, 4, 8]: below 0.5 → 2/6; below 3.5 → 4/6;
            // below 0.01·8 = 0.08 → 0; below 0.5·8 = 4 → 4/6 (4 itself is not below).
            let w = t(&[0.1, -0.4, 1.0, -3.0, 4.0, 8.0]);
            let s = tensor_sparsity("a", "linear", &w, &th());
            assert_eq!(th().keys(), ["abs<0.5", "abs<3.5", "rel<0.01", "rel<0.5"]);
            assert!((s.below["abs<0.5"] - 2.0 / 6.0).abs() < 1e-12);
            assert!((s.below["abs<3.5"] - 4.0 / 6.0).abs() < 1e-12);
            assert_eq!(s.below["rel<0.01"], 0.0);
            assert!((s.below["rel<0.5"] - 4.0 / 6.0).abs() < 1e-12);
            assert_eq!(s.below.len(), 4);
        }

        #[test]
        fn layer_types_and_exclusions() {
            assert_eq!(layer_type("layer1.0.conv1.weight", 4), Some("conv"));
            assert_eq!(layer_type("layer1.0.bn1.weight", 1), None);
            assert_eq!(layer_type("layer2.0.downsample.1.weight", 1), None);
            assert_eq!(layer_type("layer2.0.downsample.0.weight", 4), Some("conv"));
            assert_eq!(layer_type("blocks.0.attn.qkv.weight", 2), Some("attention"));
            assert_eq!(
                layer_type("stages.1.blocks.0.attn.sr.weight", 4),
                Some("attention")
            );
            assert_eq!(layer_type("blocks.0.mlp.fc1.weight", 2), Some("linear"));
            assert_eq!(layer_type("blocks.0.norm1.weight", 1), None);
            assert_eq!(layer_type("blocks.0.gamma_1", 1), None);
            assert_eq!(layer_type("patch_embed.proj.weight", 4), Some("embedding"));
            assert_eq!(
                layer_type("stage1.patch_embed.proj.weight", 4),
                Some("embedding")
            );
            assert_eq!(
                layer_type("classifier.positional_emb", 3),
                Some("embedding")
            );
            assert_eq!(
                layer_type("classifier.blocks.0.self_attn.qkv.weight", 2),
                Some("attention")
            );
            assert_eq!(layer_type("pos_embed", 3), Some("embedding"));
            assert_eq!(layer_type("cls_token", 3), Some("embedding"));
            assert_eq!(
                layer_type("layers.0.blocks.0.attn.relative_position_bias_table", 2),
                Some("embedding")
            );
            assert_eq!(layer_type("fc.bias", 1), None);
            assert_eq!(layer_type("head.weight", 2), Some("linear"));
            assert_eq!(layer_type("normalize.mean", 4), None);
        }

        #[test]
        fn aggregates_weight_by_size() {
            let named = vec![
                ("a.weight".to_string(), t(&[0.0, 0.0, 5.0, 0.0])),
                ("b.weight".to_string(), t(&[1.0; 12])),
                ("b.bias".to_string(), Tensor::from_slice(&[0.0, 0.0])),
            ];
            let r = analyse(&named, &th());
            assert_eq!(r.overall.numel, 16);
            assert_eq!(r.overall.tensors, 2);
            assert!((r.overall.hoyer - 4.0 / 16.0).abs() < 1e-12);
            // rel<0.5: 3/4 of a, none of b → 3/16.
            assert!((r.overall.below["rel<0.5"] - 3.0 / 16.0).abs() < 1e-12);
            // ‖·‖₁/‖·‖₂: a 1, b √12 → (4·1 + 12·√12)/16.
            assert!((r.overall.l1_over_l2 - (4.0 + 12.0 * 12f64.sqrt()) / 16.0).abs() < 1e-12);
            assert_eq!(r.by_type["linear"].numel, 16);
            assert_eq!(r.by_type.len(), 1);
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
