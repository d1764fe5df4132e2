//! reboot: leave the installer for the installed system. Check: still in the installer
//! (else skipped). Record: the installer's boot id, before acting. Act: reboot. Verify
//! proves the result.

use super::{PhaseResult, REBOOT_SH};
use crate::bootstrap::host_run::{is_transient, HostRun};
use crate::bootstrap::PhaseError;
use crate::inventory::Wait;
use crate::ssh::RemoteCommand;
use crate::state::KeyPhase;

pub(super) async fn reboot(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let facts = r.facts(KeyPhase::Installer, Wait::Reach).await?;
    if !facts.installer {
        return Ok(PhaseResult::Skipped("not in the installer any more".into()));
    }
    let installer_boot = facts.boot_id.clone();
    r.update_state(|h| h.bootstrap.installer_boot_id = Some(installer_boot))?;
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    match session.exec(&RemoteCommand::script("reboot", REBOOT_SH)).await {
        Ok(_) => {}
        Err(e) if is_transient(&e) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some((_, s)) = r.session.take() {
        s.close().await;
    }
    Ok(PhaseResult::Done)
}
