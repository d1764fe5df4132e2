//! What a run's events look like to a person, as state: per host its phase, what it is
//! doing and its transfer; and the lines to print, one per event worth reading.
//!
//! Pure: the caller passes the time, so tests replay a run and snapshot what it shows.
//! [`super::progress`] feeds it from tracing and draws it (bars on a terminal, plain lines
//! elsewhere).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::human::{self, Places};

/// One event of a run, as the UI needs it.
#[derive(Debug, Clone)]
pub enum Input {
    /// A host's phase started, ended, was skipped or failed.
    Phase { host: String, phase: String, step: String, detail: String },
    /// What apply or destroy does to a host's machine (`create`, `destroy`): its phase
    /// column, shown on its line; the summary table says how it ended.
    Action { host: String, action: String, step: String },
    /// A log event (`warn` and `error` marked as such).
    Log {
        host: Option<String>,
        level: tracing::Level,
        nix: bool,
        message: String,
        fields: Vec<(String, String)>,
    },
    /// Bytes sent so far by a long transfer: `raw` (before compression) of `total` when known.
    Transfer { host: Option<String>, bytes: u64, raw: Option<u64>, total: Option<u64> },
    /// A nix build's progress on the host (derivations built, paths fetched).
    Build { host: Option<String>, progress: crate::nix::BuildProgress },
    /// A download's progress (`step`: started, progress, downloaded, verified, cached).
    Download {
        host: Option<String>,
        url: String,
        step: String,
        bytes: u64,
        total: u64,
        path: String,
    },
}

/// A transfer being drawn on a host's line.
#[derive(Debug, Clone)]
struct Transfer {
    started: Duration,
    /// Bytes on the wire (compressed for a closure).
    wire: u64,
    /// Bytes of the payload (equal to `wire` when nothing compresses it).
    raw: u64,
    total: Option<u64>,
    compressed: bool,
    /// `wire` and `raw` when the transfer was first seen (rates count from there).
    base: (u64, u64),
}

#[derive(Debug, Clone, Default)]
struct Host {
    phase: String,
    /// The last thing said about the host in its phase.
    doing: String,
    phase_started: Duration,
    /// The total the next transfer will have (an event's `total_bytes`) and when it was
    /// announced (the transfer's start).
    expect_total: Option<(u64, Duration)>,
    transfer: Option<Transfer>,
    /// What nix builds, while it does.
    building: Option<crate::nix::BuildProgress>,
    finished: bool,
}

/// The run as shown: hosts and their lines.
#[derive(Debug, Default)]
pub struct Screen {
    places: Places,
    hosts: BTreeMap<String, Host>,
    /// The widest host name so far: the host column's width.
    host_width: usize,
    explained: HashSet<&'static str>,
    /// nix's warnings already shown, per host: nix repeats them for each evaluation.
    warned: HashSet<(Option<String>, String)>,
}

/// Cells of a transfer's bar.
const BAR: usize = 20;

impl Screen {
    pub fn new(places: Places) -> Self {
        Self { places, host_width: 4, ..Self::default() }
    }

    pub fn knows_repo(&self) -> bool {
        self.places.repo.is_some()
    }

    pub fn set_places(&mut self, places: Places) {
        self.places = places;
    }

    /// Takes in one event at `now` (time since the run started) and returns the lines it
    /// prints (none for progress that only moves a bar).
    pub fn take(&mut self, input: Input, now: Duration) -> Vec<String> {
        match input {
            Input::Phase { host, phase, step, detail } => {
                self.phase(host, phase, &step, &detail, now)
            }
            Input::Action { host, action, step } => {
                let h = self.host(&host);
                if step == "started" {
                    *h = Host {
                        phase: action,
                        phase_started: now,
                        doing: "started".into(),
                        ..Host::default()
                    };
                } else {
                    h.transfer = None;
                    h.finished = true;
                    h.doing = step;
                }
                Vec::new()
            }
            Input::Log { host, level, nix, message, fields } => {
                self.log(host, level, nix, &message, &fields, now)
            }
            Input::Transfer { host, bytes, raw, total } => {
                let Some(host) = host else { return Vec::new() };
                let h = self.host(&host);
                let total = total.or(h.expect_total.map(|e| e.0));
                // Announced: it started then, from nothing; else it is first seen now.
                let (started, base) = match h.expect_total {
                    Some((_, at)) => (at, (0, 0)),
                    None => (now, (bytes, raw.unwrap_or(bytes))),
                };
                let t = h.transfer.get_or_insert(Transfer {
                    started,
                    wire: 0,
                    raw: 0,
                    total,
                    compressed: raw.is_some(),
                    base,
                });
                t.wire = bytes;
                t.raw = raw.unwrap_or(bytes);
                t.total = total;
                Vec::new()
            }
            Input::Download { host, url, step, bytes, total, path } => {
                self.download(host, &url, &step, bytes, total, &path, now)
            }
            Input::Build { host, progress } => {
                if let Some(host) = host {
                    self.host(&host).building = Some(progress);
                }
                Vec::new()
            }
        }
    }

