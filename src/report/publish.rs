//! Publishing a rendered report: its files copied to `<reports>/<pipeline>/` (each through a
//! temporary file renamed into place), every distinct report recorded under its `runs/`, and the
//! comparison of its cells with another report's (`robarch report --compare`). Rendering the
//! report (planning and running its stage) is the command line's: this module only copies,
//! records and compares what is already written.
use super::compare::{self, Cells};
use super::{CELLS, PLOTS_DIR, TABLES_DIR};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Prefix of the temporary files and directories a report is written through (`<prefix><pid>-…`).
pub const REPORT_TMP: &str = ".robarch-partial-";
/// Subdirectory of a published report that keeps every distinct report written there.
pub const RUNS: &str = "runs";

/// Removes the temporary report files in `dest` whose writing process is gone (killed mid-copy); a live
/// process's are left alone. Liveness is read from `/proc` (Linux); where there is none, or the
/// reports directory is shared with other hosts, nothing is removed but this process's own.
pub fn sweep_report_leftovers(dest: &Path) {
    let Ok(dir) = std::fs::read_dir(dest) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(REPORT_TMP)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id()
            || !Path::new("/proc/self").exists()
            || Path::new("/proc").join(pid.to_string()).exists();
        if !alive {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Where a report file goes in the published directory: tables flat, plots under `plots/`.
fn published_name(rel: &str) -> Option<PathBuf> {
    if let Some(f) = rel.strip_prefix(&format!("{TABLES_DIR}/")) {
        Some(PathBuf::from(f))
    } else {
        rel.strip_prefix(&format!("{PLOTS_DIR}/"))
            .map(|f| Path::new(PLOTS_DIR).join(f))
    }
}

/// Copies the report files `files` (relative to `root`, the report's entry or staging directory)
/// into `dest` (each through a temporary file renamed into place) and removes plots of an earlier
/// report that this one no longer has; returns the published files.
pub fn publish(root: &Path, files: &[String], dest: &Path) -> Result<Vec<PathBuf>> {
    let mut shown = Vec::new();
    let mut plots = BTreeSet::new();
    // Only the files the report lists: nothing else in its directory is published.
    for rel in files {
        let Some(name) = published_name(rel) else {
            continue;
        };
        let to = dest.join(&name);
        let parent = to.parent().expect("inside dest");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{REPORT_TMP}{}-", std::process::id()))
            .tempfile_in(parent)
            .with_context(|| format!("writing into {}", parent.display()))?;
        std::fs::copy(root.join(rel), tmp.path())
            .with_context(|| format!("writing into {}", parent.display()))?;
        share(tmp.path())?;
        crate::fault::point("report-rename");
        tmp.persist(&to)
            .with_context(|| format!("writing {}", to.display()))?;
        if name.starts_with(PLOTS_DIR) {
            plots.insert(to.clone());
        }
        shown.push(to);
    }
    // Plots of an earlier report that this one no longer has.
    if let Ok(dir) = std::fs::read_dir(dest.join(PLOTS_DIR)) {
        for e in dir.flatten() {
            let p = e.path();
            let ours = e.file_name().to_string_lossy().starts_with(REPORT_TMP);
            if !ours && !plots.contains(&p) && p.is_file() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    Ok(shown)
}

/// One recorded report: when, whether it was partial, and its cells.
#[derive(Serialize, Deserialize)]
struct Run {
    recorded: String,
    missing: usize,
    /// The pipeline's settings as flattened `path → value` (`spec::flatten`), for the
    /// comparison's headline; empty in records written before it was kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    spec: BTreeMap<String, String>,
    #[serde(flatten)]
    cells: Cells,
}

/// The settings a recorded run kept (`None` for a record without them, or a `cells.json`).
pub fn read_spec(path: &Path) -> Option<BTreeMap<String, String>> {
    let run: Run = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (!run.spec.is_empty()).then_some(run.spec)
}

/// Makes a file written here readable as the umask allows (a temporary file is created
/// owner-only): colleagues on a shared filesystem read reports and compare against them.
pub fn share(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = 0o666 & !umask();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the permissions of {}", path.display()))
}

/// The process's umask, read without changing it (Linux's `/proc/self/status`; else 022).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// The recorded runs of a published report, newest first (by name, a UTC time stamp).
pub fn runs(dest: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dest.join(RUNS))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.reverse();
    v
}

/// The cells of a report (its `cells.json`) or of a recorded run.
pub fn read_cells(path: &Path) -> Result<Cells> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Records the just published report under `runs/` unless its cells equal the newest record's.
pub fn record_run(dest: &Path, missing: &[String], spec: BTreeMap<String, String>) -> Result<()> {
    let cells = read_cells(&dest.join(CELLS))?;
    if let Some(last) = runs(dest).first() {
        if read_cells(last).is_ok_and(|c| c == cells) {
            return Ok(());
        }
    }
    let dir = dest.join(RUNS);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Names sort in time order: UTC to the millisecond, bumped past a name already taken.
    let mut t = std::time::SystemTime::now();
    let (mut stamp, mut path);
    loop {
        stamp = utc_stamp(t);
        path = dir.join(format!("{stamp}.json"));
        if !path.exists() {
            break;
        }
        t += std::time::Duration::from_millis(1);
    }
    let run = Run {
        recorded: stamp,
        missing: missing.len(),
        spec,
        cells,
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{REPORT_TMP}{}-", std::process::id()))
        .tempfile_in(&dir)?;
    std::fs::write(tmp.path(), serde_json::to_vec(&run)?)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    share(tmp.path())?;
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `YYYYMMDDTHHMMSS.mmmZ` of a time (UTC).
pub(crate) fn utc_stamp(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, ms) = (since.as_secs() as i64, since.subsec_millis());
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// What `--compare` names.
pub enum Other {
    /// A run recorded under `runs/`, N back from the current one (`@N`).
    Back(usize),
    /// A run recorded under `runs/`, by name.
    Named(PathBuf),
    /// A report directory robarch wrote (its `cells.json`).
    Dir(PathBuf),
    /// A pipeline file: its report from the cache.
    Pipeline(PathBuf),
}

/// The recorded runs in `dest`, for error messages.
pub fn run_list(recorded: &[PathBuf]) -> String {
    if recorded.is_empty() {
        return "no runs are recorded yet".to_string();
    }
    let names: Vec<String> = recorded
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "@{i} {}",
                p.file_stem().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    format!("recorded runs (newest first): {}", names.join(", "))
}

/// Reads `--compare q` before anything is written: `@N`, a report directory with `cells.json`, a
/// pipeline file, or the name of a run recorded in `dest`; fails with the forms it takes.
pub fn parse_other(q: &str, dest: &Path) -> Result<Other> {
    if let Some(n) = q.strip_prefix('@') {
        return n.parse().map(Other::Back).map_err(|_| {
            anyhow::anyhow!(
                "--compare {q}: `@` takes a number of runs back, e.g. @1 (the one before the current)"
            )
        });
    }
    let path = Path::new(q);
    if path.is_dir() {
        if !path.join(CELLS).is_file() {
            bail!(
                "--compare {q}: {} has no {CELLS}; give a report directory that robarch wrote, a pipeline file, or @N ({})",
                path.display(),
                run_list(&runs(dest))
            );
        }
        return Ok(Other::Dir(path.to_path_buf()));
    }
    if path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        return Ok(Other::Pipeline(path.to_path_buf()));
    }
    let named = dest.join(RUNS).join(format!("{q}.json"));
    if named.is_file() {
        return Ok(Other::Named(named));
    }
    bail!(
        "--compare {q}: not a pipeline file, a report directory, or a recorded run; give a pipeline file, a report directory robarch wrote, @N (N runs back) or a name under {} ({})",
        dest.join(RUNS).display(),
        run_list(&runs(dest))
    )
}

/// Prints the cells of the report in `dest` that differ from `old`, and writes them to
/// `compare.md` and `compare.csv` there.
/// Rows of each table the terminal shows (`compare.md` has them all).
const SHOWN_PER_TABLE: usize = 8;

/// Prints what changed between the report in `dest` and `old` (a headline from the two sides'
/// settings `spec`, where both are known, and their architectures and attacks; then the cells
/// that differ, per table, at the table's precision), and writes them to `compare.md` and
/// `compare.csv` there.
pub fn compare(
    dest: &Path,
    label: &str,
    old: &Cells,
    spec: Option<(&BTreeMap<String, String>, &BTreeMap<String, String>)>,
) -> Result<()> {
    let new = read_cells(&dest.join(CELLS))?;
    let diffs = compare::diff(old, &new);
    let headline = compare::headline(old, &new, spec);
    println!("compared with {label}:");
    for h in &headline {
        println!("  {h}");
    }
    if diffs.is_empty() {
        println!("no differences in {} cells", new.cells.len());
    } else {
        print!("{}", compare::text(&diffs, SHOWN_PER_TABLE));
        println!("{} of {} cells differ", diffs.len(), new.cells.len());
    }
    let md = dest.join("compare.md");
    std::fs::write(
        &md,
        compare::markdown(&diffs, label, &dest.display().to_string(), &headline),
    )
    .with_context(|| format!("writing {}", md.display()))?;
    share(&md)?;
    let csv = dest.join("compare.csv");
    super::write_csv(&mut compare::frame(&diffs)?, &csv)?;
    share(&csv)?;
    println!("written: {} and compare.csv", md.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_civil_times() {
        let t = |s: u64| utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(t(0), "19700101T000000.000Z");
        // 2026-12-01 06:25:07 UTC; 2024-02-29 23:59:59 UTC (a leap day).
        assert_eq!(t(1_796_106_307), "20261201T062507.000Z");
        assert_eq!(t(1_709_251_199), "20240229T235959.000Z");
        let ms = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_106_307_042);
        assert_eq!(utc_stamp(ms), "20261201T062507.042Z");
    }
}
