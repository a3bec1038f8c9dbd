//! Command-line interface (clap). Each subcommand is a thin shell over library calls.
use crate::cache::manifest::Manifest;
use crate::cache::Cache;
use crate::exec::{self, Outcome, RunOptions};
use crate::plan::stale::stage_state;
use crate::plan::{render, Plan};
use crate::{attacks, data, models, spec};
use report::materialize_report;

mod report;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "robarch", version, about = "Reproducible adversarial-robustness studies: YAML pipeline -> cached stage DAG -> tables", long_about = None)]
struct Cli {
    /// Cache directory (content-addressed stage outputs).
    #[arg(long, global = true, env = "ROBARCH_CACHE", default_value = "cache")]
    cache: PathBuf,
    /// More output: -v a line per cached stage and the stages' INFO log lines (per epoch),
    /// -vv debug, -vvv trace. Stage logs under <cache>/logs/ always keep INFO lines.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors, and where the report is.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Logs as JSON lines on stderr.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a pipeline: compute every stage not already in the cache, then write the report.
    Run(RunArgs),
    /// Per stage: cached, missing, or stale (and which parameter or input changed).
    Status(StatusArgs),
    /// Print the stage graph.
    Dag(DagArgs),
    /// Show a stage's key inputs (kind, version, parameters, inputs) and why it would rerun.
    Explain(ExplainArgs),
    /// Write a pipeline's report (tables, plots, index.html) from the cache to the reports
    /// directory; computes nothing, and lists the stages still missing; `--compare` diffs reports.
    Report(ReportArgs),
    /// Write a trained or imported model's weights, model.json and a Python loader (timm,
    /// torchvision or plain PyTorch, normalisation included) to a directory, from the cache.
    Export(ExportArgs),
    /// Delete cache entries that none of the given pipelines references.
    Gc(GcArgs),
    /// Check the cache itself.
    Cache {
        #[command(subcommand)]
        cmd: CacheCmd,
    },
    /// Download and unpack datasets (CIFAR-10, ImageNette) with checksum verification and resume.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Describe an architecture at a preset: resolved config, parameter count, tensor names.
    Model(ModelArgs),
    /// List registries: models, attacks, datasets, analyses, recipes.
    Ls {
        #[arg(value_enum, default_value_t = Registry::Models)]
        what: Registry,
    },
}

/// How `run`, `status` and `explain` print: for people, or one JSON document for scripts.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
struct RunArgs {
    pipeline: PathBuf,
    /// Stages run at once (CPU slots, at least 1); default: number of CPU cores.
    #[arg(short, long, value_parser = at_least_one)]
    jobs: Option<usize>,
    /// libtorch threads per training/evaluation stage on CPU (at least 1).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    threads: usize,
    /// Show what would run, with each stage's estimated compute; compute and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Sustained TFLOP/s of one GPU, for the GPU-hours a dry run estimates (default 40).
    #[arg(long, value_name = "TFLOPS", default_value_t = crate::plan::cost::DEFAULT_TFLOPS, value_parser = positive)]
    tflops: f64,
    /// Recompute stages whose id matches this glob (and everything downstream); repeatable.
    #[arg(long, value_name = "GLOB")]
    force: Vec<String>,
    /// Keep running independent stages after a failure.
    #[arg(long)]
    keep_going: bool,
    /// Override the pipeline's device: auto, cpu, cuda (every GPU) or cuda:N, or a list of GPUs
    /// (cuda:0,cuda:2). Each GPU gets its own worker, one stage at a time.
    #[arg(long, visible_alias = "devices", value_parser = device_name)]
    device: Option<String>,
    /// Where reports are written (as <dir>/<pipeline name>/).
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
    /// Print the report's tables (Markdown) after the run, not only where the report is.
    #[arg(long)]
    print: bool,
    /// `json`: no per-stage lines or tables; one JSON document (every stage's outcome, the
    /// counts, the report directory) on stdout at the end.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Where stages run: `local` (worker processes here) or `slurm` (one job per stage, job
    /// arrays, chained with afterok, on a cache every node sees). Default: the pipeline's
    /// `executor.kind`, else local.
    #[arg(long, value_enum)]
    executor: Option<spec::executor::ExecutorKind>,
    /// With `--executor slurm`: submit and exit; `robarch status` shows the jobs and a later
    /// `robarch run` adopts them.
    #[arg(long)]
    detach: bool,
    /// With `--executor slurm`: one job whose allocation runs every stage (the pipeline's
    /// `executor.slurm.pilot` resources; with `nodes: N`, on each of N nodes), instead of a job
    /// per stage.
    #[arg(long)]
    pilot: bool,
}

#[derive(Args)]
struct StatusArgs {
    pipeline: PathBuf,
    /// `json`: `{"pipeline", "stages": [{"id", "kind", "key", "state", "reasons"?, "flops"}],
    /// "estimate"}`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Sustained TFLOP/s of one GPU, for the GPU-hours estimate (default 40).
    #[arg(long, value_name = "TFLOPS", default_value_t = crate::plan::cost::DEFAULT_TFLOPS, value_parser = positive)]
    tflops: f64,
}

#[derive(Args)]
struct DagArgs {
    pipeline: PathBuf,
    #[arg(long, value_enum, default_value_t = DagFormat::Text)]
    format: DagFormat,
}

#[derive(Args)]
struct ExplainArgs {
    pipeline: PathBuf,
    stage: String,
    /// `json`: the stage's id, kind, version, key, state, inputs, parameters, and its entry
    /// directory and summary when cached.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct ExportArgs {
    pipeline: PathBuf,
    /// A train or import stage (`robarch dag` lists them), or a model name of the pipeline when
    /// one stage trains or imports it.
    target: String,
    /// The directory to write (created; it must be empty unless `--force`).
    #[arg(long)]
    to: PathBuf,
    /// `last`: the last epoch's weights; `best`: the best monitored epoch's (training with
    /// `monitor:`).
    #[arg(long, value_enum, default_value_t = CheckpointArg::Last)]
    checkpoint: CheckpointArg,
    /// Overwrite the export's files in a directory that is not empty.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckpointArg {
    Last,
    Best,
}

