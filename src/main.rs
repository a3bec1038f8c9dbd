//! The `robarch` binary: argument parsing and error reporting only; see `robarch::cli`.
fn main() {
    std::process::exit(robarch::cli::main());
}
