//! Before a host is installed, the secrets it may read are re-encrypted to include its
//! recipient, so it can decrypt them on its first boot.

use std::collections::BTreeMap;

use super::PhaseError;
use crate::inventory::Inventory;
use crate::keys::Identities;
use crate::secrets::rules::SecretsPolicy;

/// Writes `.sops.yaml` from the inventory (with every bootstrapped host's recipient) so plain
/// sops and `cairn secrets` agree on who reads what.
pub(super) fn update_recipients(
    inv: &Inventory,
    recipients: &BTreeMap<String, String>,
    _identities: &Identities,
) -> Result<(), PhaseError> {
    if inv.secrets.is_empty() && inv.hosts.iter().all(|h| h.secrets.is_empty()) {
        return Ok(());
    }
    let lookup = |h: &crate::inventory::HostName| recipients.get(h.as_str()).cloned();
    let policy = SecretsPolicy::new(inv, &lookup).map_err(|e| PhaseError::Config {
        what: e.to_string(),
        help: miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default(),
    })?;
    let changed = policy.write_sops_yaml(&inv.root, &[]).map_err(|e| PhaseError::Config {
        what: e.to_string(),
        help: "check that .sops.yaml in the repository is writable".into(),
    })?;
    if changed {
        tracing::info!("updated .sops.yaml from the inventory");
    }
    Ok(())
}
