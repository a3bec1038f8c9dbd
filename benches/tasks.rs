//! What a worker saves by receiving its stage described whole (`exec::stage::Task`) instead of
//! reading the pipeline file: before, every worker process (at its first job) and every Slurm job
//! parsed, checked, resolved and planned the whole pipeline to rebuild the one stage it runs;
//! now it reads one JSON line and rebuilds that stage (its key checked against the planned one).
//! Timed in this process on a generated 1,003-stage pipeline (20 architectures × 2 seeds, each
//! trained, evaluated under 11 attacks on both splits and analysed for sparsity and bounds).
//!
//! Run: `scripts/bench-tasks.sh [--runs 30]`. Prints medians and their ratio.
use robarch::exec::stage::Task;
use std::time::Instant;

mod common;
use common::ARCHS;

fn pipeline() -> String {
    let mut s = String::from(
        "name: tasks\nseed: 0\nseeds: [0, 1]\ndatasets:\n  d: {source: synthetic, resolution: 16, synthetic: {classes: 10, train_size: 64, test_size: 64}}\nmodels:\n",
    );
    for a in ARCHS {
        let extra = if a == "coatnet" {
            ", stem_stride: 1"
        } else {
            ""
        };
        s += &format!("  {a}: {{preset: tiny{extra}}}\n");
    }
    s += "training:\n  at:\n    attack: {norm: linf, eps: 8/255, steps: 2}\n    epochs: 1\n    optimizer: {name: adamw, lr: 1e-3}\n";
    s += "evaluation:\n  splits: [train, test]\n  attacks:\n";
    for (i, eps) in (1..=11).enumerate() {
        s += &format!("    pgd-{i}: {{norm: linf, eps: {eps}/255, steps: 5}}\n");
    }
    s += "analysis: [sparsity, bounds, correlation]\n";
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tasks.yaml");
    std::fs::write(&spec, pipeline()).unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let plan = robarch::plan::load(&spec, &cache, true).unwrap();
    let stages = plan.order.len();
    let ix = plan
        .find("eval/d/vit/at/seed-1/pgd-10/test")
        .expect("the generated pipeline has this evaluation");
    let line = serde_json::to_string(&Task::of(&plan, ix)).unwrap();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        // Before: the worker planned the pipeline and looked its stage up by id.
        let t = Instant::now();
        let p = robarch::plan::load(&spec, &cache, false).unwrap();
        let n = p.find("eval/d/vit/at/seed-1/pgd-10/test").unwrap();
        assert_eq!(p.graph[n].key, plan.graph[ix].key);
        before.push(t.elapsed().as_secs_f64());
        // Now: it reads the task and rebuilds the stage, checking its key.
        let t = Instant::now();
        let task: Task = serde_json::from_str(&line).unwrap();
        let stage = task.stage().unwrap();
        assert_eq!(stage.kind(), "evaluate");
        after.push(t.elapsed().as_secs_f64());
    }
    let (b, a) = (median(before), median(after));
    println!("{stages}-stage pipeline, {runs} runs, medians:");
    println!(
        "  plan the pipeline, find the stage (before): {:>10.3} ms",
        1e3 * b
    );
    println!(
        "  read the task, rebuild the stage (now):     {:>10.3} ms",
        1e3 * a
    );
    println!(
        "  saved per worker start / Slurm job: {:.3} ms ({:.0}x less)",
        1e3 * (b - a),
        b / a
    );
    println!("  task line: {} bytes", line.len());
}
