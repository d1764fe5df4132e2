//! End-of-run summaries: one block per host, as the user reads them after a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::human;
use crate::bootstrap::{AgentHandOff, Finished, HostReport, Outcome};
use crate::gitops::first_pull::FirstPull;
use crate::plan::apply::{Done, HostOutcome};

/// Bootstrap's summary: a table with one row per host (result, time, address, short host
/// key, and for a failure the phase and its reason in one line), what verify found, the
/// count of hosts that ended well, then the per-phase timings: always for one host, for
/// many with `timings` (`--timings`). Failures are rendered in full apart, after it.
pub fn bootstrap(reports: &[HostReport], timings: bool) -> String {
    let mut rows =
        vec![["HOST", "RESULT", "TIME", "ADDRESS", "HOST KEY", "NOTE"].map(String::from).to_vec()];
    for r in reports {
        let time = human::clock(r.elapsed.as_secs());
        let row = match &r.result {
            Ok(Finished::Verified(v)) => {
                let result = if v.unchanged { "no changes" } else { "verified" };
                vec![result.into(), time, v.address.clone(), short_key(&v.host_key), String::new()]
            }
            Ok(Finished::PhasesRan(_)) => {
                vec![
                    "ok".into(),
                    time,
                    String::new(),
                    String::new(),
                    "phases ran, not verified".into(),
                ]
            }
            Err(e) => {
                let phase = e.phase.map(|p| format!("{}: ", p.as_str())).unwrap_or_default();
                let why = human::clean(e.source.to_string().lines().next().unwrap_or_default());
                let note = human::fit(&format!("{phase}{why}"), 90);
                vec!["FAILED".into(), time, String::new(), String::new(), note]
            }
        };
        rows.push(std::iter::once(r.host.clone()).chain(row).collect());
    }
    let mut out = table(&rows);
    for r in reports {
        if let Ok(Finished::Verified(v)) = &r.result {
            out.push_str(&format!("{}: booted {} from {}\n", r.host, v.boot_id, v.root_device));
            // The table shows enough to tell keys apart; the proof is the whole fingerprint.
            out.push_str(&format!("  host key   {}\n", v.host_key));
            for check in &v.checks {
                out.push_str(&format!("  check      {check}\n"));
            }
            if let Some(agent) = &v.agent {
                out.push_str(&format!("  agent      {}\n", agent_line(agent)));
            }
        }
    }
    let ok = reports.iter().filter(|r| r.result.is_ok()).count();
    out.push_str(&format!("{ok} of {} hosts ok\n", reports.len()));
    if reports.len() == 1 || timings {
        out.push('\n');
        out.push_str(&phase_timings(reports));
    }
    out
}

/// `SHA256:XcFx8ZXX` from `ssh-ed25519 SHA256:XcFx8ZXXzz/...`: enough to tell keys apart.
fn short_key(key: &str) -> String {
    let fingerprint = key.split_whitespace().find(|w| w.starts_with("SHA256:")).unwrap_or(key);
    fingerprint.chars().take("SHA256:".len() + 8).collect()
}

/// Each phase's time per host, aligned: one column per host; a skipped phase says why when
/// there is one host.
fn phase_timings(reports: &[HostReport]) -> String {
    let mut phases: Vec<&str> = Vec::new();
    for t in reports.iter().flat_map(|r| &r.timings) {
        if !phases.contains(&t.phase.as_str()) {
            phases.push(t.phase.as_str());
        }
    }
    let one = reports.len() == 1;
    let mut rows = vec![std::iter::once("PHASE".to_string())
        .chain(reports.iter().map(|r| r.host.clone()))
        .collect::<Vec<_>>()];
    for phase in phases {
        let mut row = vec![phase.to_string()];
        for r in reports {
            let cell = match r.timings.iter().find(|t| t.phase.as_str() == phase) {
                None => "-".into(),
                Some(t) => match &t.outcome {
                    Outcome::Done => format!("{:>6.1} s", t.elapsed.as_secs_f64()),
                    Outcome::Skipped(why) if one => format!("skipped: {why}"),
                    Outcome::Skipped(_) => "skipped".into(),
                    Outcome::Failed => format!("{:>6.1} s FAILED", t.elapsed.as_secs_f64()),
                },
            };
            row.push(cell);
        }
        rows.push(row);
    }
    table(&rows)
}

