//! Which CPU code path libtorch's kernels take here: the part of "the machine" that a CPU result
//! depends on besides the thread count.
//!
//! Three libraries in the wheel pick kernels by the CPU they find, each in its own way: ATen
//! compiles its vectorised kernels once per instruction set and dispatches to the best one the CPU
//! has (`DEFAULT`, `AVX2`, `AVX512` on x86-64; `ATEN_CPU_CAPABILITY` lowers it); oneDNN, which
//! runs convolutions, picks its own instruction set (`ONEDNN_MAX_CPU_ISA` caps it); MKL, which
//! runs matrix products, picks by vendor and instruction set (`MKL_CBWR`, `MKL_ENABLE_INSTRUCTIONS`
//! pin it). Kernels for different instruction sets add and fuse multiply-adds in different orders,
//! so the same float32 computation may differ in its last bits between two machines; over an epoch
//! of training such differences grow into different weights. The kernel path therefore names the
//! CPU's vendor and its widest vector extensions as well as ATen's level, and any variable that
//! overrides a library's choice.
//!
//! ABI assumption (checked against libtorch 2.13's exported symbols, as in `autocast.rs`):
//! `std::string at::get_cpu_capability()` is exported with the cxx11 ABI tag, and on x86-64
//! System V a function returning a `std::string` takes the address of the result as a hidden first
//! argument (in `rdi`, where a C function's first pointer argument goes) and returns it in `rax`.
//! libstdc++'s `std::string` is `{ char* data; size_t len; char local[16] }`; the names ATen
//! returns are shorter than 16 bytes, so `data` points into `local` and there is nothing to free
//! (a longer name would leak its few bytes once per process).

/// libstdc++'s `std::string` (cxx11 ABI) as laid out on x86-64.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[repr(C)]
struct CxxString {
    data: *const u8,
    len: usize,
    local: [u8; 16],
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
extern "C" {
    #[link_name = "_ZN2at18get_cpu_capabilityB5cxx11Ev"]
    fn at_get_cpu_capability(out: *mut CxxString) -> *mut CxxString;
    // `at::Context& at::globalContext()`, and members of `at::Context` (on x86-64 System V a
    // member function takes `this` as its first argument, a `bool` as an `int`-sized one, and
    // returns a `bool` in `al`): the switches `torch.backends.mkldnn.enabled` and
    // `torch.backends.nnpack.enabled` set from Python.
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut std::ffi::c_void;
    #[link_name = "_ZN2at7Context20setUserEnabledMkldnnEb"]
    fn at_set_user_enabled_mkldnn(ctx: *mut std::ffi::c_void, on: bool);
    #[link_name = "_ZN2at7Context20setUserEnabledNNPACKEb"]
    fn at_set_user_enabled_nnpack(ctx: *mut std::ffi::c_void, on: bool);
    #[link_name = "_ZNK2at7Context17userEnabledMkldnnEv"]
    fn at_user_enabled_mkldnn(ctx: *const std::ffi::c_void) -> bool;
    #[link_name = "_ZNK2at7Context17userEnabledNNPACKEv"]
    fn at_user_enabled_nnpack(ctx: *const std::ffi::c_void) -> bool;
}

/// Whether this process computes with portable numerics (see [`portable`]).
static PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Switches this process to portable numerics: the environment `env` (`Numerics::PORTABLE_ENV`:
/// ATen's baseline kernels and MKL's compatible code path, read by the libraries at their first
/// use, so this must come before any tensor is computed), and convolutions on ATen's own im2col +
/// matrix-product path instead of oneDNN's or NNPACK's, whose kernels are chosen by the CPU's
/// instruction sets and cache sizes. Fails when ATen had already chosen wider kernels.
pub fn portable(env: &[(&str, &str)]) -> Result<(), String> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err(format!(
            "portable numerics are defined for x86-64 Linux (ATen, MKL and oneDNN as the PyPI \
             wheel builds them there), not for {} {}",
            std::env::consts::ARCH,
            std::env::consts::OS
        ));
    }
    for &(var, value) in env {
        if std::env::var(var).ok().as_deref() != Some(value) {
            std::env::set_var(var, value);
        }
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: see the module's ABI note; the context is libtorch's static singleton.
    unsafe {
        let ctx = at_global_context();
        at_set_user_enabled_mkldnn(ctx, false);
        at_set_user_enabled_nnpack(ctx, false);
        if at_user_enabled_mkldnn(ctx) || at_user_enabled_nnpack(ctx) {
            return Err("libtorch kept oneDNN or NNPACK enabled".into());
        }
    }
    let level = aten_capability();
    if level != "DEFAULT" {
        return Err(format!(
            "ATen had already chosen its {level} kernels before ATEN_CPU_CAPABILITY=default was set"
        ));
    }
    PORTABLE.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// ATen's kernel choice, as `torch.backends.cpu.get_cpu_capability()` reports it (`AVX512`,
/// `AVX2`, `DEFAULT`, …).
pub fn aten_capability() -> String {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let mut out = std::mem::MaybeUninit::<CxxString>::uninit();
        // SAFETY: see the module's ABI note; the callee constructs the string in `out`.
        let s = unsafe {
            at_get_cpu_capability(out.as_mut_ptr());
            out.assume_init_ref()
        };
        // SAFETY: a constructed std::string's data pointer is valid for `len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(s.data, s.len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        "unknown".to_string()
    }
}

/// The CPU kernel path of this process, e.g. `x86_64 GenuineIntel avx2+avx512f+avx512_bf16, ATen
/// AVX512`: the architecture, the CPU's vendor and widest vector extensions (what oneDNN and MKL
/// choose by), ATen's dispatch level, and every variable set that overrides one of them. Fixed for
/// the life of the process, so it is worked out once.
pub fn kernel_path() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // Portable numerics compute the same on every x86-64 CPU: the CPU is not part of the setting
    // (entries made on two machines under it are not "mixed").
    if PORTABLE.load(std::sync::atomic::Ordering::Relaxed) {
        return format!(
            "{} portable (ATen DEFAULT, MKL_CBWR=COMPATIBLE, no oneDNN or NNPACK)",
            std::env::consts::ARCH
        );
    }
    PATH.get_or_init(|| {
        let info = cpu_info();
        let mut s = format!(
            "{} {} {}, ATen {}",
            std::env::consts::ARCH,
            info.vendor,
            info.extensions,
            aten_capability()
        );
        for var in [
            "MKL_CBWR",
            "MKL_ENABLE_INSTRUCTIONS",
            "ONEDNN_MAX_CPU_ISA",
            "DNNL_MAX_CPU_ISA",
        ] {
            if let Ok(v) = std::env::var(var) {
                if !v.is_empty() {
                    s.push_str(&format!(", {var}={v}"));
                }
            }
        }
        s
    })
    .clone()
}

