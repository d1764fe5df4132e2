//! A saved plan (`cairn plan --out FILE`): the actions, and what they were computed from, so
//! `cairn apply FILE` can refuse a plan that no longer describes the world.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Plan, PlanError};
use crate::inventory::Inventory;

const FORMAT: &str = "cairn-plan";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    pub format: String,
    pub version: u32,
    /// The cairn that wrote it.
    pub cairn_version: String,
    /// [`inventory_digest`] of the inventory the plan was computed from.
    pub inventory_digest: String,
    /// The state's serial when the plan was computed.
    pub state_serial: u64,
    /// The host selection the plan was made for (none: all hosts).
    pub selectors: Vec<String>,
    pub plan: Plan,
}

impl PlanFile {
    pub fn new(inv: &Inventory, state_serial: u64, selectors: &[String], plan: Plan) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            cairn_version: env!("CARGO_PKG_VERSION").into(),
            inventory_digest: inventory_digest(inv),
            state_serial,
            selectors: selectors.to_vec(),
            plan,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), PlanError> {
        let mut text = serde_json::to_string_pretty(self).expect("a plan serializes");
        text.push('\n');
        crate::util::atomic::write(path, text.as_bytes(), 0o644).map_err(|source| PlanError::File {
            path: path.to_owned(),
            what: "write",
            help: "check that the directory exists and is writable".into(),
            source,
        })
    }

    pub fn read(path: &Path) -> Result<Self, PlanError> {
        let text = fs_err::read_to_string(path).map_err(|source| PlanError::File {
            path: path.to_owned(),
            what: "read",
            help: "give the file `cairn plan --out FILE` wrote".into(),
            source,
        })?;
        let file: Self = serde_json::from_str(&text)
            .map_err(|e| PlanError::NotAPlan { path: path.to_owned(), reason: e.to_string() })?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(PlanError::NotAPlan {
                path: path.to_owned(),
                reason: format!("format `{}` version {}", file.format, file.version),
            });
        }
        Ok(file)
    }

    /// Refuses the plan if the inventory or state changed since it was made.
    pub fn check_current(
        &self,
        path: &Path,
        inv: &Inventory,
        state_serial: u64,
    ) -> Result<(), PlanError> {
        let stale = |why: String| Err(PlanError::Stale { path: path.to_owned(), why });
        if inventory_digest(inv) != self.inventory_digest {
            return stale(format!(
                "{} changed since the plan was made",
                inv.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ));
        }
        if state_serial != self.state_serial {
            return stale(format!(
                "the state changed since the plan was made (serial {} then, {state_serial} now)",
                self.state_serial
            ));
        }
        Ok(())
    }
}

/// A digest of what the plan depends on in the inventory: every host's provider and machine
/// attributes, and the provider blocks' settings (never their secrets). Comments, order of
/// blocks elsewhere and secrets do not change it.
pub fn inventory_digest(inv: &Inventory) -> String {
    let hosts: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| {
            serde_json::json!([
                h.name, h.provider, h.size, h.image, h.location, h.address, h.ssh.port, h.install,
                h.vm
            ])
        })
        .collect();
    let providers: Vec<_> = inv
        .providers
        .values()
        .map(|p| serde_json::json!([p.name, p.kind.as_str(), p.settings]))
        .collect();
    let doc = serde_json::json!({ "hosts": hosts, "providers": providers });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}
