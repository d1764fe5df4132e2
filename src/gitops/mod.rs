//! Day 2: what the hosts' GitOps agent (comin) is told to pull ([`fleet`]), what it reports
//! ([`comin`], [`status`]), how long each host has run a commit ([`evidence`]), and the
//! rings' promotion from branch to branch ([`promote`]).

pub mod comin;
pub mod evidence;
pub mod first_pull;
pub mod fleet;
pub mod git;
pub mod network;
pub mod promote;
pub mod status;

use std::collections::BTreeMap;

use crate::inventory::{self, Host, Inventory, SelectError};
use crate::ssh;
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
    #[error("`{rev}` is not a commit of this repository")]
    #[diagnostic(
        code(cairn::gitops::unknown_commit),
        help("give a commit id or a ref that `git rev-parse` knows (fetch it first)")
    )]
    UnknownCommit { rev: String },
    #[error("{branch} does not exist on `{remote}`")]
    #[diagnostic(code(cairn::gitops::no_branch), help("{help}"))]
    NoBranch { branch: String, remote: String, help: String },
    #[error("the promotion of {ring} is refused: {gates}")]
    #[diagnostic(
        code(cairn::gitops::refused),
        help("nothing was pushed; the gates above say what is missing")
    )]
    Refused { ring: String, gates: String },
    #[error("cannot roll back {ring}: {reason}")]
    #[diagnostic(
        code(cairn::gitops::rollback),
        help("give the commit whose tree to return to: `cairn rollback {ring} --to SHA`")
    )]
    Rollback { ring: String, reason: String },
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

/// What a promotion would do and the gates' verdicts, before anything is pushed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Promotion {
    pub ring: String,
    pub branch: String,
    pub push_remote: String,
    /// The ring branch's head now (`None`: the branch does not exist yet).
    pub current: Option<String>,
    pub target: String,
    /// Where the target comes from, for the report (`the head of ring/dev`).
    pub source: String,
    pub gates: Vec<promote::GateResult>,
    /// What the previous ring's hosts showed (the soak evidence).
    pub evidence: Vec<HostStatus>,
}

impl Promotion {
    pub fn refused(&self) -> bool {
        self.gates.iter().any(promote::GateResult::refused)
    }
}

/// Chooses the commit and checks every gate; pushes nothing.
pub async fn prepare_promotion(
    inventory: &Inventory,
    access: &Access,
    ring_name: &str,
    commit: Option<&str>,
    check: promote::CheckRun,
) -> Result<Promotion, GitopsError> {
    let ring = ring(inventory, ring_name)?;
    let g = inventory.gitops.as_ref().ok_or(GitopsError::NoGitops)?;
    let previous = inventory.previous_ring(ring);
    let repo = git::Repo::new(&inventory.root);
    let mut branches = vec![ring.branch.clone(), g.branch.clone()];
    if let Some(p) = previous {
        branches.push(p.branch.clone());
    }
    let heads = repo.remote_heads(&g.push_remote, &branches).await?;
    let current = heads[0].clone();
    let (target, source) = match (commit, previous) {
        (Some(rev), _) => {
            let c = repo
                .resolve(rev)
                .await?
                .ok_or_else(|| GitopsError::UnknownCommit { rev: rev.to_owned() })?;
            (c, format!("--commit {rev}"))
        }
        (None, Some(p)) => {
            let head = heads[2].clone().ok_or_else(|| GitopsError::NoBranch {
                branch: p.branch.clone(),
                remote: g.push_remote.clone(),
                help: format!(
                    "promote `{}` first: {} takes what {} converged on",
                    p.name, ring.name, p.name
                ),
            })?;
            (head, format!("what ring {} runs ({})", p.name, p.branch))
        }
        (None, None) => {
            let head = heads[1].clone().ok_or_else(|| GitopsError::NoBranch {
                branch: g.branch.clone(),
                remote: g.push_remote.clone(),
                help: format!(
                    "push {} to `{}` first: a first ring takes its head",
                    g.branch, g.push_remote
                ),
            })?;
            (head, format!("the head of {}", g.branch))
        }
    };
    let descends = match &current {
        Some(c) => repo.is_ancestor(c, &target).await?,
        None => true,
    };
    let mut gates =
        vec![promote::fast_forward_gate(&ring.branch, current.as_deref(), &target, descends)];
    let mut evidence_rows = Vec::new();
    match previous {
        Some(p) => {
            let hosts: Vec<Host> =
                inventory.hosts.iter().filter(|h| p.hosts.contains(&h.name)).cloned().collect();
            evidence_rows = observe(inventory, access, &hosts).await?;
            let evidence = evidence::read(&repo, &target).await?;
            let names: Vec<String> = p.hosts.iter().map(|h| h.to_string()).collect();
            gates.push(promote::soak_gate(
                Some((p.name.as_str(), &names)),
                ring.soak,
                &target,
                &evidence_rows,
                &evidence,
                time::OffsetDateTime::now_utc(),
            ));
        }
        None => gates.push(promote::soak_gate(
            None,
            ring.soak,
            &target,
            &[],
            &evidence::Evidence::default(),
            time::OffsetDateTime::now_utc(),
        )),
    }
    gates.push(promote::check_gate(check));
    Ok(Promotion {
        ring: ring.name.to_string(),
        branch: ring.branch.clone(),
        push_remote: g.push_remote.clone(),
        current,
        target,
        source,
        gates,
        evidence: evidence_rows,
    })
}

