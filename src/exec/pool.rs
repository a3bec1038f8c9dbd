//! The control plane's side of the stage workers: `robarch-worker` processes, each placed on one
//! slot (the CPU, or one GPU as its `CUDA_VISIBLE_DEVICES`), kept alive across stages so libtorch
//! starts once per worker, not once per stage. A job and the worker's replies are JSON lines on
//! the worker's stdin and stdout; a worker that dies fails only the stage it was running, and the
//! error names the signal and the stage's log file.
use super::Outcome;
use crate::progress::{self, StageProgress, Update};
use crate::vocab::device::Slot;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use crate::cache::lease::human_secs;

/// What the control plane asks of a worker: run one stage, described whole (the worker never
/// reads the pipeline file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The stage, resolved: kind, parameters, inputs; the worker rebuilds it and checks its key.
    pub task: super::stage::Task,
    pub slot: Slot,
    /// libtorch intra-op threads on the CPU.
    pub threads: usize,
    /// Recompute even if cached (`--force`).
    pub force: bool,
    /// Where the stage's log goes (everything the worker writes while running it).
    pub log: PathBuf,
    /// How long the worker may go without progress before it is ended (`executor.stall_minutes`);
    /// the control plane's own business.
    #[serde(skip)]
    pub stall: Duration,
}

/// How often a worker running a stage beats (says how far it got); a stall limit is at least
/// three beats.
pub const BEAT: Duration = Duration::from_secs(2);

/// A worker's reply: updates while the stage runs, then `done` or `failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// The job was read and the stage's log opened: from here on, the log is the stage's.
    Started,
    Progress(Update),
    /// A log line (already formatted, ending in a newline) for the control plane's stderr.
    Log(String),
    /// The stage runs: its progress count (batches, phases, log lines) and the worker's CPU time.
    Beat { progress: u64, cpu_ms: u64 },
    Done(Done),
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Done {
    Cached,
    Ran { seconds: f64 },
}

/// How workers are started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The worker binary.
    pub exe: PathBuf,
    pub cache: PathBuf,
    /// `ROBARCH_LOG`'s filter for the workers' logs, and whether they are JSON lines.
    pub log_filter: String,
    /// The filter of the log lines relayed to the control plane's stderr (`ROBARCH_RELAY_LOG`).
    pub relay_filter: String,
    pub log_json: bool,
    /// The identifiers a GPU slot's worker gets as `CUDA_VISIBLE_DEVICES`, by slot index.
    pub gpus: Vec<String>,
    /// Portable numerics: the libraries' settings go into the workers' environment from the
    /// start (the worker also applies them itself, as a Slurm job must).
    pub numerics: crate::vocab::Numerics,
}

/// The worker binary: `ROBARCH_WORKER`, else `robarch-worker` beside this executable (or beside
/// its directory, for test binaries under `deps/`).
pub fn worker_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ROBARCH_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("locating the robarch executable")?;
    let dir = me.parent().unwrap_or(Path::new("."));
    let name = "robarch-worker";
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "the stage worker `{name}` is not beside {} (stages that compute with tensors run in it): \
                 build it with `make build` (cargo build --release builds both), or set ROBARCH_WORKER to its path",
                me.display()
            )
        })
}

struct Worker {
    slot: Slot,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Whether it ran a stage before (a reused worker may have died while idle).
    reused: bool,
    closed: bool,
}

impl Worker {
    /// Ends an idle worker: its stdin closes, it exits; one that has not within a few seconds
    /// (stopped, or stuck) is killed.
    fn close(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        while let Ok(None) = self.child.try_wait() {
            if start.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.closed = true;
    }

    /// Whether the process is stopped (SIGSTOP, a debugger): state `T` or `t` in
    /// `/proc/<pid>/stat` (Linux; elsewhere never).
    fn stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].trim_start().chars().next()))
            .is_some_and(|c| c == 'T' || c == 't')
    }
}

impl Drop for Worker {
    /// A worker dropped other than by `close` (an error, a panic in the control plane) is killed,
    /// never left computing on a slot the scheduler has freed.
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The workers of one run: idle ones are reused by the next stage on their slot.
pub struct Pool {
    launch: Launch,
    idle: Mutex<Vec<Worker>>,
}

/// A signal's name, as people know it.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => return format!("signal {sig}"),
    };
    format!("{name} (signal {sig})")
}

