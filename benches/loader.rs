//! Data-loading throughput against the cost of one training step, measured in one run.
//!
//! For CIFAR-10-sized (32 px) and ImageNette-sized (224 px) batches with the authors' augmentation,
//! prints images/s of batch assembly on one thread and on all cores, through the background
//! loader, and of one ResNet-18 training step (forward + backward + AdamW) on the same machine
//! (CUDA when present). The ratio loader / step says how many times faster the loader produces
//! images than the model consumes them: above 1 the device never waits for data (a PGD-10 AT step
//! costs ~11× a plain one, so the margin there is larger still).
//!
//! Run: `scripts/bench-loader.sh` (or `cargo bench --bench loader`).
use robarch::augment::autoaugment::Policy;
use robarch::augment::Augment;
use robarch::data::loader::{assemble, HostData, Loader};
use robarch::models::{self, ModelIo, Network};
use robarch::spec::{ModelSpec, OptimizerName, OptimizerSpec, Real};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Images/s of batch assembly on a pool of `threads` threads.
fn assemble_rate(
    data: &HostData,
    steps: &[Augment],
    batch: usize,
    batches: usize,
    threads: usize,
) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let order: Vec<usize> = (0..batch * batches).map(|i| i % data.len()).collect();
    pool.install(|| {
        let t = Instant::now();
        let n: usize = order
            .chunks(batch)
            .enumerate()
            .map(|(b, idx)| assemble(data, idx, steps, 7, b * batch).len())
            .sum();
        n as f64 / t.elapsed().as_secs_f64()
    })
}

/// Images/s through the background [`Loader`] (global rayon pool), as training consumes them.
fn loader_rate(data: &HostData, steps: &[Augment], batch: usize, batches: usize) -> f64 {
    let order: Vec<usize> = (0..batch * batches).map(|i| i % data.len()).collect();
    let t = Instant::now();
    let n: usize = Loader::start(data.clone(), order, batch, Arc::new(steps.to_vec()), 7, 3)
        .map(|b| b.len())
        .sum();
    n as f64 / t.elapsed().as_secs_f64()
}

fn step_rate(preset: &str, res: i64, batch: i64, device: Device, reps: usize) -> f64 {
    let spec: ModelSpec = serde_yaml::from_str(&format!("preset: {preset}")).unwrap();
    let mp = models::resolve("resnet18", &spec).unwrap();
    let io = ModelIo {
        in_channels: 3,
        image_size: res,
        num_classes: 10,
    };
    let net = Network::new(&mp, &io, &[0.5; 3], &[0.25; 3], device, 0).unwrap();
    let mut opt = robarch::train::optim::Optimizer::new(
        &OptimizerSpec {
            name: OptimizerName::Adamw,
            lr: Real(1e-4),
            weight_decay: Real(0.01),
            momentum: Real(0.9),
            betas: (Real(0.9), Real(0.999)),
            nesterov: false,
            no_decay_1d: false,
        },
        &net.vs,
    );
    let x = Tensor::rand([batch, 3, res, res], (Kind::Float, device));
    let y = Tensor::randint(10, [batch], (Kind::Int64, device));
    let mut step = || {
        let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        f64::try_from(loss).unwrap()
    };
    step(); // warm-up (allocator, cuDNN autotune)
    let t = Instant::now();
    for _ in 0..reps {
        step();
    }
    (reps as i64 * batch) as f64 / t.elapsed().as_secs_f64()
}

fn synthetic(n: usize, res: usize) -> HostData {
    HostData {
        images: Arc::new(
            (0..n * 3 * res * res)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        labels: Arc::new((0..n as i64).map(|i| i % 10).collect()),
        c: 3,
        h: res,
        w: res,
    }
}

fn main() {
    let device = Device::cuda_if_available();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = tch::get_num_threads();
    println!("device {device:?}, {cores} cores, libtorch threads {threads}");
    let cifar_aug = [
        Augment::RandomCrop { padding: 4 },
        Augment::Hflip { p: 0.5 },
        Augment::Autoaugment {
            policy: Policy::Cifar10,
        },
    ];
    let nette_aug = [
        Augment::RandomResizedCrop {
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        },
        Augment::Hflip { p: 0.5 },
        Augment::Autoaugment {
            policy: Policy::Imagenet,
        },
    ];
    let gpu = device.is_cuda();
    let cases = [
        (
            "CIFAR-10 32px",
            "cifar",
            32usize,
            &cifar_aug,
            128usize,
            if gpu { 40 } else { 20 },
            128i64,
            if gpu { 20 } else { 2 },
        ),
        (
            "ImageNette 224px",
            "imagenet",
            224,
            &nette_aug,
            64,
            if gpu { 10 } else { 4 },
            if gpu { 64 } else { 16 },
            if gpu { 10 } else { 1 },
        ),
    ];
    println!(
        "{:<18} {:>12} {:>12} {:>8} {:>12} {:>12} {:>10}",
        "batch", "1 thread", "all cores", "speedup", "loader", "train step", "loader/step"
    );
    for (name, preset, res, aug, batch, batches, step_batch, reps) in cases {
        let data = synthetic(2048.min(batch * batches), res);
        let one = assemble_rate(&data, aug, batch, batches, 1);
        let all = assemble_rate(&data, aug, batch, batches, cores);
        let loader = loader_rate(&data, aug, batch, batches);
        let train = step_rate(preset, res as i64, step_batch, device, reps);
        println!(
            "{name:<18} {one:>10.0}/s {all:>10.0}/s {:>7.2}x {loader:>10.0}/s {train:>10.1}/s {:>10.1}x",
            all / one,
            loader / train
        );
    }
}
