//! The stage worker, `robarch-worker serve`: the process that computes the stages that use
//! tensors, started and fed by the control plane (`robarch::exec::pool`). It reads jobs (one JSON
//! line each) from stdin, each describing its stage whole (`exec::stage::Task`: kind, parameters,
//! inputs; it never reads the pipeline file), rebuilds the stage, checks it has the planned key,
//! and runs it as the control plane would have: lock, re-check the cache, verify the inputs it
//! loads, compute, commit. It replies on stdout (progress, log lines, then `done` or `failed`);
//! everything else the process writes while running a stage, its own log lines and whatever
//! native code prints, goes to that stage's log file. It dies with the control plane
//! (`PR_SET_PDEATHSIG`).
use anyhow::{Context, Result};
use robarch::cache::Cache;
use robarch::exec::pool::{Done, Job, Reply};
use robarch::exec::stage::{self, Compute, Facts, Task};
use robarch::exec::Outcome;
use robarch::progress::{StageProgress, Update};
use robarch::stages::{device_for, Stage, StageContext, Work};
use robarch::vocab::device::Slot;
use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The pipe to the control plane (the process's original stdout; fd 1 itself is the log).
static PROTO: OnceLock<Mutex<File>> = OnceLock::new();
/// Whether log lines go to the control plane too.
static RELAY: AtomicBool = AtomicBool::new(false);
/// Counts the running stage's progress: batches, phases and log lines (what a beat reports).
static PROGRESS: AtomicU64 = AtomicU64::new(0);
/// Whether a stage is running: beats go out only then (an idle worker's pipe is not read, and
/// must not fill up).
static BEATING: AtomicBool = AtomicBool::new(false);

/// Every [`robarch::exec::pool::BEAT`], while a stage runs, tells the control plane how far the
/// stage got and how much CPU time this process used: the control plane ends a worker that
/// goes silent (stopped) or makes no progress (deadlocked) for the stage kind's limit.
fn start_beats() {
    let _ = std::thread::Builder::new()
        .name("beat".into())
        .spawn(|| loop {
            std::thread::sleep(robarch::exec::pool::BEAT);
            if BEATING.load(Ordering::Relaxed) {
                send(&Reply::Beat {
                    progress: PROGRESS.load(Ordering::Relaxed)
                        + robarch::cache::lease::POLLS.load(Ordering::Relaxed),
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

/// The stage log's writer: each line into the stage's log (fd 2).
#[derive(Clone, Copy)]
struct FileSink;

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        PROGRESS.fetch_add(1, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The relayed lines' writer: to the control plane, while a stage runs.
#[derive(Clone, Copy)]
struct RelaySink;

impl Write for RelaySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if RELAY.load(Ordering::Relaxed) {
            send(&Reply::Log(String::from_utf8_lossy(buf).into_owned()));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for FileSink {
    type Writer = FileSink;
    fn make_writer(&'a self) -> Self::Writer {
        FileSink
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RelaySink {
    type Writer = RelaySink;
    fn make_writer(&'a self) -> Self::Writer {
        RelaySink
    }
}

type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// A log layer writing to `w` the lines `filter` lets through.
fn layer<W>(w: W, json: bool, filter: &str) -> Boxed
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let l = tracing_subscriber::fmt::layer()
        .with_writer(w)
        .with_target(false)
        .with_ansi(false);
    if json {
        l.json().with_filter(filter).boxed()
    } else {
        l.compact()
            .with_timer(robarch::progress::Clock)
            .with_filter(filter)
            .boxed()
    }
}

/// The stage log gets `ROBARCH_LOG`'s lines (INFO by default); the control plane the
/// `ROBARCH_RELAY_LOG` ones (what its `-v`/`-q` show; by default the same).
pub(crate) fn init_logging(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let file = std::env::var("ROBARCH_LOG").unwrap_or_else(|_| "robarch=info".into());
    let relay = std::env::var("ROBARCH_RELAY_LOG").unwrap_or_else(|_| file.clone());
    let _ = tracing_subscriber::registry()
        .with(vec![layer(FileSink, json, &file), layer(RelaySink, json, &relay)])
        .try_init();
}

/// Writes out what C stdio (libtorch's printf and iostreams) still buffers, so that it lands in
/// the log of the stage that wrote it.
pub(crate) fn flush_native() {
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
pub(crate) fn redirect(log: &Path, cache: &Path, append: bool) -> Result<()> {
    flush_native();
    let dir = log.parent().unwrap_or(Path::new("."));
    match dir.strip_prefix(cache) {
        Ok(rel) => {
            robarch::cache::links::real_dir(cache, rel, "stage logs (logs/<pipeline>/…)").map(drop)
        }
        // Not under the cache (no log path is today): nothing of the cache to protect.
        Err(_) => std::fs::create_dir_all(dir).map_err(anyhow::Error::from),
    }
    .with_context(|| format!("creating the stage log directory of {}", log.display()))?;
    let f = robarch::cache::links::create(log, append, "a stage log (logs/<pipeline>/…)")
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
            device: robarch::torch::device::describe(d),
            threads: (d == tch::Device::Cpu).then(robarch::torch::cpu::threads),
            kernels: robarch::torch::cpu::kernel_path(),
            setting: robarch::torch::setting(d),
            cpu: robarch::torch::cpu::model_name(),
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
pub(crate) struct Session {
    pub(crate) cache: Cache,
    /// The cache's shared lock, held while a local worker lives (no `gc` or sweep of this
    /// machine under it). A Slurm job takes none: `flock` may not work on the cluster's shared
    /// filesystem, and its stage lock (a lease) already keeps sweeps and `gc` away from its work.
    _lock: Option<File>,
}

pub(crate) fn open(cache_dir: &Path, run_lock: bool) -> Result<Session> {
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
    if task.numerics == robarch::vocab::Numerics::Portable {
        robarch::torch::cpu::portable(&robarch::vocab::Numerics::PORTABLE_ENV).map_err(|e| {
            anyhow::anyhow!(
                "`numerics: portable` could not be applied in the worker: {e}; run the stage in a \
                 fresh worker (robarch run), or remove `numerics: portable`"
            )
        })?;
    }
    Ok(())
}

pub(crate) fn run_job(job: &Job, session: &Session) -> Result<Done> {
    let task = &job.task;
    let stage = task.stage()?;
    apply_numerics(task)?;
    if let Slot::Cuda(_) = job.slot {
        if device_for(job.slot) != tch::Device::Cpu && robarch::torch::device::cuda_count() == 0 {
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

/// `robarch-worker serve --cache CACHE`: runs the jobs read from stdin against `cache`, replying
/// on stdout, until stdin closes; returns the process exit code.
pub fn serve(cache: &Path, log_json: bool) -> i32 {
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
        if let Err(e) = redirect(&job.log, cache, false) {
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
            session = open(cache, true)
                .map_err(|e| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "error: opening the cache {}: {e:#}",
                        cache.display()
                    );
                    BEATING.store(false, Ordering::Relaxed);
                    send(&Reply::Failed(format!(
                        "opening the cache {}: {e:#}",
                        cache.display()
                    )));
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
                Reply::Failed(robarch::exec::failure::brief(
                    &format!("{e:#}"),
                    &job.task.kind,
                ))
            }
        };
        flush_native();
        BEATING.store(false, Ordering::Relaxed);
        send(&reply);
    }
    0
}
