//! Locks that hold across the nodes of a cluster on a shared filesystem, where `flock` may be
//! local to each node or not work at all (NFS without a lock manager, Lustre without `-o flock`).
//!
//! A lock is a small JSON file naming its owner: host, boot, pid and the process's start time,
//! a random token, and when it was last renewed. It is created whole and exclusively (written to
//! a private file, then hard-linked into place: `link` fails if the name exists, on NFS too), and
//! renewed from a thread (rewritten and renamed over itself) every quarter of its lease while
//! held. A waiter takes it over when
//! - its owner ran on this host (same boot) and that process is gone (a killed owner), or
//! - its lease ran out: not renewed for `lease` seconds by the owner's clock, or unchanged for
//!   `lease` seconds while this waiter watched it (which needs no synchronised clocks).
//!
//! Taking over is guarded by a second exclusive file (`<lock>.takeover`), so that of two waiters
//! that judged the same owner dead only one removes its file: the other finds a new owner. A lock
//! taken from an owner that was only paused (a frozen node that comes back) leaves two processes
//! computing the same stage; both commit the same content, atomically, so the cache stays right.
//! The lease length is `ROBARCH_LEASE_SECS` (default 60 seconds).
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable that sets the lease length in seconds.
pub const LEASE_SECS: &str = "ROBARCH_LEASE_SECS";

/// Who holds a lock, as written in its file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Owner {
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: a pid from before a reboot names no process.
    pub boot: String,
    pub pid: u32,
    /// The pid namespace (`/proc/self/ns/pid`): containers sharing a host name and kernel each
    /// have their own pids, and a pid from another namespace says nothing here.
    #[serde(default)]
    pub pidns: String,
    /// The process's start time (clock ticks since boot), so a reused pid is not taken for it.
    pub start: u64,
    pub token: String,
    /// Seconds since the epoch, by the owner's clock.
    pub renewed_unix: f64,
    pub lease_s: f64,
    /// Counts renewals: a waiter sees the file change even across clocks.
    pub beat: u64,
    /// What holds it (a stage id), for messages.
    #[serde(default)]
    pub what: String,
    /// When the owner took it (seconds since the epoch, by its clock; 0 in locks written before
    /// it was recorded), for messages.
    #[serde(default)]
    pub since_unix: f64,
}

impl Owner {
    pub fn describe(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }

    /// Who holds it, for how long, and its last renewal: `pid 12 on n1 (train/…) since 3 min,
    /// renewed 4 s ago`.
    pub fn holding(&self) -> String {
        let now = now_unix();
        let ago = |t: f64| human_secs((now - t).max(0.0));
        let what = if self.what.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.what)
        };
        let since = if self.since_unix > 0.0 {
            format!(" for {}", ago(self.since_unix))
        } else {
            String::new()
        };
        format!(
            "{}{what}{since}, renewed {} ago",
            self.describe(),
            ago(self.renewed_unix)
        )
    }
}

/// Seconds as people say them: `45 s`, `6.0 min`, `2.5 h`.
pub fn human_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Counts the polls of every lock this process waits for: a worker waiting on another's stage
/// makes progress of its own kind (the holder is watched by its own control plane).
pub static POLLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a waiter waits before it first says who holds the lock.
const FIRST_SAY: Duration = Duration::from_secs(5);

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's host name.
pub fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn pid_ns() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or None
/// if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The lease length: `ROBARCH_LEASE_SECS`, or 60 seconds.
pub fn lease_secs() -> f64 {
    std::env::var(LEASE_SECS)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(60.0)
}