/// What `/proc/cpuinfo` says of the CPU (its first processor), read once per process.
struct CpuInfo {
    /// `vendor_id` (x86) or the implementer code (ARM); `unknown` where there is none.
    vendor: String,
    /// The vector extensions, of those the libraries dispatch on, joined by `+` (`baseline`: none).
    extensions: String,
    /// The model name, for humans (empty where there is none).
    model: String,
}

fn cpu_info() -> &'static CpuInfo {
    static INFO: std::sync::OnceLock<CpuInfo> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        const EXTENSIONS: [&str; 7] = [
            "avx2",
            "avx512f",
            "avx512_vnni",
            "avx512_bf16",
            "amx_tile",
            "asimd",
            "sve",
        ];
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let flags = field("flags")
            .or_else(|| field("Features"))
            .unwrap_or_default();
        let have: Vec<&str> = EXTENSIONS
            .iter()
            .copied()
            .filter(|e| flags.split_whitespace().any(|f| f == *e))
            .collect();
        CpuInfo {
            vendor: field("vendor_id")
                .or_else(|| field("CPU implementer").map(|v| format!("implementer-{v}")))
                .unwrap_or_else(|| "unknown".into()),
            extensions: if have.is_empty() {
                "baseline".to_string()
            } else {
                have.join("+")
            },
            model: field("model name").unwrap_or_default(),
        }
    })
}

/// libtorch's intra-op thread count as this thread's calls use it.
pub fn threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// `cpu, N thread(s), <kernel path>`: how a CPU setting is written everywhere.
pub fn setting(threads: usize, kernels: &str) -> String {
    let s = if threads == 1 { "" } else { "s" };
    format!("cpu, {threads} thread{s}, {kernels}")
}

/// The CPU's model name from `/proc/cpuinfo` (empty where there is none), for humans.
pub fn model_name() -> String {
    cpu_info().model.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_is_one_aten_knows() {
        let c = aten_capability();
        assert!(
            ["DEFAULT", "AVX2", "AVX512", "VSX", "ZVECTOR", "SVE128", "SVE256"]
                .contains(&c.as_str()),
            "{c:?}"
        );
        let path = kernel_path();
        assert!(path.contains(&format!(", ATen {c}")), "{path}");
        assert!(path.starts_with(std::env::consts::ARCH), "{path}");
    }
}
