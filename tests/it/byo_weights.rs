//! Published checkpoints into robarch's own architectures: for every architecture, a state dict
//! written by its reference implementation (torchvision's, timm's or the transcription of the
//! authors' code, random weights) loads through `weights:` (pickled, wrapped and DataParallel-
//! prefixed, or safetensors) and gives the reference's logits; WRN-28-10 and WRN-34-10 load in the
//! RobustBench/TRADES naming. A checkpoint for another architecture is refused with what does not
//! fit, a pickle that would run code is refused unrun, and a loaded checkpoint fine-tunes.
use crate::common::*;
use robarch::models::saved::{self, Checkpoint};
use robarch::models::{self, REGISTRY};
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// Writes each reference network's checkpoint (random weights, perturbed BatchNorm statistics) and
/// its logits on fixed inputs.
const WRITE: &str = r#"
import json, os, sys
sys.path.insert(0, sys.argv[1])
import torch, reference_models
from safetensors.torch import save_file

jobs = json.loads(open(sys.argv[2]).read())
out = sys.argv[3]
torch.manual_seed(0)
x = torch.rand(3, 1, 32, 32)
logits = {"x": x}
for i, (arch, job) in enumerate(sorted(jobs.items())):
    torch.manual_seed(i + 1)
    net = reference_models.build(job["family"], job["config"], job["io"]).eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                t.normal_(0, 0.1)
        logits[arch] = net(x).detach()
    sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    if job["format"] == "pickle":
        # As a training script saves it: wrapped, and DataParallel's `module.` prefix.
        torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}},
                   f"{out}/{arch}.pth")
    else:
        save_file(sd, f"{out}/{arch}.safetensors")
save_file(logits, f"{out}/logits.safetensors")

class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {out}/PWNED",))
torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Evil()}, f"{out}/evil.pt")
"#;

fn names(family: &str) -> &'static str {
    match models::export::reference(family).map(|r| r.library) {
        Some(models::export::Library::Torchvision) => "torchvision",
        Some(models::export::Library::Timm) => "timm",
        _ if models::weights::ROBUSTBENCH_FAMILIES.contains(&family) => "robustbench",
        _ => "robarch",
    }
}

