//! `cairn status`: per host, what comin deployed, whether the running system is that
//! generation, whether the host's checks pass, and so whether it has converged on its ring's
//! branch head. Each host is probed over its own pinned SSH connection, a few at a time; an
//! unreachable host is a row with the reason, never the end of the run.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::comin::{self, CominStatus};
use crate::inventory::{CheckCommand, Host, Inventory};
use crate::ssh::{self, Auth, ConnectOptions, RemoteCommand, Session};
use crate::state::StateData;

/// How long one remote command of a probe may take.
pub const PROBE_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Hosts probed at once.
pub const PROBE_PARALLELISM: usize = 8;
/// Where comin persists its state (read when the daemon does not answer).
pub const COMIN_STORE: &str = "/var/lib/comin/store.json";

/// What one SSH visit to a host found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// comin's status, or why it could not be read.
    pub comin: Result<CominStatus, String>,
    /// `readlink -f /run/current-system`.
    pub current_system: Option<String>,
    /// `/etc/machine-id`.
    pub machine_id: Option<String>,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub label: String,
    pub passed: bool,
    /// The last lines the check printed, when it failed.
    pub output: String,
}

/// How a host stands against its ring's branch head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Deployed the head, running it, healthy.
    Converged,
    /// Not there (yet); the reason says what is missing.
    Behind(String),
    /// Something is wrong that waiting will not fix.
    Failed(String),
}

/// One row of `cairn status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub ring: Option<String>,
    pub branch: Option<String>,
    /// The ring branch's head on the push remote, if the branch exists.
    pub head: Option<String>,
    /// The commit comin deployed last.
    pub commit: Option<String>,
    /// Its deployment status (`done`, `failed`, `running`, `init`), or `unreachable`.
    pub status: String,
    pub converged: bool,
    pub healthy: bool,
    pub suspended: bool,
    /// `/run/current-system` is the deployed generation's out path.
    pub running_deployed: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fetched_at: Option<OffsetDateTime>,
    /// Why the host has not converged (unreachable, failed deployment, failed check...).
    pub error: Option<String>,
    pub source: Option<comin::StatusSource>,
    pub machine_id: Option<String>,
    pub checks: Vec<CheckResult>,
}

/// Judges a probe against the ring head: a pure function, table-tested below.
pub fn assess(head: Option<&str>, probe: &Probe) -> (Verdict, bool) {
    let healthy = !probe.checks.is_empty() && probe.checks.iter().all(|c| c.passed);
    let comin = match &probe.comin {
        Ok(c) => c,
        Err(e) => return (Verdict::Failed(format!("comin's status cannot be read: {e}")), healthy),
    };
    let Some(d) = &comin.deployment else {
        return (Verdict::Behind("comin has deployed nothing yet".into()), healthy);
    };
    let short = |c: &str| c.chars().take(7).collect::<String>();
    if comin.is_suspended {
        return (
            Verdict::Failed("comin is suspended (`cairn release` resumes it)".into()),
            healthy,
        );
    }
    if d.status == "failed" {
        let why =
            if d.error_msg.is_empty() { "no message".to_owned() } else { d.error_msg.clone() };
        return (
            Verdict::Failed(format!("the deployment of {} failed: {why}", short(&d.commit))),
            healthy,
        );
    }
    if let Some(e) = &comin.build_error {
        let last = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(e).trim();
        return (
            Verdict::Failed(format!("the next generation failed to evaluate or build: {last}")),
            healthy,
        );
    }
    let Some(head) = head else {
        return (
            Verdict::Behind("the ring's branch does not exist yet (promote it)".into()),
            healthy,
        );
    };
    if d.branch_is_testing {
        return (Verdict::Behind(format!("it runs the testing branch {}", d.branch)), healthy);
    }
    if d.commit != head {
        let doing = if comin.is_building || comin.is_evaluating {
            " (building the next one)"
        } else if d.status == "running" {
            " (deploying)"
        } else {
            ""
        };
        return (
            Verdict::Behind(format!(
                "it deployed {}, the ring's head is {}{doing}",
                short(&d.commit),
                short(head)
            )),
            healthy,
        );
    }
    if d.status != "done" {
        return (
            Verdict::Behind(format!("the deployment of {} is {}", short(head), d.status)),
            healthy,
        );
    }
    if probe.current_system.as_deref() != Some(d.out_path.as_str()) {
        let running = probe.current_system.as_deref().unwrap_or("nothing");
        let why = if d.operation == "boot" || comin.need_to_reboot {
            " (deployed for the next boot: reboot it)"
        } else {
            ""
        };
        return (
            Verdict::Behind(format!(
                "/run/current-system is {running}, not the deployed generation{why}"
            )),
            healthy,
        );
    }
    if let Some(c) = probe.checks.iter().find(|c| !c.passed) {
        let out = if c.output.is_empty() { String::new() } else { format!(": {}", c.output) };
        return (Verdict::Failed(format!("health check failed: {}{out}", c.label)), healthy);
    }
    if probe.checks.is_empty() {
        return (Verdict::Behind("no health check ran".into()), healthy);
    }
    (Verdict::Converged, healthy)
}

