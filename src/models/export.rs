//! `robarch export`: a trained or imported model's weights, its `model.json` and a Python loader
//! that rebuilds the network in PyTorch, so the model leaves robarch like one from a model zoo.
//!
//! The loader is one file, `load.py`: the architecture's PyTorch definition (the same one the
//! cross-check test holds robarch's logits against, `scripts/reference_models/<family>.py`:
//! torchvision's or timm's classes where they have the architecture, a self-contained transcription
//! of the authors' code otherwise) followed by the loading code, which applies robarch's input
//! normalisation so the loaded model takes [0, 1] pixels as robarch's does.
use super::saved::{
    Checkpoint, ModelInfo, SavedModel, BEST_SCRIPT, BEST_WEIGHTS, MODEL_INFO, WEIGHTS,
};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;

/// Where an architecture family's PyTorch definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Library {
    Torchvision,
    Timm,
    /// A transcription of the original authors' code, plain PyTorch.
    #[serde(rename = "self-contained")]
    SelfContained,
    /// The user's own TorchScript file.
    Torchscript,
}

/// One family's PyTorch definition: library, class, and the source the loader embeds (the
/// families it builds on first).
pub struct Reference {
    pub family: &'static str,
    pub library: Library,
    /// The class the weights load into.
    pub class: &'static str,
    sources: &'static [&'static str],
}

macro_rules! src {
    ($f:literal) => {
        include_str!(concat!("../../scripts/reference_models/", $f, ".py"))
    };
}

use Library::{SelfContained, Timm, Torchvision};

/// Every family's reference, in the registry's order.
#[rustfmt::skip]
pub static REFERENCES: &[Reference] = &[
    Reference { family: "resnet", library: Torchvision, class: "torchvision.models.resnet.ResNet", sources: &[src!("resnet")] },
    Reference { family: "preact_resnet", library: SelfContained, class: "PreActResNet (He et al. 2016; locuslab/robust_overfitting)", sources: &[src!("preact_resnet")] },
    Reference { family: "wide_resnet", library: SelfContained, class: "WideResNet (Zagoruyko & Komodakis 2016; TRADES/RobustBench layout)", sources: &[src!("wide_resnet")] },
    Reference { family: "vgg", library: Torchvision, class: "torchvision.models.vgg.VGG", sources: &[src!("vgg")] },
    Reference { family: "densenet", library: Torchvision, class: "torchvision.models.densenet.DenseNet", sources: &[src!("densenet")] },
    Reference { family: "mobilenetv2", library: Torchvision, class: "torchvision.models.mobilenetv2.MobileNetV2", sources: &[src!("mobilenetv2")] },
    Reference { family: "regnet", library: Timm, class: "timm.models.regnet.RegNet", sources: &[src!("regnet")] },
    Reference { family: "convnext", library: Timm, class: "timm.models.convnext.ConvNeXt", sources: &[src!("convnext")] },
    Reference { family: "vit", library: Timm, class: "timm.models.vision_transformer.VisionTransformer", sources: &[src!("vit")] },
    Reference { family: "deit", library: Timm, class: "timm.models.deit.VisionTransformerDistilled", sources: &[src!("vit"), src!("deit")] },
    Reference { family: "cait", library: Timm, class: "timm.models.cait.Cait", sources: &[src!("cait")] },
    Reference { family: "swin", library: Timm, class: "timm.models.swin_transformer.SwinTransformer", sources: &[src!("swin")] },
    Reference { family: "pvt_v2", library: Timm, class: "timm.models.pvt_v2.PyramidVisionTransformerV2", sources: &[src!("pvt_v2")] },
    Reference { family: "poolformer", library: Timm, class: "timm.models.metaformer.MetaFormer", sources: &[src!("poolformer")] },
    Reference { family: "mixer", library: Timm, class: "timm.models.mlp_mixer.MlpMixer", sources: &[src!("mixer")] },
    Reference { family: "coatnet", library: Timm, class: "timm.models.maxxvit.MaxxVit", sources: &[src!("coatnet")] },
    Reference { family: "mobilevit", library: Timm, class: "timm.models.byobnet.ByobNet", sources: &[src!("mobilevit")] },
    Reference { family: "cvt", library: SelfContained, class: "ConvolutionalVisionTransformer (microsoft/CvT; timm's DropPath)", sources: &[src!("cvt")] },
    Reference { family: "cct", library: SelfContained, class: "CCT (SHI-Labs/Compact-Transformers)", sources: &[src!("cct")] },
];