#[derive(Args)]
struct ReportArgs {
    pipeline: PathBuf,
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
    /// Print and write (compare.md, compare.csv) every cell that differs from another report:
    /// a pipeline file (its report from the cache), a report directory, or an earlier run of
    /// this report as `@1` (the one before the current), `@2`, … or its name in `runs/`.
    #[arg(long, value_name = "Q")]
    compare: Option<String>,
    /// Print the report's tables (Markdown), not only where the report is.
    #[arg(long)]
    print: bool,
}

#[derive(Args)]
struct GcArgs {
    #[arg(required = true)]
    pipelines: Vec<PathBuf>,
    /// List what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum CacheCmd {
    /// Re-hash every entry: each listed file's size and blake3, and no file it does not list.
    /// Corrupt entries are removed (a run recomputes them) and the exit status is 1.
    Verify {
        /// Only report corrupt entries; remove nothing.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// Registry name (see `robarch ls models`).
    arch: String,
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Field overrides as in YAML, e.g. `--set depth=4 --set dims=[32,64]`; repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    #[arg(long, default_value_t = 224)]
    image_size: i64,
    #[arg(long, default_value_t = 1000)]
    classes: i64,
    #[arg(long, default_value_t = 3)]
    channels: i64,
    /// List every tensor (parameters and buffers) with its shape.
    #[arg(long)]
    tensors: bool,
    /// Save the freshly initialised weights (seed 0) as safetensors.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Fetch a dataset's official archive into DIR/<its official directory, e.g. cifar-10-batches-bin> (a no-op when already there).
    Fetch {
        /// cifar10, imagenette, imagenette-160 or imagenette-320.
        name: String,
        /// Destination directory; pipelines look here by default.
        #[arg(long, env = "ROBARCH_DATA", default_value = "datasets")]
        dir: PathBuf,
        /// Download from this URL instead of the official one.
        #[arg(long)]
        url: Option<String>,
        /// Base URL of a mirror holding the archive under its official file name.
        #[arg(long, env = "ROBARCH_DATA_MIRROR")]
        mirror: Option<String>,
        /// Expected MD5 of the archive, replacing the official one.
        #[arg(long)]
        md5: Option<String>,
        /// Download attempts; each resumes where the previous stopped.
        #[arg(long, default_value_t = 5)]
        attempts: u32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, ValueEnum)]
enum Registry {
    Models,
    Attacks,
    Datasets,
    Analyses,
    /// Named training recipes (`training.<name>.recipe`), printed as the YAML they expand to.
    Recipes,
}

/// How the workers log: the filter of their stage logs (`ROBARCH_LOG`, else INFO or what `-vv`
/// asks), the filter of the lines they relay to the terminal (`-v`, `-q`), and whether logs are
/// JSON.
struct LogSetting {
    file: String,
    relay: String,
    json: bool,
    verbose: u8,
    quiet: bool,
}

static LOG: std::sync::OnceLock<LogSetting> = std::sync::OnceLock::new();

/// The terminal shows warnings and errors by default, `-v` INFO lines (a training's epochs),
/// `-q` errors only; `ROBARCH_LOG` (an `EnvFilter`) overrides both.
fn init_logging(verbose: u8, quiet: bool, json: bool) {
    let level = |v: u8| match v {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let user = std::env::var("ROBARCH_LOG").ok();
    let terminal = user.clone().unwrap_or_else(|| {
        format!("robarch={}", if quiet { "error" } else { level(verbose) })
    });
    let file = user.unwrap_or_else(|| format!("robarch={}", level(verbose.max(1))));
    let _ = LOG.set(LogSetting {
        file,
        relay: terminal.clone(),
        json,
        verbose,
        quiet,
    });
    let filter = tracing_subscriber::EnvFilter::new(terminal);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().with_timer(crate::progress::Clock).try_init()
    };
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_json);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            crate::progress::eprintln(&format!("error: {e:#}"));
            2
        }
    }
}

fn load_plan(path: &Path, cache: &Path) -> Result<Plan> {
    crate::plan::load(path, cache, true)
}

fn dispatch(cli: Cli) -> Result<i32> {
    let cache = cli.cache.as_path();
    match cli.cmd {
        Cmd::Run(a) => run(cache, a),
        Cmd::Status(a) => status(cache, a),
        Cmd::Dag(a) => dag(cache, a),
        Cmd::Explain(a) => explain(cache, a),
        Cmd::Report(a) => report_cmd(cache, a),
        Cmd::Export(a) => export(cache, a),
        Cmd::Gc(a) => gc(cache, a),
        Cmd::Cache { cmd } => cache_cmd(cache, cmd),
        Cmd::Data { cmd } => data_cmd(cmd),
        Cmd::Model(a) => model(a),
        Cmd::Ls { what } => ls(what),
    }
}

/// `--device`'s parser: names `vocab::device::parse_device` takes, separated by commas.
fn device_name(s: &str) -> std::result::Result<String, String> {
    for name in s.split(',') {
        crate::vocab::device::parse_device(name.trim()).map_err(|e| {
            format!("{e}; use auto, cpu, cuda or cuda:N (several GPUs as cuda:0,cuda:1)")
        })?;
    }
    Ok(s.to_string())
}

/// A throughput flag's parser: a positive number.
fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number; write e.g. 40")),
    }
}

/// A count flag's parser: 1 or more (0 would run nothing, or panic in libtorch).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(_) => Err(format!(
            "`{s}` is not a whole number; write one of at least 1, e.g. 2"
        )),
    }
}

/// Fails unless `<reports>/<pipeline>/` can be a directory: `--reports` (or that directory) is
/// no file, and the nearest existing directory above it is writable.
fn check_reports_dir(reports: &Path, pipeline: &str) -> Result<()> {
    let dest = reports.join(pipeline);
    let base = dest
        .ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .map(|a| if a.as_os_str().is_empty() { Path::new(".") } else { a })
        .unwrap_or(Path::new("."));
    for p in [base, reports, dest.as_path()] {
        if p.exists() && !p.is_dir() {
            bail!(
                "--reports {}: {} is not a directory (reports are written as <dir>/<pipeline \
                 name>/); give `--reports` a directory, or move the file away",
                reports.display(),
                p.display()
            );
        }
    }
    let c = std::ffi::CString::new(base.as_os_str().as_encoded_bytes()).ok();
    // SAFETY: access(2) reads the NUL-terminated path it is given.
    let writable = c.is_some_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0);
    if !writable {
        bail!(
            "--reports {}: {} is not writable, so the report could not be written there; give \
             `--reports` a directory you can write",
            reports.display(),
            base.display()
        );
    }
    Ok(())
}

