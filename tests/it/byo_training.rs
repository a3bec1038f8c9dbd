//! Bring your own model, trained: untrained TorchScript modules defined in Python (a CNN with
//! BatchNorm and a small ViT) are trained by robarch with PGD-AT and, from the same initial
//! weights, through the same batches and attack, by a plain eager PyTorch loop on one thread; the
//! final weights, BatchNorm statistics and test accuracy agree. The analyses classify the modules'
//! parameters from their structure, and `export` writes the trained module.
use crate::common::*;
use robarch::models::{ModelIo, Network};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// The networks, as a researcher writes them; `build(name)` seeds its initialisation, so the
/// reference loop starts from exactly the weights the scripted file holds.
const NETS: &str = r#"
import sys, json
import torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load_file, save_file


class Cnn(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, 2, stride=2)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = float((dim // heads) ** -0.5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * self.scale
        return self.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Vit(nn.Module):
    def __init__(self, dim: int = 16, classes: int = 10):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, 2), Block(dim, 2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


def build(name):
    torch.manual_seed(7)
    return {"cnn": Cnn, "vit": Vit}[name]()


def pgd(m, x, y, eps, alpha, steps):
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(m(adv), y), adv)
        adv = torch.min(torch.max(adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def reference(name, data, out, r):
    """PGD-AT as robarch runs it: attack in eval mode, update in train mode, SGD."""
    torch.set_num_threads(1)
    d = load_file(data)
    m = build(name)
    opt = torch.optim.SGD(m.parameters(), lr=r["lr"], momentum=r["momentum"],
                          weight_decay=r["weight_decay"])
    xs, ys = d["train_x"].float() / 255.0, d["train_y"]
    for e in range(r["epochs"]):
        order = d[f"order_{e}"]
        for lo in range(0, len(order), r["batch"]):
            idx = order[lo:lo + r["batch"]]
            x, y = xs[idx], ys[idx]
            m.eval()
            adv = pgd(m, x, y, r["eps"], r["alpha"], r["steps"])
            m.train()
            loss = F.cross_entropy(m(adv), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        pred = m(d["test_x"].float() / 255.0).argmax(1)
    acc = (pred == d["test_y"]).float().mean().item()
    state = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    save_file(state, out, metadata={"test_accuracy": str(acc)})


if __name__ == "__main__":
    if sys.argv[1] == "script":
        for name in ("cnn", "vit"):
            torch.jit.script(build(name)).save(f"{sys.argv[2]}/{name}.pt")
    else:
        reference(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
"#;

const PIPELINE: &str = r#"name: byo
seed: 3
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8, limit: 400}
models:
  cnn: {arch: torchscript, file: models/cnn.pt, normalize: false, train: true}
  vit: {arch: torchscript, file: models/vit.pt, normalize: false, train: true}
training:
  at:
    method: pgd-at
    attack: {norm: linf, eps: 0.1, steps: 2, step_size: 0.05, random_start: false}
    epochs: 2
    batch_size: 32
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5e-4}
    monitor: {n: 0}
    amp: off
    channels_last: off
evaluation:
  attacks:
    clean: {}
analysis:
  sparsity:
  bounds: {attack: clean}
"#;

/// Writes NETS into `p` as `nets.py` and the untrained modules, scripted, as `models/{cnn,vit}.pt`;
/// returns the path of `nets.py`.
fn script_nets(p: &Project) -> String {
    std::fs::create_dir_all(p.path("models")).unwrap();
    p.write("nets.py", NETS);
    let nets = p.path("nets.py").to_string_lossy().into_owned();
    py(&[&nets, "script", &p.path("models").to_string_lossy()]);
    nets
}

#[test]
fn scripted_modules_train_as_a_pytorch_loop_does() {
    let p = Project::new();
    let nets = script_nets(&p);
    p.write("p.yaml", PIPELINE);
    let out = p.ok(&["run", "--format", "json", "--threads", "1", "p.yaml"]);
    let ran = stages(&out, "ran");
    for s in [
        "import/digits/cnn",
        "train/digits/cnn/at",
        "eval/digits/vit/at/clean/test",
        "sparsity/digits/vit/at",
        "bounds/digits/cnn/at",
    ] {
        assert!(ran.contains(&s.to_string()), "{s} not in {ran:?}");
    }

    // The batches robarch took: its prepared data and each epoch's order.
    let data = robarch::data::prepared::load(&entry_dir(&p, "p.yaml", "prepare/digits")).unwrap();
    let n = data.train_x.size()[0] as usize;
    let mut tensors = vec![
        ("train_x".to_string(), data.train_x.shallow_clone()),
        ("train_y".to_string(), data.train_y.shallow_clone()),
        ("test_x".to_string(), data.test_x.shallow_clone()),
        ("test_y".to_string(), data.test_y.shallow_clone()),
    ];
    for e in 0..2 {
        let order: Vec<i64> = robarch::train::epoch_order(3, e, n)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        tensors.push((format!("order_{e}"), Tensor::from_slice(&order)));
    }
    let data_file = p.path("batches.safetensors");
    Tensor::write_safetensors(&tensors, &data_file).unwrap();
    let recipe = r#"{"epochs": 2, "batch": 32, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "eps": 0.1, "alpha": 0.05, "steps": 2}"#;

    for name in ["cnn", "vit"] {
        let reference = p.path(&format!("{name}.reference.safetensors"));
        py(&[
            &nets,
            "reference",
            name,
            &data_file.to_string_lossy(),
            &reference.to_string_lossy(),
            recipe,
        ]);
        let want: BTreeMap<String, Tensor> = Tensor::read_safetensors(&reference)
            .unwrap()
            .into_iter()
            .collect();
        let entry = entry_dir(&p, "p.yaml", &format!("train/digits/{name}/at"));
        let got: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(entry.join("model.safetensors"))
                .unwrap()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("normalize."))
                .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: robarch saves the module's parameters and buffers under their PyTorch names"
        );
        let mut worst = 0f64;
        for (k, w) in &want {
            let g = &got[k];
            if w.kind() == Kind::Int64 {
                // num_batches_tracked: one per training forward pass, robarch's as PyTorch's.
                assert_eq!(
                    i64::try_from(g).unwrap(),
                    i64::try_from(w).unwrap(),
                    "{name} {k}"
                );
                continue;
            }
            let scale = f64::try_from(w.abs().max()).unwrap().max(1.0);
            worst = worst.max(f64::try_from((g - w).abs().max()).unwrap() / scale);
        }
        // Same libtorch, same thread, same ops: the TorchScript graph and the eager module differ
        // only where the graph executor fuses or reorders float32 work (measured ≤ 2e-7 after
        // 26 SGD steps); a changed batch, mode, attack or update moves weights by ≥ 1e-2.
        println!("{name}: max relative weight difference from the PyTorch loop {worst:.2e}");
        assert!(
            worst < 1e-4,
            "{name}: weights differ from the PyTorch loop's by {worst}"
        );
        assert!(
            !got.keys().any(|k| k.contains("running_mean")) || name == "cnn",
            "{name}"
        );
        if name == "cnn" {
            let moved = f64::try_from(got["bn.running_mean"].abs().max()).unwrap();
            assert!(moved > 0.0, "BatchNorm statistics moved in training");
        }
        // Test accuracy: the same predictions on the same points.
        let st = std::fs::read(&reference).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&st).unwrap();
        let want_acc: f64 = meta.metadata().as_ref().unwrap()["test_accuracy"]
            .parse()
            .unwrap();
        let got_acc = robarch_accuracy(&p, name);
        assert!(
            (got_acc - want_acc).abs() <= 1.0 / data.test_x.size()[0] as f64 + 1e-9,
            "{name}: test accuracy {got_acc} against PyTorch's {want_acc}"
        );
    }

    // The analyses count the modules' layers by the class of the module holding them.
    let types = |name: &str| -> BTreeMap<String, String> {
        let s: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                entry_dir(&p, "p.yaml", &format!("sparsity/digits/{name}/at"))
                    .join("sparsity.json"),
            )
            .unwrap(),
        )
        .unwrap();
        s["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap().to_string(),
                    l["layer_type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let vit = types("vit");
    for (param, kind) in [
        ("patch_embed.proj.weight", "embedding"),
        ("pos_embed", "embedding"),
        ("cls_token", "embedding"),
        ("blocks.0.attn.qkv.weight", "attention"),
        ("blocks.1.attn.proj.weight", "attention"),
        ("blocks.0.mlp.0.weight", "linear"),
        ("head.weight", "linear"),
    ] {
        assert_eq!(
            vit.get(param).map(String::as_str),
            Some(kind),
            "{param}: {vit:?}"
        );
    }
    assert!(
        !vit.keys()
            .any(|k| k.contains("norm") || k.ends_with("bias")),
        "{vit:?}"
    );
    let cnn = types("cnn");
    assert_eq!(cnn.get("conv.weight").map(String::as_str), Some("conv"));
    assert_eq!(cnn.get("fc.weight").map(String::as_str), Some("linear"));
    assert!(!cnn.keys().any(|k| k.starts_with("bn")), "{cnn:?}");

    // `export` writes the trained module; its loader gives robarch's logits.
    p.ok(&["export", "p.yaml", "train/digits/cnn/at", "--to", "out/cnn"]);
    let entry = entry_dir(&p, "p.yaml", "train/digits/cnn/at");
    let net = robarch::models::saved::load(
        &entry,
        robarch::models::saved::Checkpoint::Last,
        Device::Cpu,
    )
    .unwrap();
    let x = data.test_x.narrow(0, 0, 4).to_kind(Kind::Float) / 255.0;
    let y = tch::no_grad(|| net.forward_t(&x, false));
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], p.path("out/cnn/check.safetensors"))
        .unwrap();
    let check = format!(
        "import sys; sys.path.insert(0, r'{d}'); import load, torch\nfrom safetensors.torch import load_file\nt = load_file(r'{d}/check.safetensors')\nm = load.load()\nwith torch.no_grad(): err = (m(t['x']) - t['y']).abs().max().item()\nassert err < 1e-5, err\n",
        d = p.path("out/cnn").display()
    );
    py(&["-c", &check]);

    // Seeds vary the data order, not the initial weights: a new seed retrains from the file.
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));
}

