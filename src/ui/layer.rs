//! The tracing layer behind the human UI: events become [`Input`]s for the [`Screen`], whose
//! lines are drawn on a [`Surface`] (indicatif bars on a terminal, plain lines elsewhere),
//! and every event of a host goes in full to `.cairn/logs/<host>.log`.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::human::{self, Places};
use super::progress::{
    SuspendingStderr, ACTION_TARGET, BARS, BUILD_TARGET, COUNT_TARGET, DOWNLOAD_TARGET, HOST_SPAN,
    TARGET, TRANSFER_TARGET,
};
use super::screen::{Input, Screen};

/// Counts of fewer items end too soon to be worth a line.
const COUNT_FROM: u64 = 10;

/// How often plain output repeats a transfer's progress.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Where the UI draws.
pub enum Surface {
    /// Bars on a terminal, one per host, the log lines above them.
    Terminal(MultiProgress),
    /// One line per event (not a terminal; tests collect them).
    Lines(Box<dyn Fn(&str) + Send + Sync>),
    /// What a terminal of a fixed width shows, kept as text (tests snapshot it).
    Frame(Arc<Mutex<Frame>>),
}

/// A terminal's content as text: the lines printed, then one line per host (as on a
/// terminal, where each host's line stays under the log).
#[derive(Debug, Default)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    printed: Vec<String>,
    hosts: Vec<(String, String)>,
}

impl Frame {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, ..Self::default() }
    }

    fn set_host(&mut self, host: &str, line: String) {
        match self.hosts.iter_mut().find(|(h, _)| h == host) {
            Some(slot) => slot.1 = line,
            None => self.hosts.push((host.to_string(), line)),
        }
    }

    /// The screen's last `height` rows: printed lines, then the hosts' lines behind a
    /// spinner cell.
    pub fn render(&self) -> String {
        let hosts = self.hosts.iter().map(|(_, l)| format!("⠿ {l}"));
        let lines: Vec<String> = self.printed.iter().cloned().chain(hosts).collect();
        lines[lines.len().saturating_sub(self.height)..].join("\n")
    }
}

/// The clock of the run (tests pass their own).
pub type Clock = Box<dyn Fn() -> Duration + Send + Sync>;

struct State {
    screen: Screen,
    bars: HashMap<String, ProgressBar>,
    logs: HashMap<String, Option<std::fs::File>>,
    /// When plain output last showed a host's transfer.
    shown: HashMap<String, Duration>,
}

/// The tracing layer that renders progress and log lines, and writes per-host logs.
pub struct ProgressLayer {
    surface: Surface,
    /// Which log events are printed as human lines (`None`: another layer prints them, as
    /// with `-v`, or nothing is, as with `-q`); phase lines are printed unless `quiet`.
    lines: Option<Targets>,
    quiet: bool,
    /// Colors on the terminal (`--color`, `NO_COLOR`).
    color: bool,
    clock: Clock,
    state: Mutex<State>,
}

impl ProgressLayer {
    /// `terminal`: draw bars on stderr; otherwise print plain lines (none when `quiet`).
    pub fn new(terminal: bool, quiet: bool, color: bool, lines: Option<Targets>) -> Self {
        let surface = if terminal && !quiet {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let _ = BARS.set(multi.clone());
            Surface::Terminal(multi)
        } else {
            Surface::Lines(Box::new(|line: &str| {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }))
        };
        let started = Instant::now();
        let places = Places { repo: None, home: std::env::var_os("HOME").map(Into::into) };
        let mut layer =
            Self::with_surface(surface, quiet, lines, places, Box::new(move || started.elapsed()));
        layer.color = color;
        layer
    }

    /// A layer drawing on `surface` with `clock` (tests).
    pub fn with_surface(
        surface: Surface,
        quiet: bool,
        lines: Option<Targets>,
        places: Places,
        clock: Clock,
    ) -> Self {
        let state = State {
            screen: Screen::new(places),
            bars: HashMap::new(),
            logs: HashMap::new(),
            shown: HashMap::new(),
        };
        Self { surface, lines, quiet, color: false, clock, state: Mutex::new(state) }
    }

    /// A writer for other log lines (`-v`) that does not tear the bars.
    pub fn writer(&self) -> SuspendingStderr {
        let multi = match &self.surface {
            Surface::Terminal(m) => Some(m.clone()),
            Surface::Lines(_) | Surface::Frame(_) => None,
        };
        SuspendingStderr { multi }
    }

    fn width() -> usize {
        console::Term::stderr().size_checked().map(|(_, w)| w as usize).unwrap_or(100).max(20)
    }

