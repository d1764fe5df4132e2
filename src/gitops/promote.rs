//! Moving a ring's branch: the gates a promotion must pass (pure functions over what git and
//! the hosts say, table-tested), the revert commit of a rollback, and the record of each
//! promotion as an annotated tag `cairn/promote/<ring>/<n>`.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::evidence::Evidence;
use super::git::{GitError, Repo};
use super::status::HostStatus;

/// One gate's verdict, as `promote` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateResult {
    pub gate: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Refused,
    Skipped,
}

impl GateResult {
    fn new(gate: &'static str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self { gate, outcome, detail: detail.into() }
    }
    pub fn refused(&self) -> bool {
        self.outcome == Outcome::Refused
    }
}

fn short(c: &str) -> &str {
    &c[..c.len().min(7)]
}

/// comin deploys a main branch only as a fast-forward of what it deployed.
pub fn fast_forward_gate(
    branch: &str,
    current: Option<&str>,
    target: &str,
    target_descends: bool,
) -> GateResult {
    const GATE: &str = "fast-forward";
    match current {
        None => GateResult::new(GATE, Outcome::Passed, format!("{branch} does not exist yet: it starts at {}", short(target))),
        Some(c) if c == target => GateResult::new(
            GATE,
            Outcome::Refused,
            format!("{branch} is already at {}: nothing to promote", short(target)),
        ),
        Some(c) if target_descends => GateResult::new(
            GATE,
            Outcome::Passed,
            format!("{} fast-forwards {branch} from {}", short(target), short(c)),
        ),
        Some(c) => GateResult::new(
            GATE,
            Outcome::Refused,
            format!(
                "{} does not fast-forward {branch} at {}: comin refuses a branch that is not a fast-forward of what it deployed (\"hard reset\"); promote a commit that contains {} (after a rollback, merge {branch} into the source branch first)",
                short(target),
                short(c),
                short(c)
            ),
        ),
    }
}

/// Every host of the previous ring ran `target`, converged and healthy, for at least `soak`
/// (judged from the evidence: when cairn first saw each converged on it).
pub fn soak_gate(
    previous: Option<(&str, &[String])>,
    soak: Duration,
    target: &str,
    rows: &[HostStatus],
    evidence: &Evidence,
    now: OffsetDateTime,
) -> GateResult {
    const GATE: &str = "soak";
    let Some((ring, hosts)) = previous else {
        return GateResult::new(GATE, Outcome::Passed, "a first ring: nothing before it to soak");
    };
    let mut problems = Vec::new();
    let mut shortest: Option<Duration> = None;
    for host in hosts {
        let Some(row) = rows.iter().find(|r| &r.host == host) else {
            problems.push(format!("{host}: not looked at"));
            continue;
        };
        if row.commit.as_deref() != Some(target) {
            let runs = row.commit.as_deref().map_or("nothing".to_owned(), |c| short(c).to_owned());
            let why = row.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
            problems.push(format!("{host}: runs {runs}, not {}{why}", short(target)));
            continue;
        }
        if !row.converged {
            problems.push(format!("{host}: {}", row.error.as_deref().unwrap_or("not converged")));
            continue;
        }
        let Some(seen) = evidence.hosts.get(host) else {
            problems.push(format!("{host}: no record yet of it converged on {}", short(target)));
            continue;
        };
        let ran = Duration::try_from(now - seen.first_seen).unwrap_or(Duration::ZERO);
        if ran < soak {
            problems.push(format!(
                "{host}: converged on {} for {}, the soak is {} ({} to go)",
                short(target),
                crate::util::duration::format(round(ran)),
                crate::util::duration::format(soak),
                crate::util::duration::format(round(soak - ran).max(Duration::from_secs(1)))
            ));
            continue;
        }
        shortest = Some(shortest.map_or(ran, |s| s.min(ran)));
    }
    if problems.is_empty() {
        let ran = shortest.map_or("-".to_owned(), |d| crate::util::duration::format(round(d)));
        return GateResult::new(
            GATE,
            Outcome::Passed,
            format!(
                "every host of {ring} converged on {} for at least {ran} (soak {})",
                short(target),
                crate::util::duration::format(soak)
            ),
        );
    }
    GateResult::new(
        GATE,
        Outcome::Refused,
        format!("ring {ring} has not soaked {}: {}", short(target), problems.join("; ")),
    )
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

/// How `cairn check` went before the promotion was prepared (the command runs it first, on
/// the work tree; its errors stop the command before any gate is evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRun {
    /// No error-level finding concerns the ring's hosts.
    Passed,
    /// `--skip-check`: not run.
    Skipped,
}

