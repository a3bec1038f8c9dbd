//! Content-addressed store of stage outputs.
//!
//! Layout under the cache root:
//! - `objects/<k[0..2]>/<key>/` — a committed entry: output files plus `meta.json`, which lists
//!   every file's size and blake3 hash. Entries appear only by an atomic directory rename.
//! - `tmp/` — entries being written; anything left here by a killed run is ignored and swept.
//! - `ckpt/<key>/` — checkpoints of unfinished long stages (resume after a kill).
//! - `locks/<key>.lease` — per-stage locks so concurrent runs never compute one key twice, on
//!   one machine or across the nodes of a cluster (see [`lease`]).
//! - `runs/<pipeline>.json` — the last plan run per pipeline, to explain what went stale.
//! - `logs/<pipeline>/<stage id>.log` — what a stage's worker wrote the last time it ran.
//! - `slurm/<pipeline>/` — the Slurm executor's record of submitted jobs, their scripts and output.
//! - `.lock` — shared by runs, exclusive for `gc` (on one machine: `flock`).
pub mod lease;
pub mod links;
pub mod manifest;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const META: &str = "meta.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileMeta {
    pub size: u64,
    pub blake3: String,
    /// The file's stat stamp at commit: whether it is still the file that was hashed, told
    /// without reading it. Absent in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
}

/// What `stat` says of a file that changes whenever its contents are rewritten in place or
/// replaced: modification time (ns) and inode (with the size, kept in [`FileMeta`]). A rename of
/// the entry's directory keeps both.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stamp {
    pub mtime_ns: i128,
    pub ino: u64,
}

impl Stamp {
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let (mtime_ns, ino) = {
            use std::os::unix::fs::MetadataExt;
            (
                md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                md.ino(),
            )
        };
        #[cfg(not(unix))]
        let (mtime_ns, ino) = (
            md.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128),
            0,
        );
        Stamp { mtime_ns, ino }
    }
}

/// Where and how an entry was made; informational, never part of the key.
///
/// On CPU a result depends on more than its key: libtorch's intra-op thread count splits float
/// reductions differently, and the CPU's kernel path (the instruction sets ATen, oneDNN and MKL
/// choose) orders multiply-adds differently, so the same stage can differ in its last bits, and a trained model
/// in its accuracies, between settings. Both are recorded here, not keyed: a cache filled on one
/// machine stays valid on another, and `robarch run` warns when a pipeline's training and
/// evaluation entries were computed under different settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Provenance {
    pub robarch_version: String,
    pub device: String,
    pub host: String,
    pub created_unix: u64,
    pub wall_seconds: f64,
    /// libtorch intra-op threads the stage ran with, on CPU (`None` on CUDA, where the stage's
    /// outputs came from another or several settings, e.g. a resumed training, and in entries
    /// written before it was recorded; `setting` says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The CPU kernel path, e.g. `x86_64 GenuineIntel avx2+avx512f, ATen AVX512` (see
    /// `torch::cpu::kernel_path`); empty in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernels: String,
    /// The setting a result depends on beyond its key, as `torch::setting` writes it:
    /// `cpu, 2 threads, <kernel path>`, the device kind on a GPU (`cuda`), or `mixed (…)` for a
    /// training resumed under another; empty in entries written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub setting: String,
    /// The CPU's model name, for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
    /// What else a reader should know, e.g. that a training resumed under another setting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Where the control plane placed the stage: `cpu`, or `cuda:N` with the GPU the worker saw
    /// (`CUDA_VISIBLE_DEVICES`); empty for stages computed in the control plane and in entries
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slot: String,
}

impl Provenance {
    /// The setting, `None` for entries that predate its recording.
    pub fn setting(&self) -> Option<String> {
        (!self.setting.is_empty()).then(|| self.setting.clone())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    pub key: String,
    pub kind: String,
    pub version: u32,
    /// The stage id that first produced it (e.g. `train/digits/vit/pgd`), for humans.
    pub stage: String,
    pub params: Value,
    pub inputs: BTreeMap<String, String>,
    pub files: BTreeMap<String, FileMeta>,
    /// Small stage-specific results (accuracies, parameter counts, …).
    pub summary: Value,
    pub provenance: Provenance,
}

/// How far [`Cache::check`] reads an entry's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Size and stat stamp (files without a stamp are hashed); a file the entry does not list is
    /// warned about.
    Stamp,
    /// Size and blake3 of every file; an unlisted file is warned about.
    Hash,
    /// As `Hash`, and an unlisted file makes the entry corrupt (`robarch cache verify`).
    Audit,
    /// As `Stamp`, for a reader that writes nothing (`robarch status`): no stamp is refreshed,
    /// no link removed, nothing warned about.
    Peek,
}