/// Why `o`'s lock may be taken over, if it may; `watched` is how long this waiter has seen its
/// file unchanged.
///
/// An owner in this process table (same host, boot and pid namespace) is judged by its pid. Any
/// other only by its lease: seen unchanged for a lease while this process waited (no clocks
/// compared), or stamped as renewed more than three leases ago (so clocks some way apart do not
/// take a live lock).
pub fn stale(o: &Owner, watched: Duration) -> Option<String> {
    let here = o.host == host() && o.pidns == pid_ns();
    if here && o.boot != boot_id() {
        return Some(format!("its owner, {}, ran before a reboot", o.describe()));
    }
    if here && start_time(o.pid) != Some(o.start) {
        return Some(format!("its owner, {}, is gone", o.describe()));
    }
    if here {
        return None;
    }
    let age = now_unix() - o.renewed_unix;
    if age > 3.0 * o.lease_s {
        return Some(format!(
            "its owner, {}, has not renewed it for {age:.0} s (lease {:.0} s)",
            o.describe(),
            o.lease_s
        ));
    }
    if watched.as_secs_f64() > o.lease_s {
        return Some(format!(
            "its owner, {}, left it unchanged for {:.0} s while this process waited (lease {:.0} s)",
            o.describe(),
            watched.as_secs_f64(),
            o.lease_s
        ));
    }
    None
}

