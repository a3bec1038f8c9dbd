//! Fault injection for the crash tests: named points in the code where a test can make the
//! process die as a real fault would (SIGKILL as from the OOM killer, SIGSEGV, SIGABRT), to check
//! that nothing half-written survives and a rerun ends as an uninterrupted run would.
//!
//! The points are armed by one environment variable, `ROBARCH_FAULT=<point>[:<stage>]@<n>=<signal>`,
//! e.g. `commit-rename@3=kill`: the process sends itself the signal the 3rd time it reaches
//! `commit-rename`; `stage-run:eval/*/pgd/test@1=segv` only counts that point in stages whose id
//! matches the glob (the stage a thread is running, see [`Scope`]); several rules are separated by
//! commas, each counted on its own; with `ROBARCH_FAULT_HOST=<name>` they are armed only on the
//! machine of that host name (one node of a cluster). Signals: `kill`, `segv`, `abort`; or
//! `sleep:<seconds>`, a process that stalls there (a slow stage, a paused node) and then goes on.
//! Counts are per process: the control plane reads `ROBARCH_FAULT`, and hands
//! `ROBARCH_WORKER_FAULT` to its workers as their `ROBARCH_FAULT`. Unset (as for every user), a point costs one relaxed atomic load. A
//! malformed value is reported once and ignored.
//!
//! The points (each right where a crash is most likely to leave something half-done):
//! - `stage-run`: a stage's inputs are loaded and verified, its computation not yet begun;
//! - `commit-rename`: a cache entry is staged and fsynced, not yet renamed into `objects/`;
//! - `commit-renamed`: it has just been renamed, its shard directory not yet fsynced;
//! - `checkpoint-rename`: a training checkpoint is written, not yet renamed into place;
//! - `eval-checkpoint`: an evaluation checkpoint has just been renamed into place;
//! - `report-rename`: a report file is copied to its temporary, not yet renamed over the old one.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const VAR: &str = "ROBARCH_FAULT";
/// The variable whose value the control plane hands to its workers as their `ROBARCH_FAULT`.
pub const WORKER_VAR: &str = "ROBARCH_WORKER_FAULT";
/// The variable that arms the faults on one host only.
pub const HOST_VAR: &str = "ROBARCH_FAULT_HOST";

/// Every point, for the variable's check and the tests.
pub const POINTS: &[&str] = &[
    "stage-run",
    "commit-rename",
    "commit-renamed",
    "checkpoint-rename",
    "eval-checkpoint",
    "report-rename",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    Kill,
    Segv,
    Abort,
    Sleep(f64),
}

struct Armed {
    point: String,
    stage: Option<glob::Pattern>,
    nth: usize,
    signal: Signal,
    seen: AtomicUsize,
}

fn parse(v: &str) -> Result<Armed, String> {
    let (point, rest) = v
        .split_once('@')
        .ok_or_else(|| format!("`{v}`: write <point>@<n>=<signal>"))?;
    let (n, signal) = rest
        .split_once('=')
        .ok_or_else(|| format!("`{v}`: write <point>@<n>=<signal>"))?;
    let (point, stage) = match point.split_once(':') {
        Some((p, g)) => (
            p,
            Some(glob::Pattern::new(g).map_err(|e| format!("`{g}`: not a stage glob: {e}"))?),
        ),
        None => (point, None),
    };
    if !POINTS.contains(&point) {
        return Err(format!(
            "`{point}` is no fault point (one of {})",
            POINTS.join(", ")
        ));
    }
    let nth = n
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("`{n}`: the count is a whole number from 1"))?;
    let signal = match signal {
        "kill" => Signal::Kill,
        "segv" => Signal::Segv,
        "abort" => Signal::Abort,
        s => match s.strip_prefix("sleep:").and_then(|t| t.parse::<f64>().ok()) {
            Some(t) if t >= 0.0 => Signal::Sleep(t),
            _ => {
                return Err(format!(
                    "`{s}`: the signal is kill, segv or abort (or sleep:<seconds>)"
                ))
            }
        },
    };
    Ok(Armed {
        point: point.to_string(),
        stage,
        nth,
        signal,
        seen: AtomicUsize::new(0),
    })
}

