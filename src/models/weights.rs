//! Published checkpoints into robarch's own architectures: a native model entry with
//! `weights: {file: ckpt.pt|.pth|.safetensors, names: torchvision|timm|robustbench|robarch}` is
//! loaded from a PyTorch state dict by a `load` stage instead of being initialised, then evaluated
//! as it is or fine-tuned (`train: true`).
//!
//! - A pickle (`.pt`, `.pth`, `.bin`, `.ckpt`) is read weights-only (`torch.load(...,
//!   weights_only=True)`, which refuses to execute code or build arbitrary objects) by the
//!   project's Python and passed on as safetensors; a `.safetensors` file is read directly.
//! - Wrappers are taken off: `{"state_dict": …}`, `{"model": …}` and the like, and a `module.`
//!   prefix (DataParallel) or `model.` prefix common to every name.
//! - Names: robarch's parameters are named as the family's reference implementation names them
//!   (`robarch export` writes them so; docs/models.md), so `torchvision` and `timm` checkpoints map
//!   one to one for the families whose reference is that library; `robustbench` is the
//!   RobustBench/TRADES layout of WideResNet and PreAct ResNet (with RobustBench's normalisation
//!   buffers `mu`/`sigma` set aside: say `normalize:` instead); `robarch` is an export of
//!   robarch's own. BatchNorm's `num_batches_tracked` counters, which robarch does not keep, are
//!   dropped. Anything else missing, unexpected or mis-shaped refuses the checkpoint, listed.
//! - The input contract is declared as for imports: `normalize: true|false`, `range: [0, 1] |
//!   [0, 255]`, `expect: {clean, tolerance}`.
use super::contract::{Expect, PixelRange};
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};

/// Whose parameter names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    Torchvision,
    Timm,
    Robustbench,
    Robarch,
}

impl Names {
    pub fn as_str(self) -> &'static str {
        match self {
            Names::Torchvision => "torchvision",
            Names::Timm => "timm",
            Names::Robustbench => "robustbench",
            Names::Robarch => "robarch",
        }
    }
}

/// The families whose parameters RobustBench's (and TRADES') model definitions name as robarch
/// does.
pub const ROBUSTBENCH_FAMILIES: &[&str] = &["wide_resnet", "preact_resnet", "resnet"];

/// `weights:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSpec {
    pub file: String,
    pub names: Names,
}

/// A loaded model's canonical description (`ModelParams::weights`): the checkpoint's name and
/// hash (never its location), its naming, and the input contract it is evaluated under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// The file's name (the plan resolves it against the pipeline's directory).
    pub file: String,
    pub names: Names,
    /// blake3 of the file's bytes, filled in by the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Apply the dataset's mean/std before the network.
    pub normalize: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PixelRange>,
    /// Fine-tune with the pipeline's `training:` entries (default: evaluate as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// The fields a model entry may add to a native architecture to load a checkpoint.
pub const FIELDS: &[&str] = &["weights", "normalize", "range", "train", "expect"];

/// Takes `weights:` and its companions out of a native model entry's fields, checked; `None`
/// when the entry loads no checkpoint. Problems are located under `models.<name>`.
pub fn take(
    name: &str,
    arch: &super::Arch,
    fields: &mut std::collections::BTreeMap<String, serde_yaml::Value>,
) -> Result<Option<Weights>, Problem> {
    let mut taken = std::collections::BTreeMap::new();
    for f in FIELDS {
        if let Some(v) = fields.remove(*f) {
            taken.insert(*f, v);
        }
    }
    fn at<'a>(name: &'a str, f: &'a str) -> Vec<&'a str> {
        vec!["models", name, f]
    }
    let Some(w) = taken.remove("weights") else {
        if let Some(f) = taken.keys().next() {
            return Err(Problem::new(
                &at(name, f),
                format!(
                    "`{f}` applies to a model loaded from a checkpoint (`weights:`) or imported"
                ),
            )
            .hint("add `weights: {file: ckpt.pt, names: torchvision}`, or drop it"));
        }
        return Ok(None);
    };
    let w: WeightsSpec = serde_yaml::from_value(w).map_err(|e| {
        Problem::new(&at(name, "weights"), e.to_string())
            .hint("`weights: {file: ckpt.pt|.pth|.safetensors, names: torchvision|timm|robustbench|robarch}`")
    })?;
    if w.file.is_empty() {
        return Err(Problem::new(&at(name, "weights"), "`file` is empty")
            .hint("the checkpoint's path, relative to the pipeline file"));
    }
    let reference = super::export::reference(arch.family).map(|r| r.library);
    let fits = match w.names {
        Names::Robarch => true,
        Names::Torchvision => reference == Some(super::export::Library::Torchvision),
        Names::Timm => reference == Some(super::export::Library::Timm),
        Names::Robustbench => ROBUSTBENCH_FAMILIES.contains(&arch.family),
    };
    if !fits {
        let own = match reference {
            Some(super::export::Library::Torchvision) => "torchvision",
            Some(super::export::Library::Timm) => "timm",
            _ => "robarch",
        };
        return Err(Problem::new(
            &["models", name, "weights", "names"],
            format!(
                "`{}` ({}) does not follow {}'s parameter names",
                arch.name,
                arch.family,
                w.names.as_str()
            ),
        )
        .hint(format!(
            "its names are {own}'s: `names: {own}`, or `robarch` for an export of robarch's"
        )));
    }
    let field = |f: &str| -> Result<Option<serde_json::Value>, Problem> {
        taken
            .get(f)
            .map(|v| serde_json::to_value(v).map_err(|e| Problem::new(&at(name, f), e.to_string())))
            .transpose()
    };
    let normalize = match field("normalize")? {
        None => true,
        Some(serde_json::Value::Bool(b)) => b,
        Some(v) => {
            return Err(Problem::new(
                &at(name, "normalize"),
                format!("`{v}` is not `true` or `false`"),
            ))
        }
    };
    let range = field("range")?
        .map(|v| {
            serde_json::from_value::<PixelRange>(v)
                .map_err(|e| Problem::new(&at(name, "range"), e.to_string()))
        })
        .transpose()?;
    let train = match field("train")? {
        None => None,
        Some(serde_json::Value::Bool(b)) => Some(b),
        Some(v) => {
            return Err(Problem::new(
                &at(name, "train"),
                format!("`{v}` is not `true` or `false`"),
            ))
        }
    };
    let expect = field("expect")?
        .map(|v| {
            serde_json::from_value::<Expect>(v)
                .map_err(|e| Problem::new(&at(name, "expect"), e.to_string()))
        })
        .transpose()?;
    if let Some(e) = &expect {
        e.validate().map_err(|p| p.under(&["models", name]))?;
        if train == Some(true) {
            return Err(Problem::new(
                &at(name, "expect"),
                "`expect:` checks a model evaluated as it is; this one is fine-tuned (`train: true`)",
            )
            .hint("drop `expect:`, or `train:` to evaluate the checkpoint"));
        }
    }
    Ok(Some(Weights {
        file: w.file,
        names: w.names,
        blake3: None,
        normalize,
        range,
        train,
        expect,
    }))
}

