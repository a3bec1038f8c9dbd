//! An evaluation's progress over its points, and its checkpoints.
//!
//! An evaluation first classifies every point clean, then runs each member of its attack (the
//! attack itself, or AutoAttack's members in order) on the points still robust, in batches. What
//! it knows after any batch is a [`Sweep`]: per point, clean and robust flags, the member that
//! broke it, the margin `z_y − max_{j≠y} z_j` of the last image scored, and how many members have
//! run on it. Because every point draws from its own random stream, that is all a resume needs:
//! the batches after it are the ones an uninterrupted run would have made.
//!
//! A checkpoint is a directory `sweep-<seq>` under the stage's checkpoint directory holding
//! `state.safetensors` and `state.json` (with the blake3 of the tensors), written to a temporary
//! directory and renamed into place; the two newest are kept. A resume takes the newest intact
//! one; a damaged one is discarded with a warning.
#![cfg(feature = "torch")]
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Per-point state of an evaluation of the points `lo..lo + n` of a split (CPU tensors, `[n]`).
pub struct Sweep {
    pub lo: u64,
    pub n: usize,
    /// Clean-correct (bool).
    pub clean: Tensor,
    /// Still robust (bool): clean-correct and no member has broken it.
    pub robust: Tensor,
    /// The member that broke the point (int64, −1: none).
    pub by: Tensor,
    /// Margin of the last image scored (float32): clean, then each member's adversarial.
    pub margin: Tensor,
    /// Members that have run on the point (int64).
    pub tried: Tensor,
    /// Points whose clean pass is done (a prefix).
    pub clean_done: usize,
    /// Warnings raised so far, each once.
    pub notes: Vec<String>,
    /// Per member, the points it broke.
    pub broke: Vec<i64>,
    /// Seconds of work before this run (resumed runs add theirs).
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct State {
    lo: u64,
    n: usize,
    clean_done: usize,
    notes: Vec<String>,
    broke: Vec<i64>,
    seconds: f64,
    tensors_blake3: String,
}

const TENSORS: &str = "state.safetensors";
const STATE: &str = "state.json";
const PREFIX: &str = "sweep-";

impl Sweep {
    /// Nothing done yet, for `members` members.
    pub fn new(lo: u64, n: usize, members: usize) -> Self {
        let cpu = Device::Cpu;
        Self {
            lo,
            n,
            clean: Tensor::zeros([n as i64], (Kind::Bool, cpu)),
            robust: Tensor::zeros([n as i64], (Kind::Bool, cpu)),
            by: Tensor::full([n as i64], -1, (Kind::Int64, cpu)),
            margin: Tensor::zeros([n as i64], (Kind::Float, cpu)),
            tried: Tensor::zeros([n as i64], (Kind::Int64, cpu)),
            clean_done: 0,
            notes: Vec::new(),
            broke: vec![0; members],
            seconds: 0.0,
        }
    }

    /// Records the clean pass of the next `correct.len()` points.
    pub fn record_clean(&mut self, correct: &Tensor, margin: &Tensor) {
        let k = correct.size()[0];
        let at = self.clean_done as i64;
        let correct = correct.to_device(Device::Cpu).to_kind(Kind::Bool);
        self.clean.narrow(0, at, k).copy_(&correct);
        self.robust.narrow(0, at, k).copy_(&correct);
        self.margin
            .narrow(0, at, k)
            .copy_(&margin.to_device(Device::Cpu).to_kind(Kind::Float));
        self.clean_done += k as usize;
    }

    /// Points (local indices, in order) that member `i` has still to run on: robust, and tried by
    /// the `i` members before it only.
    pub fn pending(&self, i: usize) -> Vec<i64> {
        let due = self.robust.logical_and(&self.tried.eq(i as i64));
        Vec::<i64>::try_from(due.nonzero().squeeze_dim(1)).unwrap_or_default()
    }

    /// Points member `i` runs on in all: clean-correct and not broken by a member before it.
    pub fn reaching(&self, i: usize) -> usize {
        let before = self.by.ge(0).logical_and(&self.by.lt(i as i64));
        let reach = self.clean.logical_and(&before.logical_not());
        i64::try_from(reach.sum(Kind::Int64)).unwrap_or(0) as usize
    }