    /// Draws what `input` changes: its lines, and the host's line.
    fn show(&self, host: Option<&str>, input: Input, print: bool, log_line: Option<String>) {
        let now = (self.clock)();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(root) = super::progress::repo_root().filter(|_| !st.screen.knows_repo()) {
            let home = std::env::var_os("HOME").map(Into::into);
            st.screen.set_places(Places { repo: Some(root.clone()), home });
        }
        let is_transfer = matches!(input, Input::Transfer { .. } | Input::Build { .. });
        let lines = st.screen.take(input, now);
        if let (Some(host), Some(text)) = (host, log_line) {
            let log = st.logs.entry(host.to_string()).or_insert_with(|| open_log(host));
            if let Some(log) = log {
                let _ = writeln!(log, "{text}");
            }
        }
        match &self.surface {
            Surface::Frame(frame) => {
                let mut frame = frame.lock().unwrap_or_else(|e| e.into_inner());
                let width = frame.width;
                if print {
                    frame.printed.extend(lines.iter().map(|l| human::fit(l, width)));
                }
                if let Some(host) = host.filter(|h| st.screen.finished(h)) {
                    frame.hosts.retain(|(h, _)| h != host);
                } else if let Some(host) = host.filter(|h| st.screen.at_work(h)) {
                    let line = human::fit(&st.screen.host_line(host, now), width.saturating_sub(2));
                    frame.set_host(host, line);
                }
            }
            Surface::Terminal(multi) => {
                let width = Self::width();
                if print {
                    for line in &lines {
                        let _ = multi.println(paint(&human::fit(line, width), self.color));
                    }
                }
                let Some(host) = host.filter(|h| st.screen.at_work(h)) else { return };
                let line = human::fit(&st.screen.host_line(host, now), width.saturating_sub(2));
                let line = paint(&line, self.color);
                let finished = st.screen.finished(host);
                let bar = st.bars.entry(host.to_string()).or_insert_with(|| spinner(multi));
                if finished {
                    // Its last line was printed above: the bar would say it twice.
                    bar.finish_and_clear();
                } else {
                    bar.set_message(line);
                }
            }
            Surface::Lines(out) => {
                if self.quiet {
                    return;
                }
                if print {
                    for line in &lines {
                        out(line);
                    }
                }
                if let (Some(host), true) = (host, is_transfer) {
                    let due = st.shown.get(host).is_none_or(|t| now >= *t + PLAIN_PROGRESS_EVERY);
                    if due {
                        st.shown.insert(host.to_string(), now);
                        out(&st.screen.host_line(host, now));
                    }
                }
            }
        }
    }
}

/// Failures in red, warnings in yellow (terminal only).
fn paint(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let red = console::style("FAILED").red().bold().force_styling(true).to_string();
    let yellow = console::style("warning:").yellow().force_styling(true).to_string();
    line.replacen("FAILED", &red, 1).replacen("warning:", &yellow, 1)
}

fn open_log(host: &str) -> Option<std::fs::File> {
    let dir = super::progress::log_dir()?;
    crate::repo::create_private_dir(dir).ok()?;
    fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(format!("{host}.log")))
        .ok()
        .map(|f| f.into_parts().0)
}

struct HostOf(String);

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
        if let (Some(host), Some(span)) = (fields.get("host"), ctx.span(id)) {
            span.extensions_mut().insert(HostOf(host.to_string()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        let host = f.get("host").map(str::to_owned).or_else(|| {
            ctx.event_scope(event)?
                .from_root()
                .find_map(|s| s.extensions().get::<HostOf>().map(|h| h.0.clone()))
        });
        let text = |name: &str| f.get(name).unwrap_or_default().to_string();
        if meta.target() == COUNT_TARGET {
            let (done, total) = (f.number("done").unwrap_or(0), f.number("total").unwrap_or(0));
            self.count(&text("what"), done, total, &text("unit"));
            return;
        }
        let (input, print, log) = match meta.target() {
            TARGET => {
                let (phase, step, detail) = (text("phase"), text("step"), text("detail"));
                let log = format!("== {phase}: {step} {detail}");
                (
                    Input::Phase { host: host.clone().unwrap_or_default(), phase, step, detail },
                    true,
                    Some(log),
                )
            }
            ACTION_TARGET => {
                let Some(host) = host.clone() else { return };
                let input = Input::Action { host, action: text("phase"), step: text("step") };
                (input, false, None)
            }
            DOWNLOAD_TARGET => {
                let input = Input::Download {
                    host: host.clone(),
                    url: text("url"),
                    step: text("step"),
                    bytes: f.number("bytes").unwrap_or(0),
                    total: f.number("total").unwrap_or(0),
                    path: text("path"),
                };
                (input, true, None)
            }
            TRANSFER_TARGET => {
                let input = Input::Transfer {
                    host: host.clone(),
                    bytes: f.number("bytes").unwrap_or(0),
                    raw: f.number("raw"),
                    total: f.number("total"),
                };
                (input, false, None)
            }
            BUILD_TARGET => {
                let n = |name: &str| f.number(name).unwrap_or(0);
                let progress = crate::nix::BuildProgress {
                    built: n("built"),
                    builds: n("builds"),
                    running: n("running"),
                    failed: n("failed"),
                    fetched: n("fetched"),
                    fetches: n("fetches"),
                };
                (Input::Build { host: host.clone(), progress }, false, None)
            }
            target => {
                let print =
                    self.lines.as_ref().is_some_and(|t| t.would_enable(target, meta.level()));
                let log = format!("{:>5} {}{}", meta.level(), f.message, f.rest());
                let source =
                    if target == "cairn::nix" { f.get("source").map(str::to_owned) } else { None };
                let (nix, message) = match source.as_deref() {
                    Some("nix") => (true, f.message.clone()),
                    Some(other) => (false, format!("{other}: {}", f.message)),
                    None => (false, f.message.clone()),
                };
                let input = Input::Log {
                    host: host.clone(),
                    level: *meta.level(),
                    nix,
                    message,
                    fields: f.all.clone(),
                };
                (input, print, (*meta.level() <= Level::DEBUG).then_some(log))
            }
        };
        if host.is_none() && matches!(input, Input::Phase { .. }) {
            return;
        }
        // What a host's line says comes from the lines shown; the rest goes to its log only.
        if !print && matches!(input, Input::Log { .. }) {
            if let (Some(host), Some(text)) = (host.as_deref(), log) {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let file = st.logs.entry(host.to_string()).or_insert_with(|| open_log(host));
                if let Some(file) = file {
                    let _ = writeln!(file, "{text}");
                }
            }
            return;
        }
        self.show(host.as_deref(), input, print, log);
    }
}

mod count;
mod fields;

use fields::Fields;

/// A line of the terminal that cairn rewrites in place, with a spinner in front of it.
fn spinner(multi: &indicatif::MultiProgress) -> ProgressBar {
    let bar = multi.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests;
