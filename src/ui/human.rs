//! Text a person reads: the pieces of a log line (paths shortened, fields in words, nix's
//! warnings explained), sizes, rates, bars, and lines cut to the terminal's width.
//!
//! Pure functions: [`super::screen`] puts them together, tests call them directly.

use std::path::{Path, PathBuf};

const MIB: f64 = 1024.0 * 1024.0;

/// Where paths are shown from: the repository (relative) and the home directory (`~`).
#[derive(Debug, Clone, Default)]
pub struct Places {
    pub repo: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl Places {
    /// Paths under the repository become relative to it, the repository itself `.`, and
    /// paths under the home directory start with `~`.
    pub fn shorten(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Some(repo) = self.repo.as_deref().and_then(Path::to_str).filter(|r| r.len() > 1) {
            let repo = repo.trim_end_matches('/');
            out = out.replace(&format!("{repo}/"), "");
            out = out.replace(&format!("'{repo}'"), "'.'").replace(&format!("\"{repo}\""), "\".\"");
            if out == repo {
                out = ".".into();
            }
        }
        if let Some(home) = self.home.as_deref().and_then(Path::to_str).filter(|h| h.len() > 1) {
            out = out.replace(&format!("{}/", home.trim_end_matches('/')), "~/");
        }
        out
    }
}

/// Text without escape sequences or other control characters (tabs become spaces, and the
/// breaks of a many-line text ` | `), so a line is one line and CI logs show no garbage.
pub fn clean(text: &str) -> String {
    let text = console::strip_ansi_codes(text);
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            line.chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines.join(" | ")
}

/// `line` cut to `width` columns, ending in `…` when cut, so the terminal never wraps it.
pub fn fit(line: &str, width: usize) -> String {
    if console::measure_text_width(line) <= width {
        return line.to_string();
    }
    console::truncate_str(line, width, "…").into_owned()
}

/// Sizes as people read them: `312 MiB`, `8.7 MiB`, `940 KiB`.
pub fn size(bytes: u64) -> String {
    let mib = bytes as f64 / MIB;
    if mib >= 10.0 {
        format!("{mib:.0} MiB")
    } else if mib >= 1.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// `96/144 MiB`: done and total in the total's unit.
pub fn sizes(done: u64, total: u64) -> String {
    let total_mib = total as f64 / MIB;
    if total_mib >= 10.0 {
        format!("{:.0}/{total_mib:.0} MiB", done as f64 / MIB)
    } else {
        format!("{:.1}/{total_mib:.1} MiB", done as f64 / MIB)
    }
}

/// A rate: `8.7 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{:.1} MiB/s", bytes_per_sec / MIB)
}

/// A duration as a clock: `0:06`, `12:40`, `1:02:03`.
pub fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A bar of `width` cells, `done` of `total` filled.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as u128 * width as u128) / total as u128) as usize
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// A nix build's progress as a bar and words, `████████░░░░  building 3/7, 2 running`, or
/// `None` while nix does not know yet what it has to do.
pub fn building(p: &crate::nix::BuildProgress) -> Option<String> {
    let (done, total) = (p.built + p.fetched, p.builds + p.fetches);
    if total == 0 {
        return None;
    }
    let mut words = Vec::new();
    if p.builds > 0 {
        words.push(format!("building {}/{}", p.built, p.builds));
    }
    if p.fetches > 0 {
        words.push(format!("fetching {}/{} paths", p.fetched, p.fetches));
    }
    if p.running > 0 {
        words.push(format!("{} running", p.running));
    }
    if p.failed > 0 {
        words.push(format!("{} failed", p.failed));
    }
    Some(format!("{}  {}", bar(done, total, 20), words.join(", ")))
}

/// One field of a log event, as words, or `None` for fields the terminal leaves to the
/// host's log file (long store paths, scripts, URLs drawn elsewhere).
pub fn field(name: &str, value: &str, places: &Places) -> Option<String> {
    let number = || value.parse::<u64>().ok();
    Some(match name {
        "bundle" | "system" | "script" | "source" | "host" | "upload" => return None,
        "bytes" | "total" | "total_bytes" => size(number()?),
        "mib" => format!("{value} MiB"),
        "mem_mib" => format!("{value} MiB of memory"),
        "paths" if value == "1" => "1 path".into(),
        "paths" => format!("{value} paths"),
        "hosts" => format!("{value} hosts"),
        _ if value.starts_with('/') || value.starts_with("~/") => places.shorten(value),
        _ => format!("{name} {}", places.shorten(value)),
    })
}

