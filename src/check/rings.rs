//! `gitops.rings`: ring branches move forward only (comin refuses a branch that does not
//! contain what it deployed).
//!
//! Offline, from the refs the repository has: `refs/remotes/<push_remote>/<branch>` (what
//! `cairn status` fetches) else the local branch; a local branch that diverged from the
//! remote's, or a head that does not contain a recorded promotion (`cairn/promote/<ring>/<n>`
//! tags), is an error. A ring may be ahead of the ring before it (a rollback is a revert commit
//! on its own branch). Which commit each host runs is not known offline: "a host ahead of its
//! ring" is left to `cairn status`.

use super::git::{self, Repo};
use super::repo::Scan;
use super::{Finding, Report, RuleId, Skipped};

fn resolve(repo: &Repo, reference: &str) -> Option<String> {
    let out = git::git(
        &repo.top,
        &["rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")],
    )
    .ok()?;
    Some(String::from_utf8_lossy(&out).trim().to_owned()).filter(|s| !s.is_empty())
}

fn is_ancestor(repo: &Repo, ancestor: &str, descendant: &str) -> bool {
    git::git(&repo.top, &["merge-base", "--is-ancestor", ancestor, descendant]).is_ok()
}

/// The commit a ring branch is at: the push remote's copy if fetched, else the local branch.
fn head(repo: &Repo, remote: &str, branch: &str) -> Option<(String, String)> {
    let remote_ref = format!("refs/remotes/{remote}/{branch}");
    if let Some(c) = resolve(repo, &remote_ref) {
        return Some((c, format!("{remote}/{branch}")));
    }
    resolve(repo, &format!("refs/heads/{branch}")).map(|c| (c, branch.to_owned()))
}

pub fn check(scan: &Scan<'_>, report: &mut Report) {
    let inv = scan.fleet.inventory;
    let Some(gitops) = &inv.gitops else {
        report.skipped.push(Skipped {
            rule: RuleId::GitopsRings.as_str().to_owned(),
            reason: "the inventory has no `gitops` block".into(),
        });
        return;
    };
    let Some(repo) = &scan.git else {
        report.skipped.push(Skipped {
            rule: RuleId::GitopsRings.as_str().to_owned(),
            reason: "the repository is not a git work tree".into(),
        });
        return;
    };
    let file = scan.inventory_file();
    let short = |c: &str| c[..12.min(c.len())].to_owned();
    for ring in &inv.rings {
        let line = Some(ring.span.line);
        let Some((commit, shown)) = head(repo, &gitops.push_remote, &ring.branch) else { continue };
        let finding = |message: String, hint: &str| {
            Finding::new(RuleId::GitopsRings, message)
                .file(file.clone(), line)
                .concerns(ring.hosts.iter().map(|h| h.to_string()))
                .hint(hint.to_owned())
        };
        // The local branch, when it differs from the remote's: comin refuses a branch that
        // does not fast-forward what it deployed.
        if shown != ring.branch {
            if let Some(local) = resolve(repo, &format!("refs/heads/{}", ring.branch)) {
                if local != commit
                    && !is_ancestor(repo, &commit, &local)
                    && !is_ancestor(repo, &local, &commit)
                {
                    report.findings.push(finding(
                        format!(
                            "ring {}: the local branch {} ({}) and {shown} ({}) have diverged: pushing it would not be a fast-forward, and comin refuses a reset branch",
                            ring.name, ring.branch, short(&local), short(&commit)
                        ),
                        "undo with a revert commit on top of the remote's branch (`cairn rollback`), never a reset",
                    ));
                }
            }
        }
        // Every recorded promotion of this ring must still be in its history.
        let tags = git::git(
            &repo.top,
            &[
                "for-each-ref",
                "--format=%(refname:short)",
                &format!("refs/tags/cairn/promote/{}/", ring.name),
            ],
        )
        .map(|o| String::from_utf8_lossy(&o).lines().map(str::to_owned).collect::<Vec<_>>())
        .unwrap_or_default();
        for tag in tags {
            if let Some(promoted) = resolve(repo, &format!("refs/tags/{tag}")) {
                if !is_ancestor(repo, &promoted, &commit) {
                    report.findings.push(finding(
                        format!(
                            "ring {}: {shown} ({}) is not a fast-forward of its promotion {tag} ({})",
                            ring.name,
                            short(&commit),
                            short(&promoted)
                        ),
                        "the branch was reset or rewritten; comin stops at a branch that does not contain what it deployed. Restore it and undo with a revert commit (`cairn rollback`)",
                    ));
                }
            }
        }
    }
}