    /// Records member `i`'s verdicts on the points `idx` (local indices): still correct or not,
    /// and the margin of its adversarial.
    pub fn record_member(&mut self, i: usize, idx: &[i64], correct: &Tensor, margin: &Tensor) {
        let at = Tensor::from_slice(idx);
        let correct = correct.to_device(Device::Cpu).to_kind(Kind::Bool);
        let broken = correct.logical_not();
        self.robust = self.robust.index_copy(0, &at, &correct);
        let by = self.by.index_select(0, &at);
        let by = by.where_self(&correct, &Tensor::full_like(&by, i as i64));
        self.by = self.by.index_copy(0, &at, &by);
        self.margin =
            self.margin
                .index_copy(0, &at, &margin.to_device(Device::Cpu).to_kind(Kind::Float));
        self.tried = self.tried.index_fill(0, &at, i as i64 + 1);
        self.broke[i] += i64::try_from(broken.sum(Kind::Int64)).unwrap_or(0);
    }

    /// The per-point outputs (`broken_by` for compositions).
    pub fn points(&self, composite: bool) -> super::verdict::Points {
        let flags = |t: &Tensor| Vec::<bool>::try_from(t).unwrap_or_default();
        super::verdict::Points {
            clean: flags(&self.clean),
            robust: flags(&self.robust),
            margin: Vec::<f32>::try_from(&self.margin).unwrap_or_default(),
            broken_by: composite.then(|| Vec::<i64>::try_from(&self.by).unwrap_or_default()),
        }
    }

