//! A stage's progress bar (indicatif), shared by the executor and long-running stage code. In a
//! worker process the bar is remote: its updates go to the control plane, which draws them.
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

/// A progress update a worker sends to the control plane's bar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "progress", rename_all = "lowercase")]
pub enum Update {
    Phase { msg: String, len: u64 },
    Inc { n: u64 },
}

/// Handle a stage uses to report its phase (e.g. "epoch 3/10") and per-batch progress.
#[derive(Clone)]
pub struct StageProgress {
    bar: ProgressBar,
    /// Where updates go instead of `bar` (a worker's pipe to the control plane).
    remote: Option<Arc<dyn Fn(Update) + Send + Sync>>,
}

impl StageProgress {
    pub fn new(bar: ProgressBar) -> Self {
        bar.set_style(
            ProgressStyle::with_template("  {prefix:.bold} {msg} [{bar:25}] {pos}/{len} {elapsed}")
                .expect("static template")
                .progress_chars("=> "),
        );
        Self { bar, remote: None }
    }
    /// A handle whose updates are passed to `send` (a worker's pipe to the control plane).
    pub fn remote(send: impl Fn(Update) + Send + Sync + 'static) -> Self {
        Self {
            bar: ProgressBar::hidden(),
            remote: Some(Arc::new(send)),
        }
    }
    /// Applies an update that came from a worker.
    pub fn apply(&self, u: Update) {
        match u {
            Update::Phase { msg, len } => self.phase(msg, len),
            Update::Inc { n } => self.inc(n),
        }
    }
    /// A handle that draws nothing (library use, tests).
    pub fn hidden() -> Self {
        Self::new(ProgressBar::hidden())
    }
    pub fn phase(&self, msg: impl Into<String>, len: u64) {
        if let Some(send) = &self.remote {
            return send(Update::Phase {
                msg: msg.into(),
                len,
            });
        }
        self.bar.set_message(msg.into());
        self.bar.set_length(len);
        self.bar.set_position(0);
    }
    pub fn inc(&self, n: u64) {
        if let Some(send) = &self.remote {
            return send(Update::Inc { n });
        }
        self.bar.inc(n);
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
