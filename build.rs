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

/// Compiles `src/torch/script_shim.cpp` (what tch's TorchScript API does not expose) against the
/// libtorch headers of the same wheel; only the library with the `torch` feature needs it.
fn compile_shim(lib: &std::path::Path) {
    let include = lib.join("..").join("include");
    println!("cargo:rerun-if-changed=src/torch/script_shim.cpp");
    cc::Build::new()
        .cpp(true)
        .file("src/torch/script_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // The PyPI wheels are built with the C++11 ABI (torch._C._GLIBCXX_USE_CXX11_ABI).
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false)
        .compile("robarch_script_shim");
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
    let lib = torch_lib_dir();
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("robarch")
        && std::env::var_os("CARGO_FEATURE_TORCH").is_some()
    {
        // The `script` stage (timm models) runs the Python of the environment libtorch is from.
        if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
            let python = PathBuf::from(venv).join("bin").join("python");
            println!("cargo:rustc-env=ROBARCH_BUILD_PYTHON={}", python.display());
        }
        match &lib {
            Some(dir) => compile_shim(dir),
            None => panic!("the `torch` feature needs libtorch's headers: run scripts/build.sh"),
        }
    }
    match lib {
        Some(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display()),
        None => println!(
            "cargo:warning=could not locate libtorch; the binary will need LD_LIBRARY_PATH"
        ),
    }
}
