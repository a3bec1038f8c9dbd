//! The stage worker, `robarch-worker serve`: the process that computes the stages that use
//! tensors, started and fed by the control plane (`exec::pool`). It reads jobs (one JSON line
//! each) from stdin, each describing its stage whole (`exec::stage::Task`: kind, parameters,
//! inputs; it never reads the pipeline file), rebuilds the stage, checks it has the planned key,
//! and runs it as the control plane would have: lock, re-check the cache, verify the inputs it
//! loads, compute, commit. It
//! replies on stdout (progress, log lines, then `done` or `failed`); everything else the process
//! writes while running a stage, its own log lines and whatever native code prints, goes to that
//! stage's log file. It dies with the control plane (`PR_SET_PDEATHSIG`).
use crate::cache::Cache;
use crate::exec::pool::{Done, Job, Reply};
use crate::exec::stage::{self, Compute, Facts, Task};
use crate::exec::Outcome;
use crate::progress::{StageProgress, Update};
use crate::stages::{device_for, Stage, StageContext, Work};
use crate::vocab::device::Slot;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
    /// Run the jobs read from stdin (one JSON line each, each describing its stage) against the
    /// cache CACHE, replying on stdout.
    Serve {
        #[arg(long)]
        cache: PathBuf,
        /// Log lines as JSON.
        #[arg(long)]
        log_json: bool,
    },
    /// Run one stage as a Slurm job (the task `SLURM_ARRAY_TASK_ID` of an array), as the batch
    /// file the Slurm executor wrote says; exit 0 once its entry is committed.
    Job {
        #[arg(long)]
        batch: PathBuf,
    },
    /// Print how many CUDA devices libtorch sees here (the control plane asks before it places
    /// stages on GPUs the driver shows, in case this libtorch is a CPU build).
    Probe,
}

/// The pipe to the control plane (the process's original stdout; fd 1 itself is the log).
static PROTO: OnceLock<Mutex<File>> = OnceLock::new();
/// Whether log lines go to the control plane too.
static RELAY: AtomicBool = AtomicBool::new(false);
/// Counts the running stage's progress: batches, phases and log lines (what a beat reports).
static PROGRESS: AtomicU64 = AtomicU64::new(0);
/// Whether a stage is running: beats go out only then (an idle worker's pipe is not read, and
/// must not fill up).
static BEATING: AtomicBool = AtomicBool::new(false);

/// Every [`crate::exec::pool::BEAT`], while a stage runs, tells the control plane how far the
/// stage got and how much CPU time this process used: the control plane ends a worker that
/// goes silent (stopped) or makes no progress (deadlocked) for the stage kind's limit.
fn start_beats() {
    let _ = std::thread::Builder::new().name("beat".into()).spawn(|| loop {
        std::thread::sleep(crate::exec::pool::BEAT);
        if BEATING.load(Ordering::Relaxed) {
            send(&Reply::Beat {
                progress: PROGRESS.load(Ordering::Relaxed)
                    + crate::cache::lease::POLLS.load(Ordering::Relaxed),
                cpu_ms: cpu_ms(),
            });
        }
    });
}

