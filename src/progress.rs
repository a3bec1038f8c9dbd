//! A stage's progress bar (indicatif), shared by the executor and long-running stage code. In a
//! worker process the bar is remote: its updates go to the control plane, which draws them.
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

/// A progress update a worker sends to the control plane's bar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "progress", rename_all = "lowercase")]
pub enum Update {
    /// A new phase of `len` steps; `of`: it is phase `[i, n]` (0-based) of `n` equal ones (a
    /// training's epochs), for the stage's fraction done.
    Phase {
        msg: String,
        len: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        of: Option<[u64; 2]>,
    },
    Inc { n: u64 },
}

/// Handle a stage uses to report its phase (e.g. "epoch 3/10") and per-batch progress.
#[derive(Clone)]
pub struct StageProgress {
    bar: ProgressBar,
    /// Where updates go instead of `bar` (a worker's pipe to the control plane).
    remote: Option<Arc<dyn Fn(Update) + Send + Sync>>,
    /// The current phase's place among the stage's phases (`[i, n]`), for [`Self::fraction`].
    part: Arc<std::sync::Mutex<[u64; 2]>>,
}

impl StageProgress {
    pub fn new(bar: ProgressBar) -> Self {
        bar.set_style(
            ProgressStyle::with_template("  {prefix:.bold} {msg} [{bar:25}] {pos}/{len} {elapsed}")
                .expect("static template")
                .progress_chars("=> "),
        );
        Self {
            bar,
            remote: None,
            part: Arc::new(std::sync::Mutex::new([0, 1])),
        }
    }
    /// A handle whose updates are passed to `send` (a worker's pipe to the control plane).
    pub fn remote(send: impl Fn(Update) + Send + Sync + 'static) -> Self {
        Self {
            bar: ProgressBar::hidden(),
            remote: Some(Arc::new(send)),
            part: Arc::new(std::sync::Mutex::new([0, 1])),
        }
    }
    /// Applies an update that came from a worker.
    pub fn apply(&self, u: Update) {
        match u {
            Update::Phase { msg, len, of } => self.phase_of(msg, len, of),
            Update::Inc { n } => self.inc(n),
        }
    }
    /// A handle that draws nothing (library use, tests).
    pub fn hidden() -> Self {
        Self::new(ProgressBar::hidden())
    }
    pub fn phase(&self, msg: impl Into<String>, len: u64) {
        self.phase_of(msg, len, None)
    }
    /// A phase that is phase `i` (0-based) of `n` equal ones, e.g. an epoch of a training.
    pub fn phase_of(&self, msg: impl Into<String>, len: u64, of: Option<[u64; 2]>) {
        if let Some(send) = &self.remote {
            return send(Update::Phase {
                msg: msg.into(),
                len,
                of,
            });
        }
        *self.part.lock().unwrap_or_else(|e| e.into_inner()) = of.unwrap_or([0, 1]);
        self.bar.set_position(0);
        self.bar.set_length(len);
        self.bar.set_message(msg.into());
    }
    /// How much of the stage is done, in [0, 1]: the phases before the current one and the
    /// current one's steps (0 before the first phase).
    pub fn fraction(&self) -> f64 {
        let [i, n] = *self.part.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.bar.length().unwrap_or(0);
        let within = if len == 0 {
            0.0
        } else {
            (self.bar.position() as f64 / len as f64).min(1.0)
        };
        ((i as f64 + within) / n.max(1) as f64).clamp(0.0, 1.0)
    }
    pub fn inc(&self, n: u64) {
        if let Some(send) = &self.remote {
            return send(Update::Inc { n });
        }
        self.bar.inc(n);
    }
    /// Seconds since the bar was made (the stage started).
    pub fn elapsed(&self) -> f64 {
        self.bar.elapsed().as_secs_f64()
    }
    /// Redraws the bar (its clock) even when no update comes.
    pub fn tick(&self) {
        self.bar.enable_steady_tick(std::time::Duration::from_millis(500));
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

static MULTI: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();

/// The process-wide set of progress bars; log lines are printed above it.
pub fn multi() -> &'static indicatif::MultiProgress {
    MULTI.get_or_init(|| {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())
    })
}

/// Prints a line on stdout without tearing the progress bars.
pub fn println(line: &str) {
    multi().suspend(|| println!("{line}"));
}

/// Prints a line on stderr without tearing the progress bars.
pub fn eprintln(line: &str) {
    multi().suspend(|| eprintln!("{line}"));
}

/// Writes text that already ends in a newline (a worker's log line) on stderr without tearing
/// the progress bars.
pub fn eprint_raw(text: &str) {
    use std::io::Write;
    multi().suspend(|| {
        let _ = std::io::stderr().write_all(text.as_bytes());
    });
}

/// `tracing` writer that goes through [`multi`] so logs and bars do not interleave.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Log timestamps as `HH:MM:SS` (UTC): a log line is read by a person, and its stage's log file
/// records when it started.
#[derive(Clone, Copy, Default)]
pub struct Clock;

impl tracing_subscriber::fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            % 86_400;
        write!(w, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// A duration for people: `0.4s`, `45s`, `3m 20s`, `2h 05m`.
pub fn human_duration(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 9.95 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, s / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_counts_phases_and_steps() {
        let p = StageProgress::new(ProgressBar::hidden());
        assert_eq!(p.fraction(), 0.0);
        p.phase_of("epoch 2/4", 10, Some([1, 4]));
        p.inc(5);
        assert!((p.fraction() - 0.375).abs() < 1e-12, "{}", p.fraction());
        p.phase("test split", 4);
        p.inc(4);
        assert_eq!(p.fraction(), 1.0);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(0.04), "0.0s");
        assert_eq!(human_duration(9.4), "9.4s");
        assert_eq!(human_duration(12.4), "12s");
        assert_eq!(human_duration(59.6), "1m 00s");
        assert_eq!(human_duration(200.0), "3m 20s");
        assert_eq!(human_duration(7500.0), "2h 05m");
    }
}
