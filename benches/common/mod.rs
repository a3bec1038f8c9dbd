//! Shared by the benchmarks: `--flag value` arguments, the presets' input sizes, paper networks,
//! the device flag and the `.venv` interpreter that runs the PyTorch references.
#![allow(dead_code)]
use robarch::models::{self, ModelIo, ModelParams};
use robarch::spec::ModelSpec;
use std::path::PathBuf;
use tch::Device;

/// The command line as (`--flag`, value) pairs; every flag takes a value. Every benchmark reads it
/// first, so it also sets the heap up as a worker does (`robarch::torch::alloc`): the benchmarks
/// time what a worker runs.
pub fn flags() -> Vec<(String, String)> {
    robarch::torch::alloc::keep_freed_memory();
    let v: Vec<String> = std::env::args()
        .skip(1)
        .filter(|s| s != "--bench")
        .collect();
    v.chunks(2)
        .map(|c| match c {
            [k, val] => (k.clone(), val.clone()),
            [k] => panic!("{k} needs a value"),
            _ => unreachable!(),
        })
        .collect()
}

/// Image side and classes of a preset: `imagenet` 224/1000, `tiny` 8/10, otherwise 32/10.
pub fn preset_io(preset: &str) -> ModelIo {
    let (image_size, num_classes) = match preset {
        "imagenet" => (224, 1000),
        "tiny" => (8, 10),
        _ => (32, 10),
    };
    ModelIo {
        in_channels: 3,
        image_size,
        num_classes,
    }
}

/// Architecture `arch` at `preset`, with the preset's input.
pub fn paper_model(arch: &str, preset: &str) -> (ModelParams, ModelIo) {
    let spec = ModelSpec {
        arch: Some(arch.into()),
        preset: preset.into(),
        overrides: Default::default(),
    };
    let p = models::resolve(arch, &spec).unwrap_or_else(|e| panic!("{arch}/{preset}: {e:?}"));
    (p, preset_io(preset))
}

/// A model argument `arch:preset[@image size]`: the architecture, the preset, its parameters and
/// its input (the preset's, at the given image size).
pub fn model_arg(spec: &str) -> (String, String, ModelParams, ModelIo) {
    let (name, size) = match spec.split_once('@') {
        Some((n, s)) => (n, Some(s.parse::<i64>().expect("arch:preset@SIZE"))),
        None => (spec, None),
    };
    let (arch, preset) = name
        .split_once(':')
        .unwrap_or_else(|| panic!("a model is arch:preset[@size]: {spec}"));
    let (p, mut io) = paper_model(arch, preset);
    if let Some(s) = size {
        io.image_size = s;
    }
    (arch.to_string(), preset.to_string(), p, io)
}

/// Prints the geometric mean of `ratios` and their range after `what`.
pub fn print_geomean(what: &str, ratios: &[f64]) {
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!(
        "{what} over {} rows: {geo:.2} (range {:.2}–{:.2})",
        ratios.len(),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
}

/// `cpu`, or CUDA device 0 for anything else.
pub fn device(s: &str) -> Device {
    if s == "cpu" {
        Device::Cpu
    } else {
        Device::Cuda(0)
    }
}

/// A `--threads N[,N...]` list.
pub fn threads(val: &str) -> Vec<i32> {
    val.split(',')
        .map(|t| t.parse().expect("--threads N[,N...]"))
        .collect()
}

pub fn default_threads() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
}

/// The `.venv` interpreter with torch (the PyTorch side of a comparison).
pub fn python() -> PathBuf {
    std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(".venv"))
        .join("bin/python")
}

/// Twenty architectures of the study, by registry name (the generated study pipelines).
pub const ARCHS: [&str; 20] = [
    "resnet18",
    "resnet50",
    "preact_resnet18",
    "wrn28_10",
    "wrn34_10",
    "vgg16_bn",
    "densenet121",
    "mobilenetv2",
    "regnetx",
    "convnext",
    "vit",
    "deit",
    "swin",
    "cait",
    "pvt_v2",
    "cct",
    "coatnet",
    "cvt",
    "mixer",
    "poolformer",
];
