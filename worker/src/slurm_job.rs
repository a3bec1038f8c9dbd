//! `robarch-worker job --batch FILE`: one stage of a Slurm job (or one task of an array), as the
//! batch file the Slurm executor wrote says. It runs the stage as a `serve` worker would
//! (`serve::run_job`), logs to the stage's log file, and handles Slurm's signals: near the time
//! limit it requeues itself if the stage checkpointed, and when stopped it releases its stage
//! locks at once.
use crate::serve::{flush_native, init_logging, open, redirect, run_job};
use anyhow::Context;
use robarch::exec::pool::{Done, Job};
use robarch::exec::stage;
use robarch::vocab::device::Slot;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

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
    let newest = robarch::cache::walk(ckpt)
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

/// How long USR1 waits for a listening stage to save its progress (its current batch to end)
/// before deciding whether to requeue.
const SAVE_WAIT_SECS: u64 = 60;

/// Blocks SIGUSR1 and SIGTERM in every thread and handles them in one: USR1 (the time limit is
/// near) asks the stage to save its progress and requeues, TERM (cancelled, requeued, or the limit reached) releases this process's stage
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
                // A stage that checkpoints at any batch (an evaluation) saves first.
                if robarch::stop::ask_and_wait(std::time::Duration::from_secs(SAVE_WAIT_SECS)) {
                    eprintln!("robarch-worker: the stage saved its progress");
                }
                requeue_if_progress();
            } else {
                eprintln!("robarch-worker: stopped by Slurm (SIGTERM): cancelled, requeued or at its time limit");
                robarch::cache::lease::release_all();
                flush_native();
                libc::_exit(128 + libc::SIGTERM);
            }
        });
    }
}

/// `robarch-worker job --batch FILE`: one stage of a Slurm job; returns the exit code.
pub fn run(batch_file: &Path) -> i32 {
    // As for the local executor's workers: the fault the tests arm for workers is this process's.
    if let Some(f) = std::env::var_os(robarch::fault::WORKER_VAR) {
        std::env::set_var(robarch::fault::VAR, f);
    }
    handle_slurm_signals();
    let batch: robarch::exec::slurm::Batch = match std::fs::read(batch_file)
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
        robarch::cache::lease::host()
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
        let gpus = robarch::exec::devices::gpus();
        let slot = if task.uses_device {
            let slots = robarch::exec::devices::resolve(&batch.device, &gpus).with_context(|| {
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
            eprintln!(
                "robarch-worker: stage {} committed in {seconds:.1} s",
                item.task.id
            );
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
