//! The UI layer: the tracing subscriber, colors, and the one place that writes to stdout.
//!
//! Library code emits `tracing` events; here they become lines on stderr (or progress bars on
//! a terminal). Command results (tables, JSON, plaintext) go through [`Output`].

use std::io::{IsTerminal, Write};

use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub mod human;
pub mod json;
mod layer;
pub mod progress;
pub mod report;
pub mod screen;

use crate::cli::ColorChoice;

/// How output should look, decided once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct UiMode {
    pub color: bool,
    pub stderr_is_terminal: bool,
}

impl UiMode {
    pub fn detect(choice: ColorChoice) -> Self {
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && stderr_is_terminal,
        };
        Self { color, stderr_is_terminal }
    }
}

/// Sets up the tracing subscriber: `-q` errors only, default info, `-v` debug, `-vv` trace.
/// `RUST_LOG` overrides. `json_events`: also write the run's events to stdout as JSON lines
/// ([`json`]).
pub fn init_tracing(verbose: u8, quiet: bool, mode: UiMode, json_events: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "cairn=debug,info",
        (false, _) => "trace",
    };
    // An empty RUST_LOG (set but blank) counts as unset. `Targets` rather than EnvFilter:
    // as a per-layer filter next to another one, EnvFilter let debug events through.
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| default.parse().expect("the default directives parse"));
    // Without -v (or RUST_LOG), log lines are written for people by the progress layer;
    // with it, tracing's own format shows every field.
    let structured = verbose > 0 || std::env::var("RUST_LOG").is_ok_and(|v| !v.trim().is_empty());
    let human = (!structured && !quiet).then(|| filter.clone());
    let progress = progress::ProgressLayer::new(mode.stderr_is_terminal, quiet, mode.color, human);
    let writer = progress.writer();
    // Progress events are drawn by the progress layer; the log lines go around the bars.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(mode.color)
        .with_target(verbose > 0)
        .without_time()
        .with_filter(filter.and(filter_fn(move |meta| {
            (structured || *meta.level() == tracing::Level::ERROR && quiet)
                && ![
                    progress::TARGET,
                    progress::DOWNLOAD_TARGET,
                    progress::ACTION_TARGET,
                    progress::TRANSFER_TARGET,
                    progress::BUILD_TARGET,
                    progress::COUNT_TARGET,
                ]
                .contains(&meta.target())
        })));
    // Host logs keep cairn's own debug events, and only warnings from libraries.
    let host_logs: Targets = "cairn=debug,warn".parse().expect("the directives parse");
    let progress = progress.with_filter(host_logs);
    // The order matters: with the progress layer first, its debug-level filter let debug
    // events through to the lines too.
    let events = json_events.then(|| {
        let wanted: Targets = "cairn=info,warn".parse().expect("the directives parse");
        json::JsonEvents::stdout().with_filter(wanted)
    });
    let _ = tracing_subscriber::registry().with(lines).with(progress).with(events).try_init();
}

/// Installs the diagnostic renderer used for the one error a failed run prints.
pub fn init_error_rendering(mode: UiMode) {
    let _ = miette::set_hook(Box::new(move |_| Box::new(Handler { mode })));
}

/// The hook's handler: every report goes through [`render_diagnostic`].
struct Handler {
    mode: UiMode,
}

impl miette::ReportHandler for Handler {
    fn debug(
        &self,
        diag: &dyn miette::Diagnostic,
        f: &mut std::fmt::Formatter<'_>,
    ) -> std::fmt::Result {
        if f.alternate() {
            return std::fmt::Debug::fmt(diag, f);
        }
        f.write_str(render_diagnostic(diag, self.mode).trim_end_matches('\n'))
    }
}

/// Renders a diagnostic as the user sees it (the final error, and per-host failures): the
/// message, the causes' messages one per line, the labelled source, and what to do. Internal
/// codes (`cairn::ssh::unreachable`) are not shown: see [`UserFacing`].
pub fn render_diagnostic(diag: &dyn miette::Diagnostic, mode: UiMode) -> String {
    let theme = if mode.color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
        .with_context_lines(1);
    if handler.render_report(&mut out, &UserFacing::new(diag)).is_err() {
        out = diag.to_string();
    }
    // Values from `env()` and sensitive variables never reach the terminal.
    crate::util::redact::text(&out)
}

/// [`render_diagnostic`] without colors, as tests snapshot it.
pub fn render_plain(diag: &dyn miette::Diagnostic) -> String {
    render_diagnostic(diag, UiMode { color: false, stderr_is_terminal: false })
}

