//! Per-sample attack losses on logits (docs/attacks.md, "Reference update rules: Losses"). Every
//! function returns one value per sample, shaped `[N]`; attacks maximise them.
use tch::{Kind, Tensor};

/// Cross-entropy per sample.
pub fn ce(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(y, None, tch::Reduction::None, -100, 0.0)
}

/// Largest logit among the classes other than `y` (the true class masked to −∞, so negative
/// logits are handled: the bug of torchattacks' CW, issue #184).
pub fn max_other(logits: &Tensor, y: &Tensor) -> Tensor {
    let mask = one_hot(logits, y).to_kind(Kind::Bool);
    logits
        .masked_fill(&mask, f64::NEG_INFINITY)
        .amax([1].as_slice(), false)
}

/// `z_y − max_{i≠y} z_i`: positive exactly when the sample is classified correctly.
pub fn margin(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.gather(1, &y.unsqueeze(1), false).squeeze_dim(1) - max_other(logits, y)
}

/// Carlini–Wagner loss for PGD: `−relu(z_y − max_{i≠y} z_i + κ)` (Madry's CIFAR challenge, with the
/// true class masked).
pub fn cw(logits: &Tensor, y: &Tensor, kappa: f64) -> Tensor {
    -(margin(logits, y) + kappa).relu()
}

/// Difference-of-logits-ratio loss (Croce & Hein 2020): `−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3)`,
/// written as AutoAttack writes it (the ordering of ties included). Needs ≥ 3 classes.
pub fn dlr(logits: &Tensor, y: &Tensor) -> Tensor {
    let (sorted, ind) = logits.sort(1, false);
    let c = logits.size()[1];
    let top_is_y = ind.select(1, c - 1).eq_tensor(y).to_kind(logits.kind());
    let zy = logits.gather(1, &y.unsqueeze(1), false).squeeze_dim(1);
    let other = sorted.select(1, c - 2) * &top_is_y + sorted.select(1, c - 1) * (1.0 - &top_is_y);
    (other - zy) / (sorted.select(1, c - 1) - sorted.select(1, c - 3) + 1e-12)
}

/// Targeted DLR towards class `t`: `−(z_y − z_t)/(z_π1 − ½(z_π3 + z_π4))`. Needs ≥ 4 classes.
pub fn dlr_targeted(logits: &Tensor, y: &Tensor, t: &Tensor) -> Tensor {
    let (sorted, _) = logits.sort(1, false);
    let c = logits.size()[1];
    let zy = logits.gather(1, &y.unsqueeze(1), false).squeeze_dim(1);
    let zt = logits.gather(1, &t.unsqueeze(1), false).squeeze_dim(1);
    -(zy - zt)
        / (sorted.select(1, c - 1) - (sorted.select(1, c - 3) + sorted.select(1, c - 4)) * 0.5
            + 1e-12)
}

/// Targeted cross-entropy: `−CE(z, t)` (maximised to move towards `t`).
pub fn ce_targeted(logits: &Tensor, t: &Tensor) -> Tensor {
    -ce(logits, t)
}

pub fn one_hot(logits: &Tensor, y: &Tensor) -> Tensor {
    y.one_hot(logits.size()[1]).to_kind(logits.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32], n: i64) -> Tensor {
        Tensor::from_slice(v).view([n, -1])
    }
    fn vals(x: Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(x.to_kind(Kind::Double)).unwrap()
    }
    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn margin_masks_the_true_class_even_with_all_negative_logits() {
        // All logits negative: an unmasked max((1−onehot)·z) would pick the 0 of the true class.
        let z = t(&[-5.0, -2.0, -3.0, -1.0, -4.0, -6.0], 2);
        let y = Tensor::from_slice(&[1i64, 0]);
        close(&vals(max_other(&z, &y)), &[-3.0, -4.0]);
        close(&vals(margin(&z, &y)), &[1.0, 3.0]);
        close(&vals(cw(&z, &y, 0.0)), &[-1.0, -3.0]);
        // Misclassified by more than κ: no gradient signal left (relu).
        let y2 = Tensor::from_slice(&[0i64, 2]);
        close(&vals(cw(&z, &y2, 1.0)), &[0.0, 0.0]);
    }

    #[test]
    fn dlr_matches_the_formula_including_all_negative_logits() {
        // Sample 0: y is the top class; sample 1: y is not; all logits negative in sample 1.
        let z = t(&[4.0, 1.0, 2.0, 0.5, -7.0, -1.0, -3.0, -2.0], 2);
        let y = Tensor::from_slice(&[0i64, 2]);
        // s0: sorted desc 4,2,1,.5 → −(4−2)/(4−1) ; s1: desc −1,−2,−3,−7 → −(−3−(−1))/(−1−(−3))
        close(&vals(dlr(&z, &y)), &[-2.0 / 3.0, 2.0 / 2.0]);
        let tg = Tensor::from_slice(&[1i64, 3]);
        // s0: −(4−1)/(4−(1+.5)/2) ; s1: −(−3−(−2))/(−1−(−3−7)/2)
        close(
            &vals(dlr_targeted(&z, &y, &tg)),
            &[-3.0 / (4.0 - 0.75), 1.0 / (-1.0 + 5.0)],
        );
        // Invariant to shifting and positive scaling of the logits.
        let z2 = &z * 3.0 + 11.0;
        close(&vals(dlr(&z2, &y)), &vals(dlr(&z, &y)));
        let _ = Device::Cpu;
    }

    #[test]
    fn ce_is_per_sample() {
        let z = t(&[0.0, 0.0, 10.0, 0.0], 2);
        let y = Tensor::from_slice(&[0i64, 0]);
        close(&vals(ce(&z, &y)), &[2f64.ln(), (1.0 + (-10f64).exp()).ln()]);
    }
}