    fn host(&mut self, host: &str) -> &mut Host {
        self.host_width = self.host_width.max(host.chars().count());
        self.hosts.entry(host.to_string()).or_default()
    }

    /// `web1  copy     text`: a line about a host in its phase.
    fn line(&self, host: Option<&str>, phase: &str, text: &str) -> String {
        let line = match host {
            Some(host) if phase.is_empty() => format!("{host:<w$}  {text}", w = self.host_width),
            Some(host) => format!("{host:<w$}  {phase:<7}  {text}", w = self.host_width),
            None => text.to_string(),
        };
        line.trim_end().to_string()
    }

    fn phase(
        &mut self,
        host: String,
        phase: String,
        step: &str,
        detail: &str,
        now: Duration,
    ) -> Vec<String> {
        let h = self.host(&host);
        let took = now.saturating_sub(h.phase_started).as_secs_f64();
        let text = match step {
            "started" => {
                *h = Host { phase: phase.clone(), phase_started: now, ..Host::default() };
                h.doing = if detail.is_empty() { "started".into() } else { detail.into() };
                h.doing.clone()
            }
            "done" => {
                h.transfer = None;
                h.building = None;
                h.doing = format!("done in {took:.1} s");
                if !detail.is_empty() {
                    h.doing = format!("{} ({detail})", h.doing);
                }
                h.finished |= phase == "verify";
                h.doing.clone()
            }
            "skipped" => {
                h.doing = format!("skipped ({detail})");
                h.doing.clone()
            }
            _ => {
                h.transfer = None;
                h.building = None;
                h.finished = true;
                h.doing = format!("FAILED after {took:.1} s: {}", human::clean(detail));
                h.doing.clone()
            }
        };
        vec![self.line(Some(&host), &phase, &self.places.shorten(&text))]
    }

    fn log(
        &mut self,
        host: Option<String>,
        level: tracing::Level,
        nix: bool,
        message: &str,
        fields: &[(String, String)],
        now: Duration,
    ) -> Vec<String> {
        let phase = host.as_ref().map(|h| self.host(h).phase.clone()).unwrap_or_default();
        let mut lines = Vec::new();
        let mut text = if nix {
            let (text, explain) = human::nix_line(message, &self.places);
            if text.starts_with("nix: warning:")
                && !self.warned.insert((host.clone(), text.clone()))
            {
                return Vec::new();
            }
            lines.push(text);
            if let Some((key, why)) = explain {
                if self.explained.insert(key) {
                    lines.push(format!("nix: ({why})"));
                }
            }
            return lines.into_iter().map(|l| self.line(host.as_deref(), &phase, &l)).collect();
        } else {
            let message = human::clean(message);
            // "copy: sent 8 paths" under the copy column says copy twice.
            let message =
                message.strip_prefix(&format!("{phase}: ")).unwrap_or(&message).to_string();
            self.places.shorten(&message)
        };
        let words: Vec<String> = fields
            .iter()
            .filter_map(|(name, value)| human::field(name, &human::clean(value), &self.places))
            .collect();
        if !words.is_empty() {
            text = format!("{text} ({})", words.join(", "));
        }
        if level == tracing::Level::WARN {
            text = format!("warning: {text}");
        } else if level == tracing::Level::ERROR {
            text = format!("error: {text}");
        }
        if let Some(total) =
            fields.iter().find(|(n, _)| n == "total_bytes").and_then(|(_, v)| v.parse().ok())
        {
            if let Some(h) = host.as_ref().map(|h| self.host(h)) {
                h.expect_total = Some((total, now));
            }
        }
        if let Some(h) = host.as_ref().map(|h| self.host(h)) {
            h.doing.clone_from(&text);
            // cairn speaks again once nix is done (`built`): its progress is over.
            h.building = None;
            // A line after a transfer says what came of it (`sent 8 paths`): the bar is done.
            if h.expect_total.is_none_or(|(_, at)| at != now) {
                h.transfer = None;
            }
        }
        vec![self.line(host.as_deref(), &phase, &text)]
    }