/// robarch's clean test accuracy of `model`, from its evaluation stage.
fn robarch_accuracy(p: &Project, model: &str) -> f64 {
    let e = entry_dir(p, "p.yaml", &format!("eval/digits/{model}/at/clean/test"));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.join("metrics.json")).unwrap()).unwrap();
    r["clean_accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("{r}"))
}

#[test]
fn a_scripted_module_switches_train_and_eval_mode() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("m.pt");
    let code = format!(
        r#"
import torch, torch.nn as nn
torch.manual_seed(0)
m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                  nn.Dropout(0.5), nn.Linear(64, 3))
torch.jit.script(m).save(r"{}")
"#,
        pt.display()
    );
    py(&["-c", &code]);
    let params = torchscript_params(&pt);
    let io = ModelIo {
        in_channels: 1,
        image_size: 4,
        num_classes: 3,
    };
    let net = Network::new(&params, &io, &[0.0], &[1.0], Device::Cpu, 0).unwrap();
    let stats = |net: &Network| -> Tensor {
        net.named_tensors()
            .into_iter()
            .find(|(n, _)| n == "1.running_mean")
            .expect("BatchNorm's statistics are in the var store")
            .1
            .copy()
    };
    let x = Tensor::rand([8, 1, 4, 4], (Kind::Float, Device::Cpu));
    let before = stats(&net);
    // Evaluation: deterministic (no dropout), statistics untouched.
    let (a, b) = (net.forward_t(&x, false), net.forward_t(&x, false));
    assert_eq!(f64::try_from((&a - &b).abs().max()).unwrap(), 0.0);
    assert_eq!(
        f64::try_from((stats(&net) - &before).abs().max()).unwrap(),
        0.0
    );
    // Training: dropout draws, statistics move.
    let (c, d) = (net.forward_t(&x, true), net.forward_t(&x, true));
    assert!(
        f64::try_from((&c - &d).abs().max()).unwrap() > 0.0,
        "dropout is on in training"
    );
    assert!(f64::try_from((stats(&net) - &before).abs().max()).unwrap() > 0.0);
    // And back: evaluation is deterministic again.
    let (e, f) = (net.forward_t(&x, false), net.forward_t(&x, false));
    assert_eq!(f64::try_from((&e - &f).abs().max()).unwrap(), 0.0);
    // The parameters are trainable, the buffers are not.
    let trainable = net.vs.trainable_variables().len();
    assert_eq!(
        trainable, 6,
        "conv, BN affine and linear weights and biases"
    );
}

