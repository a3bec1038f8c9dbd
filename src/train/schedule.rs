//! Learning-rate schedules, evaluated per batch: optional linear warm-up, then constant or cosine
//! decay to a floor (the authors' recipe: warm-up then cosine).
use crate::spec::{ScheduleName, ScheduleSpec};

/// Learning rate at global step `step` (0-based) of `total` steps.
pub fn lr_at(
    s: &ScheduleSpec,
    base: f64,
    step: usize,
    steps_per_epoch: usize,
    total: usize,
) -> f64 {
    let warm = s.warmup_epochs * steps_per_epoch;
    if step < warm {
        return base * (step + 1) as f64 / warm as f64;
    }
    match s.name {
        ScheduleName::Constant => base,
        ScheduleName::Cosine => {
            let span = (total - warm).max(1) as f64;
            let t = (step - warm) as f64 / span;
            let floor = s.min_lr.get();
            floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Real;

    #[test]
    fn warmup_then_cosine_to_floor() {
        let s = ScheduleSpec {
            name: ScheduleName::Cosine,
            warmup_epochs: 1,
            min_lr: Real(0.1),
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
}
