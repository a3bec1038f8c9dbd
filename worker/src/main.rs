//! `robarch-worker`: computes the stages that use tensors for the `robarch` control plane
//! (`robarch-worker serve`, started by `robarch run`; `job`, what a Slurm job runs; `probe`
//! counts the CUDA devices libtorch sees). Any other command line is robarch's own,
//! run with the tensor code: the control plane hands `robarch model` here.
fn main() {
    // Output cut short by a closed pipe ends quietly, as for `robarch`.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default action has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let code = if matches!(std::env::args().nth(1).as_deref(), Some("serve" | "job" | "probe")) {
        robarch::worker::main()
    } else {
        robarch::cli::main()
    };
    std::process::exit(code);
}
