//! What a failed stage's error says on the terminal: its gist in one line. libtorch's errors
//! carry a C++ backtrace of some fifty frames (kilobytes), which stays in the stage's log; an
//! allocation that failed becomes one line saying what could not be allocated and which knobs
//! lower the memory a stage needs.

/// The advice for a stage of `kind` that ran out of memory: the knobs that lower its footprint.
pub fn oom_advice(kind: &str) -> String {
    let kind = if kind.is_empty() { "<kind>" } else { kind };
    format!(
        "lower the batch size (`batch_size` of the training, or of `evaluation`), run fewer \
         stages at once (`-j`), use fewer `--threads`, or give the stage more memory \
         (`executor.slurm.resources.{kind}.mem` on Slurm, a larger memory limit elsewhere)"
    )
}

/// A byte count as people read it (`1.5 GiB`).
fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What an out-of-memory error says could not be allocated, if `text` is one: the size (as
/// written) and by whom. Covers libtorch's CPU allocator (`you tried to allocate N bytes`), its
/// CUDA allocator (`CUDA out of memory. Tried to allocate 2.00 GiB`) and Rust's (`memory
/// allocation of N bytes failed`).
pub fn out_of_memory(text: &str) -> Option<String> {
    let number_after = |pat: &str| -> Option<f64> {
        let at = text.find(pat)? + pat.len();
        let digits: String = text[at..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    if let Some(n) = number_after("you tried to allocate") {
        return Some(format!("{} (libtorch's CPU allocator)", human_bytes(n)));
    }
    if let Some(at) = text.find("CUDA out of memory") {
        // "Tried to allocate 2.00 GiB (GPU 0; …)": the number and its unit.
        let size = text[at..]
            .split("Tried to allocate")
            .nth(1)
            .map(|r| {
                let words: Vec<&str> = r.split_whitespace().take(2).collect();
                words
                    .join(" ")
                    .trim_end_matches(['.', ',', ';'])
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "memory".into());
        return Some(format!("{size} on the GPU (CUDA)"));
    }
    if let Some(n) = number_after("memory allocation of") {
        return Some(format!("{} (the Rust allocator)", human_bytes(n)));
    }
    let lower = text.to_ascii_lowercase();
    (lower.contains("out of memory") || lower.contains("cannot allocate memory"))
        .then(|| "memory".to_string())
}

/// The gist of a stage's error for the terminal: an out-of-memory error as one line with the
/// knobs, any other error without libtorch's backtrace (from its `Exception raised from` line,
/// or its first `frame #` line, on).
pub fn brief(text: &str, kind: &str) -> String {
    if let Some(what) = out_of_memory(text) {
        // The error's own first line (its first 160 characters), for context.
        let first = text.lines().next().unwrap_or_default();
        let first: String = first.chars().take(160).collect();
        return format!(
            "out of memory: could not allocate {what} ({first}); {}; the full error is in the \
             stage's log",
            oom_advice(kind)
        );
    }
    let cut = ["\nException raised from", "\nframe #0"]
        .iter()
        .filter_map(|m| text.find(m))
        .min();
    match cut {
        Some(at) => format!(
            "{} (libtorch's backtrace is in the stage's log)",
            text[..at].trim_end()
        ),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_errors_become_one_line_with_the_knobs() {
        let cpu = "training: Torch(\"[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: \
                   not enough memory: you tried to allocate 1649267441664 bytes.\nException raised \
                   from alloc_cpu at /pytorch/c10/core/impl/alloc_cpu.cpp:117 (most recent call first):\n\
                   frame #0: c10::Error::Error(...)\nframe #1: ...\")";
        let b = brief(cpu, "train");
        assert!(
            b.starts_with("out of memory: could not allocate 1.5 TiB (libtorch's CPU allocator)"),
            "{b}"
        );
        assert!(
            b.contains("`batch_size`") && b.contains("`-j`") && b.contains("`--threads`"),
            "{b}"
        );
        assert!(b.contains("executor.slurm.resources.train.mem"), "{b}");
        assert!(!b.contains('\n') && !b.contains("frame #"), "{b}");
        let cuda = "Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)\")";
        assert_eq!(out_of_memory(cuda).unwrap(), "2.00 GiB on the GPU (CUDA)");
        assert_eq!(
            out_of_memory("memory allocation of 4096 bytes failed").unwrap(),
            "4.0 KiB (the Rust allocator)"
        );
        let other = "evaluating: Torch(\"shapes do not match\nException raised from x at y.cpp:1\nframe #0: a\")";
        assert_eq!(
            brief(other, "evaluate"),
            "evaluating: Torch(\"shapes do not match (libtorch's backtrace is in the stage's log)"
        );
        assert_eq!(brief("plain error", "report"), "plain error");
    }
}
