//! End-of-run summaries: one block per host, as the user reads them after a run.

use crate::bootstrap::{AgentHandOff, Finished, HostReport, Outcome};
use crate::gitops::first_pull::FirstPull;

/// Bootstrap's summary: per host the result, then each phase with its time and the health
/// checks that passed; then the count of hosts that ended well. Failures are rendered in full
/// apart, after it.
pub fn bootstrap(reports: &[HostReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let secs = r.elapsed.as_secs_f64();
        match &r.result {
            Ok(Finished::Verified(v)) if v.unchanged => out.push_str(&format!(
                "{}: verified, no changes ({secs:.0} s): {} presents {}, booted {} from {}\n",
                r.host, v.address, v.host_key, v.boot_id, v.root_device
            )),
            Ok(Finished::Verified(v)) => out.push_str(&format!(
                "{}: verified in {secs:.0} s: {} presents {}, booted {} from {}\n",
                r.host, v.address, v.host_key, v.boot_id, v.root_device
            )),
            Ok(Finished::PhasesRan(_)) => out.push_str(&format!("{}: ok ({secs:.0} s)\n", r.host)),
            Err(_) => out.push_str(&format!("{}: FAILED after {secs:.0} s\n", r.host)),
        }
        for t in &r.timings {
            let what = match &t.outcome {
                Outcome::Done => format!("{:>7.1} s", t.elapsed.as_secs_f64()),
                Outcome::Skipped(why) => format!("skipped: {why}"),
                Outcome::Failed => format!("{:>7.1} s  FAILED", t.elapsed.as_secs_f64()),
            };
            out.push_str(&format!("  {:<10} {what}\n", t.phase.as_str()));
        }
        if let Ok(Finished::Verified(v)) = &r.result {
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
        out.push_str(&format!(
            "not committed, so no host's agent can pull them: {}\n  commit them (or run bootstrap with --commit), then push\n",
            r.uncommitted.join(", ")
        ));
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