/// A promotion that passed its gates: the fast-forward push, its tag (pushed too), and a
/// `comin fetch` on each of the ring's hosts. Returns the tag and each host's fetch result.
pub async fn execute_promotion(
    inventory: &Inventory,
    access: &Access,
    p: &Promotion,
) -> Result<(String, Vec<(String, Result<(), String>)>), GitopsError> {
    let repo = git::Repo::new(&inventory.root);
    if p.refused() {
        return Err(refusal(&p.ring, &p.gates));
    }
    repo.push_fast_forward(&p.push_remote, &p.target, &p.branch).await?;
    tracing::info!(ring = %p.ring, branch = %p.branch, commit = %p.target, "pushed");
    let n = promote::promotions(&repo, &p.ring).await?.last().map_or(1, |(n, _, _)| n + 1);
    let tag = format!("{}{n}", promote::promotion_prefix(&p.ring));
    let message =
        promote::record(&p.ring, &p.branch, p.current.as_deref(), &p.target, &p.gates, &p.evidence);
    repo.tag(&tag, &p.target, &message).await?;
    repo.push_ref(&p.push_remote, &format!("refs/tags/{tag}")).await?;
    let fetched = fetch_now(inventory, access, &p.ring).await;
    Ok((tag, fetched))
}

pub fn refusal(ring: &str, gates: &[promote::GateResult]) -> GitopsError {
    let refused: Vec<&str> = gates.iter().filter(|g| g.refused()).map(|g| g.gate).collect();
    GitopsError::Refused {
        ring: ring.to_owned(),
        gates: format!(
            "the {} gate{} did not pass",
            refused.join(" and "),
            if refused.len() == 1 { "" } else { "s" }
        ),
    }
}

/// The hosts of a ring.
pub fn ring_hosts(inventory: &Inventory, ring: &inventory::Ring) -> Vec<Host> {
    inventory.hosts.iter().filter(|h| ring.hosts.contains(&h.name)).cloned().collect()
}

/// Runs one comin command on every host of `ring_name`, a few at a time.
async fn on_ring(
    inventory: &Inventory,
    access: &Access,
    ring_name: &str,
    command: ssh::RemoteCommand,
) -> Vec<(String, Result<String, String>)> {
    let Some(ring) = inventory.ring(ring_name) else { return Vec::new() };
    let hosts = ring_hosts(inventory, ring);
    let access = std::sync::Arc::new(access.clone());
    let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    let results =
        crate::util::parallel::bounded(hosts, status::PROBE_PARALLELISM, move |host: Host| {
            let access = access.clone();
            let command = command.clone();
            async move {
                let session =
                    status::connect(&access, &host).await.map_err(|e| status::one_line(&e))?;
                let out = session.exec(&command).await;
                session.close().await;
                let out = out.map_err(|e| status::one_line(&e))?;
                let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if out.exit_code == 0 {
                    Ok(text)
                } else {
                    let last = out
                        .stderr_tail
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or(&text);
                    Err(format!("exit {}: {}", out.exit_code, last.trim()))
                }
            }
        })
        .await;
    names
        .into_iter()
        .zip(results)
        .map(|(n, r)| (n, r.unwrap_or_else(|p| Err(format!("cairn failed: {}", p.message)))))
        .collect()
}