/// Every rule of a value: comma-separated.
fn parse_all(v: &str) -> Result<Vec<Armed>, String> {
    v.split(',').map(|r| parse(r.trim())).collect()
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let Ok(v) = std::env::var(VAR) else {
            return Vec::new();
        };
        if let Ok(only) = std::env::var(HOST_VAR) {
            // The UTS namespace's host name, as `hostname` prints it.
            let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            if here.trim() != only.trim() {
                return Vec::new();
            }
        }
        parse_all(&v)
            .map_err(|e| eprintln!("warning: {VAR} ignored: {e}"))
            .unwrap_or_default()
    })
}

thread_local! {
    static STAGE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// While alive, the points this thread reaches count as inside `stage` (for rules scoped to
/// stages); the stage runner holds one around a stage's computation and commit.
pub struct Scope {
    before: Option<String>,
}

impl Scope {
    pub fn enter(stage: &str) -> Scope {
        if armed().is_empty() {
            return Scope { before: None };
        }
        let before = STAGE.with(|s| s.replace(Some(stage.to_string())));
        Scope { before }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !armed().is_empty() {
            let before = self.before.take();
            STAGE.with(|s| *s.borrow_mut() = before);
        }
    }
}

/// A fault point: dies here when `ROBARCH_FAULT` names this point and its count is reached.
pub fn point(name: &str) {
    if armed().is_empty() {
        return;
    }
    let stage = STAGE.with(|s| s.borrow().clone());
    fire(name, stage.as_deref())
}

/// A fault point inside stage `stage`: as [`point`], and a fault armed for some stages only
/// counts here when `stage` matches.
pub fn point_in(name: &str, stage: &str) {
    fire(name, Some(stage))
}

fn fire(name: &str, stage: Option<&str>) {
    for a in armed() {
        if a.point != name {
            continue;
        }
        if let Some(g) = &a.stage {
            if !stage.is_some_and(|s| g.matches(s)) {
                continue;
            }
        }
        if a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
            strike(a.signal);
        }
    }
}

fn strike(signal: Signal) {
    let sig = match signal {
        Signal::Kill => libc::SIGKILL,
        Signal::Segv => libc::SIGSEGV,
        Signal::Abort => libc::SIGABRT,
        Signal::Sleep(t) => {
            std::thread::sleep(std::time::Duration::from_secs_f64(t));
            return;
        }
    };
    // SAFETY: restoring the default action and raising a signal have no memory-safety
    // preconditions; the process ends here as it would on the real fault.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    // Only reached where the signal could not end the process.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_point_a_count_and_a_signal() {
        let a = parse("commit-rename@3=kill").unwrap();
        assert_eq!(
            (a.point.as_str(), a.nth, a.signal),
            ("commit-rename", 3, Signal::Kill)
        );
        assert_eq!(parse("report-rename@1=segv").unwrap().signal, Signal::Segv);
        let a = parse("stage-run:eval/*/pgd@2=abort").unwrap();
        assert_eq!(
            (a.point.as_str(), a.nth, a.signal),
            ("stage-run", 2, Signal::Abort)
        );
        assert!(a.stage.unwrap().matches("eval/m/pgd"));
        assert_eq!(parse("stage-run@1=sleep:2.5").unwrap().signal, Signal::Sleep(2.5));
        let two = parse_all("checkpoint-rename:train/*@2=sleep:9, commit-rename:eval/*@1=kill").unwrap();
        assert_eq!(
            two.iter().map(|a| (a.point.as_str(), a.nth)).collect::<Vec<_>>(),
            [("checkpoint-rename", 2), ("commit-rename", 1)]
        );
        assert!(two[0].stage.as_ref().unwrap().matches("train/m/at"));
        assert!(parse_all("commit-rename@1=kill,nowhere@1=kill").is_err());
        for bad in [
            "stage-run@1=sleep:",
            "stage-run@1=sleep:-1",
            "commit-rename",
            "commit-rename@0=kill",
            "commit-rename@x=kill",
            "nowhere@1=kill",
            "commit-rename@1=term",
            "stage-run:[@1=kill",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