/// The owner written in the lock file at `path`, if it exists and reads as one.
pub fn read(path: &Path) -> Option<Owner> {
    // A link is no lock robarch wrote (locks are created by `link`, renewed by `rename`): not
    // followed; a waiter removes it.
    if super::links::is_link(path) {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The owner of the lock at `path` if it holds it now (not stale by its own clock or by its
/// host's process table); what sweeps and `gc` leave alone.
pub fn live(path: &Path) -> Option<Owner> {
    read(path).filter(|o| stale(o, Duration::ZERO).is_none())
}

/// A held lock; dropping it stops the renewal and removes the file (if it is still ours).
pub struct Lease {
    path: PathBuf,
    token: String,
    stop: Stop,
    renewer: Option<std::thread::JoinHandle<()>>,
}

/// Locks this process holds: released by [`release_all`] when it is told to stop (a Slurm job
/// at its time limit), so the next owner need not wait for the lease to run out.
static HELD: Mutex<Vec<(PathBuf, String, Stop)>> = Mutex::new(Vec::new());

/// Set (under its mutex) to stop a lease's renewal; the renewer renews only under that mutex.
type Stop = Arc<(Mutex<bool>, Condvar)>;

/// Stops the renewal of a lease: once this returns, no renewal can write its file again.
fn stop_renewal(stop: &Stop) {
    let (done, cv) = &**stop;
    *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
    cv.notify_all();
}

/// Writes `o` to a private file beside `path`; returns its path.
fn write_private(path: &Path, o: &Owner) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}-{}", o.token, o.beat));
    // Its name is predictable from the lock's contents: a link planted there is removed, and the
    // file is created new, never through a link (O_EXCL does not follow one).
    super::links::unlink(&tmp, "a stage lock being written (locks/.<key>.lease.…)");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| {
        format!(
            "creating {}: the cache must be writable (point `--cache DIR` or ROBARCH_CACHE at a writable directory)",
            tmp.display()
        )
    })?;
    f.write_all(&serde_json::to_vec(o)?)?;
    f.sync_all()?;
    Ok(tmp)
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Lease {
    /// Takes the lock at `path` if it is free or stale; None if a live owner holds it.
    pub fn try_acquire(path: &Path, what: &str) -> Result<Option<Lease>> {
        Self::attempt(path, what, &mut None)
    }

    /// Blocks until this process holds the lock at `path` (polling, backed off to one second).
    /// While it waits it says who holds the lock, after [`FIRST_SAY`] and then every minute.
    pub fn acquire(path: &Path, what: &str) -> Result<Lease> {
        let mut seen = None;
        let mut wait = Duration::from_millis(10);
        let start = Instant::now();
        let mut say = FIRST_SAY;
        loop {
            if let Some(l) = Self::attempt(path, what, &mut seen)? {
                return Ok(l);
            }
            POLLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if start.elapsed() >= say {
                say += Duration::from_secs(60);
                let holder = match read(path) {
                    Some(o) => o.holding(),
                    None => "another process".into(),
                };
                tracing::warn!(
                    lock = %path.display(),
                    "{what}: waiting {:.0} s for its lock, held by {holder}; it is taken over \
                     when that process is gone or stops renewing it for its lease",
                    start.elapsed().as_secs_f64()
                );
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// One try; `seen` remembers the owner this waiter watches and since when.
    fn attempt(path: &Path, what: &str, seen: &mut Option<(Owner, Instant)>) -> Result<Option<Lease>> {
        super::links::unlink(path, "a stage lock (locks/<key>.lease)");
        // A held lock is only read while it is waited for (nothing is written each poll).
        if let Some(owner) = read(path) {
            return Self::judge(path, owner, seen);
        }
        let me = Owner {
            host: host(),
            boot: boot_id(),
            pid: std::process::id(),
            pidns: pid_ns(),
            start: start_time(std::process::id()).unwrap_or(0),
            token: token(),
            renewed_unix: now_unix(),
            lease_s: lease_secs(),
            beat: 0,
            what: what.to_string(),
            since_unix: now_unix(),
        };
        let tmp = write_private(path, &me)?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Self::held(path, me).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("taking the lock {}", path.display()))
            }
        }
        let Some(owner) = read(path) else {
            // Gone since (released), or not a lock this version wrote: judged by its age.
            let old = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs_f64() > lease_secs());
            if old {
                let _ = std::fs::remove_file(path);
            }
            return Ok(None);
        };
        Self::judge(path, owner, seen)
    }

    /// Waits on `owner`'s lock, or takes it over when it is stale.
    fn judge(path: &Path, owner: Owner, seen: &mut Option<(Owner, Instant)>) -> Result<Option<Lease>> {
        let since = match seen {
            Some((o, t)) if o.token == owner.token && o.beat == owner.beat => *t,
            _ => {
                *seen = Some((owner.clone(), Instant::now()));
                Instant::now()
            }
        };
        if let Some(why) = stale(&owner, since.elapsed()) {
            Self::take_over(path, &owner, &why)?;
            *seen = None;
        }
        Ok(None)
    }

    /// Removes the stale lock `owner` held at `path`, unless another waiter is doing so or it
    /// changed since it was judged.
    fn take_over(path: &Path, owner: &Owner, why: &str) -> Result<()> {
        let guard = path.with_extension("takeover");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&guard)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A waiter killed while taking over leaves its guard: stale after two leases.
                let old = std::fs::metadata(&guard)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs_f64() > 2.0 * lease_secs());
                if old {
                    let _ = std::fs::remove_file(&guard);
                }
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", guard.display())),
        }
        let now = read(path);
        if now.as_ref().is_some_and(|n| n.token == owner.token && n.beat == owner.beat) {
            tracing::warn!(
                lock = %path.display(),
                held_for = %owner.what,
                "taking over a stale lock: {why}"
            );
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(&guard);
        Ok(())
    }

    fn held(path: &Path, me: Owner) -> Result<Lease> {
        let stop: Stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renewer = {
            let stop = stop.clone();
            let path = path.to_path_buf();
            let mut me = me.clone();
            let every = Duration::from_secs_f64(me.lease_s / 4.0);
            std::thread::Builder::new()
                .name("lease".into())
                .spawn(move || {
                    let (done, cv) = &*stop;
                    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                    // Checked before each wait: a drop may come before this thread first waits.
                    // Renewing under the mutex: a stop waits for a renewal under way.
                    while !*done {
                        let (d, _) = cv
                            .wait_timeout(done, every)
                            .unwrap_or_else(|e| e.into_inner());
                        done = d;
                        if *done || !renew(&path, &mut me) {
                            return;
                        }
                    }
                })
        };
        let renewer = match renewer {
            Ok(h) => h,
            Err(e) => {
                release(path, &me.token);
                return Err(e).context("starting the thread that renews a stage lock");
            }
        };
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_path_buf(), me.token.clone(), stop.clone()));
        Ok(Lease {
            path: path.to_path_buf(),
            token: me.token,
            stop,
            renewer: Some(renewer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Rewrites the lock with a new renewal time; false once it is no longer ours.
fn renew(path: &Path, me: &mut Owner) -> bool {
    match read(path) {
        Some(o) if o.token == me.token => {}
        other => {
            tracing::error!(
                lock = %path.display(),
                now = %other.map(|o| o.describe()).unwrap_or_else(|| "nobody".into()),
                "this process's lock was taken over (it was paused for longer than its lease?); \
                 the stage goes on and commits the same content"
            );
            return false;
        }
    }
    me.beat += 1;
    me.renewed_unix = now_unix();
    match write_private(path, me) {
        Ok(tmp) => {
            if let Err(e) = std::fs::rename(&tmp, path) {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(lock = %path.display(), "renewing the lock: {e}");
            }
        }
        Err(e) => tracing::warn!(lock = %path.display(), "renewing the lock: {e:#}"),
    }
    true
}

/// Removes the lock file at `path` if `token` still owns it.
fn release(path: &Path, token: &str) {
    if read(path).is_some_and(|o| o.token == token) {
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        stop_renewal(&self.stop);
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        release(&self.path, &self.token);
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, t, _)| *t != self.token);
    }
}

/// Releases every lock this process holds (before it exits on a signal).
pub fn release_all() {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|e| e.into_inner()));
    for (path, token, stop) in held {
        stop_renewal(&stop);
        release(&path, &token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, pid: u32, renewed_ago: f64) -> Owner {
        Owner {
            host: host.into(),
            boot: boot_id(),
            pid,
            pidns: pid_ns(),
            start: start_time(pid).unwrap_or(0),
            token: token(),
            renewed_unix: now_unix() - renewed_ago,
            lease_s: 30.0,
            beat: 3,
            what: "train/x".into(),
            since_unix: now_unix() - 200.0,
        }
    }

    #[test]
    fn an_owner_is_stale_when_gone_expired_or_unchanged_too_long() {
        let me = std::process::id();
        // Live on this host, renewed just now.
        assert_eq!(stale(&owner(&host(), me, 0.0), Duration::ZERO), None);
        // A pid that names no process (pid_max is below 2^22).
        let gone = owner(&host(), 1 << 23, 0.0);
        assert!(stale(&gone, Duration::ZERO).unwrap().contains("is gone"));
        // A reused pid: this process, but another start time.
        let mut reused = owner(&host(), me, 0.0);
        reused.start += 1;
        assert!(stale(&reused, Duration::ZERO).is_some());
        // Another host: only the lease counts.
        assert_eq!(stale(&owner("node-17", 1 << 23, 5.0), Duration::ZERO), None);
        assert_eq!(stale(&owner("node-17", 1, 31.0), Duration::ZERO), None, "clocks may differ");
        assert!(stale(&owner("node-17", 1, 91.0), Duration::ZERO)
            .unwrap()
            .contains("not renewed"));
        // Another pid namespace on this host (a container): judged by its lease, not its pid.
        let mut other_ns = owner(&host(), 1 << 23, 0.0);
        other_ns.pidns = "pid:[1]".into();
        assert_eq!(stale(&other_ns, Duration::ZERO), None);
        // Its clock may be ahead: watched unchanged for longer than the lease.
        assert!(stale(&owner("node-17", 1, -100.0), Duration::from_secs(31))
            .unwrap()
            .contains("unchanged"));
    }

    #[test]
    fn a_lock_is_exclusive_renewed_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.lease");
        let a = Lease::try_acquire(&p, "a").unwrap().expect("free");
        assert!(Lease::try_acquire(&p, "b").unwrap().is_none(), "held");
        assert_eq!(live(&p).unwrap().what, "a");
        drop(a);
        assert!(!p.exists(), "released on drop");
        let b = Lease::try_acquire(&p, "b").unwrap().expect("free again");
        // Another host's expired lease is taken over; a fresh one is not.
        drop(b);
        let mut other = owner("node-17", 1, 0.0);
        std::fs::write(&p, serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(Lease::try_acquire(&p, "c").unwrap().is_none());
        other.renewed_unix -= 91.0;
        std::fs::write(&p, serde_json::to_vec(&other).unwrap()).unwrap();
        // The first try removes the stale file, the next takes it.
        assert!(Lease::try_acquire(&p, "c").unwrap().is_none());
        let c = Lease::try_acquire(&p, "c").unwrap().expect("taken over");
        assert_eq!(read(&p).unwrap().what, "c");
        release_all();
        assert!(!p.exists(), "release_all frees what this process holds");
        drop(c);
        // Nothing left beside it: no private files, no takeover guard.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
