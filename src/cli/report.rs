//! `robarch report` and the report step of `robarch run`: the report rendered from cached results
//! only (a partial one, listing what is missing, when some stages are not computed), published to
//! `<reports>/<pipeline>/`, recorded under its `runs/`, and compared with another report.
use super::load_plan;
use crate::cache::{Cache, Lookup};
use crate::plan::Plan;
use crate::progress::StageProgress;
use crate::report::compare::{self, Cells};
use crate::report::{CELLS, PLOTS_DIR, TABLES_DIR};
use crate::stages::StageContext;
use crate::vocab::device::Slot;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Prefix of the temporary files and directories a report is written through (`<prefix><pid>-…`).
const REPORT_TMP: &str = ".robarch-partial-";
/// Subdirectory of a published report that keeps every distinct report written there.
pub const RUNS: &str = "runs";

/// Removes the temporary report files in `dest` whose writing process is gone (killed mid-copy); a live
/// process's are left alone. Liveness is read from `/proc` (Linux); where there is none, or the
/// reports directory is shared with other hosts, nothing is removed but this process's own.
fn sweep_report_leftovers(dest: &Path) {
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

/// A rendered report: its files (relative to `root`), the stages it lacks, and the staging
/// directory that holds it when it was rendered here rather than read from the cache.
struct Rendered {
    root: PathBuf,
    files: Vec<String>,
    missing: Vec<String>,
    _staging: Option<tempfile::TempDir>,
}

/// The report of `plan`: the cached report entry, or else rendered (into a staging directory in
/// `staging_in`) from whichever of its inputs are cached. Nothing is computed.
fn render(plan: &Plan, cache: &Cache, staging_in: &Path) -> Result<Rendered> {
    let ix = plan.report().context("the pipeline has no report stage")?;
    let node = &plan.graph[ix];
    // Published files are hashed first, not only stamp-checked.
    let found = cache.load(&node.key);
    if let Lookup::Corrupt(why) = &found {
        tracing::warn!(
            stage = %node.id,
            "the cached report was corrupt ({why}): it is not published; the report is rendered \
             again from the cached results (the next `robarch run` caches it again)"
        );
    }
    if let Lookup::Hit(e) = found {
        let prefixes = [format!("{TABLES_DIR}/"), format!("{PLOTS_DIR}/")];
        let files = e
            .meta
            .files
            .keys()
            .filter(|f| prefixes.iter().any(|p| f.starts_with(p.as_str())))
            .cloned()
            .collect();
        return Ok(Rendered {
            root: e.dir.clone(),
            files,
            missing: Vec::new(),
            _staging: None,
        });
    }
    let mut inputs = BTreeMap::new();
    for (role, key) in &node.inputs {
        match cache.load(key) {
            Lookup::Hit(e) => {
                inputs.insert(role.clone(), e);
            }
            Lookup::Corrupt(why) => tracing::warn!(
                stage = %plan.producer(ix, key).unwrap_or(role.as_str()),
                "a result the report reads was corrupt ({why}): the report leaves it out \
                 (`robarch run` recomputes it)"
            ),
            Lookup::Missing => {}
        }
    }
    if inputs.is_empty() && !node.inputs.is_empty() {
        bail!(
            "nothing the report of `{}` reads is computed yet; run `robarch run` on the pipeline first",
            plan.name
        );
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!("{REPORT_TMP}{}-", std::process::id()))
        .tempdir_in(staging_in)
        .with_context(|| format!("writing into {}", staging_in.display()))?;
    let cx = StageContext {
        out: staging.path(),
        inputs: &inputs,
        slot: Slot::Cpu,
        checkpoints: staging.path().join("checkpoints"),
        progress: StageProgress::hidden(),
        notes: Default::default(),
        setting: Default::default(),
    };
    let summary = match node.stage.work() {
        crate::stages::Work::Here(s) => s.run(&cx)?,
        crate::stages::Work::Worker(_) => bail!("the report computes in the control plane"),
    };
    let strings = |k: &str| -> Vec<String> {
        summary[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Rendered {
        root: staging.path().to_path_buf(),
        files: strings("files"),
        missing: strings("missing"),
        _staging: Some(staging),
    })
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

/// Copies the files of `r` into `dest` (each through a temporary file renamed into place) and
/// removes plots of an earlier report that this one no longer has; returns the published files.
fn publish(r: &Rendered, dest: &Path) -> Result<Vec<PathBuf>> {
    let mut shown = Vec::new();
    let mut plots = BTreeSet::new();
    // Only the files the report lists: nothing else in its directory is published.
    for rel in &r.files {
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
        std::fs::copy(r.root.join(rel), tmp.path())
            .with_context(|| format!("writing into {}", parent.display()))?;
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

/// Writes the report of `plan` to `<reports>/<pipeline name>/` from the cache (partial when some
/// stages are not computed: it says which) and records it under `runs/`; with `show`, says where
/// and prints the Markdown tables. Returns the directory.
pub fn materialize_report(
    plan: &Plan,
    cache: &Cache,
    reports: &Path,
    show: bool,
) -> Result<PathBuf> {
    let dest = reports.join(&plan.name);
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for d in [dest.clone(), dest.join(PLOTS_DIR), dest.join(RUNS)] {
        sweep_report_leftovers(&d);
    }
    let r = render(plan, cache, &dest)?;
    let published = publish(&r, &dest);
    if published.is_err() {
        // Nothing half-made stays: an empty plots directory made for this report goes too.
        let _ = std::fs::remove_dir(dest.join(PLOTS_DIR));
    }
    let shown = published?;
    // The tables are published: a run record that cannot be written costs only the comparison.
    if let Err(e) = record_run(&dest, &r.missing) {
        tracing::warn!(
            "the report is published in {}, but its record for `robarch report --compare` could \
             not be written under {} ({e:#}); free space there and run `robarch report` on the \
             pipeline to record it",
            dest.display(),
            dest.join(RUNS).display()
        );
    }
    if !show {
        return Ok(dest);
    }
    println!("report: {}", dest.display());
    if !r.missing.is_empty() {
        const LIST: usize = 12;
        println!(
            "partial report: {} stage(s) are not in the cache, and their results are left out (`robarch run` computes them):",
            r.missing.len()
        );
        for m in r.missing.iter().take(LIST) {
            println!("  {m}");
        }
        if r.missing.len() > LIST {
            println!(
                "  … and {} more (listed in index.html)",
                r.missing.len() - LIST
            );
        }
    }
    // Markdown tables on the terminal; long ones (the correlation table) cut to their first rows.
    const ROWS: usize = 24;
    for p in &shown {
        if p.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(p)?;
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() > ROWS + 2 {
                println!(
                    "\n{}:\n{}\n… {} more rows in the file",
                    p.display(),
                    lines[..ROWS + 2].join("\n"),
                    lines.len() - ROWS - 2
                );
            } else {
                println!("\n{}:\n{text}", p.display());
            }
        }
    }
    Ok(dest)
}

/// One recorded report: when, whether it was partial, and its cells.
#[derive(Serialize, Deserialize)]
struct Run {
    recorded: String,
    missing: usize,
    #[serde(flatten)]
    cells: Cells,
}

/// The recorded runs of a published report, newest first (by name, a UTC time stamp).
fn runs(dest: &Path) -> Vec<PathBuf> {
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

fn read_cells(path: &Path) -> Result<Cells> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Records the just published report under `runs/` unless its cells equal the newest record's.
fn record_run(dest: &Path, missing: &[String]) -> Result<()> {
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
        cells,
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{REPORT_TMP}{}-", std::process::id()))
        .tempfile_in(&dir)?;
    std::fs::write(tmp.path(), serde_json::to_vec(&run)?)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `YYYYMMDDTHHMMSS.mmmZ` of a time (UTC).
fn utc_stamp(t: std::time::SystemTime) -> String {
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
fn run_list(recorded: &[PathBuf]) -> String {
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

/// The cells of the report `other` names, with a label. `@N` counts back from the report just
/// published in `dest`; a pipeline's report is rendered from the cache, partial where stages
/// are missing.
pub fn other_side(
    other: &Other,
    q: &str,
    dest: &Path,
    cache_dir: &Path,
) -> Result<(String, Cells)> {
    let run = |p: &Path| Ok((format!("run {}", p.display()), read_cells(p)?));
    match other {
        Other::Back(n) => {
            let recorded = runs(dest);
            let Some(p) = recorded.get(*n) else {
                bail!(
                    "--compare {q}: {} has {} recorded run(s); {}",
                    dest.join(RUNS).display(),
                    recorded.len(),
                    run_list(&recorded)
                );
            };
            run(p)
        }
        Other::Named(p) => run(p),
        Other::Dir(d) => Ok((
            format!("report {}", d.display()),
            read_cells(&d.join(CELLS))?,
        )),
        Other::Pipeline(path) => {
            let plan = load_plan(path, cache_dir)?;
            let cache = Cache::existing(cache_dir)
                .with_context(|| format!("no cache at {}", cache_dir.display()))?;
            let r = render(&plan, &cache, dest)?;
            let cells = read_cells(&r.root.join(TABLES_DIR).join(CELLS))?;
            let partial = if r.missing.is_empty() {
                String::new()
            } else {
                format!(", partial: {} stage(s) missing", r.missing.len())
            };
            Ok((format!("pipeline {}{partial}", path.display()), cells))
        }
    }
}

/// Prints the cells of the report in `dest` that differ from `old`, and writes them to
/// `compare.md` and `compare.csv` there.
pub fn compare(dest: &Path, label: &str, old: &Cells) -> Result<()> {
    let new = read_cells(&dest.join(CELLS))?;
    let diffs = compare::diff(old, &new);
    println!("\ncompared with {label}:");
    if diffs.is_empty() {
        println!("no differences in {} cells", new.cells.len());
    } else {
        print!("{}", compare::text(&diffs));
        println!("{} of {} cells differ", diffs.len(), new.cells.len());
    }
    let md = dest.join("compare.md");
    std::fs::write(
        &md,
        compare::markdown(&diffs, label, &dest.display().to_string()),
    )
    .with_context(|| format!("writing {}", md.display()))?;
    crate::report::write_csv(&mut compare::frame(&diffs)?, &dest.join("compare.csv"))?;
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
