//! Content fingerprints of dataset source files, so a prepared dataset is keyed by what the files
//! contain, not where they live: editing a file re-prepares, renaming the directory does not.
//!
//! Hashing every JPEG of ImageNette on each `robarch status` would be slow, so (like DVC's state
//! database and cargo's mtime fingerprints) a file's blake3 is remembered with its size and mtime
//! and reused while both are unchanged; `touch` makes robarch re-hash a file, and the key changes
//! only if its bytes did.
use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    blake3: String,
}

/// Remembered file hashes, persisted as JSON under the cache directory.
pub struct HashState {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
    dirty: bool,
}

impl HashState {
    /// A state without persistence (every file is hashed).
    pub fn ephemeral() -> Self {
        HashState {
            path: None,
            entries: BTreeMap::new(),
            dirty: false,
        }
    }

    /// Loads the state stored at `path`; a missing or unreadable file starts empty.
    pub fn open(path: PathBuf) -> Self {
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        HashState {
            path: Some(path),
            entries,
            dirty: false,
        }
    }

    /// Writes the state back atomically (concurrent writers: the last one wins, which is safe
    /// because every entry is re-validated by size and mtime before use).
    pub fn save(&mut self) -> Result<()> {
        let (Some(path), true) = (&self.path, self.dirty) else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(std::io::BufWriter::new(tmp.as_file()), &self.entries)?;
        tmp.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        self.dirty = false;
        Ok(())
    }

    /// The fingerprint of a set of files under `root`: blake3 over sorted `relative path, blake3`
    /// lines. Relative paths matter (a class directory name is a label), the root's name does not.
    pub fn fingerprint(&mut self, root: &Path, files: &[PathBuf]) -> Result<String> {
        let stats: Vec<(String, u64, u128)> = files
            .iter()
            .map(|f| {
                let m = std::fs::metadata(f).with_context(|| format!("reading {}", f.display()))?;
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let abs = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
                Ok((abs.to_string_lossy().into_owned(), m.len(), mtime))
            })
            .collect::<Result<_>>()?;
        let hashes: Vec<Option<String>> = stats
            .par_iter()
            .map(|(abs, size, mtime)| match self.entries.get(abs) {
                Some(e) if e.size == *size && e.mtime_ns == *mtime => Ok(None),
                _ => hash_file(Path::new(abs)).map(Some),
            })
            .collect::<Result<_>>()?;
        let mut lines: Vec<String> = Vec::with_capacity(files.len());
        for ((f, (abs, size, mtime)), fresh) in files.iter().zip(stats).zip(hashes) {
            let hash = match fresh {
                Some(h) => {
                    self.entries.insert(
                        abs.clone(),
                        Entry {
                            size,
                            mtime_ns: mtime,
                            blake3: h.clone(),
                        },
                    );
                    self.dirty = true;
                    h
                }
                None => self.entries[&abs].blake3.clone(),
            };
            let rel = f.strip_prefix(root).unwrap_or(f);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            lines.push(format!("{rel}\t{hash}\n"));
        }
        lines.sort();
        let mut h = blake3::Hasher::new();
        for l in &lines {
            h.update(l.as_bytes());
        }
        Ok(h.finalize().to_hex().to_string())
    }
}

fn hash_file(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(std::io::BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_content_not_location_and_reuses_state() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("cls")).unwrap();
        std::fs::write(a.join("cls/1.png"), b"one").unwrap();
        std::fs::write(a.join("cls/2.png"), b"two").unwrap();
        let files = |r: &Path| vec![r.join("cls/1.png"), r.join("cls/2.png")];
        let state_path = dir.path().join("state.json");
        let mut st = HashState::open(state_path.clone());
        let f1 = st.fingerprint(&a, &files(&a)).unwrap();
        st.save().unwrap();
        assert!(state_path.is_file());
        // Renamed root: same fingerprint.
        let b = dir.path().join("b");
        std::fs::rename(&a, &b).unwrap();
        let mut st = HashState::open(state_path.clone());
        assert_eq!(st.fingerprint(&b, &files(&b)).unwrap(), f1);
        // Changed bytes: new fingerprint, even with the same length.
        std::fs::write(b.join("cls/2.png"), b"TWO").unwrap();
        let f2 = st.fingerprint(&b, &files(&b)).unwrap();
        assert_ne!(f2, f1);
        // Renamed class directory (a label): new fingerprint.
        std::fs::rename(b.join("cls"), b.join("other")).unwrap();
        let moved = vec![b.join("other/1.png"), b.join("other/2.png")];
        assert_ne!(st.fingerprint(&b, &moved).unwrap(), f2);
    }

    #[test]
    fn stale_state_entries_are_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bin");
        std::fs::write(&f, b"abc").unwrap();
        let mut st = HashState::ephemeral();
        let h1 = st
            .fingerprint(dir.path(), std::slice::from_ref(&f))
            .unwrap();
        // Forge a stale entry with the wrong hash but the wrong mtime too: it must not be used.
        for e in st.entries.values_mut() {
            e.blake3 = "bogus".into();
            e.mtime_ns += 1;
        }
        assert_eq!(st.fingerprint(dir.path(), &[f]).unwrap(), h1);
    }
}