/// The `check` row of the gates, recorded with the promotion.
pub fn check_gate(run: CheckRun) -> GateResult {
    match run {
        CheckRun::Passed => GateResult::new(
            "check",
            Outcome::Passed,
            "`cairn check` of the work tree found no errors concerning the ring's hosts",
        ),
        CheckRun::Skipped => {
            GateResult::new("check", Outcome::Skipped, "--skip-check: `cairn check` did not run")
        }
    }
}

/// The tag prefix of a ring's promotions.
pub fn promotion_prefix(ring: &str) -> String {
    format!("cairn/promote/{ring}/")
}

/// Promotions of `ring` recorded as tags, oldest first: (number, tag, commit).
pub async fn promotions(repo: &Repo, ring: &str) -> Result<Vec<(u64, String, String)>, GitError> {
    let prefix = promotion_prefix(ring);
    let mut out = Vec::new();
    for tag in repo.tags(&format!("{prefix}*")).await? {
        let Some(n) = tag.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(commit) = repo.tag_commit(&tag).await? {
            out.push((n, tag, commit));
        }
    }
    out.sort();
    Ok(out)
}

/// Which tree a rollback returns to: the promotion before the one whose tree the branch has
/// now. `trees` are the promotions' trees, oldest first, with their tags.
pub fn rollback_target<'a>(
    current_tree: &str,
    promotions: &'a [(String, String)],
) -> Result<&'a (String, String), String> {
    match promotions.iter().rposition(|(_, tree)| tree == current_tree) {
        Some(0) => {
            Err("its tree is that of its first promotion: there is none before it to return to"
                .into())
        }
        Some(i) => Ok(&promotions[i - 1]),
        None => Err("its tree is not that of any promotion cairn recorded".into()),
    }
}

/// The message of a promotion's tag: what was promoted and the evidence that allowed it.
pub fn record(
    ring: &str,
    branch: &str,
    from: Option<&str>,
    to: &str,
    gates: &[GateResult],
    rows: &[HostStatus],
) -> String {
    #[derive(Serialize)]
    struct Record<'a> {
        ring: &'a str,
        branch: &'a str,
        from: Option<&'a str>,
        to: &'a str,
        gates: &'a [GateResult],
        evidence: Vec<serde_json::Value>,
    }
    let evidence = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "host": r.host, "ring": r.ring, "commit": r.commit, "converged": r.converged,
                "healthy": r.healthy, "error": r.error,
            })
        })
        .collect();
    let body = serde_json::to_string_pretty(&Record { ring, branch, from, to, gates, evidence })
        .unwrap_or_default();
    format!("cairn: promote {ring} ({branch}) to {}\n\n{body}\n", short(to))
}

#[cfg(test)]
mod tests {
    use super::super::evidence::Seen;
    use super::*;

    const A: &str = "aaaaaaa1111111111111111111111111111111111";
    const B: &str = "bbbbbbb2222222222222222222222222222222222";

    fn row(host: &str, commit: Option<&str>, converged: bool, error: Option<&str>) -> HostStatus {
        HostStatus {
            host: host.into(),
            ring: Some("dev".into()),
            branch: Some("ring/dev".into()),
            head: Some(B.into()),
            commit: commit.map(str::to_owned),
            status: "done".into(),
            converged,
            healthy: converged,
            suspended: false,
            running_deployed: converged,
            fetched_at: None,
            error: error.map(str::to_owned),
            source: None,
            machine_id: None,
            checks: Vec::new(),
        }
    }

