//! provision: ask the provider for the machine. Check: the provider's lookup finds it (then
//! it is only recorded). Act: create it. Prove: the provider reports it. Record: the machine
//! in state, as `cairn apply` does.

use super::PhaseResult;
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::PhaseError;
use crate::provider::{CreateRequest, Machine};

pub(super) async fn provision(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let state = r.state_snapshot();
    if let Some(machine) = r.provider.lookup(r.host, Some(&state)).await? {
        let why = format!("{} exists ({:?})", machine.id, machine.status);
        if machine.status != crate::provider::MachineStatus::Running {
            r.provider.power(r.host, &machine, crate::provider::PowerAction::On).await?;
        }
        let machine = r.provider.lookup(r.host, Some(&state)).await?.unwrap_or(machine);
        remember_machine(r, &machine, None)?;
        return Ok(PhaseResult::Skipped(why));
    }
    let stock_keys = crate::repo::Repo::new(&r.ctx.inventory.root).stock_keys_dir();
    let req = CreateRequest::for_host(
        r.provider.kind(),
        r.host,
        r.ctx.operator.public_line.clone(),
        &stock_keys,
    )?;
    let machine = r.provider.create(r.host, &req).await?;
    remember_machine(r, &machine, Some(&req))?;
    Ok(PhaseResult::Done)
}

/// Records the machine as `cairn apply` does ([`crate::plan::apply::record_machine`]).
/// `created` (the request it was made with): a new machine; what state knew of the old
/// one's keys and progress is forgotten, what it was created with is kept so `cairn plan`
/// can tell when the inventory asks for something else, and its injected stock key pinned.
fn remember_machine(
    r: &HostRun<'_>,
    machine: &Machine,
    created: Option<&CreateRequest>,
) -> Result<(), PhaseError> {
    let desired = crate::plan::Recorded::desired(&r.ctx.inventory, r.host);
    let root = &r.ctx.inventory.root;
    crate::gitops::network::record(&r.ctx.state, root, |s| {
        let h = s.host_mut(r.name());
        crate::plan::apply::record_machine(
            h,
            &r.host.provider,
            machine,
            created.is_some().then_some(&desired),
        );
        if let Some(req) = created {
            crate::plan::apply::pin_stock_key(h, req);
        }
    })?;
    Ok(())
}
