//! Progress of many hosts at once, rendered from tracing events.
//!
//! Library code reports progress with [`report`]: one event per phase start, end, skip or
//! failure, under target `cairn::progress`. This layer turns them into one indicatif line
//! per host on a terminal, or plain lines elsewhere, and writes every event emitted inside
//! a host's span to `.cairn/logs/<host>.log`.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The tracing target of progress events.
pub const TARGET: &str = "cairn::progress";
/// Download progress (see [`crate::download`]): drawn here as a bar or plain lines.
pub const DOWNLOAD_TARGET: &str = crate::download::TARGET;
/// Bytes of a closure sent so far (the copy phase), with a `bytes` field; shown as the log
/// line it carries, and as a `transfer` event with `--json`.
pub const TRANSFER_TARGET: &str = "cairn::transfer";

/// What happened to a host's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Started,
    Done,
    Skipped,
    Failed,
}

impl Step {
    fn as_str(self) -> &'static str {
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

/// The name of the span a host's work runs in; its `host` field names the host.
pub const HOST_SPAN: &str = "host";

#[derive(Default)]
struct Fields {
    host: Option<String>,
    phase: Option<String>,
    step: Option<String>,
    detail: Option<String>,
    message: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "host" => self.host = Some(value.to_string()),
            "phase" => self.phase = Some(value.to_string()),
            "step" => self.step = Some(value.to_string()),
            "detail" => self.detail = Some(value.to_string()),
            "message" => self.message = Some(value.to_string()),
            other => {
                let _ = write!(self.rest, " {other}={value}");
            }
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = Some(text),
            "host" => self.host = Some(text.trim_matches('"').to_string()),
            other => {
                let _ = write!(self.rest, " {other}={text}");
            }
        }
    }
}

struct HostLine {
    bar: Option<ProgressBar>,
    started: Instant,
    phase_started: Instant,
    log: Option<std::fs::File>,
}

static LOG_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets where per-host logs go (`<repo>/.cairn/logs`), once the repository is known.
pub fn set_log_dir(dir: PathBuf) {
    let _ = LOG_DIR.set(dir);
}

/// The bars on a terminal, for [`suspended`].
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Runs `f` (a question on the terminal) with the progress bars out of the way.
pub fn suspended<R>(f: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(multi) => multi.suspend(f),
        None => f(),
    }
}

/// The tracing layer that renders progress and writes per-host logs.
pub struct ProgressLayer {
    multi: Option<MultiProgress>,
    quiet: bool,
    hosts: Mutex<HashMap<String, HostLine>>,
    downloads: Mutex<HashMap<String, DownloadLine>>,
}

/// One download being drawn: its bar on a terminal, else the last quarter printed.
struct DownloadLine {
    bar: Option<ProgressBar>,
    quarters_shown: u64,
}

/// The fields of a download event.
#[derive(Default)]
struct DownloadFields {
    url: String,
    step: String,
    path: String,
    checksum: String,
    bytes: u64,
    total: u64,
    resumed_from: u64,
}

impl Visit for DownloadFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "bytes" => self.bytes = value,
            "total" => self.total = value,
            "resumed_from" => self.resumed_from = value,
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_text(field, format!("{value:?}").trim_matches('"').to_string());
    }
}

