//! Day 2: what the hosts' GitOps agent (comin) is told to pull ([`fleet`]), what it reports
//! ([`comin`], [`status`]), how long each host has run a commit ([`evidence`]), and the
//! rings' promotion from branch to branch ([`promote`]).

pub mod comin;
pub mod evidence;
pub mod fleet;
pub mod git;
pub mod status;

use std::collections::BTreeMap;

use crate::inventory::{self, Host, Inventory, SelectError};
use status::{Access, HostStatus};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum GitopsError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Git(#[from] git::GitError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Select(#[from] SelectError),
    #[error("the inventory has no `gitops` block")]
    #[diagnostic(
        code(cairn::gitops::none),
        help("add `gitops {{ remote = \"https://...\" }}` and `ring` blocks to cairn.hcl")
    )]
    NoGitops,
    #[error("no ring `{ring}` in the inventory")]
    #[diagnostic(code(cairn::gitops::unknown_ring), help("{help}"))]
    UnknownRing { ring: String, help: String },
}

/// The hosts `selectors` name: `@NAME` is a ring when a ring has that name (else a tag);
/// no selector means every host in a ring (every host when there are no rings).
pub fn select(inventory: &Inventory, selectors: &[String]) -> Result<Vec<Host>, SelectError> {
    if selectors.is_empty() {
        if inventory.rings.is_empty() {
            return Ok(inventory.hosts.clone());
        }
        return Ok(inventory
            .hosts
            .iter()
            .filter(|h| inventory.ring_of(h.name.as_str()).is_some())
            .cloned()
            .collect());
    }
    let mut names = Vec::new();
    let mut rest = Vec::new();
    for s in selectors {
        match s.strip_prefix('@').and_then(|r| inventory.ring(r)) {
            Some(ring) => names.extend(ring.hosts.iter().map(|h| h.to_string())),
            None => rest.push(s.clone()),
        }
    }
    if !rest.is_empty() {
        names.extend(inventory::select(inventory, &rest)?.into_iter().map(|h| h.name.to_string()));
    }
    Ok(inventory
        .hosts
        .iter()
        .filter(|h| names.iter().any(|n| n == h.name.as_str()))
        .cloned()
        .collect())
}

/// The ring named `name`, or an error suggesting the declared ones.
pub fn ring<'a>(inventory: &'a Inventory, name: &str) -> Result<&'a inventory::Ring, GitopsError> {
    if inventory.gitops.is_none() {
        return Err(GitopsError::NoGitops);
    }
    inventory.ring(name).ok_or_else(|| GitopsError::UnknownRing {
        ring: name.to_owned(),
        help: format!(
            "the rings are: {}",
            inventory.rings.iter().map(|r| format!("`{}`", r.name)).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// The heads of every ring branch on the push remote (fetched, so they can be compared).
pub async fn ring_heads(
    inventory: &Inventory,
    repo: &git::Repo,
) -> Result<BTreeMap<String, Option<String>>, GitopsError> {
    let Some(g) = &inventory.gitops else { return Ok(BTreeMap::new()) };
    let branches: Vec<String> = inventory.rings.iter().map(|r| r.branch.clone()).collect();
    let heads = repo.remote_heads(&g.push_remote, &branches).await?;
    Ok(inventory.rings.iter().map(|r| r.name.to_string()).zip(heads).collect())
}

/// One look at `hosts`: ring heads, a probe of each host, a row each; and the soak evidence
/// of every ring head updated from what was seen.
pub async fn observe(
    inventory: &Inventory,
    access: &Access,
    hosts: &[Host],
) -> Result<Vec<HostStatus>, GitopsError> {
    let repo = git::Repo::new(&inventory.root);
    let heads = ring_heads(inventory, &repo).await?;
    let probes = status::probe_all(access, hosts).await;
    let rows: Vec<HostStatus> = hosts
        .iter()
        .zip(probes)
        .map(|(host, probe)| {
            let ring = inventory.ring_of(host.name.as_str());
            let head = ring.and_then(|r| heads.get(r.name.as_str()).cloned().flatten());
            let mut row = status::row(inventory, host, head.as_deref(), probe);
            if ring.is_none() {
                row.converged = false;
                row.error.get_or_insert_with(|| "not in any ring".into());
            }
            row
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let mut recorded = std::collections::BTreeSet::new();
    for head in heads.values().flatten() {
        if recorded.insert(head.clone()) {
            evidence::record(&repo, head, &rows, now).await?;
        }
    }
    Ok(rows)
}

/// Machine ids `rows` show that state does not have yet (or has another one of): what
/// `cairn status` records, for `cairn gitops sync` to put in fleet.json.
pub fn learned_machine_ids(
    state: &crate::state::StateData,
    rows: &[HostStatus],
) -> Vec<(String, String)> {
    rows.iter()
        .filter_map(|r| {
            let id = r.machine_id.as_ref()?;
            let known = state.host(&r.host).and_then(|h| h.machine_id.as_ref());
            (known != Some(id)).then(|| (r.host.clone(), id.clone()))
        })
        .collect()
}