    #[test]
    fn fast_forward() {
        let table = [
            (None, B, false, Outcome::Passed, "ring/prod does not exist yet: it starts at bbbbbbb"),
            (Some(A), B, true, Outcome::Passed, "bbbbbbb fast-forwards ring/prod from aaaaaaa"),
            (
                Some(B),
                B,
                true,
                Outcome::Refused,
                "ring/prod is already at bbbbbbb: nothing to promote",
            ),
        ];
        for (current, target, descends, outcome, detail) in table {
            let g = fast_forward_gate("ring/prod", current, target, descends);
            assert_eq!((g.outcome, g.detail.as_str()), (outcome, detail));
        }
        let g = fast_forward_gate("ring/prod", Some(A), B, false);
        assert_eq!(g.outcome, Outcome::Refused);
        assert!(
            g.detail
                .starts_with("bbbbbbb does not fast-forward ring/prod at aaaaaaa: comin refuses"),
            "{}",
            g.detail
        );
    }

    #[test]
    fn soak() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::hours(10);
        let seen = |minutes: i64| Seen {
            first_seen: now - time::Duration::minutes(minutes),
            last_seen: now,
        };
        let mut evidence = Evidence::default();
        evidence.hosts.insert("web1".into(), seen(45));
        evidence.hosts.insert("web2".into(), seen(10));
        let hosts = vec!["web1".to_owned(), "web2".to_owned()];
        let soak = Duration::from_secs(30 * 60);
        let both = [row("web1", Some(B), true, None), row("web2", Some(B), true, None)];
        type Case<'a> =
            (&'a str, Option<(&'a str, &'a [String])>, Vec<HostStatus>, Outcome, &'a str);
        let table: Vec<Case> = vec![
            ("first ring", None, vec![], Outcome::Passed, "a first ring: nothing before it to soak"),
            (
                "too early",
                Some(("dev", &hosts)),
                both.to_vec(),
                Outcome::Refused,
                "ring dev has not soaked bbbbbbb: web2: converged on bbbbbbb for 10m, the soak is 30m (20m to go)",
            ),
            (
                "behind and failed",
                Some(("dev", &hosts)),
                vec![
                    row("web1", Some(A), false, Some("it deployed aaaaaaa, the ring's head is bbbbbbb")),
                    row("web2", Some(B), false, Some("the deployment of bbbbbbb failed: exit 4")),
                ],
                Outcome::Refused,
                "ring dev has not soaked bbbbbbb: web1: runs aaaaaaa, not bbbbbbb (it deployed aaaaaaa, the ring's head is bbbbbbb); web2: the deployment of bbbbbbb failed: exit 4",
            ),
            (
                "unreachable",
                Some(("dev", &hosts[..1])),
                vec![row("web1", None, false, Some("unreachable: cannot connect to root@192.0.2.1:22"))],
                Outcome::Refused,
                "ring dev has not soaked bbbbbbb: web1: runs nothing, not bbbbbbb (unreachable: cannot connect to root@192.0.2.1:22)",
            ),
        ];
        for (name, previous, rows, outcome, detail) in table {
            let g = soak_gate(previous, soak, B, &rows, &evidence, now);
            assert_eq!((g.outcome, g.detail.as_str()), (outcome, detail), "{name}");
        }
        evidence.hosts.insert("web2".into(), seen(31));
        let g = soak_gate(Some(("dev", &hosts)), soak, B, &both, &evidence, now);
        assert_eq!(
            (g.outcome, g.detail.as_str()),
            (Outcome::Passed, "every host of dev converged on bbbbbbb for at least 31m (soak 30m)")
        );
        evidence.hosts.remove("web1");
        let g = soak_gate(Some(("dev", &hosts)), soak, B, &both, &evidence, now);
        assert_eq!(
            g.detail,
            "ring dev has not soaked bbbbbbb: web1: no record yet of it converged on bbbbbbb"
        );
    }

    #[test]
    fn rollback_returns_to_the_promotion_before_the_current_tree() {
        let p = |t: &str, tree: &str| (t.to_owned(), tree.to_owned());
        let promotions = [
            p("cairn/promote/prod/1", "T1"),
            p("cairn/promote/prod/2", "T2"),
            p("cairn/promote/prod/3", "T3"),
        ];
        assert_eq!(rollback_target("T3", &promotions).unwrap().0, "cairn/promote/prod/2");
        assert_eq!(rollback_target("T2", &promotions).unwrap().0, "cairn/promote/prod/1");
        assert!(rollback_target("T1", &promotions).unwrap_err().contains("first promotion"));
        assert!(rollback_target("T9", &promotions)
            .unwrap_err()
            .contains("not that of any promotion"));
    }
}
