//! `cairn check`: built-in rules and Rego policies over the fleet repository, offline.
//!
//! [`run`] reads the repository once ([`repo::Scan`]: the files git tracks, every secrets
//! file parsed once, who may read what from the inventory's secrets policy, the same one
//! `cairn secrets rekey` uses), runs the selected rules over it and returns a [`Report`]:
//! findings (rule, severity, file:line, host, message, hint) and the rules that were skipped
//! and why. Rendering (rustc-style text, JSON, SARIF) is in [`render`]. [`gate`] is the
//! error-level subset for the hosts a command is about to act on (bootstrap, promote).
//!
//! No finding ever contains a secret value or a private key: messages name files, key
//! paths, recipients (public) and commits.

mod disk;
mod flake;
pub(crate) mod git;
mod history;
mod nix;
mod policy;
pub mod render;
mod repo;
mod rings;
pub mod rule;
mod secrets;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use rule::{RuleId, Severity};

use crate::inventory::{HostName, Inventory};
use crate::state::StateData;

/// The nixpkgs age `flake.inputs` accepts when `check { nixpkgs_max_age }` is not set.
pub const DEFAULT_NIXPKGS_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id (`secrets.plaintext`), or `policy.<package>` for a Rego policy.
    pub rule: String,
    pub severity: Severity,
    /// Relative to the repository root (`/`-separated).
    pub file: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    pub host: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// The hosts this finding is about (a secrets file: its readers), for [`gate`].
    #[serde(skip)]
    pub concerns: Vec<String>,
}

impl Finding {
    fn new(rule: RuleId, message: impl Into<String>) -> Self {
        Self {
            rule: rule.as_str().to_owned(),
            severity: rule.severity(),
            file: None,
            line: None,
            host: None,
            message: message.into(),
            hint: None,
            concerns: Vec::new(),
        }
    }
    fn file(mut self, file: impl Into<String>, line: Option<usize>) -> Self {
        self.file = Some(file.into());
        self.line = line;
        self
    }
    fn host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        self.concerns.push(host.clone());
        self.host = Some(host);
        self
    }
    fn concerns(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.concerns.extend(hosts);
        self
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A rule that did not run, and why (skipped is not passed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub rule: String,
    pub reason: String,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }
    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Warning).count()
    }
    /// Whether the check fails: an error, or with `strict` any finding.
    pub fn failed(&self, strict: bool) -> bool {
        self.errors() > 0 || (strict && !self.findings.is_empty())
    }
    fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            (a.severity, &a.file, a.line, &a.rule, &a.host, &a.message)
                .cmp(&(b.severity, &b.file, b.line, &b.rule, &b.host, &b.message))
        });
        self.findings.dedup();
    }
}

/// Which rules run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--rule`: only these (empty: all).
    pub only: Vec<RuleId>,
    /// `--skip` and `check { skip = [...] }`.
    pub skip: Vec<RuleId>,
    pub nixpkgs_max_age: Duration,
    /// The `nix` program for the rules that evaluate the flake; `None`: those rules are
    /// skipped. [`Options::new`] looks it up on PATH (`CAIRN_NIX` overrides).
    pub nix: Option<PathBuf>,
    /// "Now", for the nixpkgs age (tests fix it).
    pub now: time::OffsetDateTime,
    /// Only error-level rules (the gate).
    pub errors_only: bool,
}

impl Options {
    /// The defaults, with the inventory's `check { ... }` settings.
    pub fn new(inventory: &Inventory) -> Self {
        let settings = &inventory.check;
        Self {
            only: Vec::new(),
            skip: settings.skip.clone(),
            nixpkgs_max_age: settings.nixpkgs_max_age.unwrap_or(DEFAULT_NIXPKGS_MAX_AGE),
            nix: nix::find_program(),
            now: time::OffsetDateTime::now_utc(),
            errors_only: false,
        }
    }

    fn enabled(&self, rule: RuleId) -> bool {
        (self.only.is_empty() || self.only.contains(&rule))
            && !self.skip.contains(&rule)
            && !(self.errors_only && rule.severity() == Severity::Warning)
    }
}

/// Why check could not run (exit 2), as opposed to what it found.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum CheckError {
    #[error("cannot read {}", path.display())]
    #[diagnostic(code(cairn::check::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed: {stderr}")]
    #[diagnostic(
        code(cairn::check::git),
        help("cairn check reads the repository with git; run it inside the fleet's repository")
    )]
    Git { command: String, stderr: String },

    #[error("`{command}` did not finish within {}", crate::util::duration::format(*deadline))]
    #[diagnostic(code(cairn::check::deadline))]
    Deadline { command: String, deadline: Duration },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Rules(#[from] crate::secrets::rules::RulesError),

    #[error("policy {file}: {message}")]
    #[diagnostic(
        code(cairn::check::policy),
        help("policies are Rego v1: `deny contains msg if {{ ... }}`, `warn contains msg if {{ ... }}`")
    )]
    Policy { file: String, message: String },
}

/// The repository, its inventory and what state knows: what every rule reads.
#[derive(Debug, Clone, Copy)]
pub struct Fleet<'a> {
    pub inventory: &'a Inventory,
    pub state: &'a StateData,
}

