//! nix's `--log-format internal-json` stderr, read back into what a person wants to see:
//! the lines nix would have printed (warnings, errors with the failed build's log tail) and
//! the build's progress, "building 3/7".
//!
//! The format (nix's `JSONLogger`): each line is `@nix ` and a JSON object whose `action` is
//! `msg` (`level`, `msg`), `start` (`id`, `type` of activity, `level`, `text`, `fields`),
//! `stop` (`id`) or `result` (`id`, `type` of result, `fields`). Activity types: 100 copy a
//! path, 101 file transfer, 102 realise, 103 copy paths, 104 builds, 105 one build (fields:
//! its .drv, the machine), 108 substitute. Result types: 101 a build's log line (fields:
//! the line), 105 progress (done, expected, running, failed), 106 expected (activity type,
//! count). Levels: 0 error, 1 warning, 2 notice, 3 info, 4 talkative and more verbose.
//!
//! Any other line (nix before the logger is set up, or a nix that ignored the format) is a
//! line of text, kept as it is.

use std::collections::{HashMap, VecDeque};

/// The tracing target of a build's progress (fields `built`, `builds`, `running`, `failed`,
/// `fetched`, `fetches`): drawn as "building 3/7" on the host's line.
pub const PROGRESS_TARGET: &str = "cairn::nix::progress";

/// How many lines of a failed build's log its error keeps (nix's own `log-lines` default).
const BUILD_LOG_TAIL: usize = 10;

const ACT_COPY_PATHS: u64 = 103;
const ACT_BUILDS: u64 = 104;
const ACT_BUILD: u64 = 105;
const RES_BUILD_LOG_LINE: u64 = 101;
const RES_PROGRESS: u64 = 105;

/// How much of a build is done: derivations built and store paths fetched from caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub built: u64,
    pub builds: u64,
    pub running: u64,
    pub failed: u64,
    pub fetched: u64,
    pub fetches: u64,
}

/// What one line of nix's stderr comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A line a person reads (nix's level: 0 error, 1 warning, 2-3 notice and info).
    Line { level: u8, text: String },
    /// A line for the host's log file only (activities, talkative messages).
    Detail(String),
    /// The build's progress changed.
    Progress(Progress),
}

#[derive(serde::Deserialize)]
struct Raw {
    action: String,
    #[serde(default)]
    id: u64,
    #[serde(default, rename = "type")]
    kind: u64,
    #[serde(default)]
    level: u8,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    fields: Vec<serde_json::Value>,
}

/// Reads nix's stderr line by line, remembering what the lines after need: which activity
/// is which, the progress so far, and each build's last log lines.
#[derive(Debug, Default)]
pub struct NixLog {
    /// Activity id → its type, while it runs.
    kinds: HashMap<u64, u64>,
    /// A build activity's id → its .drv path.
    drvs: HashMap<u64, String>,
    /// The last log lines of each build, by .drv path (kept after the build stops: nix
    /// reports the failure after).
    logs: HashMap<String, VecDeque<String>>,
    progress: Progress,
}

impl NixLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// What `line` says, if anything.
    pub fn read(&mut self, line: &str) -> Vec<Said> {
        let Some(json) = line.strip_prefix("@nix ") else {
            return vec![Said::Line { level: 3, text: clean(line) }];
        };
        let Ok(raw) = serde_json::from_str::<Raw>(json) else {
            return vec![Said::Detail(clean(line))];
        };
        match raw.action.as_str() {
            "msg" => self.message(raw.level, &clean(&raw.msg)),
            "start" => {
                self.kinds.insert(raw.id, raw.kind);
                if raw.kind == ACT_BUILD {
                    if let Some(drv) = raw.fields.first().and_then(|v| v.as_str()) {
                        self.drvs.insert(raw.id, drv.to_owned());
                    }
                }
                let text = clean(&raw.text);
                if text.is_empty() {
                    Vec::new()
                } else {
                    vec![Said::Detail(text)]
                }
            }
            "stop" => {
                self.kinds.remove(&raw.id);
                self.drvs.remove(&raw.id);
                Vec::new()
            }
            "result" => self.result(&raw),
            _ => Vec::new(),
        }
    }

    fn message(&mut self, level: u8, text: &str) -> Vec<Said> {
        if level > 3 {
            return vec![Said::Detail(text.to_owned())];
        }
        let mut text = text.to_owned();
        // With internal-json nix leaves the failed build's log out of its error (its JSON
        // logger counts as verbose): put it back, as nix prints it otherwise.
        if let Some(drv) = failed_builder(&text).map(str::to_owned) {
            if let Some(tail) = self.logs.get(&drv).filter(|t| !t.is_empty()) {
                text.push_str(&format!(";\nlast {} log lines:", tail.len()));
                for l in tail {
                    text.push_str(&format!("\n> {l}"));
                }
                text.push_str(&format!("\nFor full logs, run 'nix log {drv}'."));
            }
        }
        text.lines().map(|l| Said::Line { level, text: l.trim_end().to_owned() }).collect()
    }

    fn result(&mut self, raw: &Raw) -> Vec<Said> {
        let number = |i: usize| raw.fields.get(i).and_then(|v| v.as_u64()).unwrap_or(0);
        match raw.kind {
            RES_BUILD_LOG_LINE => {
                let (Some(drv), Some(line)) =
                    (self.drvs.get(&raw.id), raw.fields.first().and_then(|v| v.as_str()))
                else {
                    return Vec::new();
                };
                let tail = self.logs.entry(drv.clone()).or_default();
                if tail.len() == BUILD_LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(clean(line));
                Vec::new()
            }
            RES_PROGRESS => {
                let before = self.progress;
                let p = &mut self.progress;
                match self.kinds.get(&raw.id) {
                    Some(&ACT_BUILDS) => {
                        (p.built, p.builds, p.running, p.failed) =
                            (number(0), number(1), number(2), number(3));
                    }
                    Some(&ACT_COPY_PATHS) => (p.fetched, p.fetches) = (number(0), number(1)),
                    _ => return Vec::new(),
                }
                if self.progress == before {
                    Vec::new()
                } else {
                    vec![Said::Progress(self.progress)]
                }
            }
            _ => Vec::new(),
        }
    }
}

/// The .drv of `builder for '/nix/store/…drv' failed …`.
fn failed_builder(text: &str) -> Option<&str> {
    let rest = &text[text.find("builder for '")? + "builder for '".len()..];
    let drv = &rest[..rest.find('\'')?];
    rest[drv.len()..].starts_with("' failed").then_some(drv)
}

/// Without escape sequences or other control characters.
fn clean(text: &str) -> String {
    console::strip_ansi_codes(text)
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests;
