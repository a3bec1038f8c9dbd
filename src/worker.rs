//! The stage worker, `robarch-worker serve`: the process that computes the stages that use
//! tensors, started and fed by the control plane (`exec::pool`). It loads the plan from the same
//! pipeline file, then reads jobs (one JSON line each) from stdin and runs each as the control
//! plane would have: lock, re-check the cache, verify the inputs it loads, compute, commit. It
//! replies on stdout (progress, log lines, then `done` or `failed`); everything else the process
//! writes while running a stage, its own log lines and whatever native code prints, goes to that
//! stage's log file. It dies with the control plane (`PR_SET_PDEATHSIG`).
use crate::cache::Cache;
use crate::exec::pool::{Done, Job, Reply};
use crate::exec::stage::{self, Compute, Facts};
use crate::exec::Outcome;
use crate::plan::Plan;
use crate::progress::{StageProgress, Update};
use crate::stages::{device_for, StageContext};
use crate::vocab::device::Slot;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use petgraph::graph::NodeIndex;
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "robarch-worker",
    version,
    about = "robarch's stage worker: computes the stages of a pipeline that use tensors, for the `robarch` control plane (not run by hand)"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the plan of PIPELINE, then run the jobs read from stdin (one JSON line each),
    /// replying on stdout.
    Serve {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        cache: PathBuf,
        /// Log lines as JSON.
        #[arg(long)]
        log_json: bool,
    },
    /// Print how many CUDA devices libtorch sees here (the control plane asks before it places
    /// stages on GPUs the driver shows, in case this libtorch is a CPU build).
    Probe,
}

/// The pipe to the control plane (the process's original stdout; fd 1 itself is the log).
static PROTO: OnceLock<Mutex<File>> = OnceLock::new();
/// Whether log lines go to the control plane too (not while the plan loads: the control plane
/// has said all of that already).
static RELAY: AtomicBool = AtomicBool::new(false);

fn send(r: &Reply) {
    let mut line = serde_json::to_string(r).expect("replies serialise");
    line.push('\n');
    let Some(proto) = PROTO.get() else { return };
    let mut f = proto.lock().unwrap_or_else(|e| e.into_inner());
    if f.write_all(line.as_bytes())
        .and_then(|_| f.flush())
        .is_err()
    {
        // The control plane is gone: nobody waits for this stage.
        std::process::exit(1);
    }
}

