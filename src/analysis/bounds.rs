//! Norm-based (adversarial) Rademacher-complexity bounds from a network's layer norms, the
//! training data's statistics and the attack (docs/theory.md, "Norm-based bounds" — every formula
//! there with its source, its constants and the assumptions under which it is a theorem).
//!
//! All values are log10 (products over tens of layers overflow otherwise); an undefined value (a
//! zero norm) is `None`. The network is read as the chain of its L linear maps W₁…W_L (see
//! `analysis::norms`); the margin γ is 1.
use super::{Measure, PerModel, PlanContext, Scatter};
use crate::models::saved::Checkpoint;
use crate::vocab::{Norm, Problem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Statistics of the training inputs, in the network's input space (after its normalisation).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct DataStats {
    /// Training points.
    pub n: usize,
    /// Input dimension C·H·W.
    pub d: usize,
    /// maxᵢ ‖xᵢ‖₂.
    pub max_l2: f64,
    /// ‖X‖_F = √(Σᵢ ‖xᵢ‖₂²).
    pub frobenius: f64,
    /// maxᵢ ‖xᵢ‖∞.
    pub max_linf: f64,
}

/// The attack of the adversarial bounds: its norm p and radius ε in the network's input space.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Threat {
    pub norm: Norm,
    pub eps: f64,
}

impl Threat {
    /// ε of the ℓp ball as a radius in ℓ2: the ℓp ball of radius ε lies in the ℓ2 ball of radius
    /// ε·max(1, d^{1/2 − 1/p}).
    pub fn eps_l2(&self, d: usize) -> f64 {
        let inv_p = match self.norm {
            Norm::Linf => 0.0,
            Norm::L2 => 0.5,
            Norm::L1 => 1.0,
        };
        self.eps * (d as f64).powf(0.5 - inv_p).max(1.0)
    }
    /// ε as a radius in ℓ∞: every ℓp ball of radius ε lies in the ℓ∞ ball of radius ε.
    pub fn eps_linf(&self) -> f64 {
        self.eps
    }
}

/// Bound names, in table order.
pub const BOUNDS: &[&str] = &[
    "bartlett",
    "neyshabur_fro",
    "neyshabur_l1inf",
    "golowich_fro",
    "golowich_l1inf",
    "adv_spectral",
    "adv_fro",
    "adv_l1inf",
];

/// Products of layer norms (log10), also reported as measures.
pub const PRODUCTS: &[&str] = &["prod_spectral", "prod_fro", "prod_l1inf", "sum_l1"];

/// What the `bounds` stage reports of a model (its summary and `bounds.json`). The report and the
/// correlation read it typed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Output {
    pub data: DataStats,
    /// The attack in the network's input space: ε / min(std).
    pub threat: Option<Threat>,
    pub layers: usize,
    /// [`PRODUCTS`] and [`BOUNDS`], log10 (`None` where undefined).
    pub log10: BTreeMap<String, Option<f64>>,
}

impl Output {
    /// Each product and bound as a report column `log10_<name>`, in table order.
    pub fn measures(&self) -> Vec<(String, Option<f64>)> {
        PRODUCTS
            .iter()
            .chain(BOUNDS)
            .map(|n| (format!("log10_{n}"), self.log10.get(*n).copied().flatten()))
            .collect()
    }
}

/// `analysis.bounds`: how the layer norms are measured, and the attack of the adversarial bounds.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            conv_grid: default_conv_grid(),
            iterations: default_iterations(),
            attack: None,
        }
    }
}

/// The `bounds` stage's key parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub conv_grid: i64,
    /// Most Lanczos steps per spectral norm.
    pub iterations: u32,
    /// The attack of the adversarial bounds in pixel units; `None`: ε = 0 (standard training
    /// without `analysis.bounds.attack`).
    pub attack: Option<Threat>,
    pub checkpoint: Checkpoint,
}

/// Where the stage writes every layer's norms.
pub const NORMS: &str = "norms.json";
/// Where the stage writes its output (also its summary).
pub const OUTPUT: &str = "bounds.json";

/// The `bounds` analysis: layer norms and norm-based (adversarial) Rademacher bounds.
pub struct Bounds;

impl PerModel for Bounds {
    const NAME: &'static str = "bounds";
    const ABOUT: &'static str = "per model: Frobenius/spectral/ℓ1/ℓ2,1/ℓ1,∞ norms of every linear map (convolutions also as operators) and norm-based (adversarial) Rademacher bounds";
    const VERSION: u32 = 1;
    const NEEDS_DATA: bool = true;
    const ALWAYS_LISTED: bool = true;
    type Settings = Settings;
    type Params = Params;
    type Output = Output;

