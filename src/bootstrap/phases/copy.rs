//! copy: stream the closure into /mnt/nix/store and register it. Check: the target lists
//! what it already has (a cut-off copy resumes). Act: send the rest. Prove: the target's
//! Nix database registers every path. Record: the phase. Each remote command may take the
//! `copy` budget, which grows with the closure's size unless set.

use super::{PhaseResult, TARGET_ROOT};
use crate::bootstrap::copy::strategy;
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::PhaseError;
use crate::inventory::{Budget, Wait};
use crate::state::KeyPhase;

pub(super) async fn copy(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let toplevel = r.built().await?;
    let bytes = r.closure.iter().map(|p| p.nar_size).sum();
    r.command_limit = r.budgets.for_transfer(Budget::Copy, bytes);
    let (explicit, link_rate) = (r.host.install.copy, r.link_rate);
    r.session(KeyPhase::Installer, Wait::Reach).await?;
    let (_, session) = r.session.as_ref().expect("just connected");
    let (strategy, reason) = match strategy::choose(explicit, link_rate, None) {
        Ok(chosen) => chosen,
        Err(strategy::Need::TargetNix) => {
            let has_nix = session.exec(&strategy::nix_check()).await?.exit_code == 0;
            strategy::choose(explicit, link_rate, Some(has_nix))
                .expect("decided once the target's Nix is known")
        }
    };
    tracing::info!("copy: strategy {strategy}: {reason}");
    let job = crate::bootstrap::copy::CopyJob {
        strategy,
        closure: &r.closure,
        toplevel: &toplevel,
        root: TARGET_ROOT,
        nix: &r.ctx.options.nix,
        identity: &r.ctx.operator.private_key_path,
    };
    crate::bootstrap::copy::copy_closure(session, &job).await?;
    Ok(PhaseResult::Done)
}
