//! Compute estimates of a plan, shown by `robarch status` and `robarch run --dry-run`: each
//! stage's FLOPs from its model's forward FLOPs per image (`models::flops`) × the passes its
//! attacks and updates make (`attacks::Passes`) × the images it sees (`data::expected_sizes`),
//! and the total in GPU-hours at a stated sustained throughput. Known without the data present.
use super::Plan;
use crate::stages::cost::CostInputs;
use petgraph::graph::NodeIndex;
use std::collections::BTreeMap;

/// The sustained throughput GPU-hours are given at, unless `--tflops` says otherwise: 40 TFLOP/s,
/// about what one A100 sustains training these small-image networks (a quarter of its 156
/// TFLOP/s TF32 dense peak). A measured figure (`scripts/bench-train.sh --device cuda` prints
/// images/s; × 3 × forward FLOPs per image) replaces it.
pub const DEFAULT_TFLOPS: f64 = 40.0;

/// Each stage's estimate, in plan order.
pub struct Estimate {
    /// FLOPs per stage; `None` where unknown (an imported network, a folder dataset).
    pub stages: BTreeMap<NodeIndex, Option<f64>>,
    /// Stages whose model's FLOPs were scaled from another resolution.
    pub scaled: Vec<NodeIndex>,
}

impl Estimate {
    pub fn of(plan: &Plan) -> Self {
        let mut stages = BTreeMap::new();
        let mut scaled = Vec::new();
        for &ix in &plan.order {
            let mut inputs = CostInputs::default();
            for d in plan.deps(ix) {
                let s = &plan.graph[d].stage;
                inputs.images = inputs.images.or(s.images());
                inputs.model = inputs.model.or(s.model_cost());
            }
            let own = plan.graph[ix].stage.model_cost();
            if inputs.model.or(own).is_some_and(|m| m.scaled) {
                scaled.push(ix);
            }
            stages.insert(ix, plan.graph[ix].stage.flops(&inputs));
        }
        Self { stages, scaled }
    }

    /// The FLOPs of the stages `which` selects, and how many of them have no estimate.
    pub fn total(&self, which: impl Fn(NodeIndex) -> bool) -> (f64, usize) {
        let mut sum = 0.0;
        let mut unknown = 0;
        for (&ix, f) in &self.stages {
            if !which(ix) {
                continue;
            }
            match f {
                Some(f) => sum += f,
                None => unknown += 1,
            }
        }
        (sum, unknown)
    }
}

/// What the FLOPs column's symbols mean, printed under it.
pub const LEGEND: &str = "FLOPs: estimated compute per stage; `none`: no network passes (data, \
     reports, correlations); `<1 GFLOP`: under one GFLOP; `?`: no estimate (an imported network, a \
     model config not in src/models/flops.json, or a folder dataset)";

/// FLOPs for people: `3.20 PFLOP`; `none` for a stage without network passes, `<1 GFLOP`
/// under one, `?` for unknown ([`LEGEND`]).
pub fn human(f: Option<f64>) -> String {
    let Some(f) = f else { return "?".into() };
    if f <= 0.0 {
        return "none".into();
    }
    if f < 1e9 {
        return "<1 GFLOP".into();
    }
    let units = [(1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP")];
    let (d, u) = units.iter().find(|(d, _)| f >= *d).copied().unwrap_or((1e9, "GFLOP"));
    let v = f / d;
    if v >= 100.0 {
        format!("{v:.0} {u}")
    } else if v >= 10.0 {
        format!("{v:.1} {u}")
    } else {
        format!("{v:.2} {u}")
    }
}

impl Estimate {
    /// Per model (the third part of a stage id, `eval/<dataset>/<model>/…`), the FLOPs of the
    /// stages `which` selects, their number and how many have no estimate; largest first.
    pub fn per_model(
        &self,
        plan: &Plan,
        which: impl Fn(NodeIndex) -> bool,
    ) -> Vec<(String, f64, usize, usize)> {
        let mut by: BTreeMap<String, (f64, usize, usize)> = BTreeMap::new();
        for (&ix, f) in &self.stages {
            let id = &plan.graph[ix].id;
            let Some(model) = id.split('/').nth(2) else {
                continue;
            };
            if !which(ix) {
                continue;
            }
            let e = by.entry(model.to_string()).or_default();
            e.0 += f.unwrap_or(0.0);
            e.1 += 1;
            e.2 += usize::from(f.is_none());
        }
        let mut out: Vec<(String, f64, usize, usize)> =
            by.into_iter().map(|(m, (f, n, u))| (m, f, n, u)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// The per-model subtotals as lines: `  vit  1.86 TFLOP  9 stages`.
pub fn subtotals(rows: &[(String, f64, usize, usize)]) -> String {
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let mut s = String::new();
    for (m, f, n, u) in rows {
        let unknown = if *u > 0 {
            format!(", {u} without an estimate")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "  {m:<w$}  {:>11}  {n} stage{}{unknown}\n",
            human(Some(*f)),
            if *n == 1 { "" } else { "s" }
        ));
    }
    s
}

/// GPU-hours of `flops` at `tflops` sustained.
pub fn gpu_hours(flops: f64, tflops: f64) -> f64 {
    flops / (tflops * 1e12) / 3600.0
}

/// The one-line summary: total, GPU-hours, the throughput assumed, and what is left out.
pub fn summary(what: &str, flops: f64, unknown: usize, scaled: usize, tflops: f64) -> String {
    let mut s = format!(
        "estimated compute of {what}: {} ≈ {:.1} GPU-hours at {tflops} TFLOP/s sustained (--tflops)",
        human(Some(flops)),
        gpu_hours(flops, tflops)
    );
    if unknown > 0 {
        s.push_str(&format!(
            "; {unknown} stage(s) without an estimate left out (an imported network, a model config not in src/models/flops.json, or a folder dataset, whose sizes are unknown until read)"
        ));
    }
    if scaled > 0 {
        s.push_str(&format!(
            "; {scaled} stage(s) of models counted at another resolution, scaled by pixels"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(None), "?");
        assert_eq!(human(Some(0.0)), "none");
        assert_eq!(human(Some(2e8)), "<1 GFLOP");
        assert_eq!(human(Some(3.2e15)), "3.20 PFLOP");
        assert_eq!(human(Some(45e12)), "45.0 TFLOP");
        assert_eq!(human(Some(1.5e20)), "150 EFLOP");
        assert!((gpu_hours(3.6e15 * 40.0, 40.0) - 1.0).abs() < 1e-12);
    }
}
