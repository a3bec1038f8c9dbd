//! The worker's heap. A gradient step allocates and frees every activation and gradient of the
//! network, from a few kilobytes to tens of megabytes each. glibc's defaults hand much of that
//! memory back to the kernel as soon as it is freed: blocks above its mmap threshold are
//! unmapped, and the top of the heap is trimmed past 128 KiB. The next step maps it again and
//! takes a page fault for every 4 KiB page, which the kernel zeroes. On networks made of many
//! small operations (a tiny DenseNet) that is about a third of the process's time (docs/attacks.md,
//! "Speed"; `scripts/bench-heap.sh` measures the difference).
//!
//! [`keep_freed_memory`] keeps freed memory in the process instead: blocks up to 32 MiB (glibc's
//! largest mmap threshold) come from the heap, and the heap keeps up to 1 GiB free at its top.
//! Only where memory comes from changes, never what is computed, so no result changes.
//! The worker calls it at start, and the benchmarks too, so that they time what a worker runs.
//! `ROBARCH_HEAP=glibc` leaves glibc's defaults (a worker then gives freed memory back at once).

/// The variable that leaves the C library's heap thresholds as they are (`glibc`).
pub const HEAP_VAR: &str = "ROBARCH_HEAP";

/// The mmap threshold: blocks at least this large are mapped on their own (glibc's maximum).
pub const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory the heap keeps at its top before it gives any back.
pub const TRIM_THRESHOLD: i32 = 1 << 30;
/// Extra memory asked of the kernel each time the heap grows.
pub const TOP_PAD: i32 = 64 << 20;

/// Sets the heap's thresholds (see the module); false where the C library is not glibc or
/// refused a value.
pub fn keep_freed_memory() -> bool {
    if std::env::var(HEAP_VAR).is_ok_and(|v| v == "glibc") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's tuning parameters; any value is safe
        // (glibc refuses those out of range and returns 0).
        unsafe {
            let a = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            let b = libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            let c = libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
            a == 1 && b == 1 && c == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn a_freed_block_stays_in_the_heap() {
        assert!(keep_freed_memory());
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let before = unsafe { libc::mallinfo2() };
        // 8 MiB: glibc's defaults would map it on its own (threshold 128 KiB at start).
        let block = vec![1u8; 8 << 20];
        let during = unsafe { libc::mallinfo2() };
        assert_eq!(
            during.hblks, before.hblks,
            "the block was mapped on its own"
        );
        assert_eq!(block.iter().map(|&b| b as usize).sum::<usize>(), 8 << 20);
        drop(block);
        let after = unsafe { libc::mallinfo2() };
        // Freed, it is the heap's to hand out again (glibc's defaults would have unmapped it).
        assert!(
            after.fordblks >= 8 << 20,
            "the freed block went back to the kernel: {} free bytes before, {} after",
            before.fordblks,
            after.fordblks
        );
    }
}