    fn check(b: &Settings, out: &mut Vec<Problem>) {
        if !(1..=256).contains(&b.conv_grid) {
            out.push(
                Problem::at("conv_grid", format!("{} is out of range", b.conv_grid))
                    .hint("use a grid side from 1 to 256 (8 by default)"),
            );
        }
        if b.iterations == 0 {
            out.push(Problem::at("iterations", "must be at least 1").hint("100 by default"));
        }
    }

    fn attack(b: &Settings) -> Option<&str> {
        b.attack.as_deref()
    }

    fn params(b: &Settings, cx: &PlanContext) -> Params {
        Params {
            conv_grid: b.conv_grid,
            iterations: b.iterations,
            attack: cx
                .named
                .and_then(super::threat_of)
                .or_else(|| cx.training.and_then(super::threat_of)),
            checkpoint: cx.checkpoint,
        }
    }

    fn measures(o: &Output) -> Vec<Measure> {
        o.measures()
    }

    const SCATTER: Option<Scatter> = Some(Scatter {
        file: "bounds_vs_gap",
        measures: || BOUNDS.iter().map(|b| format!("log10_{b}")).collect(),
        axis: |m| match m.strip_prefix("log10_") {
            Some(b) => format!("log10 {b}"),
            None => m.to_string(),
        },
        title: |a| format!("Bounds vs robust gap ({a})"),
        y: |_| "robust gap (points)".into(),
        caption: |a, d, t, per| {
            format!("Each norm-based bound (log10) against the robust generalization gap under `{a}` ({d}, {t}), {per} coloured by kind; each panel's legend gives the rank correlations.")
        },
    });
}

/// The tensor half (libtorch, the worker build): the norms and bounds computed on a model.
#[cfg(feature = "torch")]
mod net {
    use super::*;
    use crate::analysis::norms::LayerNorms;
    use crate::analysis::{Compute, Subject};
    use tch::{Kind, Tensor};

    impl DataStats {
        /// Statistics of uint8 NCHW images `x` after x/255 and per-channel (x − mean)/std.
        pub fn of_images(x: &Tensor, mean: &[f64], std: &[f64]) -> Self {
            let s = x.size();
            let (n, c) = (s[0], s[1]);
            let d = (s[1] * s[2] * s[3]) as usize;
            let mean = Tensor::from_slice(mean).view([1, c, 1, 1]);
            let std = Tensor::from_slice(std).view([1, c, 1, 1]);
            let (mut max_l2, mut sum_sq, mut max_linf) = (0f64, 0f64, 0f64);
            let chunk = 2048;
            let mut start = 0;
            while start < n {
                let len = chunk.min(n - start);
                let xs = x.narrow(0, start, len).to_kind(Kind::Double) / 255.0;
                let xs = ((xs - &mean) / &std).view([len, -1]);
                let sq = xs
                    .square()
                    .sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
                max_l2 = max_l2.max(f64::try_from(sq.max()).unwrap_or(0.0).sqrt());
                sum_sq += f64::try_from(sq.sum(Kind::Double)).unwrap_or(0.0);
                max_linf = max_linf.max(f64::try_from(xs.abs().max()).unwrap_or(0.0));
                start += len;
            }
            Self {
                n: n as usize,
                d,
                max_l2,
                frobenius: sum_sq.sqrt(),
                max_linf,
            }
        }
    }

    impl Compute for Bounds {
        fn compute(p: &Params, s: &Subject) -> anyhow::Result<Output> {
            use crate::analysis::norms::{self, Lanczos};
            let saved = crate::models::saved::SavedModel::open(s.model)?;
            let net = saved.network(p.checkpoint, tch::Device::Cpu)?;
            let named = net.named_tensors();
            // The normalisation the network applies to its inputs (identity for an imported model
            // that normalises inside itself).
            let (mean, std) = (saved.info.mean, saved.info.std);
            let data_dir = s
                .data
                .ok_or_else(|| anyhow::anyhow!("bounds need the dataset"))?;
            let data = crate::data::prepared::load(data_dir)?;
            let stats = DataStats::of_images(&data.train_x, &mean, &std);
            let pi = Lanczos {
                max_iters: p.iterations,
                ..Lanczos::default()
            };
            let layers = norms::analyse_as(&named, &norms::linear_maps(&net), p.conv_grid, pi);
            let min_std = std.iter().copied().fold(f64::INFINITY, f64::min);
            let threat = p.attack.map(|a| Threat {
                norm: a.norm,
                eps: a.eps / min_std,
            });
            let log10 = compute(&layers, &stats, threat);
            crate::analysis::write_json(&s.out.join(NORMS), &layers)?;
            let out = Output {
                data: stats,
                threat,
                layers: layers.len(),
                log10,
            };
            crate::analysis::write_json(&s.out.join(OUTPUT), &out)?;
            Ok(out)
        }
    }

