//! The `robarch` binary: argument parsing and error reporting only; see `robarch::cli`.
fn main() {
    // Output piped into `head` and the like ends quietly, as other Unix tools do, instead of a
    // "Broken pipe" panic from printing.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default action has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(robarch::cli::main());
}
