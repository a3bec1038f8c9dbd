//! Human column labels, with units, for the tables people read (HTML, LaTeX, Markdown); CSV and
//! Parquet keep the identifiers, which scripts and `report --compare` use. An identifier without
//! a label (an attack's name, a group's) is shown as it is.
use std::borrow::Cow;

/// Norm-based bounds and norm products by their identifier (without `log10_`).
const BOUNDS: &[(&str, &str)] = &[
    ("prod_spectral", "prod. spectral"),
    ("prod_fro", "prod. Frobenius"),
    ("prod_l1inf", "prod. ℓ1,∞"),
    ("sum_l1", "sum ℓ1"),
    ("bartlett", "Bartlett"),
    ("neyshabur_fro", "Neyshabur Frob."),
    ("neyshabur_l1inf", "Neyshabur ℓ1,∞"),
    ("golowich_fro", "Golowich Frob."),
    ("golowich_l1inf", "Golowich ℓ1,∞"),
    ("adv_spectral", "adv. spectral"),
    ("adv_fro", "adv. Frobenius"),
    ("adv_l1inf", "adv. ℓ1,∞"),
];

const FIXED: &[(&str, &str)] = &[
    ("dataset", "Dataset"),
    ("training", "Training"),
    ("model", "Model"),
    ("kind", "Kind"),
    ("seed", "Seed"),
    ("seeds", "Seeds"),
    ("attack", "Attack"),
    ("split", "Split"),
    ("eps", "ε"),
    ("train_accuracy", "Train acc. (%)"),
    ("test_accuracy", "Test acc. (%)"),
    ("robust_accuracy", "Robust acc. (%)"),
    ("gap", "Gap"),
    ("measure", "Measure"),
    ("n", "n"),
    ("kendall_tau", "Kendall τ"),
    ("tau_lo", "τ 95% low"),
    ("tau_hi", "τ 95% high"),
    ("spearman_rho", "Spearman ρ"),
    ("rho_lo", "ρ 95% low"),
    ("rho_hi", "ρ 95% high"),
    ("tau_ci", "τ 95% interval"),
    ("rho_ci", "ρ 95% interval"),
    ("tau", "τ"),
    ("rho", "ρ"),
    ("hoyer", "Hoyer"),
    ("hoyer_sparsity", "Hoyer sparsity"),
    ("hoyer (all)", "Hoyer (all)"),
    ("l1_over_l2", "ℓ1/ℓ2"),
    ("below_abs<0.001", "near-zero share (< 0.001)"),
    ("below_rel<0.01", "near-zero share (< 1% of max)"),
    ("flatness_average", "avg. flatness (Δ loss)"),
    ("flatness_worst", "worst flatness (Δ loss)"),
];

/// The label of column `id`.
pub fn label(id: &str) -> Cow<'_, str> {
    if let Some((_, l)) = FIXED.iter().find(|(k, _)| *k == id) {
        return Cow::Borrowed(l);
    }
    if let Some(t) = id.strip_prefix("hoyer_") {
        return Cow::Owned(format!("Hoyer {t}"));
    }
    if let Some(b) = id.strip_prefix("log10_") {
        if let Some((_, l)) = BOUNDS.iter().find(|(k, _)| *k == b) {
            return Cow::Owned(format!("log10 {l}"));
        }
    }
    if let Some((_, l)) = BOUNDS.iter().find(|(k, _)| *k == id) {
        return Cow::Borrowed(l);
    }
    // `robust_gap:pgd` (a gap of the correlation matrix).
    if let Some((what, attack)) = id.split_once(':') {
        if !attack.contains('/') {
            match what {
                "robust_gap" => return Cow::Owned(format!("gap {attack}")),
                "unseen_drop" => return Cow::Owned(format!("unseen drop {attack}")),
                _ => {}
            }
        }
    }
    // `robust_gap:pgd/tau` (the correlation matrix): the gap, then the statistic.
    if let Some((gap, stat)) = id.rsplit_once('/') {
        let stat = match stat {
            "tau" => Some("τ"),
            "rho" => Some("ρ"),
            _ => None,
        };
        if let (Some(stat), Some((what, attack))) = (stat, gap.split_once(':')) {
            let what = match what {
                "robust_gap" => "gap",
                "unseen_drop" => "unseen drop",
                w => w,
            };
            return Cow::Owned(format!("{what} {attack}: {stat}"));
        }
    }
    Cow::Borrowed(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_read_as_words_and_unknown_names_stay() {
        assert_eq!(label("l1_over_l2"), "ℓ1/ℓ2");
        assert_eq!(label("log10_neyshabur_l1inf"), "log10 Neyshabur ℓ1,∞");
        assert_eq!(label("prod_fro"), "prod. Frobenius");
        assert_eq!(label("hoyer_attention"), "Hoyer attention");
        assert_eq!(label("kendall_tau"), "Kendall τ");
        assert_eq!(label("robust_gap:pgd-linf/tau"), "gap pgd-linf: τ");
        assert_eq!(label("unseen_drop:pgd-l2"), "unseen drop pgd-l2");
        assert_eq!(label("test_accuracy"), "Test acc. (%)");
        // Attack and group names are the user's.
        assert_eq!(label("pgd-linf"), "pgd-linf");
        assert_eq!(label("clean/train"), "clean/train");
        // A `|` would end a Markdown cell.
        for (_, l) in FIXED.iter().chain(BOUNDS) {
            assert!(!l.contains('|'), "{l}");
        }
    }
}