fn comin(args: &[&str]) -> ssh::RemoteCommand {
    ssh::RemoteCommand::new("comin")
        .args(args)
        .allow_exit_codes(1..=255)
        .timeout(status::PROBE_COMMAND_TIMEOUT)
}

/// `comin fetch` on the ring's hosts, so they take the new head now rather than at the next
/// poll.
pub async fn fetch_now(
    inventory: &Inventory,
    access: &Access,
    ring: &str,
) -> Vec<(String, Result<(), String>)> {
    on_ring(inventory, access, ring, comin(&["fetch"]))
        .await
        .into_iter()
        .map(|(h, r)| (h, r.map(|_| ())))
        .collect()
}

/// What `hold`/`release` did on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Done,
    Already,
}

/// `comin suspend` (hold) or `comin resume` (release) on the ring's hosts; a host already in
/// that state is left as it is.
pub async fn hold(
    inventory: &Inventory,
    access: &Access,
    ring_name: &str,
    suspend: bool,
) -> Result<Vec<(String, Result<HoldOutcome, String>)>, GitopsError> {
    ring(inventory, ring_name)?;
    let states = on_ring(inventory, access, ring_name, status::status_command()).await;
    let verb = if suspend { "suspend" } else { "resume" };
    let acted = on_ring(inventory, access, ring_name, comin(&[verb])).await;
    // Judge each host by its state before the command: already there, done, or failed.
    Ok(states
        .into_iter()
        .zip(acted)
        .map(|((host, before), (_, after))| {
            let was = before
                .ok()
                .and_then(|json| comin::parse_status(json.as_bytes()).ok())
                .map(|s| s.is_suspended);
            let r = match (was, after) {
                (Some(w), _) if w == suspend => Ok(HoldOutcome::Already),
                (_, Ok(_)) => Ok(HoldOutcome::Done),
                (_, Err(e)) => Err(e),
            };
            (host, r)
        })
        .collect())
}

/// A rollback, before anything is pushed: the revert commit already made (not on any branch).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rollback {
    pub ring: String,
    pub branch: String,
    pub push_remote: String,
    pub current: String,
    /// The commit (or promotion tag) whose tree the ring returns to.
    pub to: String,
    pub to_label: String,
    pub commit: String,
}

