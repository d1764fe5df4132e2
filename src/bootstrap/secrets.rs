//! Before a host is installed, the secrets it may read are re-encrypted to include its
//! recipient, so it can decrypt them on its first boot.

use std::collections::BTreeMap;

use super::PhaseError;
use crate::inventory::Inventory;
use crate::keys::Identities;
use crate::secrets::rekey::{self, RekeyStatus};

/// Writes `.sops.yaml` from the inventory (with every bootstrapped host's recipient) so plain
/// sops and `cairn secrets` agree on who reads what, then re-keys every secrets file whose
/// recipients differ (same data key, values untouched, files already right not rewritten).
pub(super) fn update_recipients(
    inv: &Inventory,
    recipients: &BTreeMap<String, String>,
    identities: &Identities,
) -> Result<(), PhaseError> {
    let lookup = |h: &crate::inventory::HostName| recipients.get(h.as_str()).cloned();
    let Some((update, plan)) = rekey::plan_from_inventory(inv, &lookup, &inv.root, &[], false)?
    else {
        return Ok(());
    };
    if update.changed() {
        tracing::info!("updated .sops.yaml from the inventory");
    }
    let mut failed = Vec::new();
    for report in rekey::rekey(&plan, identities, false, false) {
        let shown =
            report.path.strip_prefix(&inv.root).unwrap_or(&report.path).display().to_string();
        match report.status {
            RekeyStatus::UpToDate => {}
            RekeyStatus::Changed(_) | RekeyStatus::Rotated(_) => {
                tracing::info!(file = %shown, "re-encrypted to the recipients the inventory gives");
            }
            RekeyStatus::Failed(e) => {
                tracing::error!(file = %shown, "cannot re-key: {e}");
                failed.push(shown);
            }
        }
    }
    if !failed.is_empty() {
        return Err(PhaseError::Config {
            what: format!("cannot re-key {} so the host can read them", failed.join(", ")),
            help: "re-keying needs an admin identity (SOPS_AGE_KEY_FILE or ~/.config/sops/age/keys.txt); \
                   run `cairn secrets rekey` to see why"
                .into(),
        });
    }
    Ok(())
}