/// CPU time (user + system) this process and its threads used, in milliseconds.
fn cpu_ms() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(u.ru_utime) + ms(u.ru_stime)
}

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
        PROGRESS.fetch_add(1, Ordering::Relaxed);
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
/// runs, by this code or by native code, lands there. `log` is `<cache>/logs/<pipeline>/<stage>.log`
/// (see `exec::log_path`, given the same `cache` path): no directory below `cache`, nor the log
/// itself, is followed as a symbolic link.
fn redirect(log: &Path, cache: &Path, append: bool) -> Result<()> {
    flush_native();
    let dir = log.parent().unwrap_or(Path::new("."));
    match dir.strip_prefix(cache) {
        Ok(rel) => {
            crate::cache::links::real_dir(cache, rel, "stage logs (logs/<pipeline>/…)").map(drop)
        }
        // Not under the cache (no log path is today): nothing of the cache to protect.
        Err(_) => std::fs::create_dir_all(dir).map_err(anyhow::Error::from),
    }
    .with_context(|| format!("creating the stage log directory of {}", log.display()))?;
    let f = crate::cache::links::create(log, append, "a stage log (logs/<pipeline>/…)")
        .with_context(|| format!("creating the stage log {}", log.display()))?;
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
    fn compute(&self, stage: &dyn Stage, cx: &StageContext) -> Result<serde_json::Value> {
        match stage.work() {
            Work::Worker(t) => t.run(cx),
            // A Slurm job runs the report and the correlation too.
            Work::Here(s) => s.run(cx),
        }
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
    StageProgress::remote(move |u| {
        PROGRESS.fetch_add(1, Ordering::Relaxed);
        match u {
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
        }
    })
}

/// What a worker keeps across its jobs.
struct Session {
    cache: Cache,
    /// The cache's shared lock, held while a local worker lives (no `gc` or sweep of this
    /// machine under it). A Slurm job takes none: `flock` may not work on the cluster's shared
    /// filesystem, and its stage lock (a lease) already keeps sweeps and `gc` away from its work.
    _lock: Option<File>,
}

fn open(cache_dir: &Path, run_lock: bool) -> Result<Session> {
    let cache = Cache::open(cache_dir)?;
    let lock = if run_lock {
        Some(cache.lock_run(false)?)
    } else {
        None
    };
    Ok(Session { cache, _lock: lock })
}

/// Applies the task's `numerics:` before any tensor is computed in this process (the libraries
/// read their settings once).
fn apply_numerics(task: &Task) -> Result<()> {
    if task.numerics == crate::vocab::Numerics::Portable {
        crate::torch::cpu::portable(&crate::vocab::Numerics::PORTABLE_ENV).map_err(|e| {
            anyhow::anyhow!(
                "`numerics: portable` could not be applied in the worker: {e}; run the stage in a \
                 fresh worker (robarch run), or remove `numerics: portable`"
            )
        })?;
    }
    Ok(())
}

fn run_job(job: &Job, session: &Session) -> Result<Done> {
    let task = &job.task;
    let stage = task.stage()?;
    apply_numerics(task)?;
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
        task,
        stage.as_ref(),
        &session.cache,
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
    let (cache, log_json) = match args.cmd {
        Cmd::Serve { cache, log_json } => (cache, log_json),
        Cmd::Probe => {
            println!("{}", crate::torch::device::cuda_count());
            return 0;
        }
        Cmd::Job { batch } => return slurm_job(&batch),
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
    start_beats();
    let mut session: Option<Session> = None;
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
        if let Err(e) = redirect(&job.log, &cache, false) {
            send(&Reply::Failed(format!("{e:#}")));
            continue;
        }
        send(&Reply::Started);
        BEATING.store(true, Ordering::Relaxed);
        let _ = writeln!(
            std::io::stderr(),
            "robarch-worker (pid {}): stage {} on {}, {} thread(s)",
            std::process::id(),
            job.task.id,
            job.slot,
            job.threads
        );
        // Opened at the first job; a failed open is tried again at the next.
        if session.is_none() {
            session = open(&cache, true)
                .map_err(|e| {
                    let _ = writeln!(std::io::stderr(), "error: opening the cache {}: {e:#}", cache.display());
                    BEATING.store(false, Ordering::Relaxed);
                    send(&Reply::Failed(format!("opening the cache {}: {e:#}", cache.display())));
                })
                .ok();
            if session.is_none() {
                continue;
            }
        }
        let l = session.as_ref().expect("opened above");
        let r = stage::catching(|| run_job(&job, l));
        let reply = match r {
            Ok(d) => Reply::Done(d),
            Err(e) => {
                // The whole error (a C++ backtrace, if libtorch gave one) goes to the stage's
                // log; the control plane gets its gist.
                let _ = writeln!(
                    std::io::stderr(),
                    "error: stage {} failed: {e:#}",
                    job.task.id
                );
                Reply::Failed(crate::exec::failure::brief(&format!("{e:#}"), &job.task.kind))
            }
        };
        flush_native();
        BEATING.store(false, Ordering::Relaxed);
        send(&reply);
    }
    0
}

/// The checkpoints of the stage a Slurm job runs, and when this run of the job started: at the
/// time-limit signal, the job requeues itself only if the stage checkpointed since.
static JOB_CKPT: OnceLock<(PathBuf, std::time::SystemTime)> = OnceLock::new();

/// This job's own id (an array task has one too), as `scontrol` takes it.
fn slurm_job_id() -> String {
    std::env::var("SLURM_JOB_ID").unwrap_or_default()
}

/// Near the time limit (`--signal=B:USR1@…`): requeue this job if its stage checkpointed during
/// this run, so the next run resumes from there; otherwise let the limit end it (requeueing
/// would only repeat the same work).
fn requeue_if_progress() {
    let Some((ckpt, started)) = JOB_CKPT.get() else {
        return;
    };
    let newest = crate::cache::walk(ckpt)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .max();
    let id = slurm_job_id();
    if newest.is_some_and(|t| t > *started) {
        eprintln!("robarch-worker: the job's time limit is near; requeueing job {id}: the stage resumes from its last checkpoint");
        match std::process::Command::new("scontrol")
            .args(["requeue", &id])
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("robarch-worker: `scontrol requeue {id}` failed: {other:?}"),
        }
    } else {
        eprintln!("robarch-worker: the job's time limit is near and the stage wrote no checkpoint in this run: not requeueing (give the stage kind more time in executor.slurm.resources)");
    }
}