impl DownloadFields {
    fn record_text(&mut self, field: &Field, value: String) {
        match field.name() {
            "url" => self.url = value,
            "step" => self.step = value,
            "path" => self.path = value,
            "checksum" => self.checksum = value,
            _ => {}
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl ProgressLayer {
    /// `terminal`: draw bars on stderr; otherwise print one plain line per step (none when
    /// `quiet`).
    pub fn new(terminal: bool, quiet: bool) -> Self {
        let multi = (terminal && !quiet)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        if let Some(m) = &multi {
            let _ = BARS.set(m.clone());
        }
        Self {
            multi,
            quiet,
            hosts: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
        }
    }

    /// A download event: a byte bar on a terminal; otherwise a line when it starts, at
    /// each quarter, and when it is verified or found in the cache.
    fn download(&self, event: &Event<'_>) {
        let mut f = DownloadFields::default();
        event.record(&mut f);
        let mut downloads = self.downloads.lock().unwrap_or_else(|e| e.into_inner());
        let line = downloads
            .entry(f.url.clone())
            .or_insert_with(|| DownloadLine { bar: None, quarters_shown: 0 });
        let text = match f.step.as_str() {
            "started" => {
                if let Some(multi) = &self.multi {
                    let bar = multi.add(ProgressBar::new(f.total));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("downloading {}", f.url));
                    bar.set_position(f.resumed_from);
                    line.bar = Some(bar);
                }
                let size = if f.total > 0 { format!(" ({})", mib(f.total)) } else { String::new() };
                let resumed = if f.resumed_from > 0 {
                    format!(", resuming after {}", mib(f.resumed_from))
                } else {
                    String::new()
                };
                line.quarters_shown = (f.resumed_from * 4).checked_div(f.total).unwrap_or(0);
                Some(format!("downloading {}{size}{resumed}", f.url))
            }
            "progress" => {
                if let Some(bar) = &line.bar {
                    bar.set_position(f.bytes);
                }
                let quarters = (f.bytes * 4).checked_div(f.total).unwrap_or(0);
                (quarters > line.quarters_shown && quarters < 4).then(|| {
                    line.quarters_shown = quarters;
                    format!("downloading {}: {} of {}", f.url, mib(f.bytes), mib(f.total))
                })
            }
            "downloaded" => {
                if let Some(bar) = line.bar.take() {
                    bar.finish_and_clear();
                }
                None
            }
            "verified" => Some(format!("downloaded {} ({}) to {}", f.url, f.checksum, f.path)),
            "cached" => Some(format!("using the cached download of {} ({})", f.url, f.path)),
            _ => None,
        };
        if let Some(text) = text.filter(|_| !self.quiet) {
            match (&self.multi, &line.bar) {
                (Some(_), Some(_)) => {}
                (Some(multi), None) => multi.suspend(|| self.plain(&text)),
                (None, _) => self.plain(&text),
            }
        }
    }

    /// A writer for other log lines that does not tear the bars.
    pub fn writer(&self) -> SuspendingStderr {
        SuspendingStderr { multi: self.multi.clone() }
    }

    fn with_host<R>(&self, host: &str, f: impl FnOnce(&mut HostLine) -> R) -> R {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let line = hosts.entry(host.to_string()).or_insert_with(|| {
            let bar = self.multi.as_ref().map(|m| {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:.bold} {wide_msg} {elapsed:>4}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(host.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            let log = LOG_DIR.get().and_then(|dir| {
                crate::repo::create_private_dir(dir).ok()?;
                fs_err::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(dir.join(format!("{host}.log")))
                    .ok()
                    .map(|f| f.into_parts().0)
            });
            HostLine { bar, started: Instant::now(), phase_started: Instant::now(), log }
        });
        f(line)
    }

    fn plain(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

impl<S> Layer<S> for ProgressLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != HOST_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(host), Some(span)) = (fields.host, ctx.span(id)) {
            span.extensions_mut().insert(HostOf(host));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() == DOWNLOAD_TARGET {
            self.download(event);
            return;
        }
        if event.metadata().target() == ACTION_TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let host = fields.host.clone().or_else(|| {
            ctx.event_scope(event)?
                .from_root()
                .find_map(|s| s.extensions().get::<HostOf>().map(|h| h.0.clone()))
        });
        let Some(host) = host else { return };

        if event.metadata().target() == TARGET {
            let phase = fields.phase.clone().unwrap_or_default();
            let detail = fields.detail.clone().unwrap_or_default();
            let step = fields.step.clone().unwrap_or_default();
            let text = self.with_host(&host, |line| {
                let took = line.phase_started.elapsed();
                if step == "started" {
                    line.phase_started = Instant::now();
                }
                let text = match step.as_str() {
                    "started" if detail.is_empty() => format!("{phase}: started"),
                    "started" => format!("{phase}: {detail}"),
                    "done" if detail.is_empty() => {
                        format!("{phase}: done in {:.1} s", took.as_secs_f64())
                    }
                    "done" => format!("{phase}: done in {:.1} s {detail}", took.as_secs_f64()),
                    "skipped" => format!("{phase}: skipped ({detail})"),
                    _ => format!("{phase}: FAILED {detail}"),
                };
                if let Some(bar) = &line.bar {
                    bar.set_message(text.clone());
                    if step == "failed" || (phase == "run" && step == "done") {
                        bar.finish_with_message(format!(
                            "{text} (total {:.0} s)",
                            line.started.elapsed().as_secs_f64()
                        ));
                    }
                }
                if let Some(log) = &mut line.log {
                    let _ = writeln!(log, "== {text}");
                }
                text
            });
            if self.multi.is_none() && !self.quiet {
                self.plain(&format!("{host}: {text}"));
            }
            return;
        }

        // Everything else inside a host span goes to that host's log file (at its level).
        let message = fields.message.unwrap_or_default();
        let level = *event.metadata().level();
        self.with_host(&host, |line| {
            if let Some(log) = &mut line.log {
                let _ = writeln!(log, "{level:>5} {message}{}", fields.rest);
            }
        });
    }
}

struct HostOf(String);

/// Writes log lines to stderr with the progress bars hidden for the moment.
#[derive(Clone)]
pub struct SuspendingStderr {
    multi: Option<MultiProgress>,
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
