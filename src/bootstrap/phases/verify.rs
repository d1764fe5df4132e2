//! verify: prove the installed system is the one cairn installed. Check: it answers with the
//! key cairn generated (never a stock or installer key) on a boot that is not the
//! installer's. Prove: the health checks pass before the `verify` deadline. Record: what was
//! proved, in state's bootstrap record.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::bootstrap::host_run::{is_transient, HostRun};
use crate::bootstrap::{AgentHandOff, PhaseError, Verified};
use crate::inventory::Wait;
use crate::ssh::{self, RemoteCommand};
use crate::state::{KeyPhase, VerifiedRecord};

pub(super) async fn verify(r: &mut HostRun<'_>) -> Result<Verified, PhaseError> {
    let state = r.state_snapshot();
    let installer_boot = state.bootstrap.installer_boot_id.clone();
    let limit = r.deadlines.get(Wait::Reboot);
    let deadline = Instant::now() + limit;
    let old_keys = crate::reach::keys_before(&state, KeyPhase::Installed);
    let mut last_seen = String::from("nothing: no connection was tried");
    // Only the key cairn generated is accepted: a stock image or an installer answering
    // here (the reboot did not happen, or booted the wrong disk) is refused.
    let facts = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(PhaseError::timeout(
                Wait::Reboot,
                limit,
                "the installed system did not answer with its own host key",
                last_seen,
                format!(
                    "{}; if it booted but has another address now, set the host's `address`",
                    r.console_hint()
                ),
            ));
        }
        match r.facts_within(KeyPhase::Installed, Wait::Reboot, left).await {
            Ok(f) if !f.installer && installer_boot.as_deref() != Some(f.boot_id.as_str()) => break f,
            Ok(f) => {
                return Err(PhaseError::Remote {
                    what: format!("the host answered but is still the installer (boot id {})", f.boot_id),
                    help: "the reboot did not happen or the boot loader is wrong; run with --phases install,reboot,verify".into(),
                })
            }
            Err(PhaseError::Ssh(e)) if is_transient(&e) => {
                last_seen = e.to_string();
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(PhaseError::Timeout { last_seen: seen, .. }) => last_seen = seen,
            // The installer answers for a moment after `reboot`, with its own (known) key:
            // not the installed system yet, so wait; any other key is refused.
            Err(PhaseError::Ssh(ssh::Error::HostKeyMismatch { presented, .. }))
                if old_keys.contains(&presented) =>
            {
                tracing::debug!("the installer still answers; waiting for the reboot");
                last_seen = format!("the installer still answering with its key {presented}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let session = r.session(KeyPhase::Installed, Wait::Reboot).await?;
    let host_key = ssh::fingerprint(session.host_key());
    let presented = session.host_key().to_openssh().ok();
    let target = session.target().to_string();
    let root_device = session
        .exec(
            &RemoteCommand::new("sh")
                .arg("-c")
                .arg("awk '$2 == \"/\" { d = $1 } END { print d }' /proc/mounts"),
        )
        .await?
        .stdout_trimmed();
    let checks = health_checks(r).await?;
    let agent = agent_hand_off(r).await?;
    let at = OffsetDateTime::now_utc();
    let record = VerifiedRecord {
        at: at.replace_nanosecond(0).unwrap_or(at),
        boot_id: facts.boot_id.clone(),
        host_key: host_key.clone(),
    };
    r.update_state(|h| {
        h.bootstrap.verified = Some(record);
        // Re-adopting a host whose state was lost: the key just proved (state pinned none,
        // so reach pinned the repository's) becomes the pinned one.
        if let Some(line) = presented {
            let none_pinned = h.host_keys.get(&KeyPhase::Installed).is_none_or(|k| k.is_empty());
            if none_pinned {
                h.host_keys.insert(KeyPhase::Installed, vec![line.clone()]);
            }
            h.ssh_public_key.get_or_insert(line);
        }
    })?;
    Ok(Verified {
        address: target,
        host_key,
        boot_id: facts.boot_id,
        root_device,
        checks,
        unchanged: false,
        agent,
    })
}

/// For a host in a ring, comin's status: what it deployed, or that it has not yet, and the
/// branch it pulls. Not a failure when comin does not answer (it may start later), but said.
async fn agent_hand_off(r: &mut HostRun<'_>) -> Result<Option<Box<AgentHandOff>>, PhaseError> {
    let inv = &r.ctx.inventory;
    let (Some(_), Some(ring)) = (&inv.gitops, inv.ring_of(r.name())) else { return Ok(None) };
    let branch = ring.branch.clone();
    let name = r.name().to_owned();
    let session = r.session(KeyPhase::Installed, Wait::Verify).await?;
    let status = crate::gitops::status::comin_status(session, &name).await?;
    Ok(Some(Box::new(AgentHandOff { branch, status })))
}

async fn health_checks(r: &mut HostRun<'_>) -> Result<Vec<String>, PhaseError> {
    // The same commands `cairn status` runs (inventory::health).
    let checks: Vec<(String, String)> =
        r.host.check_commands().into_iter().map(|c| (c.label, c.command)).collect();
    let limit = r.deadlines.get(Wait::Verify);
    let deadline = Instant::now() + limit;
    let mut passed = Vec::new();
    for (label, command) in checks {
        let mut output = String::new();
        let mut exit = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PhaseError::health_check(r.name(), label, &output, exit, limit));
            }
            let deadlines = r.deadlines.clone();
            let session = r.session_within(KeyPhase::Installed, Wait::Verify, left).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            // A check that hangs (a unit that never settles) fails at the deadline too.
            let check = RemoteCommand::new("sh")
                .arg("-c")
                .arg(format!("exec 2>&1\n{command}"))
                .allow_exit_codes(1..=255)
                .time_limit(deadlines.command_limit(Wait::Verify, left));
            match session.exec(&check).await {
                Ok(out) => {
                    if out.exit_code == 0 {
                        passed.push(label);
                        break;
                    }
                    output = out.stdout_trimmed();
                    exit = Some(out.exit_code);
                }
                // Cut off by the deadline: the last complete run (if any) says more.
                Err(ssh::Error::CommandTimeout { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(2))).await;
        }
    }
    Ok(passed)
}
