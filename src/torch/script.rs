//! What tch's TorchScript API (`CModule`) does not expose, through a small C++ shim compiled
//! against the same libtorch (`src/torch/script_shim.cpp`, built by `build.rs`): a module's
//! buffers, as tensors sharing its storage, and the class of every submodule.
//!
//! ABI assumptions (checked against tch 0.26 and libtorch 2.13; re-check them when either moves):
//! - a `CModule` is exactly one pointer, to the `torch::jit::Module` it owns (tch's
//!   `CModule { c_module: *mut CModule_ }`; the size is asserted at compile time and the tests
//!   read a known module's buffers back);
//! - a tch `Tensor` owns a heap `torch::Tensor*` (`Tensor::from_ptr`), which the shim allocates.
use anyhow::{anyhow, Result};
use std::ffi::{c_char, c_void, CStr};
use tch::{CModule, Tensor};

const _: () = assert!(std::mem::size_of::<CModule>() == std::mem::size_of::<*mut c_void>());

extern "C" {
    fn robarch_named_buffers(
        m: *mut c_void,
        data: *mut c_void,
        f: extern "C" fn(*mut c_void, *const c_char, *mut c_void),
    ) -> *mut c_char;
    fn robarch_module_types(
        m: *mut c_void,
        data: *mut c_void,
        f: extern "C" fn(*mut c_void, *const c_char, *const c_char),
    ) -> *mut c_char;
}

fn raw(m: &CModule) -> *mut c_void {
    // SAFETY: a `CModule` is one pointer (asserted above); reading it does not take ownership.
    unsafe { *(m as *const CModule as *const *mut c_void) }
}

fn text(p: *const c_char) -> String {
    // SAFETY: the shim passes NUL-terminated strings valid for the callback's duration.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn check(err: *mut c_char) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    let msg = text(err);
    // SAFETY: the shim allocates its messages with `strdup`.
    unsafe { libc::free(err as *mut c_void) };
    Err(anyhow!("libtorch: {msg}"))
}

extern "C" fn push_buffer(data: *mut c_void, name: *const c_char, t: *mut c_void) {
    // SAFETY: `data` is the `Vec` `named_buffers` passed; `t` a fresh handle we now own.
    let out = unsafe { &mut *(data as *mut Vec<(String, Tensor)>) };
    out.push((text(name), unsafe { Tensor::from_ptr(t as *mut _) }));
}

extern "C" fn push_type(data: *mut c_void, name: *const c_char, ty: *const c_char) {
    // SAFETY: `data` is the `Vec` `module_types` passed.
    let out = unsafe { &mut *(data as *mut Vec<(String, String)>) };
    out.push((text(name), text(ty)));
}

/// Every buffer of `m` (BatchNorm's running statistics, …), recursively, by dotted name; the
/// tensors share the module's storage, so writing into them writes the module's state.
pub fn named_buffers(m: &CModule) -> Result<Vec<(String, Tensor)>> {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    check(unsafe {
        robarch_named_buffers(raw(m), &mut out as *mut _ as *mut c_void, push_buffer)
    })?;
    Ok(out)
}

/// The module and every submodule by dotted name (`""` for `m` itself), with the unqualified
/// name of its class (`Conv2d`, `BatchNorm2d`, `MultiheadAttention`, a user's `Attention`, …).
pub fn module_types(m: &CModule) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    check(unsafe { robarch_module_types(raw(m), &mut out as *mut _ as *mut c_void, push_type) })?;
    Ok(out
        .into_iter()
        .map(|(n, t)| {
            let class = t.rsplit('.').next().unwrap_or_default().to_string();
            (n, class)
        })
        .collect())
}