/// The end of `apply` and `destroy`: one row per host, then the totals.
pub fn apply(outcomes: &[HostOutcome]) -> String {
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut rows = vec![["HOST", "RESULT", "TIME", "NOTE"].map(String::from).to_vec()];
    for o in outcomes {
        let (kind, note) = match &o.result {
            Ok(Done::Created(id)) => ("created", format!("machine {id}")),
            Ok(Done::Adopted(id)) => ("adopted", format!("recorded machine {id}")),
            Ok(Done::Replaced { old: Some(old), new }) => {
                ("replaced", format!("machine {old} replaced by {new}"))
            }
            Ok(Done::Replaced { old: None, new }) => ("replaced", format!("machine {new}")),
            Ok(Done::Destroyed(Some(id))) => ("destroyed", format!("machine {id}")),
            Ok(Done::Destroyed(None)) => {
                ("destroyed", "no machine existed; forgotten in state".to_owned())
            }
            Ok(Done::Skipped(why)) => ("skipped", why.clone()),
            Err(e) => ("failed", human::fit(&crate::plan::one_line(e), 90)),
        };
        *counts.entry(kind).or_default() += 1;
        let result = if kind == "failed" { "FAILED" } else { kind };
        // Fixed width: a slow host does not move the other columns.
        let time = format!("{:>5.1} s", o.elapsed.as_secs_f64());
        rows.push(vec![o.host.clone(), result.into(), time, note]);
    }
    let mut out = table(&rows);
    let totals: Vec<String> = ["created", "adopted", "replaced", "destroyed", "skipped", "failed"]
        .iter()
        .filter_map(|k| counts.get(k).map(|n| format!("{n} {k}")))
        .collect();
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let _ = writeln!(
        out,
        "{ok} of {} hosts ok{}",
        outcomes.len(),
        if totals.is_empty() { String::new() } else { format!(": {}", totals.join(", ")) }
    );
    out
}

/// Rows as columns of text, each as wide as its widest cell, two spaces apart; trailing
/// blanks dropped.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> =
            row.iter().enumerate().map(|(c, s)| format!("{s:<w$}", w = widths[c])).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// After a bootstrap: what the hosts' agent cannot pull yet, and what to do.
pub fn first_pull(hosts: &[String], r: &FirstPull) -> String {
    let mut out = String::new();
    if let Some(commit) = &r.committed {
        let short = &commit[..commit.len().min(12)];
        out.push_str(&format!("committed {short}: keys and secrets for {}\n", hosts.join(", ")));
    }
    if !r.uncommitted.is_empty() {
        out.push_str("not committed, so no host's agent can pull them:\n");
        for file in &r.uncommitted {
            out.push_str(&format!("  {file}\n"));
        }
        out.push_str("commit them (or run bootstrap with --commit), then push\n");
    }
    for (host, branch) in &r.behind {
        out.push_str(&format!(
            "{host}: {branch} does not contain its keys and secrets yet, so its agent would pull secrets it cannot decrypt: push, then `cairn promote`\n"
        ));
    }
    out
}

/// What the host's GitOps agent said at verify, in one line.
fn agent_line(a: &AgentHandOff) -> String {
    let s = match &a.status {
        Err(why) => return format!("comin did not answer ({why}); it is to pull {}", a.branch),
        Ok(s) => s,
    };
    let mut line = match &s.deployment {
        Some(d) => {
            let short = &d.commit[..d.commit.len().min(12)];
            let mut l = format!("comin deployed {short} from {} ({})", d.branch, d.status);
            if !d.error_msg.is_empty() {
                l.push_str(&format!(": {}", d.error_msg));
            }
            if d.branch != a.branch {
                l.push_str(&format!("; its ring follows {}", a.branch));
            }
            l
        }
        None => format!("comin has deployed nothing yet; it pulls {} next", a.branch),
    };
    if s.is_suspended {
        line.push_str("; suspended (`cairn release` resumes it)");
    }
    line
}

#[cfg(test)]
mod tests;
