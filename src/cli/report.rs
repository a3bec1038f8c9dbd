//! `robarch report` and the report step of `robarch run`: the report rendered from cached results
//! only (a partial one, listing what is missing, when some stages are not computed), published to
//! `<reports>/<pipeline>/`, recorded under its `runs/`, and compared with another report. Rendering
//! plans and runs the report stage, so it is here; copying, recording and comparing are
//! `report::publish`'s.
use super::load_plan;
use crate::cache::{Cache, Lookup};
use crate::plan::Plan;
use crate::progress::StageProgress;
use crate::report::compare::Cells;
use crate::report::publish::{self, Other, REPORT_TMP, RUNS};
use crate::report::{CELLS, PLOTS_DIR, TABLES_DIR};
use crate::stages::StageContext;
use crate::vocab::device::Slot;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
        id: &node.id,
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

/// A report just published: where, the stages it lacks, its files there, and the pipeline's
/// settings its record keeps (`spec::flatten`).
pub struct Published {
    pub dest: PathBuf,
    missing: Vec<String>,
    files: Vec<PathBuf>,
    pub spec: BTreeMap<String, String>,
}

/// Writes the report of `plan` to `<reports>/<pipeline name>/` from the cache (partial when some
/// stages are not computed) and records it under `runs/`.
/// `spec_file`: the pipeline file, whose settings the record keeps for `--compare`.
pub fn materialize_report(
    plan: &Plan,
    cache: &Cache,
    reports: &Path,
    spec_file: &Path,
) -> Result<Published> {
    let dest = reports.join(&plan.name);
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for d in [dest.clone(), dest.join(PLOTS_DIR), dest.join(RUNS)] {
        publish::sweep_report_leftovers(&d);
    }
    let r = render(plan, cache, &dest)?;
    let published = publish::publish(&r.root, &r.files, &dest);
    if published.is_err() {
        // Nothing half-made stays: an empty plots directory made for this report goes too.
        let _ = std::fs::remove_dir(dest.join(PLOTS_DIR));
    }
    let files = published?;
    // The tables are published: a run record that cannot be written costs only the comparison.
    let spec = crate::spec::flatten(spec_file);
    if let Err(e) = publish::record_run(&dest, &r.missing, spec.clone()) {
        tracing::warn!(
            "the report is published in {}, but its record for `robarch report --compare` could \
             not be written under {} ({e:#}); free space there and run `robarch report` on the \
             pipeline to record it",
            dest.display(),
            dest.join(RUNS).display()
        );
    }
    Ok(Published {
        dest,
        missing: r.missing.clone(),
        files,
        spec,
    })
}

/// Says what a published report lacks, prints its Markdown tables when asked (`print`), and
/// ends with where it is (`quiet`: only that).
pub fn say(r: &Published, print: bool, quiet: bool) -> Result<()> {
    if !r.missing.is_empty() && !quiet {
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
    if print && !quiet {
        // Markdown tables on the terminal; long ones (the correlation table) cut to their
        // first rows.
        const ROWS: usize = 24;
        for p in &r.files {
            if p.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(p)?;
                let lines: Vec<&str> = text.lines().collect();
                if lines.len() > ROWS + 2 {
                    println!(
                        "{}:\n{}\n… {} more rows in the file\n",
                        p.display(),
                        lines[..ROWS + 2].join("\n"),
                        lines.len() - ROWS - 2
                    );
                } else {
                    println!("{}:\n{text}", p.display());
                }
            }
        }
    }
    let index = r.dest.join("index.html");
    let shown = if index.is_file() { index } else { r.dest.clone() };
    println!("report: {}", shown.display());
    Ok(())
}

/// The other side of a comparison: its label, its cells, and its settings where known.
pub type Side = (String, Cells, Option<BTreeMap<String, String>>);

/// The cells of the report `other` names, with a label and, where known (a recorded run, a
/// pipeline), its settings. `@N` counts back from the report just published in `dest`; a
/// pipeline's report is rendered from the cache, partial where stages are missing.
pub fn other_side(other: &Other, q: &str, dest: &Path, cache_dir: &Path) -> Result<Side> {
    let run = |p: &Path| {
        Ok((
            format!("run {}", p.display()),
            publish::read_cells(p)?,
            publish::read_spec(p),
        ))
    };
    match other {
        Other::Back(n) => {
            let recorded = publish::runs(dest);
            let Some(p) = recorded.get(*n) else {
                bail!(
                    "--compare {q}: {} has {} recorded run(s); {}",
                    dest.join(RUNS).display(),
                    recorded.len(),
                    publish::run_list(&recorded)
                );
            };
            run(p)
        }
        Other::Named(p) => run(p),
        Other::Dir(d) => Ok((
            format!("report {}", d.display()),
            publish::read_cells(&d.join(CELLS))?,
            None,
        )),
        Other::Pipeline(path) => {
            let plan = load_plan(path, cache_dir)?;
            let cache = Cache::existing(cache_dir)
                .with_context(|| format!("no cache at {}", cache_dir.display()))?;
            let r = render(&plan, &cache, dest)?;
            let cells = publish::read_cells(&r.root.join(TABLES_DIR).join(CELLS))?;
            let partial = if r.missing.is_empty() {
                String::new()
            } else {
                format!(", partial: {} stage(s) missing", r.missing.len())
            };
            Ok((
                format!("pipeline {}{partial}", path.display()),
                cells,
                Some(crate::spec::flatten(path)),
            ))
        }
    }
}