/// A diagnostic as a user should see it. miette renders a `diagnostic_source` as a nested
/// report headed by its code, and codes as header lines; here the causes become one line of
/// message each (a cause already contained in the line above is left out: an error that
/// quotes its source is not shown twice), codes are dropped, and the help, the labels and the
/// source come from the outermost diagnostic that has them, so a wrapper (`web1: reach
/// failed`) keeps its cause's advice.
pub struct UserFacing<'a> {
    top: &'a dyn miette::Diagnostic,
    /// The top and its diagnostic sources, outermost first.
    layers: Vec<&'a dyn miette::Diagnostic>,
    causes: Option<Box<Cause>>,
    related: Vec<UserFacing<'a>>,
}

impl<'a> UserFacing<'a> {
    pub fn new(top: &'a dyn miette::Diagnostic) -> Self {
        let mut layers = vec![top];
        while let Some(next) = layers.last().and_then(|d| d.diagnostic_source()) {
            if layers.len() > 32 {
                break;
            }
            layers.push(next);
        }
        let mut messages: Vec<String> = Vec::new();
        let mut shown = top.to_string();
        let mut source = std::error::Error::source(top);
        while let Some(e) = source {
            let text = e.to_string();
            if !text.trim().is_empty() && !shown.contains(text.trim()) {
                messages.push(text.clone());
            }
            shown = text;
            source = e.source();
        }
        let causes = messages
            .into_iter()
            .rev()
            .fold(None, |next, message| Some(Box::new(Cause { message, next })));
        let related = top.related().map(|r| r.map(UserFacing::new).collect()).unwrap_or_default();
        Self { top, layers, causes, related }
    }

    /// The outermost layer for which `has` holds.
    fn first(
        &self,
        has: impl Fn(&dyn miette::Diagnostic) -> bool,
    ) -> Option<&'a dyn miette::Diagnostic> {
        self.layers.iter().copied().find(|d| has(*d))
    }
}

impl std::fmt::Debug for UserFacing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.top, f)
    }
}

impl std::fmt::Display for UserFacing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.top, f)
    }
}

impl std::error::Error for UserFacing<'_> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.causes.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl miette::Diagnostic for UserFacing<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        self.top.severity()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.first(|d| d.help().is_some())?.help()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.first(|d| d.labels().is_some() || d.source_code().is_some())?.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.first(|d| d.labels().is_some())?.labels()
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
    }
}

/// One cause's message in a [`UserFacing`] chain.
#[derive(Debug)]
struct Cause {
    message: String,
    next: Option<Box<Cause>>,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// The command's result channel: stdout, written in one place. With `--json` events
/// ([`Output::json_events`]) stdout carries only JSON lines and the human text goes to stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct Output {
    human_on_stderr: bool,
}

impl Output {
    /// Human text on stderr, stdout kept for [`Output::event`] lines.
    pub fn json_events() -> Self {
        Self { human_on_stderr: true }
    }

    /// Whether stdout carries JSON events (`--json` of bootstrap, apply, destroy).
    pub fn is_json_events(&self) -> bool {
        self.human_on_stderr
    }

    /// Writes text as is (callers include newlines).
    pub fn text(&self, s: &str) -> std::io::Result<()> {
        if self.human_on_stderr {
            let mut err = std::io::stderr().lock();
            err.write_all(s.as_bytes())?;
            return err.flush();
        }
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_bytes())?;
        out.flush()
    }

    /// Writes one JSON event line to stdout (in `--json` mode only; otherwise nothing).
    pub fn event(&self, value: &serde_json::Value) -> std::io::Result<()> {
        if !self.human_on_stderr {
            return Ok(());
        }
        json::write_line(value)
    }

    /// Writes raw bytes (decrypted binary secrets).
    pub fn bytes(&self, b: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(b)?;
        out.flush()
    }

    /// Writes a message for the user to stderr (rendered errors of one host among many).
    pub fn error(&self, s: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(s.as_bytes());
        if !s.ends_with('\n') {
            let _ = err.write_all(b"\n");
        }
    }

    /// Asks the user a question on stderr and reads one line of answer from stdin.
    pub fn prompt(&self, question: &str) -> std::io::Result<String> {
        {
            let mut err = std::io::stderr().lock();
            err.write_all(question.as_bytes())?;
            err.flush()?;
        }
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(answer)
    }

    /// Writes a value as pretty JSON followed by a newline.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> std::io::Result<()> {
        let mut s = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        s.push('\n');
        self.text(&s)
    }
}
