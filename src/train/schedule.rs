//! Learning-rate schedules, evaluated per batch: optional linear warm-up, then constant, cosine
//! decay to a floor (the authors' recipe: warm-up then cosine) or step decay at epoch milestones;
//! or PyTorch's one-cycle schedule.
use super::spec::{ScheduleName, ScheduleSpec};

/// Learning rate at global step `step` (0-based) of `total` steps.
pub fn lr_at(
    s: &ScheduleSpec,
    base: f64,
    step: usize,
    steps_per_epoch: usize,
    total: usize,
) -> f64 {
    if s.name == ScheduleName::Onecycle {
        return one_cycle(base, step, total, s.pct_start.map_or(0.3, |p| p.get()));
    }
    let warm = s.warmup_epochs * steps_per_epoch;
    if step < warm {
        return base * (step + 1) as f64 / warm as f64;
    }
    match s.name {
        ScheduleName::Constant | ScheduleName::Onecycle => base,
        ScheduleName::Multistep => {
            // torch MultiStepLR stepped once per epoch: the factor applies from each milestone on.
            let epoch = step / steps_per_epoch.max(1);
            let passed = s.milestones.iter().filter(|&&m| m <= epoch).count();
            base * s.gamma.map_or(0.1, |g| g.get()).powi(passed as i32)
        }
        ScheduleName::Cosine => {
            let span = (total - warm).max(1) as f64;
            let t = (step - warm) as f64 / span;
            let floor = s.min_lr.get();
            floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// `torch.optim.lr_scheduler.OneCycleLR` (cosine annealing, `div_factor` 25,
/// `final_div_factor` 10⁴, three_phase off) at `step` of `total`.
fn one_cycle(max: f64, step: usize, total: usize, pct_start: f64) -> f64 {
    let initial = max / 25.0;
    let min = initial / 1e4;
    let up_end = pct_start * total as f64 - 1.0;
    let down_end = total as f64 - 1.0;
    let cos = |start: f64, end: f64, pct: f64| {
        end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
    };
    let s = step as f64;
    if s <= up_end {
        cos(initial, max, s / up_end)
    } else {
        cos(max, min, ((s - up_end) / (down_end - up_end)).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Real;

    #[test]
    fn warmup_then_cosine_to_floor() {
        let s = ScheduleSpec {
            name: ScheduleName::Cosine,
            warmup_epochs: 1,
            min_lr: Real(0.1),
            ..Default::default()
        };
        // 10 steps per epoch, 3 epochs.
        assert!((lr_at(&s, 1.0, 0, 10, 30) - 0.1).abs() < 1e-12);
        assert!((lr_at(&s, 1.0, 9, 10, 30) - 1.0).abs() < 1e-12);
        assert!((lr_at(&s, 1.0, 10, 10, 30) - 1.0).abs() < 1e-12);
        assert!((lr_at(&s, 1.0, 20, 10, 30) - 0.55).abs() < 1e-12);
        assert!(lr_at(&s, 1.0, 29, 10, 30) > 0.1);
        let c = ScheduleSpec::default();
        assert_eq!(lr_at(&c, 0.3, 17, 10, 30), 0.3);
    }

    #[test]
    fn multistep_decays_at_the_milestone_epochs() {
        let s = ScheduleSpec {
            name: ScheduleName::Multistep,
            milestones: vec![2, 3],
            gamma: Some(Real(0.5)),
            ..Default::default()
        };
        // 10 steps per epoch: epochs 0–1 at 1, epoch 2 at 0.5, epoch 3 on at 0.25.
        let at = |step| lr_at(&s, 1.0, step, 10, 50);
        assert_eq!(
            (at(0), at(19), at(20), at(29), at(30), at(49)),
            (1.0, 1.0, 0.5, 0.5, 0.25, 0.25)
        );
    }

    /// Values printed by `torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)`
    /// (torch 2.13, after 0, 1, 2, 3, 5, 8, 9 scheduler steps).
    #[test]
    fn one_cycle_matches_pytorch() {
        let s = ScheduleSpec {
            name: ScheduleName::Onecycle,
            ..Default::default()
        };
        let want = [
            (0, 0.004),
            (1, 0.052),
            (2, 0.1),
            (3, 0.09504846320134738),
            (5, 0.06112620219362893),
            (8, 0.004951936798652629),
            (9, 4e-07),
        ];
        for (step, lr) in want {
            let got = lr_at(&s, 0.1, step, 5, 10);
            assert!((got - lr).abs() < 1e-9, "step {step}: {got} vs {lr}");
        }
    }
}