/// A committed, verified entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub meta: EntryMeta,
}

impl Entry {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// What [`Cache::inspect`] finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Inspect {
    Cached,
    Missing,
    /// The entry's directory is there but its `meta.json` is not (a commit or a removal cut
    /// short by hand): a run recomputes it.
    Incomplete(String),
    /// The entry fails the check a run makes (a file truncated, rewritten, missing, replaced by
    /// a link; `meta.json` unreadable): a run removes and recomputes it.
    Corrupt(String),
}

/// Result of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Entry),
    Missing,
    /// Present but failed verification; it has been removed.
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// Keys whose files this process has hashed and found intact: each entry is read in full at
    /// most once per process.
    hashed: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Whether `name` is a key (64 lowercase hex digits): what may name an entry or checkpoint.
/// Writes pretty JSON (a stage's output file).
pub fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))
}

pub fn is_key(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Hashes a file with blake3, streaming.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

/// Nanoseconds since the epoch two seconds ago: a file last modified before this is settled
/// (no clock tick is that coarse).
fn settled() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
        - 2_000_000_000
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        Self::check_root(root)?;
        links::check_layout(root)?;
        for sub in ["objects", "tmp", "ckpt", "locks", "runs"] {
            std::fs::create_dir_all(root.join(sub)).with_context(|| {
                format!("creating cache directory {}", root.join(sub).display())
            })?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
            hashed: Default::default(),
        })
    }

    /// A cache handle that creates nothing, for a dry run: a cache that is not there has no
    /// entries. Fails as [`Cache::open`] would on a root that cannot be a cache.
    pub fn unopened(root: &Path) -> Result<Cache> {
        Self::check_root(root)?;
        links::check_layout(root)?;
        Ok(Cache {
            root: root.to_path_buf(),
            hashed: Default::default(),
        })
    }

    /// Refuses a cache root that is a file.
    fn check_root(root: &Path) -> Result<()> {
        if root.exists() && !root.is_dir() {
            anyhow::bail!(
                "the cache {} is not a directory: point `--cache DIR` (or ROBARCH_CACHE) at a \
                 directory, which is created if missing",
                root.display()
            );
        }
        Ok(())
    }

    /// Opens an existing cache without creating anything (read-only commands).
    pub fn existing(root: &Path) -> Option<Cache> {
        root.join("objects").is_dir().then(|| Cache {
            root: root.to_path_buf(),
            hashed: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(&key[..2]).join(key)
    }

    pub fn checkpoint_dir(&self, key: &str) -> PathBuf {
        self.root.join("ckpt").join(key)
    }

    /// The checkpoint directory of `key` for a stage about to write there: a symbolic link found
    /// in its place is removed (as a link, with a warning), so that checkpoints are written and
    /// pruned only inside the cache. Not created (the stage creates it when it checkpoints).
    pub fn checkpoints(&self, key: &str) -> Result<PathBuf> {
        links::check_layout(&self.root)?;
        let dir = self.checkpoint_dir(key);
        links::unlink(&dir, "a stage's checkpoints (ckpt/<key>)");
        Ok(dir)
    }

    /// A symbolic link found where `key`'s shard (`objects/ab`) or entry directory should be,
    /// with what it stands in place of.
    fn entry_link(&self, key: &str) -> Option<(PathBuf, &'static str)> {
        let dir = self.entry_dir(key);
        let shard = dir.parent().expect("entry dirs have a parent").to_path_buf();
        [(shard, "a shard of entries (objects/ab)"), (dir, "an entry")]
            .into_iter()
            .find(|(p, _)| links::is_link(p))
    }

    /// Removes a symbolic link found where `key`'s shard or entry directory should be, as a link;
    /// says what was removed. Nothing below such a link is read or written.
    fn unlink_entry(&self, key: &str) -> Option<String> {
        let (p, what) = self.entry_link(key)?;
        links::unlink(&p, what);
        Some(format!("{} was a symbolic link (removed)", p.display()))
    }

    /// Reads and fully verifies an entry: the size and blake3 of every file it lists, and that it
    /// holds no file it does not list. Always reads every file (`robarch cache verify`).
    pub fn verify(&self, key: &str) -> Result<Entry, String> {
        self.check(key, Depth::Audit)
    }

    /// An entry checked to `depth`: its meta.json, each listed file's size plus, by depth, its
    /// stat stamp or its blake3, and (warned about or, in an audit, failed) unlisted files.
    fn check(&self, key: &str, depth: Depth) -> Result<Entry, String> {
        let dir = self.entry_dir(key);
        // Readers that write nothing (`status`, `cache verify`) report a link; a lookup removes it.
        if matches!(depth, Depth::Peek | Depth::Audit) {
            if let Some((p, _)) = self.entry_link(key) {
                return Err(format!("{} is a symbolic link", p.display()));
            }
        } else if let Some(why) = self.unlink_entry(key) {
            return Err(why);
        }
        if links::is_link(&dir.join(META)) {
            return Err(format!("{META} is a symbolic link"));
        }
        let meta: EntryMeta = std::fs::read(dir.join(META))
            .map_err(|e| format!("meta.json unreadable: {e}"))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("meta.json invalid: {e}"))
            })?;
        if meta.key != key {
            return Err(format!("meta.json names key {}", meta.key));
        }
        // A stamp taken in the same clock tick as meta.json was written cannot tell a rewrite in
        // that tick from the original (mtimes are as coarse as the kernel's clock tick): such
        // files are hashed, as git treats "racily clean" files.
        let written = std::fs::metadata(dir.join(META))
            .map(|md| Stamp::of(&md).mtime_ns)
            .map_err(|e| format!("meta.json: {e}"))?;
        // Files whose stamp changed but not their contents (a copied or touched cache).
        let mut moved: Vec<(&String, Stamp)> = Vec::new();
        for (name, fm) in &meta.files {
            let path = dir.join(name);
            let md = std::fs::symlink_metadata(&path).map_err(|e| format!("{name}: {e}"))?;
            if !md.is_file() {
                return Err(format!("{name} is not a regular file (a symbolic link?)"));
            }
            if md.len() != fm.size {
                return Err(format!(
                    "{name} has {} bytes, meta.json recorded {}",
                    md.len(),
                    fm.size
                ));
            }
            let stamped = matches!(depth, Depth::Stamp | Depth::Peek)
                && fm.stamp == Some(Stamp::of(&md))
                && fm.stamp.is_some_and(|st| st.mtime_ns < written);
            if !stamped {
                let (size, hash) = hash_file(&path).map_err(|e| format!("{name}: {e:#}"))?;
                if size != fm.size || hash != fm.blake3 {
                    return Err(format!("{name} does not match its recorded blake3"));
                }
                // Restamped only when its mtime is safely past (a rewrite in the current clock
                // tick, after this hash, would otherwise go unseen); the new meta.json is
                // written later than it, so the next lookup can trust the stamp.
                let now = Stamp::of(&md);
                if depth == Depth::Stamp && fm.stamp != Some(now) && now.mtime_ns < settled() {
                    moved.push((name, now));
                }
            }
        }
        for f in walk(&dir).map_err(|e| format!("listing the entry: {e:#}"))? {
            let rel = f
                .strip_prefix(&dir)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if rel != META && !meta.files.contains_key(&rel) {
                let why = format!("{rel} is not listed in {META}");
                if depth == Depth::Audit {
                    return Err(why);
                }
                if depth == Depth::Peek {
                    continue;
                }
                // Nothing reads it (stages and reports read listed files only): a stray file
                // (an editor's, a file manager's) does not cost a recompute.
                tracing::warn!(entry = %dir.display(), "{why}; ignored (`robarch cache verify` removes the entry)");
            }
        }
        if !moved.is_empty() {
            self.restamp(&dir, &moved);
        }
        Ok(Entry { dir, meta })
    }

    /// Records the new stat stamps of files that were hashed and found unchanged, so that the
    /// next lookup compares stamps again instead of hashing them every time (as git refreshes its
    /// index). Best effort: meta.json is replaced atomically (its other fields as read), and a
    /// read-only cache keeps hashing.
    fn restamp(&self, dir: &Path, moved: &[(&String, Stamp)]) {
        let path = dir.join(META);
        let result = (|| -> Result<()> {
            use std::io::Write;
            let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            for (name, st) in moved {
                if let Some(fm) = v.get_mut("files").and_then(|f| f.get_mut(name.as_str())) {
                    fm["stamp"] = serde_json::to_value(st)?;
                }
            }
            // Staged in tmp/ (never an unlisted file inside the entry), renamed over meta.json.
            let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
            tmp.write_all(&serde_json::to_vec_pretty(&v)?)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path)?;
            Ok(())
        })();
        match result {
            Ok(()) => tracing::debug!(entry = %dir.display(), files = moved.len(), "stamps refreshed"),
            Err(e) => tracing::debug!(entry = %dir.display(), "stamps not refreshed: {e:#}"),
        }
    }

    /// Looks up `key` to decide whether it is cached: by the stat stamps recorded at commit (a
    /// missing, truncated, replaced or rewritten file, a missing or broken meta.json, an unlisted
    /// file), without reading the files; entries without stamps are hashed. A corrupt or partial
    /// entry is removed and reported.
    pub fn lookup(&self, key: &str) -> Lookup {
        self.lookup_to(key, Depth::Stamp)
    }

    /// What [`Cache::lookup`] would find for `key`, without changing anything (no stamp refreshed,
    /// nothing removed): what `robarch status` reports. Entries without stamps are hashed.
    pub fn inspect(&self, key: &str) -> Inspect {
        let dir = self.entry_dir(key);
        if std::fs::symlink_metadata(&dir).is_err() {
            return Inspect::Missing;
        }
        if !links::is_link(&dir) && std::fs::symlink_metadata(dir.join(META)).is_err() {
            return Inspect::Incomplete(format!("{META} is missing"));
        }
        match self.check(key, Depth::Peek) {
            Ok(_) => Inspect::Cached,
            Err(why) => Inspect::Corrupt(why),
        }
    }

    /// Looks up `key` to read its files: hashes every file (once per process per entry), so a
    /// byte flipped without changing the stamp is caught before the contents are used.
    pub fn load(&self, key: &str) -> Lookup {
        let done = self
            .hashed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key);
        let depth = if done { Depth::Stamp } else { Depth::Hash };
        let found = self.lookup_to(key, depth);
        if matches!(found, Lookup::Hit(_)) && !done {
            self.hashed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string());
        }
        found
    }

    fn lookup_to(&self, key: &str, depth: Depth) -> Lookup {
        if let Some(why) = self.unlink_entry(key) {
            return Lookup::Corrupt(why);
        }
        if !self.entry_dir(key).exists() {
            return Lookup::Missing;
        }
        match self.check(key, depth) {
            Ok(e) => Lookup::Hit(e),
            Err(why) => {
                let _ = self.remove(key);
                self.hashed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(key);
                Lookup::Corrupt(why)
            }
        }
    }

    /// An entry's metadata as written, without verifying its files (for provenance).
    pub fn read_meta(&self, key: &str) -> Option<EntryMeta> {
        let bytes = std::fs::read(self.entry_dir(key).join(META)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A fresh staging directory for a stage's outputs.
    pub fn stage_dir(&self) -> Result<tempfile::TempDir> {
        self.staging("entry-")
    }

    /// A fresh staging directory for the outputs of the stage with `key`, named after it (see
    /// [`Cache::sweep_stage_leftovers`]).
    pub fn stage_dir_for(&self, key: &str) -> Result<tempfile::TempDir> {
        self.staging(&format!("entry-{key}-"))
    }

    fn staging(&self, prefix: &str) -> Result<tempfile::TempDir> {
        links::check_layout(&self.root)?;
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .with_context(|| format!("creating a staging directory in {}", tmp.display()))
    }

    /// Removes the staging directories a killed process left for the stage with `key`. Only
    /// under that stage's lock (`lock_stage`): whoever staged them held it, so they are
    /// abandoned. (A run sweeps all of `tmp/` when it finds the cache unused; a worker that
    /// outlived its control plane by a moment can leave one after that sweep.)
    pub fn sweep_stage_leftovers(&self, key: &str) -> Result<usize> {
        let prefix = format!("entry-{key}-");
        let mut n = 0;
        for e in std::fs::read_dir(self.root.join("tmp"))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => n += 1,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(err).with_context(|| format!("removing {}", e.path().display()))
                    }
                }
            }
        }
        Ok(n)
    }

    /// Hashes the staged files, writes `meta.json` and renames the directory into place.
    pub fn commit(&self, staged: tempfile::TempDir, mut meta: EntryMeta) -> Result<Entry> {
        let mut files = BTreeMap::new();
        for e in walk(staged.path())? {
            if links::is_link(&e) {
                anyhow::bail!(
                    "{} is a symbolic link: a stage's outputs must be regular files",
                    e.display()
                );
            }
            let rel = e
                .strip_prefix(staged.path())?
                .to_string_lossy()
                .replace('\\', "/");
            let (size, blake3) = hash_file(&e)?;
            let stamp = Some(Stamp::of(
                &std::fs::metadata(&e).with_context(|| format!("reading {}", e.display()))?,
            ));
            files.insert(
                rel,
                FileMeta {
                    size,
                    blake3,
                    stamp,
                },
            );
        }
        meta.files = files;
        let meta_file = staged.path().join(META);
        std::fs::write(&meta_file, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", meta_file.display()))?;
        // Durable before it becomes visible: the files and their directory reach the disk before
        // the rename, the rename itself before the commit returns (a power loss cannot leave a
        // renamed entry with empty files).
        for f in walk(staged.path())? {
            File::open(&f)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", f.display()))?;
        }
        sync_dir(staged.path())?;
        links::check_layout(&self.root)?;
        let dest = self.entry_dir(&meta.key);
        let shard = dest.parent().expect("entry dirs have a parent");
        self.unlink_entry(&meta.key);
        if !shard.exists() {
            links::real_dir(&self.root, &Path::new("objects").join(&meta.key[..2]), "a shard of entries (objects/ab)")?;
            sync_dir(shard.parent().expect("shards have a parent"))?;
        }
        if dest.exists() {
            // A forced rerun replaces the old entry.
            self.remove(&meta.key)?;
        }
        let tmp = staged.keep();
        crate::fault::point("commit-rename");
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| {
                format!(
                    "committing cache entry {} into {}",
                    meta.key,
                    shard.display()
                )
            });
        }
        crate::fault::point("commit-renamed");
        sync_dir(shard)?;
        // Just hashed: this process need not read it again.
        self.hashed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(meta.key.clone());
        Ok(Entry { dir: dest, meta })
    }

    /// Removes an entry by first renaming it out of `objects/` (so it vanishes atomically).
    pub fn remove(&self, key: &str) -> Result<()> {
        links::check_layout(&self.root)?;
        if self.unlink_entry(key).is_some() {
            return Ok(());
        }
        let dir = self.entry_dir(key);
        if dir.exists() {
            let trash = self
                .root
                .join("tmp")
                .join(format!("trash-{key}-{}", std::process::id()));
            links::unlink(&trash, "a removed entry on its way out (tmp/trash-…)");
            std::fs::rename(&dir, &trash)
                .with_context(|| format!("moving {} to {}", dir.display(), trash.display()))?;
            std::fs::remove_dir_all(&trash)
                .with_context(|| format!("removing {}", trash.display()))?;
        }
        Ok(())
    }

    /// Re-hashes every entry (`robarch cache verify`): each key with its stage id and why it is
    /// corrupt; a corrupt entry is removed unless `keep`. Also returns the bytes checked.
    pub fn verify_all(&self, keep: bool) -> Result<(usize, u64, Vec<(String, String, String)>)> {
        let keys = self.keys()?;
        let mut bad = Vec::new();
        let mut bytes = 0u64;
        for key in &keys {
            match self.verify(key) {
                Ok(e) => bytes += e.meta.files.values().map(|f| f.size).sum::<u64>(),
                // Removed or replaced by a concurrent run meanwhile (under `--keep`): not corrupt.
                Err(_) if std::fs::symlink_metadata(self.entry_dir(key)).is_err() => {}
                Err(why) => {
                    let stage = self.read_meta(key).map(|m| m.stage).unwrap_or_default();
                    if !keep {
                        self.remove(key).with_context(|| {
                            format!("removing {}", self.entry_dir(key).display())
                        })?;
                    }
                    bad.push((key.clone(), stage, why));
                }
            }
        }
        Ok((keys.len(), bytes, bad))
    }

    /// Keys of all committed entries.
    pub fn keys(&self) -> Result<Vec<String>> {
        links::check_layout(&self.root)?;
        let mut out = Vec::new();
        for shard in std::fs::read_dir(self.root.join("objects"))? {
            let shard = shard?;
            // A link in place of a shard is not followed (a lookup of a key there removes it).
            if shard.file_type()?.is_dir() {
                let shard = shard.path();
                for e in std::fs::read_dir(&shard)? {
                    let name = e?.file_name().to_string_lossy().into_owned();
                    if is_key(&name) {
                        out.push(name);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Blocks until this process holds the per-stage lock for `key` (`what` names the stage in
    /// messages). The lock holds across machines sharing the cache (see [`lease`]).
    pub fn lock_stage(&self, key: &str, what: &str) -> Result<lease::Lease> {
        lease::Lease::acquire(&self.stage_lock_path(key), what)
    }

    fn stage_lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lease"))
    }

    /// Who holds the stage lock of `key` now, if a live process does (here or on another node).
    pub fn stage_holder(&self, key: &str) -> Option<lease::Owner> {
        lease::live(&self.stage_lock_path(key))
    }

    /// Opens (creating) a lock file; the error names it and says what a read-only cache needs.
    fn lock_file(&self, path: &Path) -> Result<File> {
        links::check_layout(&self.root)?;
        links::open_lock(path).with_context(|| {
            format!(
                "opening the lock file {}: the cache must be writable (point `--cache DIR` or \
                 ROBARCH_CACHE at a writable directory)",
                path.display()
            )
        })
    }

    /// A shared lock for a reader that writes nothing (`cache verify --keep`): the lock file is
    /// opened read-only where it exists, so a read-only cache can be checked.
    pub fn lock_shared_read(&self) -> Result<File> {
        links::check_layout(&self.root)?;
        let path = self.root.join(".lock");
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(_) => self.lock_file(&path)?,
        };
        f.lock_shared().context("locking cache")?;
        Ok(f)
    }

    /// Shared lock held for a whole run; `gc` takes it exclusively.
    pub fn lock_shared(&self) -> Result<File> {
        let f = self.lock_file(&self.root.join(".lock"))?;
        f.lock_shared().context("locking cache")?;
        Ok(f)
    }

    pub fn lock_exclusive(&self) -> Result<File> {
        let f = self.lock_file(&self.root.join(".lock"))?;
        f.lock().context("locking cache")?;
        Ok(f)
    }

    /// The run lock (shared: runs go on side by side, `gc` waits for them). With `sweep`, a run
    /// that finds no other run holding it first sweeps `tmp/` of what killed runs left there;
    /// with another run live, its staging directories are left alone (and swept by a later run).
    /// A leftover that cannot be removed is logged, not fatal.
    pub fn lock_run(&self, sweep: bool) -> Result<File> {
        let f = self.lock_file(&self.root.join(".lock"))?;
        if sweep && f.try_lock().is_ok() {
            match self.sweep_tmp() {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "removed staging leftovers of killed runs"),
                Err(e) => tracing::warn!("sweeping {}: {e:#}", self.root.join("tmp").display()),
            }
            f.unlock()?;
        }
        f.lock_shared().context("locking cache")?;
        Ok(f)
    }

    /// The key of a staging directory `tmp/entry-<key>-…`.
    fn staging_key(&self, p: &Path) -> Option<String> {
        let name = p.file_name()?.to_string_lossy();
        let key = name.strip_prefix("entry-")?.split('-').next()?;
        is_key(key).then(|| key.to_string())
    }

    /// Deletes leftovers of killed runs: everything in `tmp/` but the staging directories of
    /// stages whose lock a live process holds, and the checkpoints of committed
    /// stages (only under the exclusive lock).
    pub fn sweep_tmp(&self) -> Result<usize> {
        links::check_layout(&self.root)?;
        let mut n = 0;
        for e in std::fs::read_dir(self.root.join("tmp"))? {
            let e = e?;
            let p = e.path();
            let is_dir = e.file_type()?.is_dir();
            // A stage being computed elsewhere (a Slurm job on another node, which shares no
            // `flock` with this run) holds its lock: its staging directory is not a leftover.
            if self.staging_key(&p).is_some_and(|k| self.stage_holder(&k).is_some()) {
                continue;
            }
            // A link is removed as a link (`remove_file`), never followed.
            let removed = if is_dir {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match removed {
                Ok(()) => n += 1,
                // Gone already (an entry being removed, unlocked, by `explain` or `report`).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        // Checkpoints of a stage whose entry was committed after them: a kill came between the
        // commit and their removal, and no later run of the stage would remove them. (Those of a
        // forced recomputation are newer than the entry it replaces, and are kept to resume.)
        for e in std::fs::read_dir(self.root.join("ckpt"))? {
            let p = e?.path();
            let name = p.file_name().map(|k| k.to_string_lossy().into_owned());
            let Some(key) = name.filter(|k| is_key(k)) else {
                continue;
            };
            let committed = std::fs::metadata(self.entry_dir(&key).join(META))
                .and_then(|m| m.modified())
                .ok();
            if links::unlink(&p, "a stage's checkpoints (ckpt/<key>)") {
                n += 1;
                continue;
            }
            let newest = walk(&p)
                .unwrap_or_default()
                .iter()
                .filter_map(|f| std::fs::symlink_metadata(f).and_then(|m| m.modified()).ok())
                .max();
            if let (Some(committed), Some(newest)) = (committed, newest) {
                if newest <= committed {
                    match std::fs::remove_dir_all(&p) {
                        Ok(()) => n += 1,
                        Err(e) => tracing::warn!("removing {}: {e}", p.display()),
                    }
                }
            }
        }
        // Temporaries of the run records and source-file hashes a killed run was replacing.
        for sub in ["runs", "state"] {
            let Ok(dir) = std::fs::read_dir(self.root.join(sub)) else {
                continue;
            };
            for e in dir.flatten() {
                let p = e.path();
                let tmp = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"));
                if tmp && std::fs::remove_file(&p).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Removes every entry, checkpoint and lock whose key is not in `keep`; returns (entries, bytes).
    pub fn gc(&self, keep: &std::collections::HashSet<String>) -> Result<(usize, u64)> {
        let mut removed = 0;
        let mut bytes = 0;
        // Stages being computed now (by a run elsewhere, a Slurm job) are kept, with their locks.
        let mut keep = keep.clone();
        for e in std::fs::read_dir(self.root.join("locks"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(".lease").filter(|k| is_key(k)) {
                if lease::live(&e.path()).is_some() {
                    keep.insert(key.to_string());
                }
            }
        }
        let keep = &keep;
        for e in std::fs::read_dir(self.root.join("objects"))?.flatten() {
            links::unlink(&e.path(), "a shard of entries (objects/ab)");
        }
        for key in self.keys()? {
            if !keep.contains(&key) {
                bytes += walk(&self.entry_dir(&key))?
                    .iter()
                    .map(|p| p.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum::<u64>();
                self.remove(&key)?;
                removed += 1;
            }
        }
        for sub in ["ckpt", "locks"] {
            for e in std::fs::read_dir(self.root.join(sub))? {
                let e = e?;
                let p = e.path();
                let is_dir = e.file_type()?.is_dir();
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // A lock taken since the keys were collected is live: left alone.
                let held = sub == "locks" && lease::live(&p).is_some();
                if !keep.contains(&stem) && !held {
                    // A link is removed as a link (`remove_file`), never followed.
                    let r = if is_dir {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    match r {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("removing {}", p.display()))
                        }
                    }
                }
            }
        }
        self.sweep_tmp()?;
        Ok((removed, bytes))
    }
}

/// Flushes a directory's entries (new names, renames) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    // Opening a directory read-only and fsyncing it is how POSIX persists its entries; elsewhere
    // (Windows) directories cannot be opened as files, and renames are durable on their own.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// The checkpoint directories `<prefix><zero-padded number>` under `root`, newest (highest) first;
/// none when `root` does not exist. A link in place of one is removed as a link (`what` names what
/// it stood for), never read or pruned through.
pub fn numbered_dirs(root: &Path, prefix: &str, what: &str) -> Result<Vec<PathBuf>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        let ours = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix));
        if ours && !links::unlink(&p, what) {
            v.push(p);
        }
    }
    v.sort();
    v.reverse();
    Ok(v)
}

/// All files below `dir`, sorted; symbolic links are listed as files, never followed.
pub fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str) -> EntryMeta {
        EntryMeta {
            key: key.into(),
            kind: "t".into(),
            version: 1,
            stage: "s".into(),
            params: Value::Null,
            inputs: Default::default(),
            files: Default::default(),
            summary: Value::Null,
            provenance: Default::default(),
        }
    }

    fn put(c: &Cache, key: &str, content: &[u8]) -> Entry {
        let st = c.stage_dir().unwrap();
        std::fs::create_dir_all(st.path().join("sub")).unwrap();
        std::fs::write(st.path().join("sub/a.bin"), content).unwrap();
        c.commit(st, meta(key)).unwrap()
    }

    #[test]
    fn stamps_decide_lookups_and_loads_hash_once_per_process() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let key = "cd".repeat(32);
        // The output is written a few clock ticks before its commit, as any real stage's is.
        let st = c.stage_dir().unwrap();
        std::fs::create_dir_all(st.path().join("sub")).unwrap();
        std::fs::write(st.path().join("sub/a.bin"), b"hello").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let e = c.commit(st, meta(&key)).unwrap();
        let file = e.path("sub/a.bin");
        assert!(e.meta.files["sub/a.bin"].stamp.is_some());
        // A byte flipped in place with size, inode and mtime kept: the stamp cannot see it.
        let when = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, b"hellO").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(when)
            .unwrap();
        // Written ticks before meta.json, the file's stamp is trusted: the lookup reads nothing.
        assert!(matches!(c.lookup(&key), Lookup::Hit(_)));
        // This process committed it (and hashed it then): a load trusts the stamp too.
        assert!(matches!(c.load(&key), Lookup::Hit(_)));
        // Another process hashes what it loads, once, and `cache verify` always does.
        assert!(c.verify(&key).is_err());
        let other = Cache::open(d.path()).unwrap();
        assert!(matches!(other.load(&key), Lookup::Corrupt(_)));
        assert!(!other.entry_dir(&key).exists());
    }

    #[test]
    fn a_rewrite_in_the_commit_tick_is_hashed_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let key = "ef".repeat(32);
        let e = put(&c, &key, b"hello");
        let file = e.path("sub/a.bin");
        // Pretend the file and meta.json were written in one tick: the stamp is not trusted.
        let meta_time = std::fs::metadata(e.path(META)).unwrap().modified().unwrap();
        std::fs::write(&file, b"hellO").unwrap();
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(meta_time).unwrap();
        let mut m: EntryMeta =
            serde_json::from_slice(&std::fs::read(e.path(META)).unwrap()).unwrap();
        m.files.get_mut("sub/a.bin").unwrap().stamp =
            Some(Stamp::of(&std::fs::metadata(&file).unwrap()));
        std::fs::write(e.path(META), serde_json::to_vec(&m).unwrap()).unwrap();
        std::fs::File::options()
            .write(true)
            .open(e.path(META))
            .unwrap()
            .set_modified(meta_time)
            .unwrap();
        assert!(matches!(c.lookup(&key), Lookup::Corrupt(_)));
    }

    #[test]
    fn commit_then_verify_and_corruption_is_detected_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let key = "ab".repeat(32);
        assert!(matches!(c.lookup(&key), Lookup::Missing));
        let e = put(&c, &key, b"hello");
        assert_eq!(e.meta.files["sub/a.bin"].size, 5);
        assert!(matches!(c.lookup(&key), Lookup::Hit(_)));
        std::fs::write(e.path("sub/a.bin"), b"hellO").unwrap();
        assert!(matches!(c.lookup(&key), Lookup::Corrupt(_)));
        assert!(!c.entry_dir(&key).exists(), "corrupt entry must be removed");
        assert!(
            std::fs::read_dir(d.path().join("tmp"))
                .unwrap()
                .next()
                .is_none(),
            "no leftovers"
        );
    }

    #[test]
    fn missing_file_or_meta_counts_as_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        let key = "cd".repeat(32);
        let e = put(&c, &key, b"x");
        std::fs::remove_file(e.path("sub/a.bin")).unwrap();
        assert!(matches!(c.lookup(&key), Lookup::Corrupt(_)));
        let e = put(&c, &key, b"x");
        std::fs::remove_file(e.path(META)).unwrap();
        assert!(matches!(c.lookup(&key), Lookup::Corrupt(_)));
    }

    #[test]
    fn dropped_staging_dir_leaves_nothing_and_gc_keeps_only_referenced() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(d.path()).unwrap();
        {
            let st = c.stage_dir().unwrap();
            std::fs::write(st.path().join("f"), b"partial").unwrap();
        }
        assert!(std::fs::read_dir(d.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        let (k1, k2) = ("11".repeat(32), "22".repeat(32));
        put(&c, &k1, b"1");
        put(&c, &k2, b"2");
        let keep = std::collections::HashSet::from([k1.clone()]);
        let (n, _) = c.gc(&keep).unwrap();
        assert_eq!(n, 1);
        assert_eq!(c.keys().unwrap(), vec![k1]);
    }
}