/// The row for a host, from its probe (or why it could not be probed).
pub fn row(
    inventory: &Inventory,
    host: &Host,
    head: Option<&str>,
    probe: Result<Probe, String>,
) -> HostStatus {
    let ring = inventory.ring_of(host.name.as_str());
    let mut row = HostStatus {
        host: host.name.to_string(),
        ring: ring.map(|r| r.name.to_string()),
        branch: ring.map(|r| r.branch.clone()),
        head: head.map(str::to_owned),
        commit: None,
        status: "unreachable".into(),
        converged: false,
        healthy: false,
        suspended: false,
        running_deployed: false,
        fetched_at: None,
        error: None,
        source: None,
        machine_id: None,
        checks: Vec::new(),
    };
    let probe = match probe {
        Ok(p) => p,
        Err(e) => {
            row.error = Some(format!("unreachable: {e}"));
            return row;
        }
    };
    let (verdict, healthy) = assess(head, &probe);
    row.healthy = healthy;
    row.machine_id = probe.machine_id.clone();
    row.checks = probe.checks.clone();
    match &probe.comin {
        Ok(c) => {
            row.source = Some(c.source);
            row.suspended = c.is_suspended;
            row.fetched_at = c.fetched_at();
            row.status = c.deployment.as_ref().map_or("none".into(), |d| d.status.clone());
            if let Some(d) = &c.deployment {
                row.commit = Some(d.commit.clone()).filter(|c| !c.is_empty());
                row.running_deployed = probe.current_system.as_deref() == Some(d.out_path.as_str());
            }
        }
        Err(_) => row.status = "unknown".into(),
    }
    match verdict {
        Verdict::Converged => row.converged = true,
        Verdict::Behind(e) | Verdict::Failed(e) => row.error = Some(e),
    }
    row
}

/// The error and its causes on one line.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// How cairn logs into hosts, and what it knows of them.
#[derive(Clone)]
pub struct Access {
    pub auth: Auth,
    pub state: Arc<StateData>,
    /// Where pinned keys are recorded, for the "host key changed" help.
    pub state_location: String,
}

/// Connects to `host` as `cairn ssh` does ([`crate::reach::known_host`]): the recorded
/// address and the pinned keys of the system it runs now.
pub async fn connect(access: &Access, host: &Host) -> Result<Session, ProbeError> {
    let recorded_host = access.state.host(host.name.as_str()).cloned().unwrap_or_default();
    let recorded = crate::reach::Recorded {
        host: host.name.as_str(),
        state: &recorded_host,
        location: &access.state_location,
        repository_key: None,
    };
    let route = crate::reach::known_host(host, &recorded, None)?;
    let options = ConnectOptions {
        pinned_key_location: route.key_location.clone(),
        ..ConnectOptions::default()
    };
    Ok(Session::connect(&route.target, &access.auth, &route.policy(), &options).await?)
}

