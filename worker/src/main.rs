//! `robarch-worker`: computes the stages that use tensors for the `robarch` control plane
//! (`robarch-worker serve`, started by `robarch run`; `job`, what a Slurm job runs; `probe`
//! counts the CUDA devices libtorch sees). Any other command line is robarch's own,
//! run with the tensor code: the control plane hands `robarch model` here.
mod serve;
mod slurm_job;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

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

/// Runs the worker's own commands (`serve`, `job`, `probe`); returns the process exit code.
fn worker_main() -> i32 {
    // Parsed as `robarch-worker serve …` (argv[0] is the program).
    let args = Args::parse();
    // Freed tensors' memory stays in the process for the next step (robarch::torch::alloc);
    // where the C library is not glibc, its own thresholds stay.
    robarch::torch::alloc::keep_freed_memory();
    match args.cmd {
        Cmd::Serve { cache, log_json } => serve::serve(&cache, log_json),
        Cmd::Probe => {
            println!("{}", robarch::torch::device::cuda_count());
            0
        }
        Cmd::Job { batch } => slurm_job::run(&batch),
    }
}

fn main() {
    // Output cut short by a closed pipe ends quietly, as for `robarch`.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default action has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = if matches!(
        std::env::args().nth(1).as_deref(),
        Some("serve" | "job" | "probe")
    ) {
        worker_main()
    } else {
        robarch::cli::main()
    };
    std::process::exit(code);
}
