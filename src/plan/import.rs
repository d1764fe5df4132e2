//! `cairn import HOST ID`: adopting a machine the provider already has, by its id.

use super::apply::record_machine;
use super::PlanError;
use crate::gitops::network;
use crate::inventory::Inventory;
use crate::provider::{Machine, Provider};
use crate::state::SharedStateLock;

/// What `cairn import` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    Recorded(Machine),
    /// State recorded this very machine already.
    AlreadyRecorded(Machine),
}

/// `cairn import HOST ID`: records the machine `id` of the host's provider as the host's.
/// Refuses a host the inventory does not name, and a host with another machine recorded.
pub async fn import(
    inv: &Inventory,
    state: &SharedStateLock,
    provider: &dyn Provider,
    host: &str,
    id: &str,
) -> Result<Imported, PlanError> {
    let Some(host) = inv.host(host) else {
        return Err(PlanError::ImportUnknownHost {
            host: host.to_owned(),
            inventory: inv.path.clone(),
        });
    };
    let name = host.name.as_str();
    let recorded = state.host(name).and_then(|s| s.provider_id);
    if let Some(recorded) = recorded.as_deref().filter(|r| *r != id) {
        return Err(PlanError::ImportConflict {
            host: name.to_owned(),
            recorded: recorded.to_owned(),
            id: id.to_owned(),
        });
    }
    let block = inv.provider_of(host);
    let machine = provider.lookup_id(host, id).await?.ok_or_else(|| PlanError::ImportNotFound {
        host: name.to_owned(),
        provider: format!("{}.{}", block.kind, block.name),
        id: id.to_owned(),
    })?;
    if recorded.as_deref() == Some(id) {
        return Ok(Imported::AlreadyRecorded(machine));
    }
    network::record(state, &inv.root, |s| {
        record_machine(s.host_mut(name), &host.provider, &machine, None)
    })?;
    Ok(Imported::Recorded(machine))
}
