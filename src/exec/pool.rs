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

/// What the control plane asks of a worker: run one stage of the plan the worker loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The stage's id in the plan.
    pub stage: String,
    /// Its key as the control plane planned it: the worker refuses a plan that disagrees.
    pub key: String,
    pub slot: Slot,
    /// libtorch intra-op threads on the CPU.
    pub threads: usize,
    /// Recompute even if cached (`--force`).
    pub force: bool,
    /// Where the stage's log goes (everything the worker writes while running it).
    pub log: PathBuf,
}

/// A worker's reply: updates while the stage runs, then `done` or `failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Progress(Update),
    /// A log line (already formatted, ending in a newline) for the control plane's stderr.
    Log(String),
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
    pub spec: PathBuf,
    pub cache: PathBuf,
    /// `ROBARCH_LOG`'s filter for the workers' logs, and whether they are JSON lines.
    pub log_filter: String,
    pub log_json: bool,
    /// The identifiers a GPU slot's worker gets as `CUDA_VISIBLE_DEVICES`, by slot index.
    pub gpus: Vec<String>,
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
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn close(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
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
            .arg("--spec")
            .arg(&l.spec)
            .arg("--cache")
            .arg(&l.cache)
            .env("ROBARCH_LOG", &l.log_filter)
            .env_remove(crate::fault::VAR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if l.log_json {
            cmd.arg("--log-json");
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
            stdin,
            stdout,
        })
    }

    fn take(&self, slot: Slot) -> Result<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        match idle.iter().position(|w| w.slot == slot) {
            Some(i) => Ok(idle.swap_remove(i)),
            None => {
                drop(idle);
                self.spawn(slot)
            }
        }
    }

    fn give(&self, w: Worker) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }

    /// Runs `job` on a worker of its slot; relays its progress to `bar` and its log lines to
    /// stderr. A worker that dies fails the stage with the signal (or exit status) and the log.
    pub fn run(&self, job: &Job, bar: &StageProgress) -> Result<Outcome> {
        let mut w = self.take(job.slot)?;
        let mut line = serde_json::to_string(job).expect("jobs serialise");
        line.push('\n');
        let sent = w
            .stdin
            .write_all(line.as_bytes())
            .and_then(|_| w.stdin.flush());
        let mut buf = String::new();
        loop {
            buf.clear();
            let read = match &sent {
                Ok(()) => w.stdout.read_line(&mut buf),
                Err(_) => Ok(0),
            };
            let n = read.unwrap_or(0);
            if n == 0 {
                // The worker is gone: say how it ended.
                let status = w.child.wait().context("waiting for the stage worker")?;
                let how = match std::os::unix::process::ExitStatusExt::signal(&status) {
                    Some(sig) => format!("was killed by {}", signal_name(sig)),
                    None => format!("exited with {status}"),
                };
                let oom = if std::os::unix::process::ExitStatusExt::signal(&status)
                    == Some(libc::SIGKILL)
                {
                    " (the kernel's out-of-memory killer sends SIGKILL: see `dmesg`)"
                } else {
                    ""
                };
                anyhow::bail!(
                    "its worker process (pid {}, {}) {how}{oom} while running it; nothing of the stage was committed; its log: {}",
                    w.child.id(),
                    job.slot,
                    job.log.display()
                );
            }
            let reply: Reply = match serde_json::from_str(buf.trim_end()) {
                Ok(r) => r,
                Err(e) => {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    anyhow::bail!(
                        "its worker sent a line that is no reply ({e}): {:?}; its log: {}",
                        buf.trim_end(),
                        job.log.display()
                    );
                }
            };
            match reply {
                Reply::Progress(u) => bar.apply(u),
                Reply::Log(text) => progress::eprint_raw(&text),
                Reply::Done(d) => {
                    self.give(w);
                    return Ok(match d {
                        Done::Cached => Outcome::Cached,
                        Done::Ran { seconds } => Outcome::Ran { seconds },
                    });
                }
                Reply::Failed(e) => {
                    self.give(w);
                    anyhow::bail!("{e}\n  log: {}", job.log.display());
                }
            }
        }
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