    fn log10_sum(it: impl Iterator<Item = f64>) -> Option<f64> {
        let mut s = 0.0;
        for v in it {
            if v <= 0.0 || !v.is_finite() {
                return None;
            }
            s += v.log10();
        }
        Some(s)
    }

    /// The layer's spectral norm as the linear map the network applies (the operator norm of a
    /// convolution, see `analysis::norms`).
    fn lip(l: &LayerNorms) -> f64 {
        l.spectral_op
    }

    /// Every bound and product, log10, keyed by name.
    pub fn compute(
        layers: &[LayerNorms],
        data: &DataStats,
        threat: Option<Threat>,
    ) -> BTreeMap<String, Option<f64>> {
        let mut out = BTreeMap::new();
        let l = layers.len() as f64;
        let n = data.n as f64;
        let d = data.d as f64;
        // W of Bartlett et al.: the largest dimension of the input or any layer; h of Xiao et al.: the
        // largest number of units of a layer.
        let width = layers
            .iter()
            .flat_map(|x| x.shape)
            .map(|v| v as f64)
            .fold(d, f64::max);
        let h = layers.iter().map(|x| x.shape[0] as f64).fold(1.0, f64::max);
        let p_spec = log10_sum(layers.iter().map(lip));
        let p_fro = log10_sum(layers.iter().map(|x| x.fro));
        let p_l1inf = log10_sum(layers.iter().map(|x| x.l1inf));
        let sum_l1: f64 = layers.iter().map(|x| x.l1).sum();
        out.insert("prod_spectral".into(), p_spec);
        out.insert("prod_fro".into(), p_fro);
        out.insert("prod_l1inf".into(), p_l1inf);
        out.insert("sum_l1".into(), (sum_l1 > 0.0).then(|| sum_l1.log10()));
        if layers.is_empty() || data.n == 0 {
            for b in BOUNDS {
                out.insert(b.to_string(), None);
            }
            return out;
        }
        let lg = |v: f64| (v > 0.0 && v.is_finite()).then(|| v.log10());
        let add = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
        // Bartlett, Foster & Telgarsky 2017, Theorem 1.1 (its Õ-term without the hidden constant):
        // ‖X‖_F·ln(W)/n · ∏‖Wᵢ‖_σ · (Σ (‖Wᵢᵀ‖_{2,1}/‖Wᵢ‖_σ)^{2/3})^{3/2}.
        let ratio: f64 = layers
            .iter()
            .map(|x| (x.l21 / lip(x)).powf(2.0 / 3.0))
            .sum::<f64>()
            .powf(1.5);
        out.insert(
            "bartlett".into(),
            add(p_spec, lg(data.frobenius * width.ln() / n * ratio)),
        );
        // Neyshabur, Tomioka & Srebro 2015, Corollary 2 (q ≤ p*): γ_{p,q}·2^{L−1}·
        // √(min(p*, 4 ln 2d)·maxᵢ‖xᵢ‖²_{p*}/n). p = q = 2: min(2, 4 ln 2d) = 2.
        let two_l = (l - 1.0) * 2f64.log10();
        out.insert(
            "neyshabur_fro".into(),
            add(p_fro, lg((2.0 * data.max_l2.powi(2) / n).sqrt())).map(|v| v + two_l),
        );
        // p = 1, q = ∞: p* = ∞, min(∞, 4 ln 2d) = 4 ln 2d.
        out.insert(
            "neyshabur_l1inf".into(),
            add(
                p_l1inf,
                lg((4.0 * (2.0 * d).ln() * data.max_linf.powi(2) / n).sqrt()),
            )
            .map(|v| v + two_l),
        );
        // Golowich, Rakhlin & Shamir 2018, Theorem 1: ‖X‖_F·(√(2 ln(2)·L) + 1)·∏‖Wᵢ‖_F / n.
        out.insert(
            "golowich_fro".into(),
            add(
                p_fro,
                lg(data.frobenius * ((2.0 * 2f64.ln() * l).sqrt() + 1.0) / n),
            ),
        );
        // Golowich et al. 2018, Theorem 2 (‖x‖∞ ≤ B): 2B·∏‖Wᵢ‖_{1,∞}·√((L + 1 + ln d)/n).
        let golowich_l1inf = |b: f64| add(p_l1inf, lg(2.0 * b * ((l + 1.0 + d.ln()) / n).sqrt()));
        out.insert("golowich_l1inf".into(), golowich_l1inf(data.max_linf));
        // Adversarial: ε = 0 without an attack.
        let (eps2, epsinf) = threat.map_or((0.0, 0.0), |t| (t.eps_l2(data.d), t.eps_linf()));
        let b2 = data.max_l2 + eps2;
        // Xiao, Sun & Luo 2023 (PAC-Bayesian spectrally-normalized adversarial bound), Thm. 1 without
        // its O-constant: √((B+ε)²·L²·h·ln(L·h)·Φ/n), Φ = ∏‖Wᵢ‖²₂ · Σ ‖Wᵢ‖²_F/‖Wᵢ‖²₂; for an ℓp attack
        // B+ε becomes max(1, d^{1/2−1/p})·(B+ε), which `eps_l2` bounds from above.
        let phi_sum: f64 = layers.iter().map(|x| (x.fro / lip(x)).powi(2)).sum();
        out.insert(
            "adv_spectral".into(),
            add(
                p_spec,
                lg(
                    (b2.powi(2) * l * l * h * (l * h).ln().max(f64::MIN_POSITIVE) * phi_sum / n)
                        .sqrt(),
                ),
            ),
        );
        // Xiao, Fan, Sun & Luo 2022 (adversarial Rademacher complexity of deep networks), without its
        // O-constant: (B + ε)·h·√(L·ln L)·∏‖Wᵢ‖_F/√n; ln L is taken as max(ln L, 1).
        out.insert(
            "adv_fro".into(),
            add(p_fro, lg(b2 * h * (l * l.ln().max(1.0)).sqrt() / n.sqrt())),
        );
        // The ℓ1,∞ analogue: Golowich et al.'s Theorem 2 on the ε-enlarged input domain (‖x‖∞ ≤ B + ε).
        // Not a theorem for the adversarial class; see docs/theory.md.
        out.insert("adv_l1inf".into(), golowich_l1inf(data.max_linf + epsinf));
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::analysis::norms::{layer_norms, Lanczos};

        /// The 2-layer network W₁ = [[1, −2], [0, 3]], W₂ = [[2, 1]] on X = {(1, 0), (0, 2), (1, 1)}.
        fn two_layer() -> (Vec<LayerNorms>, DataStats) {
            let w1 = Tensor::from_slice(&[1.0, -2.0, 0.0, 3.0]).view([2, 2]);
            let w2 = Tensor::from_slice(&[2.0, 1.0]).view([1, 2]);
            let pi = Lanczos::default();
            let layers = vec![
                layer_norms("a.weight", "linear", &w1, 8, pi),
                layer_norms("b.weight", "linear", &w2, 8, pi),
            ];
            let data = DataStats {
                n: 3,
                d: 2,
                max_l2: 2.0,
                frobenius: 7f64.sqrt(),
                max_linf: 2.0,
            };
            (layers, data)
        }

        fn close(a: Option<f64>, b: f64) {
            let a = a.expect("defined");
            assert!((a - b.log10()).abs() < 1e-9, "{} vs {}", 10f64.powf(a), b);
        }

        #[test]
        fn data_stats_by_hand() {
            // Two 1×1×2 images, mean 0.5, std 0.25 → pixels 0 → −2, 255 → 2, 51 → −1.2.
            let x = Tensor::from_slice(&[0u8, 255, 51, 51]).view([2, 1, 1, 2]);
            let s = DataStats::of_images(&x, &[0.5], &[0.25]);
            assert_eq!((s.n, s.d), (2, 2));
            assert!((s.max_l2 - 8f64.sqrt()).abs() < 1e-12);
            assert!((s.frobenius - (8.0 + 2.0 * 1.44f64).sqrt()).abs() < 1e-12);
            assert!((s.max_linf - 2.0).abs() < 1e-12);
        }

        #[test]
        fn hand_computed_bounds_on_a_two_layer_network() {
            let (layers, data) = two_layer();
            // Layer norms by hand. W₁: ‖·‖_F = √14; WᵀW = [[1, −2], [−2, 13]], λ = 7 ± √40 → σ₁ =
            // √(7 + √40); rows ℓ2 √5, 3 → l21 = √5 + 3; rows ℓ1 3, 3 → l1inf = 3. W₂: ‖·‖_F = σ = √5,
            // l21 = √5, l1inf = 3.
            let s1 = (7.0 + 40f64.sqrt()).sqrt();
            let s2 = 5f64.sqrt();
            assert!((layers[0].spectral - s1).abs() < 1e-9);
            let b = compute(&layers, &data, None);
            close(b["prod_spectral"], s1 * s2);
            close(b["prod_fro"], 14f64.sqrt() * s2);
            close(b["prod_l1inf"], 9.0);
            close(b["sum_l1"], 6.0 + 3.0);
            // Bartlett: W = max(d, widths) = 2; ‖X‖_F ln 2 / 3 · σ₁σ₂ · (((√5+3)/σ₁)^{2/3} + 1)^{3/2}.
            let bart = 7f64.sqrt() * 2f64.ln() / 3.0
                * s1
                * s2
                * (((5f64.sqrt() + 3.0) / s1).powf(2.0 / 3.0) + 1.0).powf(1.5);
            close(b["bartlett"], bart);
            // Neyshabur, Frobenius: 2^{1}·√14·√5·√(2·4/3).
            close(
                b["neyshabur_fro"],
                2.0 * 70f64.sqrt() * (8.0f64 / 3.0).sqrt(),
            );
            // Neyshabur, ℓ1,∞: 2·9·√(4 ln 4 · 4 / 3).
            close(b["neyshabur_l1inf"], 18.0 * (16.0 * 4f64.ln() / 3.0).sqrt());
            // Golowich, Frobenius: √7·(√(2 ln 2 · 2) + 1)·√70 / 3.
            close(
                b["golowich_fro"],
                7f64.sqrt() * ((4.0 * 2f64.ln()).sqrt() + 1.0) * 70f64.sqrt() / 3.0,
            );
            // Golowich, ℓ1,∞: 2·2·9·√((2 + 1 + ln 2)/3).
            close(b["golowich_l1inf"], 36.0 * ((3.0 + 2f64.ln()) / 3.0).sqrt());
            // Without an attack the adversarial ℓ1,∞ bound is the standard one.
            assert_eq!(b["adv_l1inf"], b["golowich_l1inf"]);
            // adv_fro: B·h·√(L·max(ln L, 1))·∏‖W‖_F/√n = 2·2·√2·√70/√3.
            close(b["adv_fro"], 4.0 * 2f64.sqrt() * 70f64.sqrt() / 3f64.sqrt());
            // adv_spectral: σ₁σ₂·√(B²·L²·h·ln(L·h)·Φ/n), Φ = 14/σ₁² + 1.
            let phi = 14.0 / (s1 * s1) + 1.0;
            close(
                b["adv_spectral"],
                s1 * s2 * (4.0 * 4.0 * 2.0 * 4f64.ln() * phi / 3.0).sqrt(),
            );
        }

        #[test]
        fn attacks_enlarge_the_input_radius() {
            let (layers, data) = two_layer();
            let linf = Threat {
                norm: Norm::Linf,
                eps: 0.5,
            };
            let b = compute(&layers, &data, Some(linf));
            // ℓ∞, ε = 0.5: B∞ 2 → 2.5; B₂ 2 → 2 + 0.5·√2.
            close(
                b["adv_l1inf"],
                2.0 * 2.5 * 9.0 * ((3.0 + 2f64.ln()) / 3.0).sqrt(),
            );
            close(
                b["adv_fro"],
                (2.0 + 0.5 * 2f64.sqrt()) * 2.0 * 2f64.sqrt() * 70f64.sqrt() / 3f64.sqrt(),
            );
            // Standard bounds ignore the attack.
            assert_eq!(
                b["golowich_l1inf"],
                compute(&layers, &data, None)["golowich_l1inf"]
            );
            // ℓ1 and ℓ2 balls lie in the ℓ2 ball of the same radius.
            let l1 = Threat {
                norm: Norm::L1,
                eps: 0.5,
            };
            assert_eq!(l1.eps_l2(3072), 0.5);
            assert!((linf.eps_l2(3072) - 0.5 * 3072f64.sqrt()).abs() < 1e-12);
            // A zero layer leaves every product undefined rather than −∞.
            let mut zero = layers.clone();
            zero[1].l1inf = 0.0;
            assert_eq!(compute(&zero, &data, None)["golowich_l1inf"], None);
        }
    }
}

#[cfg(feature = "torch")]
pub use net::*;
