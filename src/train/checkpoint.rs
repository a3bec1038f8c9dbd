//! Per-epoch checkpoints: model tensors, optimiser state and history, written to a temporary
//! directory and renamed into place so a kill at any moment leaves the previous one intact.
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
}

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
    crate::models::write_tensors(&tensors, &tmp.path().join("state.safetensors"))?;
    let state = State {
        epoch,
        opt_step: opt.step,
        history: history.to_vec(),
    };
    std::fs::write(
        tmp.path().join("state.json"),
        serde_json::to_vec_pretty(&state)?,
    )?;
    let dest = epoch_dir(root, epoch);
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    std::fs::rename(tmp.keep(), &dest).context("committing checkpoint")?;
    // Older epochs are superseded.
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p != dest && (name.starts_with("epoch-") || name.starts_with(".partial-")) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    Ok(())
}

/// The newest complete checkpoint directory, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    if !root.exists() {
        return Ok(None);
    }
    let mut best = None;
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        let is_epoch = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("epoch-"));
        if is_epoch
            && p.join("state.json").exists()
            && best.as_ref().is_none_or(|b: &PathBuf| p > *b)
        {
            best = Some(p);
        }
    }
    Ok(best)
}

/// Loads a checkpoint into `net` and `opt`; returns (epochs done, history, optimiser step).
pub fn restore(
    dir: &Path,
    net: &mut Network,
    opt: &mut Optimizer,
) -> Result<(usize, Vec<EpochRecord>, u64)> {
    let state: State = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)
        .context("reading checkpoint state")?;
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join("state.safetensors"))?
        .into_iter()
        .collect();
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in net.named_tensors() {
            let src = tensors
                .get(&format!("model.{name}"))
                .with_context(|| format!("checkpoint lacks {name}"))?;
            t.f_copy_(src)?;
        }
        Ok(())
    })?;
    opt.load_state(&tensors, state.opt_step)?;
    Ok((state.epoch, state.history, state.opt_step))
}
