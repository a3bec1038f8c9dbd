//! Per-epoch checkpoints: model tensors, optimiser state and history, written to a temporary
//! directory and renamed into place so a kill at any moment leaves the previous one intact. Each
//! carries the blake3 of its tensors; a resume verifies it, and a checkpoint that is corrupt,
//! truncated or unreadable is discarded with a warning in favour of the previous epoch's (the two
//! newest are kept), or of a fresh start.
use super::optim::Optimizer;
use super::EpochRecord;
use crate::models::Network;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Serialize, Deserialize)]
struct State {
    epoch: usize,
    opt_step: u64,
    history: Vec<EpochRecord>,
    /// blake3 of `state.safetensors`. Checkpoints written before it existed have none and are
    /// checked by their contents only.
    #[serde(default)]
    tensors_blake3: Option<String>,
}

const TENSORS: &str = "state.safetensors";
const STATE: &str = "state.json";

fn epoch_dir(root: &Path, epoch: usize) -> PathBuf {
    root.join(format!("epoch-{epoch:05}"))
}

pub fn save(
    root: &Path,
    epoch: usize,
    net: &Network,
    opt: &Optimizer,
    history: &[EpochRecord],
) -> Result<()> {
    std::fs::create_dir_all(root)?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(root)?;
    let mut tensors: Vec<(String, Tensor)> = net
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    tensors.extend(opt.state());
    crate::models::write_tensors(&tensors, &tmp.path().join(TENSORS))?;
    let state = State {
        epoch,
        opt_step: opt.step,
        history: history.to_vec(),
        tensors_blake3: Some(crate::cache::hash_file(&tmp.path().join(TENSORS))?.1),
    };
    std::fs::write(tmp.path().join(STATE), serde_json::to_vec_pretty(&state)?)?;
    let dest = epoch_dir(root, epoch);
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    std::fs::rename(tmp.keep(), &dest).context("committing checkpoint")?;
    // Older epochs are superseded, but the previous one stays as the fallback of a resume that
    // finds this one damaged.
    let keep = epochs(root)?.into_iter().take(2).collect::<Vec<_>>();
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !keep.contains(&p) && (name.starts_with("epoch-") || name.starts_with(".partial-")) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    Ok(())
}

/// The checkpoint directories under `root`, newest first.
fn epochs(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        let is_epoch = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("epoch-"));
        if is_epoch {
            v.push(p);
        }
    }
    v.sort();
    v.reverse();
    Ok(v)
}

/// A checkpoint read and checked, not yet applied.
struct Verified {
    state: State,
    tensors: HashMap<String, Tensor>,
}

/// Reads the checkpoint in `dir` and checks it before anything is changed: its checksum, that it
/// parses, and that it holds every tensor of `net` with the right shape.
fn verify(dir: &Path, net: &Network) -> Result<Verified> {
    let state: State = serde_json::from_slice(
        &std::fs::read(dir.join(STATE)).with_context(|| format!("reading {STATE}"))?,
    )
    .with_context(|| format!("parsing {STATE}"))?;
    let file = dir.join(TENSORS);
    if let Some(want) = &state.tensors_blake3 {
        let got = crate::cache::hash_file(&file)
            .with_context(|| format!("reading {TENSORS}"))?
            .1;
        anyhow::ensure!(
            &got == want,
            "{TENSORS} has blake3 {got}, the checkpoint recorded {want}"
        );
    }
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .with_context(|| format!("reading {TENSORS}"))?
        .into_iter()
        .collect();
    for (name, t) in net.named_tensors() {
        let src = tensors
            .get(&format!("model.{name}"))
            .with_context(|| format!("the checkpoint lacks {name}"))?;
        anyhow::ensure!(
            src.size() == t.size(),
            "{name} has shape {:?}, the model {:?}",
            src.size(),
            t.size()
        );
    }
    Ok(Verified { state, tensors })
}

/// Resumes from the newest intact checkpoint under `root`: loads it into `net` and `opt` and
/// returns (epochs done, history, optimiser step). A checkpoint that fails its checks is removed
/// with a warning naming it and why, and the next older one is tried; `None`: start afresh.
pub fn resume(
    root: &Path,
    net: &mut Network,
    opt: &mut Optimizer,
) -> Result<Option<(usize, Vec<EpochRecord>, u64)>> {
    for dir in epochs(root)? {
        match verify(&dir, net) {
            Ok(v) => return apply(v, net, opt).map(Some),
            Err(e) => {
                tracing::warn!(
                    checkpoint = %dir.display(),
                    "discarding a damaged checkpoint: {e:#}"
                );
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    Ok(None)
}

fn apply(
    v: Verified,
    net: &mut Network,
    opt: &mut Optimizer,
) -> Result<(usize, Vec<EpochRecord>, u64)> {
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in net.named_tensors() {
            t.f_copy_(&v.tensors[&format!("model.{name}")])?;
        }
        Ok(())
    })?;
    opt.load_state(&v.tensors, v.state.opt_step)?;
    Ok((v.state.epoch, v.state.history, v.state.opt_step))
}