/// The log writer: each line into the stage's log (fd 2) and, relayed, to the control plane.
#[derive(Clone, Copy)]
struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        if RELAY.load(Ordering::Relaxed) {
            send(&Reply::Log(String::from_utf8_lossy(buf).into_owned()));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;
    fn make_writer(&'a self) -> Self::Writer {
        LogSink
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROBARCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("robarch=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogSink)
        .with_target(false)
        .with_ansi(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Writes out what C stdio (libtorch's printf and iostreams) still buffers, so that it lands in
/// the log of the stage that wrote it.
fn flush_native() {
    let _ = std::io::stdout().flush();
    // SAFETY: fflush(NULL) flushes every C output stream; no preconditions.
    unsafe {
        libc::fflush(std::ptr::null_mut());
    }
}

/// Points fds 1 and 2 at `log` (created or emptied), so that everything written while the stage
/// runs, by this code or by native code, lands there.
fn redirect(log: &Path) -> Result<()> {
    flush_native();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the stage log directory {}", dir.display()))?;
    }
    let f =
        File::create(log).with_context(|| format!("creating the stage log {}", log.display()))?;
    for fd in [1, 2] {
        // SAFETY: dup2 onto the standard descriptors; `f` stays open for the call.
        if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("redirecting output to {}", log.display()));
        }
    }
    Ok(())
}

/// The worker's way of computing a stage: the stage's own code, on the device of its slot.
struct Tensors;

impl Compute for Tensors {
    fn compute(&self, plan: &Plan, ix: NodeIndex, cx: &StageContext) -> Result<serde_json::Value> {
        plan.graph[ix].stage.run(cx)
    }
    fn facts(&self, slot: Slot) -> Facts {
        let d = device_for(slot);
        Facts {
            device: crate::torch::device::describe(d),
            threads: (d == tch::Device::Cpu).then(crate::torch::cpu::threads),
            kernels: crate::torch::cpu::kernel_path(),
            setting: crate::torch::setting(d),
            cpu: crate::torch::cpu::model_name(),
            slot: match slot {
                Slot::Cpu => "cpu".into(),
                Slot::Cuda(i) => format!(
                    "cuda:{i} (CUDA_VISIBLE_DEVICES={})",
                    std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default()
                ),
            },
        }
    }
}

/// Progress for the control plane's bar, batched to at most ten updates a second.
fn remote_progress() -> StageProgress {
    let pending = AtomicU64::new(0);
    let last = Mutex::new(Instant::now());
    StageProgress::remote(move |u| match u {
        Update::Inc { n } => {
            pending.fetch_add(n, Ordering::Relaxed);
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_millis(100) {
                *last = Instant::now();
                let n = pending.swap(0, Ordering::Relaxed);
                send(&Reply::Progress(Update::Inc { n }));
            }
        }
        phase => {
            let n = pending.swap(0, Ordering::Relaxed);
            if n > 0 {
                send(&Reply::Progress(Update::Inc { n }));
            }
            send(&Reply::Progress(phase));
        }
    })
}

struct Loaded {
    plan: Plan,
    cache: Cache,
    /// The cache's shared lock, held while the worker lives (no `gc` or sweep under it).
    _lock: File,
}

fn load(spec: &Path, cache_dir: &Path) -> Result<Loaded> {
    RELAY.store(false, Ordering::Relaxed);
    let plan = crate::plan::load(spec, cache_dir, false);
    RELAY.store(true, Ordering::Relaxed);
    let plan = plan?;
    let cache = Cache::open(cache_dir)?;
    let lock = cache.lock_run(false)?;
    Ok(Loaded {
        plan,
        cache,
        _lock: lock,
    })
}

fn run_job(job: &Job, l: &Loaded) -> Result<Done> {
    let plan = &l.plan;
    let ix = plan
        .order
        .iter()
        .copied()
        .find(|&ix| plan.graph[ix].id == job.stage)
        .with_context(|| {
            format!(
                "the pipeline has no stage {} now: it was edited during the run; run again",
                job.stage
            )
        })?;
    anyhow::ensure!(
        plan.graph[ix].key == job.key,
        "the pipeline was edited during the run: stage {}'s key is now {}, the run planned {}; run again",
        job.stage,
        plan.graph[ix].key,
        job.key
    );
    if let Slot::Cuda(_) = job.slot {
        if device_for(job.slot) != tch::Device::Cpu && crate::torch::device::cuda_count() == 0 {
            anyhow::bail!(
                "placed on {} (CUDA_VISIBLE_DEVICES={}), but libtorch sees no CUDA device: check the driver and that the torch wheel is a CUDA build",
                job.slot,
                std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default()
            );
        }
    }
    tch::set_num_threads(job.threads as i32);
    match stage::run_stage(
        plan,
        &l.cache,
        ix,
        job.slot,
        job.force,
        remote_progress(),
        &Tensors,
    )? {
        Outcome::Cached => Ok(Done::Cached),
        Outcome::Ran { seconds } => Ok(Done::Ran { seconds }),
        other => anyhow::bail!("unexpected outcome {other:?}"),
    }
}

/// Runs the worker; returns the process exit code.
pub fn main() -> i32 {
    // Parsed as `robarch-worker serve …` (argv[0] is the program).
    let args = Args::parse();
    let (spec, cache, log_json) = match args.cmd {
        Cmd::Serve {
            spec,
            cache,
            log_json,
        } => (spec, cache, log_json),
        Cmd::Probe => {
            println!("{}", crate::torch::device::cuda_count());
            return 0;
        }
    };
    // SAFETY: prctl/getppid have no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            return 1;
        }
    }
    // SAFETY: duplicating the open stdout (close-on-exec: nothing the worker or libtorch starts
    // may hold the pipe open); the new descriptor is owned by the File from here on.
    let proto = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if proto < 0 {
        eprintln!("robarch-worker: cannot duplicate stdout");
        return 1;
    }
    let _ = PROTO.set(Mutex::new(unsafe { File::from_raw_fd(proto) }));
    RELAY.store(true, Ordering::Relaxed);
    init_logging(log_json);
    let mut loaded: Option<Loaded> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let job: Job = match serde_json::from_str(&line) {
            Ok(j) => j,
            Err(e) => {
                send(&Reply::Failed(format!(
                    "robarch-worker: not a job ({e}): {line:?}"
                )));
                continue;
            }
        };
        if let Err(e) = redirect(&job.log) {
            send(&Reply::Failed(format!("{e:#}")));
            continue;
        }
        send(&Reply::Started);
        let _ = writeln!(
            std::io::stderr(),
            "robarch-worker (pid {}): stage {} on {}, {} thread(s)",
            std::process::id(),
            job.stage,
            job.slot,
            job.threads
        );
        // Loaded at the first job; a failed load is tried again at the next.
        if loaded.is_none() {
            loaded = load(&spec, &cache)
                .map_err(|e| {
                    let _ = writeln!(std::io::stderr(), "error: loading {}: {e:#}", spec.display());
                    send(&Reply::Failed(format!("loading {}: {e:#}", spec.display())));
                })
                .ok();
            if loaded.is_none() {
                continue;
            }
        }
        let l = loaded.as_ref().expect("loaded above");
        let r = stage::catching(|| run_job(&job, l));
        let reply = match r {
            Ok(d) => Reply::Done(d),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "error: stage {} failed: {e:#}",
                    job.stage
                );
                Reply::Failed(format!("{e:#}"))
            }
        };
        flush_native();
        send(&reply);
    }
    0
}