/// `robarch run`: every missing stage, then the report.
fn run(cache_dir: &Path, a: RunArgs) -> Result<i32> {
    use spec::executor::ExecutorKind;
    // Checked before planning, which remembers source-file hashes in the cache.
    let kind = |a: &RunArgs| -> Result<ExecutorKind> {
        Ok(match a.executor {
            Some(k) => k,
            None => spec::load(&a.pipeline)?.spec.executor.kind,
        })
    };
    if (a.detach || a.pilot)
        && !exec::executor_of(kind(&a)?, Default::default()).submits_jobs()
    {
        bail!(
            "--detach and --pilot go with the Slurm executor: add `--executor slurm` (or set `executor: {{kind: slurm}}` in {})",
            a.pipeline.display()
        );
    }
    // A dry run writes nothing: not even the source-file hashes planning remembers.
    let plan = crate::plan::load(&a.pipeline, cache_dir, !a.dry_run)?;
    let mut ex = exec::executor_of(
        a.executor.unwrap_or(plan.executor.kind),
        exec::executor::Submission {
            detach: a.detach,
            pilot: a.pilot,
            reports: a.reports.clone(),
        },
    );
    let force = a
        .force
        .iter()
        .map(|g| glob::Pattern::new(g).with_context(|| format!("--force {g}: not a valid glob")))
        .collect::<Result<Vec<_>>>()?;
    for (g, pat) in a.force.iter().zip(&force) {
        if !plan.order.iter().any(|&ix| pat.matches(&plan.graph[ix].id)) {
            anyhow::bail!(
                "--force {g}: matches no stage of {} (stage ids look like `train/<dataset>/<model>/<training>`; `robarch status {}` lists them)",
                a.pipeline.display(),
                a.pipeline.display()
            );
        }
    }
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    check_threads(&a, jobs, ex.as_ref())?;
    if !a.dry_run {
        plan.check_data()?;
    }
    // Where the report goes is checked before any stage runs, not after hours of them.
    if !a.dry_run {
        check_reports_dir(&a.reports, &plan.name)?;
    }
    let cache = if a.dry_run {
        Cache::unopened(cache_dir)?
    } else {
        Cache::open(cache_dir)?
    };
    let json = a.format == Format::Json;
    let log = LOG.get().context("logging is set up first")?;
    if log.quiet || json {
        crate::progress::multi().set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let opts = run_options(&a, jobs, force, log);
    let summary = exec::run(&plan, &cache, &opts, ex.as_mut())?;
    let count = |f: fn(&Outcome) -> bool| summary.count(f);
    let queued = count(|o| matches!(o, Outcome::Queued { .. }));
    let cached = count(|o| matches!(o, Outcome::Cached));
    let failed = summary.failed();
    let total = summary.outcomes.len();
    let done = !a.dry_run && failed == 0 && queued == 0;
    let settings = if a.dry_run {
        Vec::new()
    } else {
        warn_mixed_settings(&plan, &cache)
    };
    if json {
        let report = if done {
            Some(materialize_report(&plan, &cache, &a.reports, &a.pipeline)?.dest)
        } else {
            None
        };
        let doc = run_json(&plan, &summary, a.dry_run, report, &settings);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if a.dry_run {
        print_dry_run(&plan, &summary, a.tflops);
    } else if queued > 0 {
        if !log.quiet {
            println!(
                "{total} stages: {queued} queued in {} jobs, {cached} cached; `robarch status {p}` follows them, `robarch run {p}` waits for them and writes the report",
                ex.label(),
                p = a.pipeline.display()
            );
        }
    } else {
        if !log.quiet {
            print_ending(&plan, &cache, &summary, started.elapsed().as_secs_f64());
        }
        if done {
            let r = materialize_report(&plan, &cache, &a.reports, &a.pipeline)?;
            report::say(&r, a.print, log.quiet)?;
        }
    }
    if failed > 0 {
        bail!("{failed} stage(s) failed (see above); fix the cause and rerun: finished stages stay cached");
    }
    Ok(0)
}

/// What `run` asks of the executor, from its arguments and the logging set-up.
fn run_options(a: &RunArgs, jobs: usize, force: Vec<glob::Pattern>, log: &LogSetting) -> RunOptions {
    RunOptions {
        jobs,
        threads: a.threads,
        dry_run: a.dry_run,
        force,
        keep_going: a.keep_going,
        device: a.device.clone(),
        // A dry run's lines carry the estimates, printed below.
        stage_lines: a.format != Format::Json && !a.dry_run && !log.quiet,
        cached_lines: log.verbose > 0,
        spec: a.pipeline.clone(),
        log_filter: log.file.clone(),
        relay_filter: log.relay.clone(),
        log_json: log.json,
    }
}

/// The ending of a run, before the report's path: the counts and the time, then each failed
/// stage with its log.
fn print_ending(plan: &Plan, cache: &Cache, summary: &exec::RunSummary, seconds: f64) {
    let count = |f: fn(&Outcome) -> bool| summary.count(f);
    println!(
        "{} stages: {} ran, {} cached, {} failed, {} skipped in {}",
        summary.outcomes.len(),
        count(|o| matches!(o, Outcome::Ran { .. })),
        count(|o| matches!(o, Outcome::Cached)),
        summary.failed(),
        count(|o| matches!(o, Outcome::Skipped)),
        crate::progress::human_duration(seconds)
    );
    for (id, o) in &summary.outcomes {
        if matches!(o, Outcome::Failed(_)) {
            println!(
                "failed: {id}; its log: {}",
                exec::log_path(cache, plan, id).display()
            );
        }
    }
}

/// Locally, a training or evaluation takes `--threads` of the `-j` CPU slots (README,
/// "Placement"); a Slurm job's threads come from its allocation.
fn check_threads(a: &RunArgs, jobs: usize, ex: &dyn exec::executor::Executor) -> Result<()> {
    if a.threads > jobs && ex.uses_local_slots() {
        let given = if a.jobs.is_some() {
            format!("-j {jobs}")
        } else {
            format!("-j (default: {jobs}, the CPU cores)")
        };
        bail!(
            "--threads {} is more than {given}: a training or evaluation on the CPU takes \
             --threads of the -j CPU slots, so it would use more cores than -j allows; give -j {} \
             or more, or --threads {jobs} or fewer",
            a.threads,
            a.threads
        );
    }
    Ok(())
}

/// `robarch run --format json`'s document.
fn run_json(
    plan: &Plan,
    summary: &exec::RunSummary,
    dry_run: bool,
    report: Option<PathBuf>,
    settings: &[(String, Vec<String>)],
) -> serde_json::Value {
    let count = |f: fn(&Outcome) -> bool| summary.count(f);
    let stages: Vec<serde_json::Value> = summary
        .outcomes
        .iter()
        .map(|(id, o)| match o {
            Outcome::Cached => json!({"id": id, "outcome": "cached"}),
            Outcome::Ran { seconds } => json!({"id": id, "outcome": "ran", "seconds": seconds}),
            Outcome::Pending => json!({"id": id, "outcome": "pending"}),
            Outcome::Failed(e) => json!({"id": id, "outcome": "failed", "error": e}),
            Outcome::Skipped => json!({"id": id, "outcome": "skipped"}),
            Outcome::Queued { job } => json!({"id": id, "outcome": "queued", "job": job}),
        })
        .collect();
    json!({
        "pipeline": plan.name,
        "dry_run": dry_run,
        "stages": stages,
        "counts": {
            "ran": count(|o| matches!(o, Outcome::Ran { .. })),
            "cached": count(|o| matches!(o, Outcome::Cached)),
            "pending": count(|o| matches!(o, Outcome::Pending)),
            "failed": summary.failed(),
            "skipped": count(|o| matches!(o, Outcome::Skipped)),
            "queued": count(|o| matches!(o, Outcome::Queued { .. })),
        },
        "report": report,
        "settings": settings_json(settings),
    })
}

/// A dry run's table: each stage with its estimated compute, then what would run in total and
/// what the executor adds (how it would submit them).
fn print_dry_run(plan: &Plan, summary: &exec::RunSummary, tflops: f64) {
    let est = crate::plan::cost::Estimate::of(plan);
    let by_id: BTreeMap<&str, petgraph::graph::NodeIndex> =
        plan.order.iter().map(|&ix| (plan.graph[ix].id.as_str(), ix)).collect();
    let flops_of = |id: &str| by_id.get(id).and_then(|ix| est.stages[ix]);
    // An evaluation's shards take one line.
    for (head, rows) in crate::plan::shards::fold(&summary.outcomes, |(id, _)| id.as_str()) {
        let run = rows.iter().filter(|(_, o)| matches!(o, Outcome::Pending)).count();
        let state = if run > 0 { "would run" } else { "cached" };
        let f = rows
            .iter()
            .map(|(id, _)| flops_of(id))
            .sum::<Option<f64>>();
        if rows.len() == 1 && crate::plan::shards::parent(&rows[0].0).is_none() {
            println!("{state:<9} {:>11}  {head}", crate::plan::cost::human(f));
        } else {
            let n = rows.len();
            println!(
                "{state:<9} {:>11}  {head}/points-*: {n} shards, {run} would run, {} cached",
                crate::plan::cost::human(f),
                n - run
            );
        }
    }
    let pending = summary.count(|o| matches!(o, Outcome::Pending));
    let cached = summary.count(|o| matches!(o, Outcome::Cached));
    let total = summary.outcomes.len();
    println!("{total} stages: {pending} would run, {cached} cached");
    if let Some(note) = &summary.note {
        println!("{note}");
    }
    let pending_ids: std::collections::BTreeSet<&str> = summary
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Pending))
        .map(|(id, _)| id.as_str())
        .collect();
    let would = |ix: petgraph::graph::NodeIndex| pending_ids.contains(plan.graph[ix].id.as_str());
    let (flops, unknown) = est.total(would);
    let scaled = est.scaled.iter().filter(|&&ix| would(ix)).count();
    let per_model = est.per_model(plan, would);
    if !per_model.is_empty() {
        print!(
            "per model, what would run:\n{}",
            crate::plan::cost::subtotals(&per_model)
        );
    }
    println!("{}", crate::plan::cost::LEGEND);
    println!(
        "{}",
        crate::plan::cost::summary("what would run", flops, unknown, scaled, tflops)
    );
}

