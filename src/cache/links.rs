//! Symbolic links inside the cache are never followed when robarch writes, deletes, renames or
//! re-stamps there.
//!
//! A cache shared by a group (a cluster's project directory) can be written by every member, so a
//! link planted at `ckpt/<key>` or `objects/ab/<key>` would otherwise turn a training's checkpoint
//! pruning or an entry's re-stamp into writes and deletions wherever the link points. The rule:
//! the cache root itself may be a link (the user chose it, e.g. `cache -> /scratch/cache`); below
//! it, a link where robarch keeps one of its own directories (`objects/`, `tmp/`, …) is refused
//! with an error, and a link where a per-stage item lives (a shard, an entry, a checkpoint
//! directory, a lock, a log) is removed as a link, with a warning naming it and its target, and
//! never written through.
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The directories robarch keeps directly under the cache root.
pub const LAYOUT: [&str; 8] = [
    "objects", "tmp", "ckpt", "locks", "runs", "logs", "slurm", "state",
];

/// Whether `path` itself is a symbolic link (not following it).
pub fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Removes `path` if it is a symbolic link (the link, never what it points to), warning with
/// `what` it stood in place of; true if a link was removed.
pub fn unlink(path: &Path, what: &str) -> bool {
    if !is_link(path) {
        return false;
    }
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    match std::fs::remove_file(path) {
        Ok(()) => tracing::warn!(
            link = %path.display(),
            target = %target,
            "removed a symbolic link found where the cache keeps {what}: robarch never writes \
             through links inside its cache"
        ),
        // Gone already (a concurrent run removed it): nothing was written through it either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            link = %path.display(),
            target = %target,
            "a symbolic link where the cache keeps {what} could not be removed ({e}); it is \
             not written through"
        ),
    }
    true
}

/// Refuses a cache whose own directories (`objects/`, `tmp/`, …) are links: removing one would
/// hide what the user put behind it, writing through one would write outside the cache.
pub fn check_layout(root: &Path) -> Result<()> {
    for sub in LAYOUT.iter().copied().chain([".lock"]) {
        let p = root.join(sub);
        if is_link(&p) {
            let target = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            bail!(
                "{} is a symbolic link (to {target}): robarch never writes through links inside \
                 its cache; replace it with a directory of its own (`rm {0}`), or point `--cache` \
                 at a directory where it is not a link",
                p.display()
            );
        }
    }
    Ok(())
}

/// The directory `root/rel`, created where missing, with no link on the way from `root` down:
/// a link found at a component is removed (as a link, warned about as `what`) and a directory
/// made in its place.
pub fn real_dir(root: &Path, rel: &Path, what: &str) -> Result<PathBuf> {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        unlink(&p, what);
        match std::fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Raced by another process, which may have planted a link meanwhile.
                if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                    bail!(
                        "{} is not a directory: robarch keeps {what} there; remove it",
                        p.display()
                    );
                }
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
    }
    Ok(p)
}

/// Opens `path` for writing, created where missing, without following a link there
/// (`O_NOFOLLOW`: a link is removed first, as in [`unlink`], and one planted in between makes
/// the open fail instead of writing through it). `append` keeps what is there, otherwise it is
/// emptied.
pub fn create(path: &Path, append: bool, what: &str) -> Result<File> {
    unlink(path, what);
    nofollow()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Opens (creating, never truncating) a lock file without following a link there.
pub fn open_lock(path: &Path) -> std::io::Result<File> {
    nofollow()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(path)
}

/// Options whose open fails on a symbolic link at the last component (`O_NOFOLLOW`).
fn nofollow() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_removed_as_links_and_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"canary").unwrap();
        let root = d.path().join("cache");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("ckpt")).unwrap();
        assert!(check_layout(&root)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        std::fs::remove_file(root.join("ckpt")).unwrap();
        std::fs::create_dir(root.join("ckpt")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("ckpt/k")).unwrap();
        let dir = real_dir(&root, Path::new("ckpt/k/sub"), "checkpoints").unwrap();
        assert!(dir.is_dir() && !is_link(&root.join("ckpt/k")));
        let log = root.join("ckpt/k/sub/log");
        std::os::unix::fs::symlink(outside.join("keep"), &log).unwrap();
        std::io::Write::write_all(&mut create(&log, false, "a log").unwrap(), b"x").unwrap();
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"canary");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        std::os::unix::fs::symlink(outside.join("keep"), root.join(".lock")).unwrap();
        assert!(
            open_lock(&root.join(".lock")).is_err(),
            "O_NOFOLLOW refuses the link"
        );
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"canary");
    }
}