/// Why a host could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Reach(#[from] crate::reach::ReachError),
    #[error(transparent)]
    Ssh(#[from] ssh::Error),
}

/// The remote commands of a probe, built as data.
pub fn status_command() -> RemoteCommand {
    RemoteCommand::new("comin")
        .arg("status")
        .arg("--json")
        .allow_exit_codes(1..=255)
        .timeout(PROBE_COMMAND_TIMEOUT)
}

pub fn store_command() -> RemoteCommand {
    RemoteCommand::new("cat")
        .arg(COMIN_STORE)
        .allow_exit_codes(1..=255)
        .timeout(PROBE_COMMAND_TIMEOUT)
}

pub fn system_command() -> RemoteCommand {
    RemoteCommand::new("sh")
        .arg("-c")
        .arg("readlink -f /run/current-system || true; echo; cat /etc/machine-id 2>/dev/null || true")
        .timeout(PROBE_COMMAND_TIMEOUT)
}

pub fn check_command(check: &CheckCommand) -> RemoteCommand {
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1\n{}", check.command))
        .allow_exit_codes(1..=255)
        .timeout(PROBE_COMMAND_TIMEOUT)
}

/// One visit: comin's status (the daemon, else its store file), the running system, the
/// machine id and the health checks, over one connection.
pub async fn probe(access: &Access, host: &Host) -> Result<Probe, ProbeError> {
    let session = connect(access, host).await?;
    let result = probe_on(&session, host).await;
    session.close().await;
    Ok(result?)
}

/// comin's status on the session's host: the daemon's, else its store file's; `Err` says why
/// neither could be read.
pub async fn comin_status(
    session: &Session,
    host: &str,
) -> Result<Result<comin::CominStatus, String>, ssh::Error> {
    let out = session.exec(&status_command()).await?;
    if out.exit_code == 0 {
        return Ok(comin::parse_status(&out.stdout).map_err(|e| one_line(&e)));
    }
    let daemon = tail(&out.stderr_tail, &out.stdout);
    let store = session.exec(&store_command()).await?;
    Ok(if store.exit_code == 0 {
        tracing::info!(host = %host, "comin does not answer ({daemon}); read {COMIN_STORE}");
        comin::parse_store(&store.stdout).map_err(|e| one_line(&e))
    } else {
        Err(format!(
            "`comin status` failed ({daemon}) and {COMIN_STORE} cannot be read ({})",
            tail(&store.stderr_tail, &store.stdout)
        ))
    })
}

async fn probe_on(session: &Session, host: &Host) -> Result<Probe, ssh::Error> {
    let comin = comin_status(session, host.name.as_str()).await?;
    let system = session.exec(&system_command()).await?;
    let text = String::from_utf8_lossy(&system.stdout).into_owned();
    let mut lines = text.lines().map(str::trim);
    let current_system = lines.next().filter(|l| !l.is_empty()).map(str::to_owned);
    let machine_id = lines.find(|l| !l.is_empty()).map(str::to_owned);
    let mut checks = Vec::new();
    for check in host.check_commands() {
        let out = session.exec(&check_command(&check)).await?;
        let passed = out.exit_code == 0;
        let output = if passed { String::new() } else { tail(&out.stderr_tail, &out.stdout) };
        checks.push(CheckResult { label: check.label, passed, output });
    }
    Ok(Probe { comin, current_system, machine_id, checks })
}

/// The last non-empty line a command printed (stderr first), for a one-line reason.
fn tail(stderr: &str, stdout: &[u8]) -> String {
    let out = String::from_utf8_lossy(stdout);
    let pick = |s: &str| s.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned);
    pick(stderr).or_else(|| pick(&out)).unwrap_or_else(|| "no output".into())
}

