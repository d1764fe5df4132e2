//! The UI layer: the tracing subscriber, colors, and the one place that writes to stdout.
//!
//! Library code emits `tracing` events; here they become lines on stderr (or progress bars on
//! a terminal). Command results (tables, JSON, plaintext) go through [`Output`].

use std::io::{IsTerminal, Write};

use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub mod progress;

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
/// `RUST_LOG` overrides.
pub fn init_tracing(verbose: u8, quiet: bool, mode: UiMode) {
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
    let progress = progress::ProgressLayer::new(mode.stderr_is_terminal, quiet);
    let writer = progress.writer();
    // Progress events are drawn by the progress layer; the log lines go around the bars.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(mode.color)
        .with_target(verbose > 0)
        .without_time()
        .with_filter(filter.and(filter_fn(|meta| meta.target() != progress::TARGET)));
    // Host logs keep cairn's own debug events, and only warnings from libraries.
    let host_logs: Targets = "cairn=debug,warn".parse().expect("the directives parse");
    let progress = progress.with_filter(host_logs);
    // The order matters: with the progress layer first, its debug-level filter let debug
    // events through to the lines too.
    let _ = tracing_subscriber::registry().with(lines).with(progress).try_init();
}

/// Installs the diagnostic renderer used for the one error a failed run prints.
pub fn init_error_rendering(mode: UiMode) {
    let color = mode.color;
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(color)
                .terminal_links(false)
                .width(100)
                .context_lines(1)
                .build(),
        )
    }));
}

/// Renders a diagnostic the way the final error is rendered (for per-host failures).
pub fn render_diagnostic(diag: &dyn miette::Diagnostic, mode: UiMode) -> String {
    let theme = if mode.color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    if handler.render_report(&mut out, diag).is_err() {
        out = diag.to_string();
    }
    out
}

/// The command's result channel: stdout, written in one place.
#[derive(Debug, Default, Clone, Copy)]
pub struct Output;

impl Output {
    /// Writes text as is (callers include newlines).
    pub fn text(&self, s: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_bytes())?;
        out.flush()
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