    /// Adds `note` unless it is there.
    pub fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn tensors(&self) -> [(&'static str, &Tensor); 5] {
        [
            ("clean", &self.clean),
            ("robust", &self.robust),
            ("by", &self.by),
            ("margin", &self.margin),
            ("tried", &self.tried),
        ]
    }

    /// Writes a checkpoint under `root` (`seconds`: work so far, this run's included) for the
    /// stage `stage`.
    pub fn save(&self, root: &Path, seconds: f64, stage: &str) -> Result<()> {
        std::fs::create_dir_all(root)?;
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(root)?;
        let file = tmp.path().join(TENSORS);
        Tensor::write_safetensors(&self.tensors(), &file)?;
        let state = State {
            lo: self.lo,
            n: self.n,
            clean_done: self.clean_done,
            notes: self.notes.clone(),
            broke: self.broke.clone(),
            seconds,
            tensors_blake3: crate::cache::hash_file(&file)?.1,
        };
        std::fs::write(tmp.path().join(STATE), serde_json::to_vec_pretty(&state)?)?;
        let seq = sweeps(root)?
            .first()
            .and_then(|p| seq_of(p))
            .map_or(0, |s| s + 1);
        let dest = root.join(format!("{PREFIX}{seq:08}"));
        std::fs::rename(tmp.keep(), &dest).context("committing the evaluation checkpoint")?;
        for old in sweeps(root)?.into_iter().skip(2) {
            let _ = std::fs::remove_dir_all(old);
        }
        for e in std::fs::read_dir(root)? {
            let p = e?.path();
            let partial = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".partial-"));
            if partial {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
        crate::fault::point_in("eval-checkpoint", stage);
        Ok(())
    }

    /// The newest intact checkpoint under `root` for the points `lo..lo + n` with `members`
    /// members, or `None`. Damaged ones (checksum, parse, shapes, another point range) are
    /// removed with a warning, and the next older one is tried.
    pub fn resume(root: &Path, lo: u64, n: usize, members: usize) -> Result<Option<Self>> {
        for dir in sweeps(root)? {
            match read(&dir, lo, n, members) {
                Ok(s) => return Ok(Some(s)),
                Err(e) => {
                    tracing::warn!(
                        checkpoint = %dir.display(),
                        "discarding a damaged evaluation checkpoint: {e:#}"
                    );
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        Ok(None)
    }
}

/// Reads and checks one checkpoint.
fn read(dir: &Path, lo: u64, n: usize, members: usize) -> Result<Sweep> {
    let state: State = serde_json::from_slice(&std::fs::read(dir.join(STATE))?)
        .with_context(|| format!("parsing {STATE}"))?;
    let file = dir.join(TENSORS);
    let got = crate::cache::hash_file(&file)?.1;
    anyhow::ensure!(
        got == state.tensors_blake3,
        "{TENSORS} has blake3 {got}, the checkpoint recorded {}",
        state.tensors_blake3
    );
    anyhow::ensure!(
        state.lo == lo && state.n == n && state.broke.len() == members && state.clean_done <= n,
        "it covers points {}..{} with {} members, this evaluation {lo}..{} with {members}",
        state.lo,
        state.lo + state.n as u64,
        state.broke.len(),
        lo + n as u64
    );
    let mut t: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&file)?.into_iter().collect();
    let mut take = |name: &str, kind: Kind| -> Result<Tensor> {
        let v = t
            .remove(name)
            .with_context(|| format!("{TENSORS} lacks {name}"))?;
        anyhow::ensure!(
            v.size() == [n as i64] && v.kind() == kind,
            "{name} is {:?} {:?}, not [{n}] {kind:?}",
            v.size(),
            v.kind()
        );
        Ok(v)
    };
    Ok(Sweep {
        lo,
        n,
        clean: take("clean", Kind::Bool)?,
        robust: take("robust", Kind::Bool)?,
        by: take("by", Kind::Int64)?,
        margin: take("margin", Kind::Float)?,
        tried: take("tried", Kind::Int64)?,
        clean_done: state.clean_done,
        notes: state.notes,
        broke: state.broke,
        seconds: state.seconds,
    })
}

fn seq_of(p: &Path) -> Option<u64> {
    p.file_name()?.to_str()?.strip_prefix(PREFIX)?.parse().ok()
}

/// The checkpoints under `root`, newest first.
fn sweeps(root: &Path) -> Result<Vec<PathBuf>> {
    crate::cache::numbered_dirs(
        root,
        PREFIX,
        "an evaluation checkpoint (ckpt/<key>/sweep-N)",
    )
}

/// How often a running evaluation checkpoints: `ROBARCH_EVAL_CHECKPOINT_SECONDS` (default 120 s
/// of work; 0: after every batch).
pub fn checkpoint_every() -> std::time::Duration {
    let secs = std::env::var("ROBARCH_EVAL_CHECKPOINT_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(120.0);
    std::time::Duration::from_secs_f64(secs)
}

/// While alive, the running stage answers save requests ([`crate::stop`]).
pub struct Listening(());

impl Listening {
    pub fn start() -> Self {
        crate::stop::listen();
        Listening(())
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        crate::stop::done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sweep {
        let mut s = Sweep::new(10, 6, 2);
        s.record_clean(
            &Tensor::from_slice(&[true, true, false, true, true, true]),
            &Tensor::from_slice(&[1.0f32, 2.0, -1.0, 3.0, 0.5, 4.0]),
        );
        assert_eq!(s.pending(0), vec![0, 1, 3, 4, 5]);
        s.record_member(
            0,
            &[0, 1, 3],
            &Tensor::from_slice(&[true, false, true]),
            &Tensor::from_slice(&[0.7f32, -0.2, 0.1]),
        );
        s.note("a note".into());
        s.note("a note".into());
        s
    }

    #[test]
    fn members_run_on_the_points_still_robust() {
        let s = sample();
        assert_eq!(s.pending(0), vec![4, 5]);
        assert_eq!(s.pending(1), vec![0, 3]);
        assert_eq!(s.reaching(0), 5);
        assert_eq!(s.reaching(1), 4);
        assert_eq!(
            Vec::<i64>::try_from(&s.by).unwrap(),
            vec![-1, 0, -1, -1, -1, -1]
        );
        assert_eq!(s.broke, vec![1, 0]);
        assert_eq!(s.notes.len(), 1);
    }

    #[test]
    fn checkpoints_round_trip_and_damaged_ones_are_discarded() {
        let root = tempfile::tempdir().unwrap();
        let s = sample();
        s.save(root.path(), 1.5, "eval/x").unwrap();
        s.save(root.path(), 2.5, "eval/x").unwrap();
        s.save(root.path(), 3.5, "eval/x").unwrap();
        assert_eq!(
            sweeps(root.path()).unwrap().len(),
            2,
            "the two newest are kept"
        );
        let r = Sweep::resume(root.path(), 10, 6, 2).unwrap().unwrap();
        assert_eq!(r.seconds, 3.5);
        for (name, t) in s.tensors() {
            let theirs = r.tensors().into_iter().find(|(n, _)| *n == name).unwrap().1;
            assert!(t.equal(theirs), "{name}");
        }
        assert_eq!(
            (r.clean_done, r.notes, r.broke),
            (6, s.notes.clone(), s.broke.clone())
        );
        // A flipped byte in the newest: discarded with a warning, the older one resumes.
        let newest = sweeps(root.path()).unwrap()[0].join(TENSORS);
        let mut bytes = std::fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&newest, bytes).unwrap();
        let r = Sweep::resume(root.path(), 10, 6, 2).unwrap().unwrap();
        assert_eq!(r.seconds, 2.5);
        assert_eq!(sweeps(root.path()).unwrap().len(), 1);
        // Another point range is not this evaluation's.
        assert!(Sweep::resume(root.path(), 0, 6, 2).unwrap().is_none());
        assert!(sweeps(root.path()).unwrap().is_empty());
    }
}