#[test]
fn reference_checkpoints_load_with_the_references_logits() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("ckpt")).unwrap();
    let io = serde_json::json!({"in_channels": 1, "image_size": 32, "num_classes": 10});
    let mut jobs = serde_json::Map::new();
    let mut yaml = String::from(
        "name: weights\nseed: 1\ndevice: cpu\ndatasets:\n  digits: {source: embedded:digits, resolution: 32, limit: 60}\nmodels:\n",
    );
    for (i, a) in REGISTRY.iter().filter(|a| a.native()).enumerate() {
        let spec = robarch::spec::ModelSpec {
            arch: None,
            preset: "tiny".into(),
            overrides: Default::default(),
        };
        let mp = models::resolve(a.name, &spec).unwrap();
        let format = if i % 2 == 0 { "pickle" } else { "safetensors" };
        jobs.insert(
            a.name.to_string(),
            serde_json::json!({"family": a.family, "config": mp.config, "io": io, "format": format}),
        );
        let file = if format == "pickle" {
            format!("ckpt/{}.pth", a.name)
        } else {
            format!("ckpt/{}.safetensors", a.name)
        };
        // Random weights: at chance, so the check is told to accept any clean accuracy.
        yaml += &format!(
            "  {}: {{preset: tiny, weights: {{file: {file}, names: {}}}, normalize: false, expect: {{clean: 0.5, tolerance: 0.5}}}}\n",
            a.name,
            names(a.family)
        );
    }
    // A loaded checkpoint, fine-tuned.
    yaml += "  ft: {arch: resnet18, preset: tiny, weights: {file: ckpt/resnet18.pth, names: torchvision}, normalize: false, train: true}\n";
    yaml += "training:\n  std:\n    method: standard\n    epochs: 1\n    batch_size: 30\n    optimizer: {name: sgd, lr: 1e-4}\n    monitor: {n: 0}\n";
    yaml += "evaluation:\n  limit: 8\n  attacks:\n    clean: {}\n";
    p.write(
        "jobs.json",
        &serde_json::Value::Object(jobs.clone()).to_string(),
    );
    p.write("write.py", WRITE);
    let refs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    py(&[
        p.path("write.py").to_string_lossy().as_ref(),
        refs.to_string_lossy().as_ref(),
        p.path("jobs.json").to_string_lossy().as_ref(),
        p.path("ckpt").to_string_lossy().as_ref(),
    ]);
    p.write("p.yaml", &yaml);
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    assert!(ran.contains(&"train/digits/ft/std".to_string()), "{ran:?}");
    assert!(
        !ran.iter().any(|s| s.starts_with("train/digits/resnet18")),
        "{ran:?}"
    );

    let logits: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(p.path("ckpt/logits.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let x = &logits["x"];
    let mut worst = 0f64;
    for arch in jobs.keys() {
        let entry = entry_dir(&p, "p.yaml", &format!("load/digits/{arch}"));
        let net = saved::load(&entry, Checkpoint::Last, Device::Cpu).unwrap();
        let y = tch::no_grad(|| net.forward_t(x, false));
        let want = &logits[arch];
        let scale = f64::try_from(want.abs().max()).unwrap().max(1.0);
        let err = f64::try_from((&y - want).abs().max()).unwrap() / scale;
        worst = worst.max(err);
        // The same function on the same CPU: float32 op order only (as in the models' cross-check).
        assert!(
            err < 1e-5,
            "{arch}: logits differ from the reference's by {err}"
        );
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.join("model.json")).unwrap()).unwrap();
        assert_eq!(info["input"]["normalization"], "none", "{arch}: {info}");
    }
    println!("largest relative logit difference from a reference: {worst:.2e}");

    // Fine-tuning starts from the checkpoint: one epoch at a small learning rate stays near it.
    let loaded = saved::load(
        &entry_dir(&p, "p.yaml", "load/digits/resnet18"),
        Checkpoint::Last,
        Device::Cpu,
    )
    .unwrap();
    let tuned = saved::load(
        &entry_dir(&p, "p.yaml", "train/digits/ft/std"),
        Checkpoint::Last,
        Device::Cpu,
    )
    .unwrap();
    let a: BTreeMap<String, Tensor> = loaded.named_tensors().into_iter().collect();
    let mut moved = 0f64;
    for (n, t) in tuned.named_tensors() {
        if n.contains("running_") {
            continue;
        }
        moved = moved.max(f64::try_from((&t - &a[&n]).abs().max()).unwrap());
    }
    assert!(
        moved > 0.0 && moved < 1e-2,
        "fine-tuning moved the weights by {moved}"
    );

    // A checkpoint of another architecture: refused, listing what does not fit; nothing cached.
    let vgg_line = yaml
        .lines()
        .find(|l| l.starts_with("  vgg16_bn:"))
        .unwrap()
        .to_string();
    let q = yaml.replace(
        &vgg_line,
        "  vgg16_bn: {preset: tiny, weights: {file: ckpt/resnet18.pth, names: torchvision}, normalize: false, expect: {clean: 0.5, tolerance: 0.5}}",
    );
    p.write("q.yaml", &q);
    let out = p.run(&["run", "--format", "json", "q.yaml"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(err.contains("models.vgg16_bn.weights"), "{err}");
    assert!(err.contains("does not fit `vgg16_bn`"), "{err}");
    assert!(
        err.contains("missing: ") && err.contains("unexpected: "),
        "{err}"
    );
    assert!(!stages(&out, "ran")
        .iter()
        .any(|s| s == "load/digits/vgg16_bn"));

    // A pickle that would run code is refused without running it.
    let resnet_line = yaml
        .lines()
        .find(|l| l.starts_with("  resnet18:"))
        .unwrap()
        .to_string();
    let r = yaml.replace(
        &resnet_line,
        "  resnet18: {preset: tiny, weights: {file: ckpt/evil.pt, names: torchvision}, normalize: false}",
    );
    p.write("r.yaml", &r);
    let out = p.run(&["run", "--format", "json", "r.yaml"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(err.contains("weights-only loading refused it"), "{err}");
    assert!(
        !p.path("ckpt/PWNED").exists(),
        "reading the checkpoint ran its code"
    );
}
