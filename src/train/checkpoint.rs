//! Per-epoch checkpoints: model tensors, optimiser state and history, written to a temporary
//! directory and renamed into place so a kill at any moment leaves the previous one intact. Each
//! carries the blake3 of its tensors; a resume verifies it, and a checkpoint that is corrupt,
//! truncated or unreadable is discarded with a warning in favour of the previous epoch's (the two
//! newest are kept), or of a fresh start.
#![cfg(feature = "torch")]
use super::{optim::Optimizer, EpochRecord, SettingSpan};
use crate::models::Network;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};
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
    /// blake3 of the best epoch's weights as they were at this epoch (kept in the checkpoint as
    /// `best.safetensors`), `None` when no epoch was best yet.
    #[serde(default)]
    best_blake3: Option<String>,
    /// Under which settings (thread count, kernel path, device) the epochs so far ran; empty in
    /// checkpoints written before it was recorded.
    #[serde(default)]
    settings: Vec<SettingSpan>,
}

/// What a resume restores besides the tensors.
pub struct Resumed {
    /// Epochs done.
    pub epoch: usize,
    pub history: Vec<EpochRecord>,
    pub opt_step: u64,
    pub settings: Vec<SettingSpan>,
}

const TENSORS: &str = "state.safetensors";
const STATE: &str = "state.json";

/// Why a checkpoint cannot be resumed from: its contents are damaged (it is discarded), or it
/// could not be read (an I/O error, passed on: the checkpoint may be fine).
enum Fault {
    Damaged(anyhow::Error),
    Unreadable(anyhow::Error),
}

impl From<anyhow::Error> for Fault {
    fn from(e: anyhow::Error) -> Self {
        Fault::Damaged(e)
    }
}

/// A missing file is damage (a truncated checkpoint); any other I/O error is not.
fn io_fault(e: std::io::Error, what: String) -> Fault {
    if e.kind() == std::io::ErrorKind::NotFound {
        Fault::Damaged(anyhow::Error::new(e).context(what))
    } else {
        Fault::Unreadable(anyhow::Error::new(e).context(what))
    }
}

fn blake3_of(file: &Path) -> Result<String, Fault> {
    let mut f = std::fs::File::open(file)
        .map_err(|e| io_fault(e, format!("opening {}", file.display())))?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|e| io_fault(e, format!("reading {}", file.display())))?;
    Ok(h.finalize().to_hex().to_string())
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
    settings: &[SettingSpan],
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
    // The best weights so far travel with the checkpoint (a hard link: no copy), so a resume from
    // it restores the best file of that epoch, not one a later, discarded epoch wrote.
    let best = root.join(super::BEST);
    let best_blake3 = if best.exists() {
        let kept = tmp.path().join(super::BEST);
        if std::fs::hard_link(&best, &kept).is_err() {
            std::fs::copy(&best, &kept).context("keeping the best weights")?;
        }
        Some(crate::cache::hash_file(&kept)?.1)
    } else {
        None
    };
    let state = State {
        epoch,
        opt_step: opt.step,
        history: history.to_vec(),
        tensors_blake3: Some(crate::cache::hash_file(&tmp.path().join(TENSORS))?.1),
        best_blake3,
        settings: settings.to_vec(),
    };
    std::fs::write(tmp.path().join(STATE), serde_json::to_vec_pretty(&state)?)?;
    let dest = epoch_dir(root, epoch);
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    crate::fault::point("checkpoint-rename");
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
    crate::cache::numbered_dirs(root, "epoch-", "a checkpoint (ckpt/<key>/epoch-N)")
}

/// A checkpoint read and checked, not yet applied.
struct Verified {
    dir: PathBuf,
    state: State,
    tensors: HashMap<String, Tensor>,
}

/// Reads the checkpoint in `dir` and checks it before anything is changed: its checksums, that it
/// parses, and that it holds every tensor of `net` and `opt` with the right shape.
fn verify(dir: &Path, net: &Network, opt: &Optimizer) -> Result<Verified, Fault> {
    let bytes =
        std::fs::read(dir.join(STATE)).map_err(|e| io_fault(e, format!("reading {STATE}")))?;
    let state: State =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {STATE}"))?;
    let file = dir.join(TENSORS);
    for (name, want) in [
        (TENSORS, &state.tensors_blake3),
        (super::BEST, &state.best_blake3),
    ] {
        if let Some(want) = want {
            let got = blake3_of(&dir.join(name))?;
            if &got != want {
                return Err(Fault::Damaged(anyhow::anyhow!(
                    "{name} has blake3 {got}, the checkpoint recorded {want}"
                )));
            }
        }
    }
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&file)
        .with_context(|| format!("reading {TENSORS}"))?
        .into_iter()
        .collect();
    for (name, t) in net.named_tensors() {
        let src = tensors
            .get(&format!("model.{name}"))
            .with_context(|| format!("the checkpoint lacks {name}"))?;
        if src.size() != t.size() {
            return Err(Fault::Damaged(anyhow::anyhow!(
                "{name} has shape {:?}, the model {:?}",
                src.size(),
                t.size()
            )));
        }
    }
    opt.check_state(&tensors)?;
    Ok(Verified {
        dir: dir.to_path_buf(),
        state,
        tensors,
    })
}

/// Resumes from the newest intact checkpoint under `root`: loads it into `net` and `opt` and
/// returns what else it restores. A checkpoint whose contents fail their checks
/// is removed with a warning naming it and why, and the next older one is tried; `None`: start
/// afresh. A checkpoint that cannot be read (an I/O error) is an error, and is kept.
pub fn resume(root: &Path, net: &mut Network, opt: &mut Optimizer) -> Result<Option<Resumed>> {
    crate::cache::links::unlink(
        &root.join(super::BEST),
        "the best weights (ckpt/<key>/best)",
    );
    for dir in epochs(root)? {
        match verify(&dir, net, opt) {
            Ok(v) => return apply(v, root, net, opt).map(Some),
            Err(Fault::Unreadable(e)) => {
                return Err(e.context(format!("reading checkpoint {}", dir.display())))
            }
            Err(Fault::Damaged(e)) => {
                tracing::warn!(
                    checkpoint = %dir.display(),
                    "discarding a damaged checkpoint: {e:#}"
                );
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    // Nothing to resume: a best file left by the discarded epochs belongs to none.
    let _ = std::fs::remove_file(root.join(super::BEST));
    Ok(None)
}

fn apply(v: Verified, root: &Path, net: &mut Network, opt: &mut Optimizer) -> Result<Resumed> {
    // The best weights as of this epoch (checked above); none yet: no best file.
    let best = root.join(super::BEST);
    if v.state.best_blake3.is_some() {
        let tmp = tempfile::Builder::new()
            .prefix(".partial-best")
            .tempfile_in(root)?;
        std::fs::copy(v.dir.join(super::BEST), tmp.path())?;
        tmp.persist(&best)?;
    } else if v.state.tensors_blake3.is_some() && best.exists() {
        std::fs::remove_file(&best)?;
    }
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in net.named_tensors() {
            t.f_copy_(&v.tensors[&format!("model.{name}")])?;
        }
        Ok(())
    })?;
    opt.load_state(&v.tensors, v.state.opt_step)?;
    Ok(Resumed {
        epoch: v.state.epoch,
        history: v.state.history,
        opt_step: v.state.opt_step,
        settings: v.state.settings,
    })
}