/// Warns when the pipeline's training and evaluation entries were computed under different
/// settings (thread count, CPU kernel path, device); returns the settings found.
fn warn_mixed_settings(plan: &Plan, cache: &Cache) -> Vec<(String, Vec<String>)> {
    let settings = exec::settings(plan, cache);
    if let Some(w) = exec::mixed_settings_warning(plan, &settings) {
        tracing::warn!("{w}");
    }
    if let Some(w) = exec::unportable_warning(plan, &settings) {
        tracing::warn!("{w}");
    }
    settings
}

fn settings_json(settings: &[(String, Vec<String>)]) -> serde_json::Value {
    settings
        .iter()
        .map(|(s, ids)| json!({"setting": s, "stages": ids}))
        .collect()
}

/// The cache and the pipeline's last recorded run, for staleness reasons.
fn cache_and_manifest(cache_dir: &Path, plan: &Plan) -> (Option<Cache>, Manifest) {
    let cache = Cache::existing(cache_dir);
    let manifest = cache
        .as_ref()
        .map(|c| Manifest::load(c.root(), &plan.name))
        .unwrap_or_default();
    (cache, manifest)
}

/// One stage of `status`'s text listing.
struct StatusRow {
    id: String,
    state: &'static str,
    flops: Option<f64>,
    why: String,
    job: String,
    causes: Vec<String>,
}