/// The reference of `family`, if it has one (every trainable family does).
pub fn reference(family: &str) -> Option<&'static Reference> {
    REFERENCES.iter().find(|r| r.family == family)
}

/// What the export came from, written to `export.json` and the loader's docstring.
#[derive(Serialize)]
pub struct Origin {
    pub pipeline: String,
    pub stage: String,
    pub key: String,
    pub checkpoint: Checkpoint,
    pub robarch_version: String,
}

/// The files an export writes.
pub const LOADER: &str = "load.py";
pub const EXPORT_INFO: &str = "export.json";

/// Writes the model saved in entry `entry` to `to`: the weights (`model.safetensors`, without
/// robarch's `normalize.*` buffers, whose values `model.json` holds), `model.json`, `export.json`
/// and `load.py`; an imported TorchScript model's script instead of weights. Returns the names
/// written. Files are written beside their final names and renamed, so an interrupted export
/// leaves no half file under a final name.
pub fn export(entry: &Path, origin: &Origin, to: &Path) -> Result<Vec<String>> {
    let saved = SavedModel::open(entry)?;
    let info = &saved.info;
    let arch = super::find(&info.model.arch)
        .with_context(|| format!("{}: unknown architecture `{}`", entry.display(), info.model.arch))?;
    let script = info.model.imported();
    let weights = entry.join(match origin.checkpoint {
        Checkpoint::Last => WEIGHTS,
        Checkpoint::Best => BEST_WEIGHTS,
    });
    // Checked before anything is written.
    if script && origin.checkpoint == Checkpoint::Best && !entry.join(BEST_SCRIPT).exists() {
        if !entry.join(WEIGHTS).exists() {
            bail!(
                "stage `{}` imports a TorchScript model, which has one set of weights; drop `--checkpoint best`",
                origin.stage
            );
        }
        bail!(
            "stage `{}` has no best TorchScript module ({BEST_SCRIPT}): the model was trained without `monitor:`, so it has no best checkpoint; use `--checkpoint last`",
            origin.stage
        );
    }
    if !script && !weights.exists() {
        bail!(
            "stage `{}` has no {BEST_WEIGHTS}: the model was trained without `monitor:`, so it has no best checkpoint; use `--checkpoint last`",
            origin.stage
        );
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut written = Vec::new();
    let (library, class, body) = if script {
        let file = info.model.config["file"]
            .as_str()
            .context("the TorchScript config names no file")?;
        let name = Path::new(file)
            .file_name()
            .context("the TorchScript config's file has no name")?
            .to_string_lossy()
            .into_owned();
        // A trained module's best epoch is its own file; exported under the config's name.
        let from = match origin.checkpoint {
            Checkpoint::Best => entry.join(BEST_SCRIPT),
            Checkpoint::Last => entry.join(file),
        };
        copy(&from, &to.join(&name))?;
        written.push(name.clone());
        (
            Library::Torchscript,
            "torch.jit.ScriptModule".to_string(),
            torchscript_body(&name),
        )
    } else {
        let r = reference(arch.family).with_context(|| {
            format!("architecture family `{}` has no PyTorch reference", arch.family)
        })?;
        write_weights(&weights, &to.join(WEIGHTS))?;
        written.push(WEIGHTS.to_string());
        (r.library, r.class.to_string(), family_body(r))
    };
    let info_text = serde_json::to_vec_pretty(info)?;
    write(&to.join(MODEL_INFO), &info_text)?;
    written.push(MODEL_INFO.into());
    let meta = serde_json::json!({
        "format": 1,
        "arch": info.model.arch,
        "family": arch.family,
        "library": library,
        "class": class,
        "origin": origin,
    });
    write(&to.join(EXPORT_INFO), &serde_json::to_vec_pretty(&meta)?)?;
    written.push(EXPORT_INFO.into());
    write(
        &to.join(LOADER),
        loader(info, arch.family, library, &class, origin, &body).as_bytes(),
    )?;
    written.push(LOADER.into());
    Ok(written)
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    // A temporary file is private (0600); an export is for reading, like any file the user makes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &bytes)
}

/// Copies a safetensors file without robarch's normalisation buffers (`normalize.mean`,
/// `normalize.std`): what remains has the reference implementation's names.
fn write_weights(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("reading {}", from.display()))?;
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("normalize."))
        .collect();
    let out = safetensors::tensor::serialize(kept, &None)
        .with_context(|| format!("writing {}", to.display()))?;
    write(to, &out)
}