    #[allow(clippy::too_many_arguments)]
    fn download(
        &mut self,
        host: Option<String>,
        url: &str,
        step: &str,
        bytes: u64,
        total: u64,
        path: &str,
        now: Duration,
    ) -> Vec<String> {
        let phase = host.as_ref().map(|h| self.host(h).phase.clone()).unwrap_or_default();
        let text = match step {
            "started" => {
                if let Some(h) = host.as_ref().map(|h| self.host(h)) {
                    let total = (total > 0).then_some(total);
                    h.transfer = Some(Transfer {
                        started: now,
                        wire: bytes,
                        raw: bytes,
                        total,
                        compressed: false,
                        base: (bytes, bytes),
                    });
                }
                let size =
                    if total > 0 { format!(" ({})", human::size(total)) } else { String::new() };
                format!("downloading {url}{size}")
            }
            "progress" => {
                if let Some(t) = host
                    .as_ref()
                    .and_then(|h| self.hosts.get_mut(h))
                    .and_then(|h| h.transfer.as_mut())
                {
                    (t.wire, t.raw) = (bytes, bytes);
                }
                return Vec::new();
            }
            "downloaded" => {
                if let Some(h) = host.as_ref().and_then(|h| self.hosts.get_mut(h)) {
                    h.transfer = None;
                }
                return Vec::new();
            }
            "verified" => format!("downloaded {url} to {}", self.places.shorten(path)),
            "cached" => format!("using the cached download of {url}"),
            _ => return Vec::new(),
        };
        vec![self.line(host.as_deref(), &phase, &text)]
    }

    /// Whether the host is at work (a phase, an action or a transfer): only then does it get
    /// a line of its own (a log event about a host is not enough, as in `secrets rekey`).
    pub fn at_work(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|h| !h.phase.is_empty() || h.transfer.is_some())
    }

    /// Whether the host's line is final (verified or failed).
    pub fn finished(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|h| h.finished)
    }

    /// The host's line under the log: its phase and what it does, or its transfer's bar,
    /// `web1  copy     ████░░░  96/144 MiB  8.7 MiB/s  0:06`.
    pub fn host_line(&self, host: &str, now: Duration) -> String {
        let Some(h) = self.hosts.get(host) else { return host.to_string() };
        let Some(t) = &h.transfer else {
            if let Some(text) = h.building.as_ref().and_then(human::building) {
                return self.line(Some(host), &h.phase, &text);
            }
            return self.line(Some(host), &h.phase, &self.places.shorten(&h.doing));
        };
        let secs = now.saturating_sub(t.started).as_secs_f64();
        let raw_rate = if secs > 0.0 { t.raw.saturating_sub(t.base.1) as f64 / secs } else { 0.0 };
        let mut text = match t.total {
            Some(total) => {
                format!(
                    "{}  {}",
                    human::bar(t.raw, total, BAR),
                    human::sizes(t.raw.min(total), total)
                )
            }
            None => format!("{} sent", human::size(t.raw)),
        };
        if secs > 0.0 {
            text.push_str(&format!("  {}", human::rate(raw_rate)));
            if t.compressed {
                text.push_str(&format!(
                    " ({} zstd)",
                    human::rate(t.wire.saturating_sub(t.base.0) as f64 / secs)
                ));
            }
        }
        if let Some(total) = t.total.filter(|_| raw_rate > 0.0) {
            let left = total.saturating_sub(t.raw) as f64 / raw_rate;
            text.push_str(&format!("  {}", human::clock(left.ceil() as u64)));
        }
        self.line(Some(host), &h.phase, &text)
    }
}

#[cfg(test)]
mod tests;
