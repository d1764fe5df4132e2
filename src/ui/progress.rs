//! Progress of many hosts at once, rendered from tracing events.
//!
//! Library code reports progress with [`report`]: one event per phase start, end, skip or
//! failure, under target `cairn::progress`. This layer turns them into one indicatif line
//! per host on a terminal, or plain lines elsewhere (see [`super::layer`]), and writes every
//! event emitted inside a host's span to `.cairn/logs/<host>.log`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use indicatif::MultiProgress;

pub use super::layer::ProgressLayer;

/// The tracing target of progress events.
pub const TARGET: &str = "cairn::progress";
/// Download progress (see [`crate::download`]): drawn here as a bar or plain lines.
pub const DOWNLOAD_TARGET: &str = crate::download::TARGET;
/// Bytes of a long transfer sent so far, with a `bytes` field (and `raw` before compression,
/// `total` when known); drawn as a bar on the host's line, and a `transfer` event with
/// `--json`. An earlier event of the host with a `total_bytes` field gives the total.
pub const TRANSFER_TARGET: &str = "cairn::transfer";

/// A nix build's progress (see [`crate::nix::PROGRESS_TARGET`]): "building 3/7" on the
/// host's line, repeated every few seconds in plain output, a `build` event with `--json`.
pub const BUILD_TARGET: &str = crate::nix::PROGRESS_TARGET;

/// What happened to a host's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Started,
    Done,
    Skipped,
    Failed,
}

impl Step {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::Done => "done",
            Step::Skipped => "skipped",
            Step::Failed => "failed",
        }
    }
}

/// What `apply` and `destroy` do to one host's machine, reported like a phase: the human UI
/// leaves these to the summary table; `--json` streams them as `phase` events.
pub const ACTION_TARGET: &str = "cairn::action";

/// Reports a step of an apply/destroy action (`create`, `destroy`, ...) on a host's machine.
pub fn report_action(host: &str, action: &str, step: Step, detail: &str) {
    tracing::info!(target: ACTION_TARGET, host, phase = action, step = step.as_str(), detail);
}

/// Reports a step of a host's run; `detail` is a short human text (never a secret).
pub fn report(host: &str, phase: &str, step: Step, detail: &str) {
    tracing::info!(target: TARGET, host, phase, step = step.as_str(), detail);
}

/// Work counted in items (hosts asked, files re-keyed): drawn on a terminal as a spinner
/// `asked 37/120 hosts`, or a bar once there are more than [`BAR_FROM`] items.
pub const COUNT_TARGET: &str = "cairn::count";

/// From this many items on, a count is drawn as a bar.
pub const BAR_FROM: usize = 300;

/// Reports that `done` of `total` items are done (`what`: "asked", `unit`: "hosts").
pub fn count(what: &str, done: usize, total: usize, unit: &str) {
    tracing::info!(target: COUNT_TARGET, what, done = done as u64, total = total as u64, unit);
}

/// The name of the span a host's work runs in; its `host` field names the host.
pub const HOST_SPAN: &str = "host";

static LOG_DIR: OnceLock<PathBuf> = OnceLock::new();
static REPO_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Sets where per-host logs go (`<repo>/.cairn/logs`), once the repository is known.
pub fn set_log_dir(dir: PathBuf) {
    let _ = LOG_DIR.set(dir);
}

/// Sets the repository whose paths log lines show relative to it.
pub fn set_repo_root(dir: PathBuf) {
    let _ = REPO_ROOT.set(dir);
}

pub(super) fn log_dir() -> Option<&'static PathBuf> {
    LOG_DIR.get()
}

pub(super) fn repo_root() -> Option<&'static PathBuf> {
    REPO_ROOT.get()
}

/// The bars on a terminal, for [`suspended`].
pub(super) static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Runs `f` (a question on the terminal) with the progress bars out of the way.
pub fn suspended<R>(f: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(multi) => multi.suspend(f),
        None => f(),
    }
}

/// Writes log lines to stderr with the progress bars hidden for the moment.
#[derive(Clone)]
pub struct SuspendingStderr {
    pub(super) multi: Option<MultiProgress>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SuspendingStderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { multi: self.multi.clone(), buf: Vec::new() }
    }
}

/// Buffers one formatted event and writes it on drop.
pub struct LineWriter {
    multi: Option<MultiProgress>,
    buf: Vec<u8>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&buf);
        };
        match &self.multi {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }
}