/// Probes `hosts` a few at a time; the result for each host in order.
pub async fn probe_all(access: &Access, hosts: &[Host]) -> Vec<Result<Probe, String>> {
    let access = Arc::new(access.clone());
    crate::util::parallel::bounded(hosts.to_vec(), PROBE_PARALLELISM, move |host: Host| {
        let access = access.clone();
        async move {
            let r = probe(&access, &host).await.map_err(|e| one_line(&e));
            if let Err(e) = &r {
                tracing::warn!(host = %host.name, "cannot probe: {e}");
            }
            r
        }
    })
    .await
    .into_iter()
    // A probe that panicked is that host's failure, with the panic's message.
    .map(|r| r.unwrap_or_else(|p| Err(format!("cairn failed probing it: {}", p.message))))
    .collect()
}

/// Per ring: how many of its hosts (among those shown) converged on its head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingSummary {
    pub ring: String,
    pub converged: usize,
    pub hosts: usize,
    pub head: Option<String>,
}

pub fn summarize(inventory: &Inventory, rows: &[HostStatus]) -> Vec<RingSummary> {
    inventory
        .rings
        .iter()
        .filter_map(|ring| {
            let mine: Vec<&HostStatus> =
                rows.iter().filter(|r| r.ring.as_deref() == Some(ring.name.as_str())).collect();
            (!mine.is_empty()).then(|| RingSummary {
                ring: ring.name.to_string(),
                converged: mine.iter().filter(|r| r.converged).count(),
                hosts: mine.len(),
                head: mine[0].head.clone(),
            })
        })
        .collect()
}

/// The text of `cairn status`: one line per host, then one per ring.
pub fn render(rows: &[HostStatus], summaries: &[RingSummary], now: OffsetDateTime) -> String {
    let short =
        |c: &Option<String>| c.as_deref().map_or("-".to_owned(), |c| c.chars().take(7).collect());
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let state = if r.converged {
                "converged".to_owned()
            } else if r.status == "unreachable" {
                "unreachable".to_owned()
            } else if r.suspended {
                "held".to_owned()
            } else {
                "not converged".to_owned()
            };
            let fetched =
                r.fetched_at.map_or("-".to_owned(), |t| format!("fetched {} ago", ago(now - t)));
            [
                r.host.clone(),
                r.ring.clone().unwrap_or_else(|| "-".into()),
                short(&r.commit),
                r.status.clone(),
                state,
                fetched,
            ]
        })
        .collect();
    let mut widths = [4, 4, 6, 6, 5, 0];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = ["HOST", "RING", "COMMIT", "STATUS", "STATE", "FETCHED"];
    let fmt_line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    out.push_str(&fmt_line(&header.map(str::to_owned)));
    out.push('\n');
    for (line, r) in table.iter().zip(rows) {
        out.push_str(&fmt_line(line));
        out.push('\n');
        if let Some(e) = &r.error {
            out.push_str(&format!("  {}: {e}\n", r.host));
        }
    }
    for s in summaries {
        let on = s
            .head
            .as_deref()
            .map_or("(no branch yet)".to_owned(), |h| format!("on {}", &h[..h.len().min(7)]));
        out.push_str(&format!("{}: {}/{} converged {on}\n", s.ring, s.converged, s.hosts));
    }
    out
}

