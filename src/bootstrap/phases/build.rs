//! build: build the host's system on this machine and compute its closure. Check: nix
//! builds only what is missing. Act: `nix build`. Prove: `nix path-info` lists the closure,
//! and its sops-nix settings expect only the keys cairn seeds.
//! Record: the phase (the closure itself stays in memory for copy and install).

use super::PhaseResult;
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::PhaseError;

pub(in crate::bootstrap) async fn build(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let flake = r.flake()?;
    let toplevel = r.ctx.options.nix.build_toplevel(&flake).await?;
    let closure = r.ctx.options.nix.closure(std::slice::from_ref(&toplevel)).await?;
    let bytes: u64 = closure.iter().map(|p| p.nar_size).sum();
    tracing::info!(system = %toplevel, paths = closure.len(), mib = bytes / (1024 * 1024), "built");
    // Before anything is copied: the system must find its keys where cairn puts them.
    crate::bootstrap::seeded::check(&closure, r.host.install.age_key)
        .map_err(|u| PhaseError::Config { what: u.what, help: u.help })?;
    r.toplevel = Some(toplevel);
    r.closure = closure;
    Ok(PhaseResult::Done)
}
