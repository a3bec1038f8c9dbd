//! Embeds an rpath to libtorch's directory so the binaries that link libtorch (`robarch-worker`,
//! the tests and benchmarks, the library's own tests with the `torch` feature) run without
//! LD_LIBRARY_PATH. The control plane (`robarch`, built without the feature) links no libtorch and
//! gets none. Shared by both packages (worker/Cargo.toml points here).
//!
//! torch-sys (built with LIBTORCH_USE_PYTORCH=1) links against the `torch` wheel of the active
//! Python environment but leaves the runtime search path to the user; we add it here.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("ROBARCH_TORCH_LIB") {
        return Some(PathBuf::from(dir));
    }
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    // Same interpreter choice as torch-sys: `python` inside a virtualenv, else `python3`.
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn main() {
    for var in [
        "ROBARCH_TORCH_LIB",
        "LIBTORCH",
        "VIRTUAL_ENV",
        "LIBTORCH_USE_PYTORCH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let links_torch = std::env::var_os("CARGO_FEATURE_TORCH").is_some()
        || std::env::var("CARGO_PKG_NAME").as_deref() == Ok("robarch-worker");
    if !links_torch {
        return;
    }
    match torch_lib_dir() {
        Some(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display()),
        None => println!(
            "cargo:warning=could not locate libtorch; the binary will need LD_LIBRARY_PATH"
        ),
    }
}
