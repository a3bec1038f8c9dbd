//! The pipeline's time left, for the progress display: the cost model's FLOPs of the stages
//! still to finish, at the throughput measured so far in this run (finished stages, and the
//! done fraction of running ones), or before anything is measured at the throughput of this
//! pipeline's cached entries (their FLOPs over their recorded wall time) on the run's slots.
use crate::cache::Cache;
use crate::plan::cost::Estimate;
use crate::plan::Plan;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;
use std::time::Instant;

/// Measured work below this many seconds is too little to extrapolate from.
const SETTLE_SECONDS: f64 = 3.0;

pub struct Eta {
    /// FLOPs of each stage to run (0 where the cost model has no estimate: those are cheap).
    cost: HashMap<NodeIndex, f64>,
    total: f64,
    finished: f64,
    /// FLOP/s of the cached entries, times the slots that run at once.
    prior: Option<f64>,
    start: Instant,
}

impl Eta {
    /// `todo`: the stages this run computes; `slots`: how many run at once at most. With
    /// nothing to run (a no-op run), nothing is estimated or read.
    pub fn new(plan: &Plan, cache: &Cache, todo: &[NodeIndex], slots: usize) -> Eta {
        let mut eta = Eta {
            cost: HashMap::new(),
            total: 0.0,
            finished: 0.0,
            prior: None,
            start: Instant::now(),
        };
        if todo.is_empty() {
            return eta;
        }
        let est = Estimate::of(plan);
        eta.cost = todo
            .iter()
            .map(|&ix| (ix, est.stages.get(&ix).copied().flatten().unwrap_or(0.0)))
            .collect();
        eta.total = eta.cost.values().sum();
        let (mut flops, mut seconds) = (0.0, 0.0);
        for (ix, f) in &est.stages {
            let Some(f) = f.filter(|&f| f >= 1e9) else {
                continue;
            };
            if eta.cost.contains_key(ix) {
                continue;
            }
            if let Some(m) = cache.read_meta(&plan.graph[*ix].key) {
                if m.provenance.wall_seconds > 0.0 {
                    flops += f;
                    seconds += m.provenance.wall_seconds;
                }
            }
        }
        let parallel = slots.clamp(1, todo.len()) as f64;
        eta.prior = (seconds > 0.0).then(|| flops / seconds * parallel);
        eta
    }

    /// Counts a stage as done.
    pub fn finished(&mut self, ix: NodeIndex) {
        self.finished += self.cost.get(&ix).copied().unwrap_or(0.0);
    }

    /// Seconds left, given each running stage's done fraction and seconds run; `None` while
    /// nothing tells. Never less than the longest time a running stage needs at its own pace:
    /// a stage that runs alone at the end (a slow training) is not sped up by the others'
    /// average.
    pub fn remaining(
        &self,
        running: impl IntoIterator<Item = (NodeIndex, f64, f64)>,
    ) -> Option<f64> {
        let (mut partial, mut longest) = (0.0, None::<f64>);
        for (ix, frac, secs) in running {
            partial += self.cost.get(&ix).copied().unwrap_or(0.0) * frac;
            if let Some(own) = own_pace(frac, secs) {
                longest = Some(longest.map_or(own, |l| l.max(own)));
            }
        }
        let by_flops = estimate(
            self.total,
            self.finished + partial,
            self.start.elapsed().as_secs_f64(),
            self.prior,
        );
        match (by_flops, longest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The seconds a stage `frac` done after `secs` needs at that pace; `None` until it has run
/// long enough and far enough to tell.
pub fn own_pace(frac: f64, secs: f64) -> Option<f64> {
    (frac >= 0.05 && secs >= SETTLE_SECONDS).then(|| secs * (1.0 - frac.min(1.0)) / frac)
}

/// Seconds to do the rest of `total` FLOPs, `done` of them in `elapsed` seconds; `prior`
/// (FLOP/s) until enough is measured.
pub fn estimate(total: f64, done: f64, elapsed: f64, prior: Option<f64>) -> Option<f64> {
    let left = (total - done).max(0.0);
    if total <= 0.0 {
        return None;
    }
    if done > 0.0 && elapsed >= SETTLE_SECONDS {
        return Some(left * elapsed / done);
    }
    prior.filter(|&r| r > 0.0).map(|r| left / r)
}

/// The overall bar's message: `ETA 3m 20s`, or nothing while unknown.
pub fn message(left: Option<f64>) -> String {
    match left {
        Some(s) => format!("ETA {}", crate::progress::human_duration(s)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_throughput_replaces_the_prior_once_settled() {
        // Nothing measured: the prior rate (cached entries') tells.
        assert_eq!(estimate(100.0, 0.0, 0.5, Some(10.0)), Some(10.0));
        assert_eq!(estimate(100.0, 0.0, 0.5, None), None);
        // A quarter done in 10 s: 30 s left, whatever the prior says.
        assert_eq!(estimate(100.0, 25.0, 10.0, Some(1.0)), Some(30.0));
        // Too early to extrapolate: the prior, on what is left.
        assert_eq!(estimate(100.0, 50.0, 1.0, Some(10.0)), Some(5.0));
        assert_eq!(estimate(100.0, 100.0, 10.0, None), Some(0.0));
        assert_eq!(
            estimate(0.0, 0.0, 10.0, Some(1.0)),
            None,
            "no estimate of any stage"
        );
        assert_eq!(message(Some(200.0)), "ETA 3m 20s");
        // A stage's own pace: a fifth done in 20 s needs 80 s more; too early tells nothing.
        assert_eq!(own_pace(0.2, 20.0), Some(80.0));
        assert_eq!(own_pace(0.01, 20.0), None);
        assert_eq!(own_pace(0.5, 1.0), None);
        assert_eq!(message(None), "");
    }
}
