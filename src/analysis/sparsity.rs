//! Weight sparsity per layer and per layer type (docs/theory.md, "Weight sparsity").
//!
//! Only weight matrices and kernels count: normalisation parameters, biases and the input
//! normalisation buffers are excluded. Measures per tensor w with n entries:
//! - Hoyer sparsity (Hoyer 2004): (√n − ‖w‖₁/‖w‖₂) / (√n − 1), 0 for a flat tensor, 1 for one spike;
//! - the fraction of entries with |w| < 0.01·max|w| (relative threshold);
//! - ‖w‖₁/‖w‖₂ itself.
//!
//! Aggregates over a layer type weight each tensor by its number of entries.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorSparsity {
    pub name: String,
    pub layer_type: String,
    pub numel: i64,
    pub hoyer: f64,
    pub frac_below_rel_0_01: f64,
    pub l1_over_l2: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    pub numel: i64,
    pub hoyer: f64,
    pub frac_below_rel_0_01: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SparsityReport {
    pub layers: Vec<TensorSparsity>,
    pub by_type: BTreeMap<String, Aggregate>,
    pub overall: Aggregate,
}

/// The layer type of a weight, or `None` when it is excluded (biases, norms, buffers).
pub fn layer_type(name: &str, dims: usize) -> Option<&'static str> {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let excluded = name.starts_with("normalize.")
        || leaf == "bias"
        || leaf.starts_with("running_")
        || leaf == "num_batches_tracked"
        || name
            .split('.')
            .any(|p| p.starts_with("bn") || p.starts_with("norm") || p == "downsample.1");
    if excluded {
        return None;
    }
    if name.starts_with("patch_embed") || leaf == "pos_embed" || leaf == "cls_token" {
        return Some("embedding");
    }
    if name.contains(".attn.") {
        return Some("attention");
    }
    match dims {
        4 => Some("conv"),
        2 => Some("linear"),
        _ => None,
    }
}

pub fn tensor_sparsity(name: &str, layer_type: &str, w: &Tensor) -> TensorSparsity {
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
    let below = f64::try_from(abs.lt(0.01 * max).sum(Kind::Double)).unwrap_or(0.0) / n;
    TensorSparsity {
        name: name.into(),
        layer_type: layer_type.into(),
        numel: n as i64,
        hoyer,
        frac_below_rel_0_01: below,
        l1_over_l2: ratio,
    }
}

fn aggregate<'a>(items: impl Iterator<Item = &'a TensorSparsity>) -> Aggregate {
    let mut a = Aggregate::default();
    for t in items {
        a.numel += t.numel;
        a.hoyer += t.hoyer * t.numel as f64;
        a.frac_below_rel_0_01 += t.frac_below_rel_0_01 * t.numel as f64;
    }
    if a.numel > 0 {
        a.hoyer /= a.numel as f64;
        a.frac_below_rel_0_01 /= a.numel as f64;
    }
    a
}

/// Sparsity of every counted weight in `named` (name, tensor) pairs.
pub fn analyse(named: &[(String, Tensor)]) -> SparsityReport {
    let layers: Vec<TensorSparsity> = named
        .iter()
        .filter_map(|(n, t)| layer_type(n, t.dim()).map(|lt| tensor_sparsity(n, lt, t)))
        .collect();
    let mut by_type = BTreeMap::new();
    for lt in layers
        .iter()
        .map(|l| l.layer_type.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        by_type.insert(
            lt.clone(),
            aggregate(layers.iter().filter(|l| l.layer_type == lt)),
        );
    }
    let overall = aggregate(layers.iter());
    SparsityReport {
        layers,
        by_type,
        overall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_slice(v).view([1, v.len() as i64])
    }

    #[test]
    fn hoyer_is_zero_for_flat_and_one_for_a_spike() {
        let flat = tensor_sparsity("a", "linear", &t(&[2.0, -2.0, 2.0, 2.0]));
        assert!(flat.hoyer.abs() < 1e-12);
        assert_eq!(flat.frac_below_rel_0_01, 0.0);
        let spike = tensor_sparsity("a", "linear", &t(&[0.0, 0.0, 5.0, 0.0]));
        assert!((spike.hoyer - 1.0).abs() < 1e-12);
        assert_eq!(spike.frac_below_rel_0_01, 0.75);
        // Hand-computed: w = [3, 4, 0, 0]: ‖w‖₁ = 7, ‖w‖₂ = 5, √4 = 2 → (2 − 1.4)/(2 − 1) = 0.6.
        let mid = tensor_sparsity("a", "linear", &t(&[3.0, 4.0, 0.0, 0.0]));
        assert!((mid.hoyer - 0.6).abs() < 1e-12);
        assert!((mid.l1_over_l2 - 1.4).abs() < 1e-12);
    }

    #[test]
    fn layer_types_and_exclusions() {
        assert_eq!(layer_type("layer1.0.conv1.weight", 4), Some("conv"));
        assert_eq!(layer_type("layer1.0.bn1.weight", 1), None);
        assert_eq!(layer_type("layer2.0.downsample.1.weight", 1), None);
        assert_eq!(layer_type("layer2.0.downsample.0.weight", 4), Some("conv"));
        assert_eq!(layer_type("blocks.0.attn.qkv.weight", 2), Some("attention"));
        assert_eq!(layer_type("blocks.0.mlp.fc1.weight", 2), Some("linear"));
        assert_eq!(layer_type("blocks.0.norm1.weight", 1), None);
        assert_eq!(layer_type("patch_embed.proj.weight", 4), Some("embedding"));
        assert_eq!(layer_type("fc.bias", 1), None);
        assert_eq!(layer_type("normalize.mean", 4), None);
    }

    #[test]
    fn aggregates_weight_by_size() {
        let named = vec![
            ("a.weight".to_string(), t(&[0.0, 0.0, 5.0, 0.0])),
            ("b.weight".to_string(), t(&[1.0; 12])),
        ];
        let r = analyse(&named);
        assert_eq!(r.overall.numel, 16);
        assert!((r.overall.hoyer - 4.0 / 16.0).abs() < 1e-12);
        assert_eq!(r.by_type["linear"].numel, 16);
    }
}
