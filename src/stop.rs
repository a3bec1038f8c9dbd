//! Requests, from a signal-handling thread, that the running stage save its progress now: a Slurm
//! job's USR1 before its time limit. A stage that can checkpoint at any step ([`listen`]) polls
//! [`asked`] at its step boundaries and calls [`saved`] once its checkpoint is written; the
//! handler waits for that ([`ask_and_wait`]) before it requeues the job.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

static ASKED: AtomicU64 = AtomicU64::new(0);
static SAVED: AtomicU64 = AtomicU64::new(0);
static LISTENING: AtomicBool = AtomicBool::new(false);

/// The running stage answers requests (until [`done`]).
pub fn listen() {
    LISTENING.store(true, SeqCst);
}

/// The stage that listened has ended.
pub fn done() {
    LISTENING.store(false, SeqCst);
}

/// Whether a save was asked for and not yet made.
pub fn asked() -> bool {
    ASKED.load(SeqCst) > SAVED.load(SeqCst)
}

/// The asked-for save is written.
pub fn saved() {
    SAVED.store(ASKED.load(SeqCst), SeqCst);
}

/// Asks the running stage to save and waits up to `timeout` for it; false when no stage listens
/// or it did not save in time.
pub fn ask_and_wait(timeout: Duration) -> bool {
    if !LISTENING.load(SeqCst) {
        return false;
    }
    let ticket = ASKED.fetch_add(1, SeqCst) + 1;
    let start = Instant::now();
    while start.elapsed() < timeout {
        if SAVED.load(SeqCst) >= ticket {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_stage_saves_when_asked() {
        assert!(!ask_and_wait(Duration::from_millis(10)), "nobody listens");
        listen();
        let stage = std::thread::spawn(|| {
            while !asked() {
                std::thread::sleep(Duration::from_millis(5));
            }
            saved();
        });
        assert!(ask_and_wait(Duration::from_secs(5)));
        stage.join().unwrap();
        assert!(!asked());
        done();
    }
}