impl Pool {
    pub fn new(launch: Launch) -> Pool {
        Pool {
            launch,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self, slot: Slot) -> Result<Worker> {
        let l = &self.launch;
        let mut cmd = Command::new(&l.exe);
        cmd.arg("serve")
            .arg("--cache")
            .arg(&l.cache)
            .env("ROBARCH_LOG", &l.log_filter)
            .env("ROBARCH_RELAY_LOG", &l.relay_filter)
            .env_remove(crate::fault::VAR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if l.log_json {
            cmd.arg("--log-json");
        }
        if l.numerics == crate::vocab::Numerics::Portable {
            cmd.envs(crate::vocab::Numerics::PORTABLE_ENV);
        }
        if let Some(f) = std::env::var_os(crate::fault::WORKER_VAR) {
            cmd.env(crate::fault::VAR, f);
        }
        match slot {
            // A CPU worker never touches a GPU.
            Slot::Cpu => cmd.env("CUDA_VISIBLE_DEVICES", ""),
            Slot::Cuda(i) => cmd.env("CUDA_VISIBLE_DEVICES", &l.gpus[i]),
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the stage worker {}", l.exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        tracing::debug!(pid = child.id(), %slot, "worker started");
        Ok(Worker {
            slot,
            child,
            stdin: Some(stdin),
            stdout,
            reused: false,
            closed: false,
        })
    }

    /// An idle worker of `slot` that is still alive, or a new one.
    fn take(&self, slot: Slot) -> Result<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(i) = idle.iter().position(|w| w.slot == slot) {
            let mut w = idle.swap_remove(i);
            match w.child.try_wait() {
                Ok(None) if !w.stopped() => {
                    w.reused = true;
                    return Ok(w);
                }
                // Died while idle (the OOM killer likes large idle processes): reaped by drop.
                _ => drop(w),
            }
        }
        drop(idle);
        self.spawn(slot)
    }

    fn give(&self, w: Worker) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }

    /// Runs `job` on a worker of its slot; relays its progress to `bar` and its log lines to
    /// stderr. A worker that dies fails the stage with the signal (or exit status) and the log.
    /// A reused worker found dead before it took the job is replaced once.
    pub fn run(&self, job: &Job, bar: &StageProgress) -> Result<Outcome> {
        block_sigpipe();
        let w = self.take(job.slot)?;
        match self.attempt(w, job, bar)? {
            Attempt::Finished(o) => Ok(o),
            Attempt::NotStarted(w, _) if w.reused => {
                drop(w);
                match self.attempt(self.spawn(job.slot)?, job, bar)? {
                    Attempt::Finished(o) => Ok(o),
                    Attempt::NotStarted(_, how) => Err(not_started(&self.launch.exe, &how)),
                }
            }
            Attempt::NotStarted(_, how) => Err(not_started(&self.launch.exe, &how)),
        }
    }

    /// Shows a worker's log line on stderr; as text, after its stage's id, so that two stages
    /// side by side are told apart.
    fn relay(&self, job: &Job, text: &str) {
        if self.launch.log_json {
            progress::eprint_raw(text)
        } else {
            progress::eprint_raw(&format!("{}  {text}", job.task.id))
        }
    }

    /// Sends `job` to `w` and follows it to its end.
    fn attempt(&self, mut w: Worker, job: &Job, bar: &StageProgress) -> Result<Attempt> {
        let mut line = serde_json::to_string(job).expect("jobs serialise");
        line.push('\n');
        let sent = match w.stdin.as_mut() {
            Some(stdin) => stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        let mut started = false;
        let mut buf = String::new();
        let mut watch = Watch::new(job.stall);
        loop {
            buf.clear();
            // Watched from the moment the job is sent: a reused worker stopped while idle never
            // says it started.
            if sent.is_ok() {
                if let Some(quiet) = watch.wait(&w.stdout) {
                    let pid = w.child.id();
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    w.closed = true;
                    if !started {
                        // It never took the job: a reused worker is replaced once.
                        return Ok(Attempt::NotStarted(w, format!("was {quiet}")));
                    }
                    anyhow::bail!(
                        "no progress for {} (its worker, pid {pid} on {}, {quiet}): the worker was \
                         killed and nothing of the stage was committed; run again to retry it (a \
                         training resumes from its last checkpoint), or raise \
                         `executor.stall_minutes` if the stage is only slow; its log: {}",
                        human_secs(job.stall.as_secs_f64()),
                        job.slot,
                        job.log.display()
                    );
                }
            }
            let n = match &sent {
                Ok(()) => w.stdout.read_line(&mut buf).unwrap_or(0),
                Err(_) => 0,
            };
            if n == 0 {
                // The worker is gone: say how it ended.
                let status = w.child.wait().context("waiting for the stage worker")?;
                let signal = std::os::unix::process::ExitStatusExt::signal(&status);
                let how = match signal {
                    Some(sig) => format!("was killed by {}", signal_name(sig)),
                    None => format!("exited with {status}"),
                };
                if !started {
                    return Ok(Attempt::NotStarted(w, how));
                }
                // Rust's allocator aborts after printing what it could not allocate.
                if signal == Some(libc::SIGABRT) {
                    if let Some(what) = log_tail(&job.log).as_deref().and_then(super::failure::out_of_memory) {
                        anyhow::bail!(
                            "its worker process (pid {}, {}) ran out of memory: could not allocate \
                             {what}; nothing of the stage was committed; {}; its log: {}",
                            w.child.id(),
                            job.slot,
                            super::failure::oom_advice(&job.task.kind),
                            job.log.display()
                        );
                    }
                }
                if signal == Some(libc::SIGKILL) {
                    anyhow::bail!(
                        "its worker process (pid {}, {}) {how} while running it; unless you or a \
                         scheduler sent it, the kernel's out-of-memory killer did (`dmesg` says): \
                         nothing of the stage was committed; {}; its log: {}",
                        w.child.id(),
                        job.slot,
                        super::failure::oom_advice(&job.task.kind),
                        job.log.display()
                    );
                }
                anyhow::bail!(
                    "its worker process (pid {}, {}) {how} while running it; nothing of the stage was committed; its log: {}",
                    w.child.id(),
                    job.slot,
                    job.log.display()
                );
            }
            let reply: Reply = match serde_json::from_str(buf.trim_end()) {
                Ok(r) => r,
                Err(e) => anyhow::bail!(
                    "its worker sent a line that is no reply ({e}): {:?}; its log: {}",
                    buf.trim_end(),
                    job.log.display()
                ),
            };
            match reply {
                Reply::Started => {
                    started = true;
                    watch.moved();
                }
                Reply::Progress(u) => {
                    watch.moved();
                    bar.apply(u)
                }
                Reply::Log(text) => {
                    watch.moved();
                    self.relay(job, &text);
                }
                Reply::Beat { progress, cpu_ms } => watch.beat(progress, cpu_ms),
                Reply::Done(d) => {
                    self.give(w);
                    return Ok(Attempt::Finished(match d {
                        Done::Cached => Outcome::Cached,
                        Done::Ran { seconds } => Outcome::Ran { seconds },
                    }));
                }
                Reply::Failed(e) => {
                    self.give(w);
                    if started {
                        anyhow::bail!("{e}\n  log: {}", job.log.display());
                    }
                    anyhow::bail!("{e}");
                }
            }
        }
    }
}

/// Watches a running stage's worker for progress: replies, and beats whose progress count or
/// CPU time moved.
struct Watch {
    limit: Duration,
    /// When the stage last progressed.
    since: Instant,
    /// When the worker last said anything.
    heard: Instant,
    /// The last beat's progress count and CPU time.
    last: Option<(u64, u64)>,
}

/// CPU time that counts as work: more than the beats themselves cost over a long limit.
const BUSY_MS: u64 = 200;

impl Watch {
    fn new(limit: Duration) -> Watch {
        Watch {
            limit,
            since: Instant::now(),
            heard: Instant::now(),
            last: None,
        }
    }

    fn moved(&mut self) {
        self.since = Instant::now();
        self.heard = self.since;
    }

    fn beat(&mut self, progress: u64, cpu_ms: u64) {
        self.heard = Instant::now();
        match self.last {
            Some((p, c)) if p == progress && cpu_ms < c + BUSY_MS => {}
            _ => {
                self.since = self.heard;
                self.last = Some((progress, cpu_ms));
            }
        }
    }

    /// Waits until the worker has something to say (None), or until it has made no progress
    /// for the limit: then how it went quiet.
    fn wait(&mut self, from: &BufReader<ChildStdout>) -> Option<String> {
        use std::os::fd::AsRawFd;
        if self.limit.is_zero() || !from.buffer().is_empty() {
            return None;
        }
        loop {
            let left = self.limit.saturating_sub(self.since.elapsed());
            if left.is_zero() {
                let silent = self.heard.elapsed();
                return Some(if silent >= self.limit.min(BEAT * 3) {
                    format!(
                        "silent for {}: stopped (SIGSTOP), or frozen",
                        human_secs(silent.as_secs_f64())
                    )
                } else {
                    "alive but neither reporting progress nor using CPU time: deadlocked, or \
                     waiting on a hung filesystem"
                        .to_string()
                });
            }
            let mut fd = libc::pollfd {
                fd: from.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: poll on one descriptor we own, for at most `ms`.
            let n = unsafe { libc::poll(&mut fd, 1, ms.max(1)) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n != 0 {
                // Readable, closed, or interrupted: the reader finds out which.
                return None;
            }
        }
    }
}

/// The last few kilobytes of a stage's log (what a worker printed as it died).
fn log_tail(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// How an attempt to run a job on a worker ended.
enum Attempt {
    Finished(Outcome),
    /// The worker ended before it took the job (how it ended).
    NotStarted(Worker, String),
}

fn not_started(exe: &Path, how: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the stage worker {} {how} before it took the stage (its messages, if any, are above); \
         check that it runs: `{} --version`",
        exe.display(),
        exe.display()
    )
}

/// Writing a job to a worker that has died must fail with EPIPE, not end `robarch` (which
/// keeps SIGPIPE's default so that `robarch … | head` ends quietly): the signal is blocked in the
/// threads that talk to workers.
fn block_sigpipe() {
    // SAFETY: plain signal-mask calls on this thread, on a set built here.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        for w in idle {
            w.close();
        }
    }
}