/// Matches a checkpoint's tensors to a network's, by the naming `names`: the wrappers and
/// prefixes taken off, robarch's unkept counters dropped. Returns the checkpoint's tensors under
/// the network's names, what was set aside, or the refusal listing what does not fit.
pub fn match_names<T>(
    mut ckpt: Vec<(String, T)>,
    shape: impl Fn(&T) -> Vec<i64>,
    want: &[(String, Vec<i64>)],
    names: Names,
) -> Result<(Vec<(String, T)>, Vec<String>), String> {
    let mut set_aside = Vec::new();
    ckpt.retain(|(n, _)| {
        let keep = !n.ends_with("num_batches_tracked")
            && !(names == Names::Robarch && n.starts_with("normalize."))
            && !(names == Names::Robustbench && matches!(n.as_str(), "mu" | "sigma"));
        if !keep && !n.ends_with("num_batches_tracked") {
            set_aside.push(n.clone());
        }
        keep
    });
    // Prefixes every name shares (DataParallel's `module.`, a wrapper's `model.`), outermost first.
    loop {
        let stripped = ["module.", "model."].iter().find(|p| {
            !ckpt.is_empty()
                && ckpt.iter().all(|(n, _)| n.starts_with(*p))
                && !want.iter().all(|(n, _)| n.starts_with(*p))
        });
        match stripped {
            Some(p) => {
                for (n, _) in ckpt.iter_mut() {
                    *n = n[p.len()..].to_string();
                }
            }
            None => break,
        }
    }
    let wanted: std::collections::BTreeMap<&str, &Vec<i64>> =
        want.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let have: std::collections::BTreeSet<&str> = ckpt.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&str> = wanted
        .keys()
        .copied()
        .filter(|n| !have.contains(n))
        .collect();
    let unexpected: Vec<&str> = have
        .iter()
        .copied()
        .filter(|n| !wanted.contains_key(n))
        .collect();
    let misshaped: Vec<String> = ckpt
        .iter()
        .filter_map(|(n, t)| {
            let w = wanted.get(n.as_str())?;
            let s = shape(t);
            (s != **w).then(|| format!("{n} (checkpoint {s:?}, model {w:?})"))
        })
        .collect();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        return Ok((ckpt, set_aside));
    }
    let list = |what: &str, v: Vec<String>| -> Option<String> {
        (!v.is_empty()).then(|| {
            let shown: Vec<String> = v.iter().take(6).cloned().collect();
            let more = if v.len() > 6 {
                format!(", … {} more", v.len() - 6)
            } else {
                String::new()
            };
            format!("{} {what}: {}{more}", v.len(), shown.join(", "))
        })
    };
    let own = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    let parts: Vec<String> = [
        list("missing", own(missing)),
        list("unexpected", own(unexpected)),
        list("mis-shaped", misshaped),
    ]
    .into_iter()
    .flatten()
    .collect();
    Err(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_wrappers_and_the_rest_is_listed() {
        let want = vec![
            ("conv1.weight".to_string(), vec![4, 3, 3, 3]),
            ("fc.weight".to_string(), vec![10, 4]),
        ];
        let ckpt = vec![
            ("module.conv1.weight".to_string(), vec![4, 3, 3, 3]),
            ("module.fc.weight".to_string(), vec![10, 4]),
            ("module.bn.num_batches_tracked".to_string(), vec![]),
        ];
        let (got, aside) = match_names(ckpt, |s| s.clone(), &want, Names::Torchvision).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "conv1.weight");
        assert!(aside.is_empty());
        let ckpt = vec![
            ("mu".to_string(), vec![1, 3, 1, 1]),
            ("model.conv1.weight".to_string(), vec![4, 3, 3, 3]),
            ("model.fc.weight".to_string(), vec![1000, 4]),
            ("model.head.weight".to_string(), vec![10, 4]),
        ];
        let e = match_names(ckpt.clone(), |s| s.clone(), &want, Names::Robustbench).unwrap_err();
        assert!(e.contains("1 unexpected: head.weight"), "{e}");
        assert!(
            e.contains("1 mis-shaped: fc.weight (checkpoint [1000, 4], model [10, 4])"),
            "{e}"
        );
        let e = match_names(ckpt, |s| s.clone(), &want, Names::Torchvision).unwrap_err();
        assert!(e.contains("missing: conv1.weight, fc.weight"), "{e}");
    }
}