/// A scripted module's training is checkpointed like a native model's: killed after epoch 2's
/// checkpoint, the rerun resumes at epoch 3 (parameters, BatchNorm statistics, optimiser state and
/// the best epoch so far all come back) and ends at the last and best weights of an uninterrupted
/// run; `checkpoint: best` evaluates the best epoch's module.
#[test]
fn a_killed_scripted_module_resumes_to_an_uninterrupted_runs_weights() {
    let text = PIPELINE
        .replace(
            "  vit: {arch: torchscript, file: models/vit.pt, normalize: false, train: true}\n",
            "",
        )
        .replace("epochs: 2", "epochs: 4")
        .replace("monitor: {n: 0}", "monitor: {n: 32}")
        .replace(
            "evaluation:\n",
            "evaluation:\n  splits: [test]\n  checkpoint: best\n",
        )
        .replace("analysis:\n  sparsity:\n  bounds: {attack: clean}\n", "");
    let setup = |p: &Project| {
        script_nets(p);
        p.write("p.yaml", &text);
    };
    let reference = Project::new();
    setup(&reference);
    reference.ok(&["run", "--format", "json", "--threads", "1", "p.yaml"]);

    let p = Project::new();
    setup(&p);
    kill_after_checkpoint(&p, 2, &["--threads", "1"]);
    let out = p.ok(&["run", "--format", "json", "--threads", "1", "p.yaml"]);
    let err = stderr(&out);
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert!(
        err.contains("epoch=3") && !err.contains("epoch=1 "),
        "{err}"
    );
    let stage = "train/digits/cnn/at";
    let (got, want) = (
        entry_dir(&p, "p.yaml", stage),
        entry_dir(&reference, "p.yaml", stage),
    );
    for f in ["model.safetensors", "model_best.safetensors"] {
        assert!(
            std::fs::read(got.join(f)).unwrap() == std::fs::read(want.join(f)).unwrap(),
            "{f}: resumed weights differ from an uninterrupted run"
        );
    }
    assert!(
        got.join("model_best.pt").exists(),
        "the best epoch's module is saved"
    );
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(got.join("history.json")).unwrap()).unwrap();
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(4),
        "every epoch is in the history: {history}"
    );
    assert_eq!(
        robarch_accuracy(&p, "cnn"),
        robarch_accuracy(&reference, "cnn")
    );
}

