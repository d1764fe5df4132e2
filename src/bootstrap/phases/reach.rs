//! reach: SSH to the stock image. Check and act are one: connect, pinning the key state
//! recorded, or recording it on first contact ([`crate::reach`] decides which). Prove: the
//! machine answers `facts.sh`, and is no system cairn installed (its own host key, refused
//! at the handshake, or its install marker). Record: the stock key, when first seen (in
//! the session).

use super::PhaseResult;
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::PhaseError;
use crate::inventory::Wait;
use crate::state::KeyPhase;

pub(super) async fn reach(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    // A machine already in the installer (an interrupted run, or rescue) answers with the
    // same carried keys; either way the key is pinned or recorded here.
    let facts = r.facts(KeyPhase::Stock, Wait::Reach).await?;
    r.refuse_if_installed(&facts)?;
    tracing::info!(os = %facts.os_id, installer = facts.installer, mem_mib = facts.mem_mib, "reached");
    Ok(PhaseResult::Done)
}