/// Blocks SIGUSR1 and SIGTERM in every thread and handles them in one: USR1 (the time limit is
/// near) requeues, TERM (cancelled, requeued, or the limit reached) releases this process's stage
/// locks at once, so the next job need not wait for their lease to run out.
fn handle_slurm_signals() {
    // SAFETY: plain signal-set manipulation on a set we own; the mask is set before any other
    // thread starts, so every thread inherits it and only the waiting thread takes the signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || loop {
            let mut sig = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                return;
            }
            if sig == libc::SIGUSR1 {
                requeue_if_progress();
            } else {
                eprintln!("robarch-worker: stopped by Slurm (SIGTERM): cancelled, requeued or at its time limit");
                crate::cache::lease::release_all();
                flush_native();
                libc::_exit(128 + libc::SIGTERM);
            }
        });
    }
}

/// `robarch-worker job --batch FILE`: one stage of a Slurm job; returns the exit code.
fn slurm_job(batch_file: &Path) -> i32 {
    // As for the local executor's workers: the fault the tests arm for workers is this process's.
    if let Some(f) = std::env::var_os(crate::fault::WORKER_VAR) {
        std::env::set_var(crate::fault::VAR, f);
    }
    handle_slurm_signals();
    let batch: crate::exec::slurm::Batch = match std::fs::read(batch_file)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("robarch-worker: reading {}: {e:#}", batch_file.display());
            return 1;
        }
    };
    // Only an array's tasks read their index (a job submitted from inside an array job may
    // inherit the variable).
    let task: usize = if batch.stages.len() > 1 {
        std::env::var("SLURM_ARRAY_TASK_ID")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(usize::MAX)
    } else {
        0
    };
    let Some(item) = batch.stages.get(task) else {
        eprintln!(
            "robarch-worker: {} has no task {task}",
            batch_file.display()
        );
        return 1;
    };
    // A requeued job appends to the log of its earlier runs.
    let restarted = std::env::var("SLURM_RESTART_COUNT").is_ok_and(|n| n != "0");
    if let Err(e) = redirect(&item.log, &batch.cache, restarted) {
        eprintln!("robarch-worker: {e:#}");
        return 1;
    }
    // Set before the plan loads and logging starts, which read it.
    std::env::set_var("ROBARCH_LOG", &batch.log_filter);
    init_logging(batch.log_json);
    eprintln!(
        "robarch-worker (pid {}): stage {} in Slurm job {} on {}",
        std::process::id(),
        item.task.id,
        slurm_job_id(),
        crate::cache::lease::host()
    );
    let r = stage::catching(|| {
        let l = open(&batch.cache, false)?;
        let task = &item.task;
        // Its inputs were committed by other jobs, maybe on other nodes: a shared filesystem
        // may show them here a little later.
        stage::wait_for_inputs(Duration::from_secs(60));
        let _ = JOB_CKPT.set((
            l.cache.checkpoint_dir(&task.key),
            std::time::SystemTime::now(),
        ));
        let gpus = crate::exec::devices::gpus();
        let slot = if task.uses_device {
            let slots = crate::exec::devices::resolve(&batch.device, &gpus).with_context(|| {
                format!(
                    "the job of stage {} has no GPU: give stages of kind `{}` one in the pipeline's executor.slurm.resources (gres: gpu:1), or run on the CPU (device: cpu)",
                    task.id, task.kind
                )
            })?;
            match slots.first() {
                Some(&Slot::Cuda(i)) => {
                    std::env::set_var("CUDA_VISIBLE_DEVICES", &gpus[i]);
                    Slot::Cuda(i)
                }
                _ => Slot::Cpu,
            }
        } else {
            Slot::Cpu
        };
        let threads = std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1usize)
            .max(1);
        let job = Job {
            task: task.clone(),
            slot,
            threads,
            force: item.force,
            log: item.log.clone(),
            // A Slurm job is watched by Slurm's own time limit.
            stall: Duration::ZERO,
        };
        run_job(&job, &l)
    });
    flush_native();
    match r {
        Ok(Done::Ran { seconds }) => {
            eprintln!("robarch-worker: stage {} committed in {seconds:.1} s", item.task.id);
            0
        }
        Ok(Done::Cached) => {
            eprintln!("robarch-worker: stage {} was already cached", item.task.id);
            0
        }
        Err(e) => {
            eprintln!("error: stage {} failed: {e:#}", item.task.id);
            1
        }
    }
}