/// The Python that makes the bare network: the family's definition(s), whose last `build(config,
/// io)` is the one used.
fn family_body(r: &Reference) -> String {
    let mut out = String::new();
    for s in r.sources {
        for line in s.lines() {
            // The package-relative import of a family built on another: that family's source is
            // already above.
            if line.starts_with("from .") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(
        r#"
def network(directory=HERE, weights="model.safetensors"):
    """The bare network with the exported weights, in eval mode; it expects normalised inputs,
    (x - MEAN) / STD."""
    info = config(directory)
    net = build(info["model"]["config"], info["io"])
    missing, unexpected = net.load_state_dict(load_file(str(pathlib.Path(directory) / weights)), strict=False)
    # PyTorch's BatchNorm counts batches in a buffer robarch does not keep; nothing else may differ.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit the network: missing {missing}, unexpected {unexpected}")
    return net.eval()
"#,
    );
    out
}

fn torchscript_body(file: &str) -> String {
    format!(
        r#"
def network(directory=HERE):
    """The TorchScript module, in eval mode; it expects (x - MEAN) / STD of [0, 1] pixels x."""
    return torch.jit.load(str(pathlib.Path(directory) / "{file}"), map_location="cpu").eval()
"#
    )
}

fn py_list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn loader(
    info: &ModelInfo,
    family: &str,
    library: Library,
    class: &str,
    origin: &Origin,
    body: &str,
) -> String {
    let needs = match library {
        Library::Torchvision => "torch, torchvision, safetensors",
        Library::Timm => "torch, timm, safetensors",
        Library::SelfContained if family == "cvt" => "torch, timm (DropPath), safetensors",
        Library::SelfContained => "torch, safetensors",
        Library::Torchscript => "torch",
    };
    let io = &info.io;
    let contract = info.contract();
    format!(
        r#""""{arch} exported by robarch {version}: {library} ({class}).

From pipeline `{pipeline}`, stage `{stage}` (cache key {key}), {checkpoint} weights.

    import load                  # this file; model.json and the weights lie beside it
    model = load.load()          # eval mode; takes N x {c} x {s} x {s} images in [0, 1]
    logits = model(images)       # N x {classes}

`network()` is the bare network (it expects (x - MEAN) / STD); `load()` wraps it with robarch's
input normalisation, so it sees what it saw in robarch. Needs {needs}.
Input contract (model.json's `input`): {contract}.
`python load.py` loads the model and prints its parameter count and the logits of a grey image.
"""
import json
import pathlib

import torch
from safetensors.torch import load_file

HERE = pathlib.Path(__file__).resolve().parent
# What robarch applies to [0, 1] pixels before the network (model.json's `input`: the training
# data's per-channel mean and std, or 0 and 1/255 for a network that takes raw 0-255 pixels).
MEAN = {mean}
STD = {std}


def config(directory=HERE):
    """model.json: the architecture and its config, the input shape and classes, MEAN and STD."""
    return json.loads((pathlib.Path(directory) / "model.json").read_text())


# ---- the architecture: {family} ----
{body}

class Normalized(torch.nn.Module):
    """[0, 1] images in, logits out: (x - mean) / std, then the network."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def load(directory=HERE, device="cpu"):
    """The exported model in eval mode on `device`, taking images in [0, 1] as robarch's does."""
    return Normalized(network(directory), MEAN, STD).to(device).eval()


if __name__ == "__main__":
    model = load()
    n = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        y = model(torch.full((1, {c}, {s}, {s}), 0.5))
    print(f"{arch}: {{n}} parameters; logits of a grey image: {{[round(v, 4) for v in y[0].tolist()]}}")
"#,
        arch = info.model.arch,
        version = origin.robarch_version,
        library = serde_json::to_value(library).unwrap().as_str().unwrap_or_default(),
        pipeline = origin.pipeline,
        stage = origin.stage,
        key = origin.key,
        checkpoint = match origin.checkpoint {
            Checkpoint::Last => "last-epoch",
            Checkpoint::Best => "best-epoch",
        },
        c = io.in_channels,
        s = io.image_size,
        classes = io.num_classes,
        mean = py_list(&contract.mean),
        std = py_list(&contract.std),
        contract = contract.describe(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trainable_family_has_a_reference() {
        for a in super::super::REGISTRY {
            if !a.native() {
                continue;
            }
            let r = reference(a.family).unwrap_or_else(|| panic!("{} has no reference", a.family));
            // The embedded definition is the family's, ending with its `build`.
            let body = family_body(r);
            assert!(body.contains("def build(c, io)"), "{}", a.family);
            assert!(!body.contains("from ."), "{}", a.family);
        }
    }
}