/// `status`'s text listing: a line per stage (its causes under it when several), an evaluation's
/// shards on one line with their states counted.
fn print_status_rows(rows: &[StatusRow]) {
    for (head, group) in crate::plan::shards::fold(rows, |r| r.id.as_str()) {
        let flops = crate::plan::cost::human(group.iter().map(|r| r.flops).sum::<Option<f64>>());
        if let [r] = group.as_slice() {
            if crate::plan::shards::parent(&r.id).is_none() {
                println!("{:<8} {flops:>11}  {}{}{}", r.state, r.id, r.why, r.job);
                if r.causes.len() > 1 {
                    for c in &r.causes {
                        println!("{:<22}- {c}", "");
                    }
                }
                continue;
            }
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for r in &group {
            match counts.iter_mut().find(|(s, _)| *s == r.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.state, 1)),
            }
        }
        // The group's state: its shards' one state, or the commonest one not cached.
        let state = counts
            .iter()
            .filter(|(s, _)| counts.len() == 1 || *s != "cached")
            .max_by_key(|(_, n)| *n)
            .map_or("cached", |(s, _)| *s);
        let said: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let jobs = group.iter().filter(|r| !r.job.is_empty()).count();
        let jobs = if jobs > 0 { format!("  [{jobs} with jobs]") } else { String::new() };
        println!(
            "{state:<8} {flops:>11}  {head}/points-*: {} shards ({}){jobs}",
            group.len(),
            said.join(", ")
        );
    }
}

