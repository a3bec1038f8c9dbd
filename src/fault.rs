//! Fault injection for the crash tests: named points in the code where a test can make the
//! process die as a real fault would (SIGKILL as from the OOM killer, SIGSEGV, SIGABRT), to check
//! that nothing half-written survives and a rerun ends as an uninterrupted run would.
//!
//! The points are armed by one environment variable, `ROBARCH_FAULT=<point>[:<stage>]@<n>=<signal>`,
//! e.g. `commit-rename@3=kill`: the process sends itself the signal the 3rd time it reaches
//! `commit-rename`; `stage-run:eval/*/pgd/test@1=segv` only counts that point in stages whose id
//! matches the glob. Signals: `kill`, `segv`, `abort`; or `sleep:<seconds>`, a process that
//! stalls there (a slow stage, a paused node) and then goes on. Counts are per process: the control plane
//! reads `ROBARCH_FAULT`, and hands `ROBARCH_WORKER_FAULT` to its workers as their
//! `ROBARCH_FAULT`. Unset (as for every user), a point costs one relaxed atomic load. A
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

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(VAR).ok()?;
            parse(&v)
                .map_err(|e| eprintln!("warning: {VAR} ignored: {e}"))
                .ok()
        })
        .as_ref()
}

/// A fault point: dies here when `ROBARCH_FAULT` names this point and its count is reached.
pub fn point(name: &str) {
    fire(name, None)
}

/// A fault point inside stage `stage`: as [`point`], and a fault armed for some stages only
/// counts here when `stage` matches.
pub fn point_in(name: &str, stage: &str) {
    fire(name, Some(stage))
}

fn fire(name: &str, stage: Option<&str>) {
    let Some(a) = armed() else { return };
    if a.point != name {
        return;
    }
    if let Some(g) = &a.stage {
        if !stage.is_some_and(|s| g.matches(s)) {
            return;
        }
    }
    if a.seen.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
        return;
    }
    let sig = match a.signal {
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