/// Every training method, optimiser and schedule a native model has trains a scripted module:
/// standard, PGD-AT under ℓ∞, ℓ2 and ℓ1, TRADES and fast AT, with SGD/AdamW and multistep,
/// one-cycle and cosine schedules; each moves the file's weights and gives a finite loss.
#[test]
fn a_scripted_module_trains_with_every_method() {
    let p = Project::new();
    script_nets(&p);
    let methods = [
        ("standard", "method: standard\n    optimizer: {name: adamw, lr: 1e-3}"),
        ("linf", "method: pgd-at\n    attack: {norm: linf, eps: 0.1, steps: 2}\n    optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n    schedule: {name: multistep, milestones: [1]}"),
        ("l2", "method: pgd-at\n    attack: {norm: l2, eps: 0.5, steps: 2}\n    optimizer: {name: adamw, lr: 1e-3}\n    schedule: {name: cosine}"),
        ("l1", "method: pgd-at\n    attack: {norm: l1, eps: 2, steps: 2}\n    optimizer: {name: adamw, lr: 1e-3}"),
        ("trades", "method: trades\n    beta: 6\n    attack: {norm: linf, eps: 0.1, steps: 2}\n    optimizer: {name: adamw, lr: 1e-3}"),
        ("fast", "method: fast-at\n    attack: {eps: 0.1}\n    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true}\n    schedule: {name: onecycle}"),
    ];
    let mut text = String::from(
        "name: methods\nseed: 1\ndevice: cpu\ndatasets:\n  digits: {source: embedded:digits, resolution: 8, limit: 96}\nmodels:\n  cnn: {arch: torchscript, file: models/cnn.pt, normalize: false, train: true}\ntraining:\n",
    );
    for (name, body) in methods {
        text.push_str(&format!(
            "  {name}:\n    {body}\n    epochs: 2\n    batch_size: 32\n    monitor: {{n: 0}}\n"
        ));
    }
    text.push_str("evaluation:\n  splits: [test]\n  attacks:\n    clean: {}\n");
    p.write("p.yaml", &text);
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    let initial: BTreeMap<String, Tensor> = robarch::models::saved::load(
        &entry_dir(&p, "p.yaml", "import/digits/cnn"),
        Default::default(),
        Device::Cpu,
    )
    .unwrap()
    .named_tensors()
    .into_iter()
    .collect();
    for (name, _) in methods {
        let stage = format!("train/digits/cnn/{name}");
        assert!(ran.contains(&stage), "{stage} not in {ran:?}");
        let e = explain(&p, "p.yaml", &stage);
        let loss = e["summary"]["final_loss"].as_f64();
        assert!(loss.is_some_and(f64::is_finite), "{name}: {e}");
        let trained = robarch::models::saved::load(
            &entry_dir(&p, "p.yaml", &stage),
            Default::default(),
            Device::Cpu,
        )
        .unwrap();
        let w = trained
            .named_tensors()
            .into_iter()
            .find(|(k, _)| k == "conv.weight")
            .unwrap()
            .1;
        let moved = f64::try_from((&w - &initial["conv.weight"]).abs().max()).unwrap();
        assert!(moved > 1e-4, "{name}: the weights did not move ({moved})");
    }
}
