//! `robarch-worker`: computes the stages that use tensors for the `robarch` control plane.
fn main() {
    // Output cut short by a closed pipe ends quietly, as for `robarch`.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(robarch::worker::main());
}
