//! build: build the host's system on this machine and compute its closure. Check: nix
//! builds only what is missing. Act: `nix build`. Prove: `nix path-info` lists the closure.
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
    r.toplevel = Some(toplevel);
    r.closure = closure;
    Ok(PhaseResult::Done)
}