/// Makes the revert commit: on top of the ring's head, with the tree of the previous
/// promotion (or of `to`), so comin sees a fast-forward.
pub async fn prepare_rollback(
    inventory: &Inventory,
    ring_name: &str,
    to: Option<&str>,
) -> Result<Rollback, GitopsError> {
    let ring = ring(inventory, ring_name)?;
    let g = inventory.gitops.as_ref().ok_or(GitopsError::NoGitops)?;
    let repo = git::Repo::new(&inventory.root);
    let heads = repo.remote_heads(&g.push_remote, std::slice::from_ref(&ring.branch)).await?;
    let current = heads[0].clone().ok_or_else(|| GitopsError::NoBranch {
        branch: ring.branch.clone(),
        remote: g.push_remote.clone(),
        help: format!("there is nothing to roll back: `cairn promote {}` creates it", ring.name),
    })?;
    let current_tree = repo.tree_of(&current).await?;
    let (to_commit, label) = match to {
        Some(rev) => {
            let c = repo
                .resolve(rev)
                .await?
                .ok_or_else(|| GitopsError::UnknownCommit { rev: rev.to_owned() })?;
            (c, format!("--to {rev}"))
        }
        None => {
            let mut trees = Vec::new();
            let mut commits = Vec::new();
            for (_, tag, commit) in promote::promotions(&repo, ring.name.as_str()).await? {
                trees.push((tag, repo.tree_of(&commit).await?));
                commits.push(commit);
            }
            let (tag, _) = promote::rollback_target(&current_tree, &trees).map_err(|reason| {
                GitopsError::Rollback {
                    ring: ring.name.to_string(),
                    reason: format!("{} is at {}; {reason}", ring.branch, &current[..7]),
                }
            })?;
            let i = trees.iter().position(|(t, _)| t == tag).unwrap_or(0);
            (commits[i].clone(), tag.clone())
        }
    };
    let tree = repo.tree_of(&to_commit).await?;
    if tree == current_tree {
        return Err(GitopsError::Rollback {
            ring: ring.name.to_string(),
            reason: format!("{} already has the tree of {}", ring.branch, &to_commit[..7]),
        });
    }
    let message = format!(
        "Roll back {} to the tree of {} ({label})\n\nA new commit on top of {}, as comin deploys only fast-forwards.\n",
        ring.branch,
        &to_commit[..7],
        &current[..7]
    );
    let commit = repo.commit_tree(&tree, &current, &message).await?;
    Ok(Rollback {
        ring: ring.name.to_string(),
        branch: ring.branch.clone(),
        push_remote: g.push_remote.clone(),
        current,
        to: to_commit,
        to_label: label,
        commit,
    })
}

/// Pushes the revert commit (a fast-forward), records it as a tag `cairn/rollback/<ring>/<n>`
/// and asks the ring's hosts to fetch.
pub async fn execute_rollback(
    inventory: &Inventory,
    access: &Access,
    r: &Rollback,
) -> Result<(String, Vec<(String, Result<(), String>)>), GitopsError> {
    let repo = git::Repo::new(&inventory.root);
    repo.push_fast_forward(&r.push_remote, &r.commit, &r.branch).await?;
    let prefix = format!("cairn/rollback/{}/", r.ring);
    let n = repo
        .tags(&format!("{prefix}*"))
        .await?
        .iter()
        .filter_map(|t| t.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()))
        .max()
        .map_or(1, |n| n + 1);
    let tag = format!("{prefix}{n}");
    let message = format!(
        "cairn: roll back {} ({}) to the tree of {} ({})\n\nfrom {} to {}\n",
        r.ring,
        r.branch,
        &r.to[..7],
        r.to_label,
        r.current,
        r.commit
    );
    repo.tag(&tag, &r.commit, &message).await?;
    repo.push_ref(&r.push_remote, &format!("refs/tags/{tag}")).await?;
    let fetched = fetch_now(inventory, access, &r.ring).await;
    Ok((tag, fetched))
}

/// Follows the ring's hosts until each converged on `commit`, or `deadline` passes; calls
/// `report` with each look. Returns whether they converged.
pub async fn watch_ring(
    inventory: &Inventory,
    access: &Access,
    ring_name: &str,
    commit: &str,
    deadline: std::time::Instant,
    interval: std::time::Duration,
    mut report: impl FnMut(&[HostStatus]),
) -> Result<bool, GitopsError> {
    let ring = ring(inventory, ring_name)?;
    let hosts = ring_hosts(inventory, ring);
    loop {
        let rows = observe(inventory, access, &hosts).await?;
        report(&rows);
        if rows.iter().all(|r| r.converged && r.commit.as_deref() == Some(commit)) {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        tokio::time::sleep(left.min(interval)).await;
    }
}

/// A file cairn generates for the flakes (`cairn/fleet.json`, `cairn/network.json`): pretty
/// JSON with a final newline, so a regenerated file diffs line by line.
fn generated_json(value: &impl serde::Serialize) -> Vec<u8> {
    // These are plain structs of strings, lists and maps: serialising them cannot fail.
    let mut out = serde_json::to_vec_pretty(value).expect("generated files serialise");
    out.push(b'\n');
    out
}
