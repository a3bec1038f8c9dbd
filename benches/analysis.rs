//! Cost of the analyses on paper-size models: sparsity, layer norms (spectral norms by Lanczos,
//! convolutions as operators) and bounds, on the CPU as the `sparsity` and `bounds`
//! stages run them, plus the training-data statistics of a CIFAR-10-size split.
//!
//! Run: `scripts/bench-analysis.sh [--arch resnet18,vit] [--preset cifar|imagenet|all]
//!       [--conv-grid 8] [--threads N]`
//! The weights are the seeded initialisation, whose nearly flat top spectra are the slow case for
//! the iteration.
mod common;
use robarch::analysis::{bounds, norms, sparsity};
use robarch::models::Network;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let mut archs = vec!["resnet18".to_string(), "vit".to_string()];
    let mut presets = vec!["cifar", "imagenet"];
    let mut grid = 8i64;
    let mut threads = common::default_threads();
    for (k, val) in common::flags() {
        match k.as_str() {
            "--arch" => archs = val.split(',').map(String::from).collect(),
            "--preset" => {
                presets = match val.as_str() {
                    "cifar" => vec!["cifar"],
                    "imagenet" => vec!["imagenet"],
                    _ => vec!["cifar", "imagenet"],
                }
            }
            "--conv-grid" => grid = val.parse().expect("--conv-grid N"),
            "--threads" => threads = val.parse().expect("--threads N"),
            other => panic!("unknown argument {other}"),
        }
    }
    tch::set_num_threads(threads);
    println!("analysis cost on the CPU, {threads} threads, conv_grid {grid}");
    // Data statistics of a CIFAR-10-size training split (50,000 × 3 × 32 × 32 uint8).
    tch::manual_seed(0);
    let x = Tensor::randint(256, [50_000, 3, 32, 32], (Kind::Uint8, Device::Cpu));
    let t = Instant::now();
    let stats = bounds::DataStats::of_images(&x, &[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26]);
    println!(
        "data statistics, 50,000 CIFAR-size images: {:.2} s (max ‖x‖₂ {:.1})",
        t.elapsed().as_secs_f64(),
        stats.max_l2
    );
    println!(
        "{:<10} {:<9} {:>5} {:>12} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "arch", "preset", "px", "params", "layers", "sparsity s", "norms s", "bounds s", "total s"
    );
    for name in &archs {
        for &preset in &presets {
            let (p, io) = common::paper_model(name, preset);
            let size = io.image_size;
            let net = Network::new(&p, &io, &[0.5; 3], &[0.25; 3], Device::Cpu, 0).unwrap();
            let named = net.named_tensors();
            let params: i64 = named
                .iter()
                .filter(|(n, _)| !n.starts_with("normalize."))
                .map(|(_, t)| t.numel() as i64)
                .sum();
            let t0 = Instant::now();
            let s = sparsity::analyse(&named, &sparsity::Thresholds::default());
            let t1 = Instant::now();
            let layers = norms::analyse(&named, grid, norms::Lanczos::default());
            let t2 = Instant::now();
            let b = bounds::compute(&layers, &stats, None);
            let t3 = Instant::now();
            assert!(s.overall.numel > 0 && b["bartlett"].is_some());
            println!(
                "{name:<10} {preset:<9} {size:>5} {params:>12} {:>7} {:>10.2} {:>9.2} {:>9.3} {:>9.2}",
                layers.len(),
                (t1 - t0).as_secs_f64(),
                (t2 - t1).as_secs_f64(),
                (t3 - t2).as_secs_f64(),
                (t3 - t0).as_secs_f64(),
            );
        }
    }
}
