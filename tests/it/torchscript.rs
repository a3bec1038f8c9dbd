//! External TorchScript models: loaded with their PyTorch names, logits equal to PyTorch's, and
//! usable in a pipeline, where an `import` stage replaces training and the attacks and analyses
//! run on them.
use crate::common::*;
use robarch::models::{ModelIo, Network};
use std::path::Path;
use tch::{Device, Tensor};

/// Scripts a small BN CNN for `channels`×`size`² inputs and `classes` outputs into `pt`, with
/// random BN statistics, and writes an input batch and PyTorch's eval logits next to it.
pub(crate) fn export(pt: &Path, channels: i64, size: i64, classes: i64, seed: i64) {
    let code = format!(
        r#"
import torch, torch.nn as nn
from safetensors.torch import save_file
torch.manual_seed({seed})
m = nn.Sequential(nn.Conv2d({channels}, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, {classes}))
m[1].running_mean.normal_(); m[1].running_var.uniform_(0.5, 2.0)
m.eval()
s = torch.jit.script(m)
s.save(r"{pt}")
x = torch.rand(3, {channels}, {size}, {size})
save_file({{"x": x, "y": m(x).detach()}}, r"{pt}.io.safetensors")
"#,
        pt = pt.display()
    );
    py(&["-c", &code]);
}

#[test]
fn torchscript_model_matches_pytorch_and_exposes_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("m.pt");
    export(&pt, 3, 16, 4, 1);
    let p = torchscript_params(&pt);
    let io = ModelIo {
        in_channels: 3,
        image_size: 16,
        num_classes: 4,
    };
    let net = Network::new(&p, &io, &[0.0; 3], &[1.0; 3], Device::Cpu, 0).unwrap();
    let t: Vec<(String, Tensor)> =
        Tensor::read_safetensors(format!("{}.io.safetensors", pt.display())).unwrap();
    let get = |n: &str| t.iter().find(|(k, _)| k == n).unwrap().1.shallow_clone();
    let y = net.forward_t(&get("x"), false);
    let err = f64::try_from((y - get("y")).abs().max()).unwrap();
    // The same libtorch ops on the same CPU; only thread count and dispatch differ between the
    // eager Python reference and the scripted module (measured ≤ 1e-6 across MKL code paths).
    assert!(err <= 1e-5, "max |Δlogit| {err}");
    let names: Vec<String> = net.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"0.weight".to_string()), "{names:?}");
    assert!(names.contains(&"5.bias".to_string()), "{names:?}");
    // 3·8·9 + 8 conv, 16 BN affine, 8·4 + 4 linear.
    assert_eq!(net.num_parameters(), 216 + 8 + 16 + 32 + 4);

    // A file that is not TorchScript, or a module with the wrong output, is named in the error.
    std::fs::write(dir.path().join("bad.pt"), b"not a model").unwrap();
    let mut bad = p.clone();
    bad.config["file"] = serde_json::json!(dir.path().join("bad.pt").to_string_lossy());
    let e = Network::new(&bad, &io, &[0.0; 3], &[1.0; 3], Device::Cpu, 0).unwrap_err();
    assert!(
        format!("{e:#}").contains("bad.pt: not a loadable TorchScript file"),
        "{e:#}"
    );
    let io5 = ModelIo {
        num_classes: 5,
        ..io
    };
    let e = Network::new(&p, &io5, &[0.0; 3], &[1.0; 3], Device::Cpu, 0).unwrap_err();
    assert!(format!("{e:#}").contains("expected [2, 5] logits"), "{e:#}");
}

const PIPELINE: &str = r#"name: ext
seed: 3
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8, limit: 60}
models:
  # Random weights: at chance, so the import's check is told to accept any clean accuracy.
  ext: {arch: torchscript, file: models/ext.pt, normalize: false, expect: {clean: 0.5, tolerance: 0.5}}
evaluation:
  limit: 30
  attacks:
    clean: {}
    pgd: {eps: 8/255, steps: 2}
analysis:
  sparsity:
  bounds: {attack: pgd}
"#;

#[test]
fn pipeline_imports_evaluates_and_reimports_on_change() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("models")).unwrap();
    export(&p.path("models/ext.pt"), 1, 8, 10, 1);
    p.write("p.yaml", PIPELINE);
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    for s in [
        "import/digits/ext",
        "eval/digits/ext/external/clean/test",
        "eval/digits/ext/external/pgd/test",
        "sparsity/digits/ext/external",
        "bounds/digits/ext/external",
    ] {
        assert!(ran.contains(&s.to_string()), "{s} not in {ran:?}");
    }
    // An imported model: its linear maps are measured and the named attack enters the bounds.
    let b: serde_json::Value = serde_json::from_slice(
        &std::fs::read(entry_dir(&p, "p.yaml", "bounds/digits/ext/external").join("bounds.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(b["layers"].as_u64().unwrap() >= 1, "{b}");
    assert_eq!(b["threat"]["norm"], "linf");
    assert!(
        b["log10"]["adv_l1inf"].as_f64() > b["log10"]["golowich_l1inf"].as_f64(),
        "{b}"
    );
    assert!(!ran.iter().any(|s| s.starts_with("train/")), "{ran:?}");
    assert!(entry_dir(&p, "p.yaml", "import/digits/ext")
        .join("model.pt")
        .is_file());
    // Unchanged: nothing reruns.
    assert!(stages(&p.ok(&["run", "--format", "json", "p.yaml"]), "ran").is_empty());
    // New weights: the import and everything downstream rerun.
    export(&p.path("models/ext.pt"), 1, 8, 10, 2);
    let ran = stages(&p.ok(&["run", "--format", "json", "p.yaml"]), "ran");
    assert!(ran.contains(&"import/digits/ext".to_string()), "{ran:?}");

    // Without `expect:`, a model at chance fails its import, naming the contract it assumed and
    // the fixes; nothing is committed for it.
    p.write(
        "r.yaml",
        &PIPELINE.replace(", expect: {clean: 0.5, tolerance: 0.5}", ""),
    );
    let before = p.entries();
    let out = p.run(&["run", "--format", "json", "r.yaml"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(err.contains("import/digits/ext"), "{err}");
    assert!(err.contains("models.ext.file: "), "{err}");
    assert!(err.contains("below twice chance"), "{err}");
    assert!(err.contains("not normalised by robarch"), "{err}");
    assert!(
        err.contains("`normalize: true`") && err.contains("`range: [0, 255]`"),
        "{err}"
    );
    assert_eq!(p.entries(), before, "a failed import left an entry");

    // A module with one output too few for the dataset's classes: located at its file, with the
    // shape it returned; nothing is committed.
    export(&p.path("models/five.pt"), 1, 8, 5, 1);
    p.write(
        "s.yaml",
        &PIPELINE.replace("models/ext.pt", "models/five.pt"),
    );
    let out = p.run(&["run", "--format", "json", "s.yaml"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        err.contains("models.ext.file: ")
            && err.contains("expected [2, 10] logits (one per class)")
            && err.contains("last layer of 10 outputs"),
        "{err}"
    );
    assert_eq!(p.entries(), before, "a failed import left an entry");

    // A missing file is a located spec error; nothing is written.
    p.write(
        "q.yaml",
        &PIPELINE.replace("models/ext.pt", "models/nope.pt"),
    );
    let out = p.run(&["run", "--format", "json", "q.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("models.ext.file") && err.contains("nope.pt"),
        "{err}"
    );
}