/// `robarch status`: each stage's state, with the reasons when stale.
fn status(cache_dir: &Path, a: StatusArgs) -> Result<i32> {
    let plan = load_plan(&a.pipeline, cache_dir)?;
    let (cache, manifest) = cache_and_manifest(cache_dir, &plan);
    // Stages in an executor's records (jobs submitted) and not cached yet, with their jobs'
    // states (one query per executor).
    let mut jobs = std::collections::HashMap::new();
    if let Some(c) = cache.as_ref() {
        for ex in exec::executors() {
            for (id, f) in ex.in_flight(&plan, c).unwrap_or_default() {
                jobs.insert(id, (ex.name(), ex.label(), f));
            }
        }
    }
    let mut stages = Vec::new();
    let mut rows = Vec::new();
    let est = crate::plan::cost::Estimate::of(&plan);
    for &ix in &plan.order {
        let n = &plan.graph[ix];
        let state = stage_state(&plan, ix, cache.as_ref(), &manifest);
        let flops = est.stages[&ix];
        let job = jobs.get(&n.id);
        match a.format {
            Format::Text => {
                // One cause inline; several, one a line under the stage.
                let causes = state.causes();
                let why = match causes.as_slice() {
                    [one] => format!("  ({one})"),
                    _ => String::new(),
                };
                let job = job
                    .map(|(_, label, f)| {
                        format!(
                            "  [{label} job {} {}]",
                            f.job,
                            f.describe
                                .clone()
                                .unwrap_or_else(|| format!("(no longer known to {label})"))
                        )
                    })
                    .unwrap_or_default();
                rows.push(StatusRow {
                    id: n.id.clone(),
                    state: state.name(),
                    flops,
                    why,
                    job,
                    causes,
                });
            }
            Format::Json => {
                let mut v =
                    json!({"id": n.id, "kind": n.stage.kind(), "key": n.key, "flops": flops});
                merge(&mut v, serde_json::to_value(&state)?);
                if let Some((name, _, f)) = job {
                    let mut rec = serde_json::Map::new();
                    rec.insert(
                        name.to_string(),
                        json!({
                            "job": f.job,
                            "state": f.state,
                            "reason": f.reason,
                            "output": f.output,
                        }),
                    );
                    merge(&mut v, serde_json::Value::Object(rec));
                }
                stages.push(v);
            }
        }
    }
    print_status_rows(&rows);
    let settings = cache
        .as_ref()
        .map(|c| warn_mixed_settings(&plan, c))
        .unwrap_or_default();
    let (flops, unknown) = est.total(|_| true);
    if a.format == Format::Json {
        let doc = json!({
            "pipeline": plan.name,
            "stages": stages,
            "settings": settings_json(&settings),
            "estimate": {
                "flops": flops,
                "gpu_hours": crate::plan::cost::gpu_hours(flops, a.tflops),
                "tflops": a.tflops,
                "stages_without_estimate": unknown,
                "per_model": est.per_model(&plan, |_| true).iter().map(|(m, f, n, u)| json!({
                    "model": m, "flops": f, "stages": n, "stages_without_estimate": u,
                })).collect::<Vec<_>>(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        // On stderr: stdout stays one line per stage.
        let scaled = est.scaled.len();
        let per_model = est.per_model(&plan, |_| true);
        if !per_model.is_empty() {
            eprint!(
                "per model, the whole pipeline:\n{}",
                crate::plan::cost::subtotals(&per_model)
            );
        }
        eprintln!("{}", crate::plan::cost::LEGEND);
        eprintln!(
            "{}",
            crate::plan::cost::summary("the whole pipeline", flops, unknown, scaled, a.tflops)
        );
    }
    Ok(0)
}

/// Adds the fields of object `extra` to object `v`.
fn merge(v: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
}

/// `robarch dag`: the stage graph as text, Graphviz or Mermaid.
fn dag(cache_dir: &Path, a: DagArgs) -> Result<i32> {
    let plan = load_plan(&a.pipeline, cache_dir)?;
    print!(
        "{}",
        match a.format {
            DagFormat::Text => render::text(&plan),
            DagFormat::Dot => render::dot(&plan),
            DagFormat::Mermaid => render::mermaid(&plan),
        }
    );
    Ok(0)
}

/// `robarch explain`: what a stage's key is made of, its state, and its entry when cached.
fn explain(cache_dir: &Path, a: ExplainArgs) -> Result<i32> {
    let plan = load_plan(&a.pipeline, cache_dir)?;
    let Some(ix) = plan.find(&a.stage) else {
        let ids: Vec<&str> = plan
            .order
            .iter()
            .map(|&i| plan.graph[i].id.as_str())
            .collect();
        let hint = spec::did_you_mean(&a.stage, ids.iter().copied())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        bail!(
            "no stage `{}` in {}; {hint}`robarch dag {}` lists them",
            a.stage,
            a.pipeline.display(),
            a.pipeline.display()
        );
    };
    let n = &plan.graph[ix];
    let (cache, manifest) = cache_and_manifest(cache_dir, &plan);
    let state = stage_state(&plan, ix, cache.as_ref(), &manifest);
    let inputs: Vec<(&String, &str, &String)> = n
        .inputs
        .iter()
        .map(|(role, key)| (role, plan.producer(ix, key).unwrap_or("?"), key))
        .collect();
    let entry = match &cache {
        Some(c) => match c.lookup(&n.key) {
            crate::cache::Lookup::Hit(e) => Some(e),
            _ => None,
        },
        None => None,
    };
    // The stage's log, from the last time a worker ran it.
    let log = exec::log_path_in(cache_dir, &plan.name, &n.id);
    let log = log.is_file().then_some(log);
    let files: serde_json::Map<String, serde_json::Value> = entry
        .as_ref()
        .map(|e| {
            e.meta
                .files
                .iter()
                .map(|(name, f)| (name.clone(), json!(f.size)))
                .collect()
        })
        .unwrap_or_default();
    if a.format == Format::Json {
        let mut doc = json!({
            "id": n.id,
            "kind": n.stage.kind(),
            "version": n.stage.version(),
            "key": n.key,
            "inputs": inputs.iter().map(|(role, src, key)| json!({"role": role, "stage": src, "key": key})).collect::<Vec<_>>(),
            "params": n.stage.params(),
            "entry": entry.as_ref().map(|e| e.dir.display().to_string()),
            "files": entry.as_ref().map(|_| files.clone()),
            "log": log.as_ref().map(|l| l.display().to_string()),
            "summary": entry.as_ref().map(|e| e.meta.summary.clone()),
            "provenance": entry.as_ref().map(|e| e.meta.provenance.clone()),
        });
        merge(&mut doc, serde_json::to_value(&state)?);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    let why = state.why();
    println!(
        "stage:   {}\nkind:    {} (version {})\nkey:     {}\nstatus:  {}{}",
        n.id,
        n.stage.kind(),
        n.stage.version(),
        n.key,
        state.name(),
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        }
    );
    println!("inputs:");
    for (role, src, key) in &inputs {
        println!("  {role}: {src} {}", &key[..12]);
    }
    println!(
        "params:\n{}",
        serde_json::to_string_pretty(&n.stage.params())?
    );
    if let Some(e) = entry {
        let listed: Vec<String> = files
            .iter()
            .map(|(name, size)| format!("{name} ({} bytes)", size))
            .collect();
        println!(
            "entry:   {}\nfiles:   {}\nsummary:\n{}",
            e.dir.display(),
            listed.join(", "),
            serde_json::to_string_pretty(&e.meta.summary)?
        );
        let p = &e.meta.provenance;
        println!(
            "computed: {} on {} by robarch {}, {:.1} s",
            p.setting().unwrap_or_else(|| p.device.clone()),
            if p.cpu.is_empty() {
                p.host.clone()
            } else {
                format!("{} ({})", p.host, p.cpu)
            },
            p.robarch_version,
            p.wall_seconds
        );
        for n in &p.notes {
            println!("  note: {n}");
        }
    }
    if let Some(l) = &log {
        println!("log:     {}", l.display());
    }
    Ok(0)
}

/// The cache a command reads, which must exist: else what to run for `pipeline`.
fn existing_cache(cache_dir: &Path, pipeline: &Path) -> Result<Cache> {
    Cache::existing(cache_dir).with_context(|| {
        format!(
            "no cache at {}; run `robarch run {}` first",
            cache_dir.display(),
            pipeline.display()
        )
    })
}

/// Stage ids as a message lists them: `a`, `b`.
fn id_list<'a>(nodes: impl IntoIterator<Item = &'a crate::plan::Node>) -> String {
    nodes
        .into_iter()
        .map(|n| format!("`{}`", n.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `robarch export`: a cached train or import stage's model, ready for PyTorch.
fn export(cache_dir: &Path, a: ExportArgs) -> Result<i32> {
    let plan = load_plan(&a.pipeline, cache_dir)?;
    let models: Vec<&crate::plan::Node> = plan
        .order
        .iter()
        .map(|&ix| &plan.graph[ix])
        .filter(|n| matches!(n.stage.kind(), "train" | "import"))
        .collect();
    let ids = || id_list(models.iter().copied());
    let matches: Vec<&crate::plan::Node> = match models.iter().find(|n| n.id == a.target) {
        Some(n) => vec![*n],
        // `train/<dataset>/<model>/<training>` or `import/<dataset>/<model>`.
        None => models
            .iter()
            .copied()
            .filter(|n| n.id.split('/').nth(2) == Some(a.target.as_str()))
            .collect(),
    };
    let node = match matches.as_slice() {
        [n] => *n,
        [] => {
            if let Some(ix) = plan.find(&a.target) {
                bail!(
                    "`{}` is a {} stage; export takes a train or import stage ({}) or a model name",
                    a.target,
                    plan.graph[ix].stage.kind(),
                    ids()
                );
            }
            bail!(
                "no train or import stage or model `{}` in {}; it has {}",
                a.target,
                a.pipeline.display(),
                ids()
            )
        }
        many => bail!(
            "model `{}` is trained by {} stages of {}; name one: {}",
            a.target,
            many.len(),
            a.pipeline.display(),
            id_list(many.iter().copied())
        ),
    };
    let cache = existing_cache(cache_dir, &a.pipeline)?;
    // Read in full: a file whose bytes changed is caught before it is exported.
    let entry = match cache.load(&node.key) {
        crate::cache::Lookup::Hit(e) => e,
        crate::cache::Lookup::Corrupt(why) => bail!(
            "stage `{}`'s cache entry was corrupt ({why}) and has been removed; run `robarch run {}` to recompute it",
            node.id,
            a.pipeline.display()
        ),
        crate::cache::Lookup::Missing => bail!(
            "stage `{}` is not in the cache at {}; run `robarch run {}` first",
            node.id,
            cache_dir.display(),
            a.pipeline.display()
        ),
    };
    if a.to.is_dir() && !a.force && std::fs::read_dir(&a.to)?.next().is_some() {
        bail!(
            "{} is not empty; choose a new directory or pass --force to overwrite the export's files",
            a.to.display()
        );
    }
    let origin = models::export::Origin {
        pipeline: plan.name.clone(),
        stage: node.id.clone(),
        key: node.key.clone(),
        checkpoint: match a.checkpoint {
            CheckpointArg::Last => models::saved::Checkpoint::Last,
            CheckpointArg::Best => models::saved::Checkpoint::Best,
        },
        robarch_version: env!("CARGO_PKG_VERSION").into(),
    };
    let written = models::export::export(&entry.dir, &origin, &a.to)?;
    println!(
        "exported {} to {}: {}\nload it in Python: sys.path.insert(0, \"{}\"); import load; model = load.load()",
        node.id,
        a.to.display(),
        written.join(", "),
        a.to.display()
    );
    Ok(0)
}

/// `robarch report`: the report of a pipeline from its cached results, in the reports directory;
/// with `--compare`, the differences from another report.
fn report_cmd(cache_dir: &Path, a: ReportArgs) -> Result<i32> {
    let plan = load_plan(&a.pipeline, cache_dir)?;
    let cache = existing_cache(cache_dir, &a.pipeline)?;
    warn_mixed_settings(&plan, &cache);
    // A `--compare` that cannot name a report fails before anything is written.
    let other = match &a.compare {
        Some(q) => Some((
            q,
            crate::report::publish::parse_other(q, &a.reports.join(&plan.name))?,
        )),
        None => None,
    };
    let r = materialize_report(&plan, &cache, &a.reports, &a.pipeline)?;
    let quiet = LOG.get().is_some_and(|l| l.quiet);
    report::say(&r, a.print, quiet)?;
    if let Some((q, other)) = other {
        // After publishing, so that `@1` is the run before this one.
        let (label, cells, theirs) = report::other_side(&other, q, &r.dest, cache_dir)?;
        let spec = theirs.as_ref().map(|t| (t, &r.spec));
        crate::report::publish::compare(&r.dest, &label, &cells, spec)?;
    }
    Ok(0)
}

/// `robarch gc`: deletes the entries no given pipeline references.
fn gc(cache_dir: &Path, a: GcArgs) -> Result<i32> {
    let (pipelines, dry_run) = (a.pipelines, a.dry_run);
    let mut keep = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for p in &pipelines {
        let plan = load_plan(p, cache_dir)?;
        names.insert(plan.name.clone());
        // Without its data a plan's keys past the data are placeholders: gc would delete the
        // pipeline's real entries.
        plan.check_data().context(
            "gc keeps the entries the pipelines reference, which needs their data there",
        )?;
        keep.extend(plan.order.iter().map(|&ix| plan.graph[ix].key.clone()));
    }
    let Some(cache) = Cache::existing(cache_dir) else {
        println!("no cache at {}; nothing to do", cache_dir.display());
        return Ok(0);
    };
    // Jobs still queued or running read entries gc could delete (they hold no lock yet); and
    // the executors' records (jobs, scripts, output, pipeline copies) of pipelines not given.
    let mut records: Vec<PathBuf> = Vec::new();
    for ex in exec::executors() {
        match ex.busy(&cache) {
            Ok(active) if !active.is_empty() => {
                let list: Vec<String> = active
                    .iter()
                    .map(|(p, j)| format!("{j} ({p})"))
                    .collect();
                bail!(
                    "{} {} job(s) of this cache are queued or running: {}; gc would delete entries they read. Wait for them (`robarch status <pipeline>`) or cancel them (scancel), then run gc again",
                    active.len(),
                    ex.label(),
                    list.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "could not ask {} about the jobs recorded in {} ({e:#}); gc goes on",
                ex.label(),
                cache.root().join(ex.name()).display()
            ),
        }
        records.extend(ex.records_beside(&cache, &names));
    }
    if dry_run {
        let doomed: Vec<String> = cache
            .keys()?
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        for k in &doomed {
            println!("would remove {k}");
        }
        for r in &records {
            println!("would remove {}", r.display());
        }
        println!("{} entries would be removed", doomed.len());
        return Ok(0);
    }
    let _lock = cache.lock_exclusive()?;
    for r in &records {
        std::fs::remove_dir_all(r).with_context(|| format!("removing {}", r.display()))?;
    }
    let (n, bytes) = cache.gc(&keep)?;
    println!(
        "removed {n} entries ({:.1} MiB); kept those of {} pipeline(s)",
        bytes as f64 / (1 << 20) as f64,
        pipelines.len()
    );
    Ok(0)
}

/// `robarch cache verify`.
fn cache_cmd(cache_dir: &Path, cmd: CacheCmd) -> Result<i32> {
    let CacheCmd::Verify { keep } = cmd;
    let Some(cache) = Cache::existing(cache_dir) else {
        bail!(
            "no cache at {}; `--cache DIR` or ROBARCH_CACHE points at one",
            cache_dir.display()
        );
    };
    // Removing takes the cache from runs, as `gc` does; only reading shares it with them (and
    // works on a read-only cache).
    let _lock = if keep {
        cache.lock_shared_read()?
    } else {
        cache.lock_exclusive()?
    };
    let (n, bytes, bad) = cache.verify_all(keep)?;
    for (key, stage, why) in &bad {
        let stage = if stage.is_empty() { "?" } else { stage };
        let what = if keep { "kept" } else { "removed" };
        println!("corrupt {key} ({stage}): {why}; {what}");
    }
    println!(
        "verified {n} entries ({:.1} MiB): {} corrupt{}",
        bytes as f64 / (1 << 20) as f64,
        bad.len(),
        match (bad.is_empty(), keep) {
            (true, _) => "",
            (false, false) => ", removed; the next run recomputes them",
            (false, true) => ", kept (--keep)",
        }
    );
    Ok(if bad.is_empty() { 0 } else { 1 })
}

/// `robarch data fetch`.
fn data_cmd(cmd: DataCmd) -> Result<i32> {
    let DataCmd::Fetch {
        name,
        dir,
        url,
        mirror,
        md5,
        attempts,
    } = cmd;
    let Some(archive) = data::fetch::find(&name) else {
        let names: Vec<&str> = data::fetch::ARCHIVES.iter().map(|a| a.name).collect();
        let hint = spec::did_you_mean(&name, names.iter().copied())
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| format!("known: {}", names.join(", ")));
        bail!("no downloadable dataset `{name}` ({hint})");
    };
    let opts = data::fetch::FetchOptions {
        dir,
        url,
        mirror,
        md5,
        attempts,
    };
    let bar = crate::progress::StageProgress::new(
        crate::progress::multi().add(indicatif::ProgressBar::new(0)),
    );
    let out = data::fetch::fetch(archive, &opts, &bar);
    bar.finish();
    match out? {
        data::fetch::FetchOutcome::AlreadyPresent(p) => {
            println!("{name}: already present at {}", p.display())
        }
        data::fetch::FetchOutcome::Fetched {
            path,
            bytes,
            resumed_from,
        } => {
            let resumed = if resumed_from > 0 {
                format!(", resumed from byte {resumed_from}")
            } else {
                String::new()
            };
            println!(
                "{name}: fetched {bytes} bytes{resumed}, md5 verified, unpacked to {}",
                path.display()
            )
        }
    }
    Ok(0)
}

/// `robarch model`: an architecture at a preset.
fn model(a: ModelArgs) -> Result<i32> {
    let ModelArgs {
        arch,
        preset,
        set,
        image_size,
        classes,
        channels,
        tensors,
        save,
    } = a;
    let mut overrides = std::collections::BTreeMap::new();
    for kv in &set {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--set {kv}: expected FIELD=VALUE, e.g. --set depth=4")
        })?;
        let v: serde_yaml::Value = serde_yaml::from_str(v)
            .map_err(|e| anyhow::anyhow!("--set {kv}: the value is not YAML: {e}"))?;
        overrides.insert(k.to_string(), v);
    }
    let ms = spec::ModelSpec {
        arch: Some(arch.clone()),
        preset,
        overrides,
    };
    let params = models::resolve(&arch, &ms).map_err(|ps| {
        anyhow::anyhow!(
            "{}",
            ps.iter()
                .map(|p| {
                    let field = p.path.last().map(String::as_str).unwrap_or("");
                    let field = if field == arch { "" } else { field };
                    let hint = p
                        .hint
                        .as_deref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    format!(
                        "{arch}: {field}{}{}{hint}",
                        if field.is_empty() { "" } else { ": " },
                        p.message
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let io = models::ModelIo {
        in_channels: channels,
        image_size,
        num_classes: classes,
    };
    let a = models::find(&params.arch).expect("resolved");
    (a.fits)(&params.config, &io).map_err(|e| anyhow::anyhow!("{arch}: {}", e.message))?;
    #[cfg(not(feature = "torch"))]
    {
        // Building the network needs libtorch: the worker binary runs this same command.
        let _ = (tensors, save);
        let exe = exec::pool::worker_exe()?;
        let mut worker = std::process::Command::new(&exe);
        worker.args(std::env::args_os().skip(1));
        let e = std::os::unix::process::CommandExt::exec(&mut worker);
        bail!("running {}: {e}", exe.display());
    }
    #[cfg(feature = "torch")]
    model_network(a, &params, &io, tensors, save)
}

/// The part of `robarch model` that builds the network (the worker's).
#[cfg(feature = "torch")]
fn model_network(
    a: &models::Arch,
    params: &models::ModelParams,
    io: &models::ModelIo,
    tensors: bool,
    save: Option<PathBuf>,
) -> Result<i32> {
    let (channels, image_size, classes) = (io.in_channels, io.image_size, io.num_classes);
    let c = channels as usize;
    let net = models::Network::new(
        params,
        io,
        &vec![0.5; c],
        &vec![0.25; c],
        tch::Device::Cpu,
        0,
    )?;
    println!("arch: {}  ({})", a.name, a.about);
    println!("config: {}", params.config);
    println!("input: {channels}×{image_size}×{image_size}, {classes} classes");
    println!("parameters: {}", net.num_parameters());
    if tensors {
        for (n, t) in net.named_tensors() {
            println!("{n} {:?}", t.size());
        }
    }
    if let Some(f) = save {
        net.save(&f)?;
        println!("saved {}", f.display());
    }
    Ok(0)
}

/// `robarch ls`: the registries.
fn ls(what: Registry) -> Result<i32> {
    match what {
        Registry::Models => {
            println!(
                "{:<16} {:<14} {:<12} {:<26} ABOUT (imagenet preset = REFERENCE)",
                "ARCH", "FAMILY", "KIND", "PRESETS"
            );
            for a in models::REGISTRY {
                println!(
                    "{:<16} {:<14} {:<12} {:<26} {} (= {})",
                    a.name,
                    a.family,
                    a.kind.as_str(),
                    a.presets.join(","),
                    a.about,
                    a.reference
                );
            }
        }
        Registry::Attacks => {
            for n in attacks::names() {
                println!("{:<8} {}", n.name, n.about);
            }
        }
        Registry::Datasets => {
            for s in data::SOURCES {
                match data::fetch::find(s) {
                    Some(a) => println!(
                        "{s:16} {} (robarch data fetch {s})",
                        data::fetch::data_root().join(a.dir).display()
                    ),
                    None if *s == "imagefolder" => {
                        println!("{s:16} any <path>/train|val/<class>/*.jpg|png tree")
                    }
                    None => println!("{s:16} built in"),
                }
            }
        }
        Registry::Recipes => {
            for (i, r) in spec::recipe::RECIPES.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("# {}: {}", r.name, r.about);
                print!("{}", r.to_yaml());
            }
        }
        Registry::Analyses => {
            for a in crate::analysis::REGISTRY {
                println!("{:<12} {}", a.name, a.about);
            }
            println!(
                "{:<12} {}",
                crate::analysis::correlation::NAME,
                crate::analysis::correlation::ABOUT
            );
        }
    }
    Ok(0)
}