/// `90s` → `1m`, for "fetched 3m ago".
fn ago(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::comin::{Deployment, StatusSource};
    use super::*;

    const HEAD: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    const OLD: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f001234567";
    const OUT: &str = "/nix/store/9q2l-nixos-system-web1";

    fn comin(commit: &str, status: &str) -> CominStatus {
        CominStatus {
            source: StatusSource::Daemon,
            deployment: Some(Deployment {
                commit: commit.into(),
                branch: "ring/dev".into(),
                branch_is_testing: false,
                out_path: OUT.into(),
                status: status.into(),
                operation: "switch".into(),
                error_msg: String::new(),
                ended_at: None,
            }),
            is_evaluating: false,
            is_building: false,
            build_error: None,
            remotes: Vec::new(),
            need_to_reboot: false,
            is_suspended: false,
        }
    }

    fn probe(c: CominStatus) -> Probe {
        Probe {
            comin: Ok(c),
            current_system: Some(OUT.into()),
            machine_id: None,
            checks: vec![CheckResult {
                label: "comin.service is active".into(),
                passed: true,
                output: String::new(),
            }],
        }
    }

    #[test]
    fn verdicts() {
        let ok = probe(comin(HEAD, "done"));
        let mut failed = probe(comin(HEAD, "failed"));
        if let Ok(c) = &mut failed.comin {
            c.deployment.as_mut().unwrap().error_msg =
                "switch-to-configuration exited with 4".into();
        }
        let mut suspended = probe(comin(HEAD, "done"));
        if let Ok(c) = &mut suspended.comin {
            c.is_suspended = true;
        }
        let mut other_system = probe(comin(HEAD, "done"));
        other_system.current_system = Some("/nix/store/old-system".into());
        let mut unhealthy = probe(comin(HEAD, "done"));
        unhealthy.checks[0] = CheckResult {
            label: "nginx.service is active".into(),
            passed: false,
            output: "inactive".into(),
        };
        let mut building = probe(comin(OLD, "done"));
        if let Ok(c) = &mut building.comin {
            c.is_building = true;
        }
        let mut unreadable = probe(comin(HEAD, "done"));
        unreadable.comin = Err("`comin status` failed (connection refused) and /var/lib/comin/store.json cannot be read (No such file or directory)".into());
        let mut nothing = probe(comin(HEAD, "done"));
        if let Ok(c) = &mut nothing.comin {
            c.deployment = None;
        }
        let behind = probe(comin(OLD, "done"));
        let deploying = probe(comin(HEAD, "running"));
        let table: Vec<(&str, Option<&str>, &Probe, Verdict, bool)> = vec![
            ("converged", Some(HEAD), &ok, Verdict::Converged, true),
            ("no branch yet", None, &ok, Verdict::Behind("the ring's branch does not exist yet (promote it)".into()), true),
            ("behind", Some(HEAD), &behind, Verdict::Behind("it deployed 0f1e2d3, the ring's head is a1b2c3d".into()), true),
            ("building", Some(HEAD), &building, Verdict::Behind("it deployed 0f1e2d3, the ring's head is a1b2c3d (building the next one)".into()), true),
            ("deploying", Some(HEAD), &deploying, Verdict::Behind("the deployment of a1b2c3d is running".into()), true),
            ("failed", Some(HEAD), &failed, Verdict::Failed("the deployment of a1b2c3d failed: switch-to-configuration exited with 4".into()), true),
            ("suspended", Some(HEAD), &suspended, Verdict::Failed("comin is suspended (`cairn release` resumes it)".into()), true),
            ("other system", Some(HEAD), &other_system, Verdict::Behind("/run/current-system is /nix/store/old-system, not the deployed generation".into()), true),
            ("unhealthy", Some(HEAD), &unhealthy, Verdict::Failed("health check failed: nginx.service is active: inactive".into()), false),
            ("comin unreadable", Some(HEAD), &unreadable, Verdict::Failed("comin's status cannot be read: `comin status` failed (connection refused) and /var/lib/comin/store.json cannot be read (No such file or directory)".into()), true),
            ("nothing deployed", Some(HEAD), &nothing, Verdict::Behind("comin has deployed nothing yet".into()), true),
        ];
        for (name, head, p, verdict, healthy) in table {
            assert_eq!(assess(head, p), (verdict, healthy), "{name}");
        }
    }

    #[test]
    fn ago_rounds_down() {
        assert_eq!(ago(time::Duration::seconds(59)), "59s");
        assert_eq!(ago(time::Duration::seconds(200)), "3m");
        assert_eq!(ago(time::Duration::hours(5)), "5h");
        assert_eq!(ago(time::Duration::seconds(-3)), "0s");
    }
}
