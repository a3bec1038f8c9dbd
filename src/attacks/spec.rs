//! An attack as the spec writes it (`evaluation.attacks.<name>`, `training.<name>.attack`,
//! monitor and analysis attacks), resolved by `AttackConfig::resolve`.
use crate::vocab::{Norm, Real};
use serde::Deserialize;

/// An attack as written in the spec; `attacks::AttackConfig::resolve` checks which fields apply to
/// the attack type and fills the defaults (docs/attacks.md lists them per attack).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Registry name (`pgd`, `apgd-t`, `autoattack`, …); defaults to the attack's key, or the longest
    /// registry name the key starts with (`pgd-linf` is a `pgd`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub norm: Option<Norm>,
    pub eps: Option<Real>,
    pub steps: Option<usize>,
    pub step_size: Option<Real>,
    pub random_start: Option<bool>,
    pub restarts: Option<usize>,
    /// `ce` or `cw` (PGD); `ce`, `dlr` or `dlr-t` (APGD); `margin` or `ce` (Square).
    pub loss: Option<String>,
    /// ℓ1 PGD step: `slide` (sparse top-k, Tramèr & Boneh 2019) or `dense` (g/‖g‖₁).
    pub l1_step: Option<String>,
    /// SLIDE: percentile of |g| above which coordinates move (99 = the top 1%).
    pub percentile: Option<Real>,
    /// MIM momentum decay μ.
    pub decay: Option<Real>,
    /// CW / CW-loss confidence κ.
    pub kappa: Option<Real>,
    /// CW-ℓ2: initial trade-off constant c, binary-search rounds, Adam learning rate.
    pub c: Option<Real>,
    pub binary_search_steps: Option<usize>,
    pub lr: Option<Real>,
    /// Targeted attacks (APGD-T, FAB-T): number of target classes (the most likely after `y`).
    pub targets: Option<usize>,
    /// APGD: the oscillation threshold ρ; `large_eps` runs the 3ε → 2ε → ε schedule (AA's ℓ1).
    pub rho: Option<Real>,
    pub large_eps: Option<bool>,
    /// Square: query budget and initial square fraction.
    pub queries: Option<usize>,
    pub p_init: Option<Real>,
    /// AutoAttack composition: `standard` or `plus`.
    pub version: Option<String>,
    /// Robust accuracy vs ε: extra radii to evaluate this attack at (one stage each).
    pub curve: Option<Vec<Real>>,
}