/// Runs the selected rules over the repository of `fleet.inventory`.
pub fn run(fleet: Fleet<'_>, opts: &Options) -> Result<Report, CheckError> {
    let started = std::time::Instant::now();
    let mut report = Report::default();
    let scan = repo::Scan::new(fleet)?;
    tracing::debug!(files = scan.files.len(), elapsed = ?started.elapsed(), "repository read");

    if opts.enabled(RuleId::SecretsPlaintext)
        || opts.enabled(RuleId::SecretsRecipients)
        || opts.enabled(RuleId::SecretsHostKey)
        || opts.enabled(RuleId::SecretsStale)
        || opts.enabled(RuleId::SecretsPrivateKey)
    {
        secrets::check(&scan, &|r| opts.enabled(r), &mut report.findings);
    }
    if opts.enabled(RuleId::SecretsPrivateKey) {
        history::check(&scan, &mut report)?;
        tracing::debug!(elapsed = ?started.elapsed(), "history scanned");
    }
    if opts.enabled(RuleId::FlakeInputs) {
        flake::check(&scan, opts.nixpkgs_max_age, opts.now, &mut report.findings);
    }
    if opts.enabled(RuleId::DiskById) {
        disk::check(&scan, &mut report.findings);
    }
    let nix_rules: Vec<RuleId> =
        RuleId::ALL.into_iter().filter(|r| r.needs_nix() && opts.enabled(*r)).collect();
    nix::check(&scan, &nix_rules, opts.nix.as_deref(), &mut report)?;
    if opts.enabled(RuleId::GitopsRings) {
        rings::check(&scan, &mut report);
    }
    if opts.enabled(RuleId::Policies) {
        let builtin = report.findings.clone();
        policy::check(&scan, &builtin, opts.errors_only, &mut report.findings)?;
    }
    report.sort();
    tracing::debug!(
        findings = report.findings.len(),
        elapsed = ?started.elapsed(),
        "check done"
    );
    Ok(report)
}

/// Error-level findings that stop a command acting on some hosts.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cairn check found {} error{} concerning {}, so nothing was started", findings.len(), if findings.len() == 1 { "" } else { "s" }, hosts.join(", "))]
#[diagnostic(
    code(cairn::check::failed),
    help("{}\nfix them (`cairn check` shows the whole report), or pass --skip-check to go ahead anyway", render::plain_list(findings))
)]
pub struct CheckFailed {
    pub hosts: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Why the gate did not pass: the check found errors, or could not run.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum GateError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Failed(#[from] CheckFailed),
    #[error("cairn check could not run, so nothing was started")]
    #[diagnostic(
        code(cairn::check::gate),
        help("fix what stopped it (`cairn check` says the same), or pass --skip-check to go ahead without the check")
    )]
    CouldNotRun(#[from] CheckError),
}

/// The gate before `bootstrap` and `promote`: the error-level rules (minus the inventory's
/// `check { skip }`; the rules that need Nix are skipped when there is no nix), keeping the
/// findings that concern `hosts` or no host in particular (a private key in history concerns
/// the whole fleet). `Ok` when there are none.
pub fn gate(fleet: Fleet<'_>, hosts: &[HostName]) -> Result<(), GateError> {
    let mut opts = Options::new(fleet.inventory);
    opts.errors_only = true;
    let report = run(fleet, &opts)?;
    for s in &report.skipped {
        tracing::debug!(rule = %s.rule, reason = %s.reason, "check gate: rule skipped");
    }
    let findings = gate_findings(report, hosts);
    if findings.is_empty() {
        Ok(())
    } else {
        let hosts = hosts.iter().map(HostName::as_str).collect::<BTreeSet<_>>();
        Err(CheckFailed { hosts: hosts.into_iter().map(str::to_owned).collect(), findings }.into())
    }
}

/// The error-level findings of `report` that concern `hosts` or the whole repository.
fn gate_findings(report: Report, hosts: &[HostName]) -> Vec<Finding> {
    let wanted: BTreeSet<&str> = hosts.iter().map(HostName::as_str).collect();
    report
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .filter(|f| f.concerns.is_empty() || f.concerns.iter().any(|h| wanted.contains(h.as_str())))
        .collect()
}

/// The line (1-based) of the first line of `text` for which `pred` holds.
fn line_of(text: &str, pred: impl Fn(&str) -> bool) -> Option<usize> {
    text.lines().position(pred).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_keeps_errors_about_its_hosts_or_the_whole_repository() {
        let web1 = Finding::new(RuleId::SecretsPlaintext, "a").file("secrets/web1.yaml", Some(1));
        let web1 = web1.concerns(["web1".to_owned()]);
        let web2 = Finding::new(RuleId::SecretsPlaintext, "b").concerns(["web2".to_owned()]);
        let everyone = Finding::new(RuleId::SecretsPrivateKey, "c");
        let warning = Finding::new(RuleId::DiskById, "d").host("web1");
        let report = Report { findings: vec![web1, web2, everyone, warning], skipped: Vec::new() };
        let hosts = [HostName::new("web1".to_owned()).unwrap()];
        let kept: Vec<String> =
            gate_findings(report, &hosts).into_iter().map(|f| f.message).collect();
        assert_eq!(kept, ["a", "c"]);
    }
}