/// A line nix printed, prefixed `nix:`, with paths shortened and the repository's own path
/// left out of the warnings about it (`Git tree '.' is dirty` says less than `Git tree is
/// dirty`). Also the explanation of a common warning, once per kind (`key`).
pub fn nix_line(line: &str, places: &Places) -> (String, Option<(&'static str, &'static str)>) {
    let text = places.shorten(&clean(line)).replace(" '.' ", " ");
    let explain = EXPLAINED.iter().find(|(key, _)| text.contains(key)).copied();
    (format!("nix: {text}"), explain)
}

/// Warnings nix gives often, and what they mean for a bootstrap.
const EXPLAINED: &[(&str, &str)] = &[
    (
        "is dirty",
        "a dirty tree is built as it is on disk: uncommitted changes to tracked files are included, files git does not track are not",
    ),
    (
        "ignoring untrusted substituter",
        "your user may not choose substituters: add it to trusted-users or the daemon's nix.conf",
    ),
    (
        "download buffer is full",
        "nix downloads faster than it unpacks; harmless, raise download-buffer-size to hide it",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn places() -> Places {
        Places { repo: Some("/home/me/fleet".into()), home: Some("/home/me".into()) }
    }

    #[test]
    fn paths_are_shown_from_the_repository_and_home() {
        let p = places();
        assert_eq!(p.shorten("/home/me/fleet/secrets/web1.yaml"), "secrets/web1.yaml");
        assert_eq!(
            p.shorten("/home/me/.cache/cairn/vm/installer.tar.gz"),
            "~/.cache/cairn/vm/installer.tar.gz"
        );
        assert_eq!(p.shorten("/home/me/fleet"), ".");
        assert_eq!(p.shorten("/etc/hosts"), "/etc/hosts");
    }

    #[test]
    fn nix_warnings_get_a_prefix_and_an_explanation() {
        let (line, why) =
            nix_line("\x1b[35;1mwarning:\x1b[0m Git tree '/home/me/fleet' is dirty", &places());
        assert_eq!(line, "nix: warning: Git tree is dirty");
        assert_eq!(why.map(|w| w.0), Some("is dirty"));
        assert_eq!(nix_line("building '/nix/store/x.drv'...", &places()).1, None);
    }

    #[test]
    fn long_lines_end_in_an_ellipsis_at_the_width() {
        assert_eq!(fit("web1  copy  sent 8 paths", 14), "web1  copy  s…");
        assert_eq!(fit("short", 14), "short");
        assert_eq!(console::measure_text_width(&fit(&"é".repeat(50), 20)), 20);
    }

    #[test]
    fn control_characters_never_reach_a_line() {
        assert_eq!(clean("a\x1b[1mb\x1b[0m\tc\rd\x07"), "ab cd");
        // A many-line error (a command's stderr tail) keeps its breaks visible.
        assert_eq!(
            clean("kexec failed; stderr ends with:\nkexec_load failed\n\nentry = 0x1\n"),
            "kexec failed; stderr ends with: | kexec_load failed | entry = 0x1"
        );
    }

    #[test]
    fn numbers_in_words() {
        assert_eq!(size(312 * 1024 * 1024), "312 MiB");
        assert_eq!(size(9_123_456), "8.7 MiB");
        assert_eq!(sizes(96 << 20, 144 << 20), "96/144 MiB");
        assert_eq!(clock(6), "0:06");
        assert_eq!(clock(3723), "1:02:03");
        assert_eq!(bar(2, 4, 8), "████░░░░");
        assert_eq!(bar(9, 4, 4), "████");
        assert_eq!(field("paths", "8", &places()).as_deref(), Some("8 paths"));
        assert_eq!(field("bundle", "/x", &places()), None);
        assert_eq!(field("file", "/home/me/fleet/s.yaml", &places()).as_deref(), Some("s.yaml"));
    }
}
