//! What a freshly bootstrapped host's agent will pull. Nix builds a git flake from committed
//! files only, and comin pulls what was pushed: the secrets files re-keyed for the host, the
//! regenerated `.sops.yaml` and the host's public keys are of no use to it until they are
//! committed and on the branch it follows. After `cairn bootstrap`, say which are not (or
//! commit them, with `--commit`).

use std::path::Path;

use super::git::{GitError, Repo};
use crate::inventory::Inventory;

/// What stands between the repository and the hosts' first pull.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FirstPull {
    /// Files the hosts need that have uncommitted changes (relative to the repository).
    pub uncommitted: Vec<String>,
    /// The commit `--commit` made of them.
    pub committed: Option<String>,
    /// Hosts whose agent follows a branch that lacks the last commit of those files:
    /// `(host, "<remote>/<branch>")`.
    pub behind: Vec<(String, String)>,
}

impl FirstPull {
    pub fn is_clear(&self) -> bool {
        self.uncommitted.is_empty() && self.behind.is_empty()
    }
}

/// The files bootstrap writes for `hosts`: `.sops.yaml`, every sops file of the repository
/// (re-keyed to include them), each host's key files and `cairn/network.json`.
fn needed_files(inv: &Inventory, hosts: &[String]) -> Vec<String> {
    let root = &inv.root;
    let rel = |p: &Path| p.strip_prefix(root).ok().map(|p| p.to_string_lossy().into_owned());
    let mut paths = vec![crate::secrets::rules::CONFIG_FILE_NAME.to_owned()];
    if let Ok(files) = crate::secrets::rekey::load_sops_files(root) {
        paths.extend(files.iter().filter_map(|f| rel(&f.path)));
    }
    for host in hosts {
        paths.push(format!("{}{host}", crate::secrets::rules::HOST_KEYS_DIR));
    }
    // The hosts' static addresses (hcloud IPv6): without it the installed host's agent
    // builds a system that loses them.
    paths.push(super::network::NETWORK_FILE.to_owned());
    paths.retain(|p| root.join(p).exists());
    paths.sort();
    paths.dedup();
    paths
}

/// Looks at (and with `commit`, commits) what `hosts` need. `None` outside a git work tree.
pub async fn check(
    inv: &Inventory,
    hosts: &[String],
    commit: bool,
) -> Result<Option<FirstPull>, GitError> {
    let repo = Repo::new(&inv.root);
    if hosts.is_empty() || !repo.is_work_tree().await {
        return Ok(None);
    }
    let paths = needed_files(inv, hosts);
    let mut report =
        FirstPull { uncommitted: repo.uncommitted(&paths).await?, ..Default::default() };
    if commit && !report.uncommitted.is_empty() {
        let message = format!(
            "cairn: keys and secrets for {}\n\nRe-keyed so the host{} can decrypt {} secrets on first boot.",
            hosts.join(", "),
            if hosts.len() == 1 { "" } else { "s" },
            if hosts.len() == 1 { "its" } else { "their" },
        );
        report.committed = Some(repo.commit_paths(&report.uncommitted, &message).await?);
        report.uncommitted.clear();
    }
    let Some(gitops) = &inv.gitops else { return Ok(Some(report)) };
    let Some(last) = repo.last_commit_touching(&paths).await? else { return Ok(Some(report)) };
    // Only hosts in a ring run the agent (`cairn gitops sync` gives it their ring's branch).
    let followed: Vec<(&String, String)> =
        hosts.iter().filter_map(|h| Some((h, inv.ring_of(h)?.branch.clone()))).collect();
    if followed.is_empty() {
        return Ok(Some(report));
    }
    let mut branches: Vec<String> = followed.iter().map(|(_, b)| b.clone()).collect();
    branches.sort();
    branches.dedup();
    let heads = repo.remote_heads(&gitops.push_remote, &branches).await?;
    for (host, branch) in followed {
        let head = branches.iter().position(|b| *b == branch).and_then(|i| heads[i].clone());
        let contains = match head {
            Some(head) => repo.is_ancestor(&last, &head).await?,
            None => false,
        };
        if !contains {
            report.behind.push((host.clone(), format!("{}/{branch}", gitops.push_remote)));
        }
    }
    Ok(Some(report))
}
