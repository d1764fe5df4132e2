//! `cairn/fleet.json`: what each host's comin is told, generated from the inventory and
//! committed, so the flake reads it with `builtins.fromJSON` and a ring change is a commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::state::StateData;

/// Where the file lives, relative to the repository root.
pub const FLEET_FILE: &str = "cairn/fleet.json";

/// The name comin gives the remote (`services.comin.remotes[].name`).
pub const REMOTE_NAME: &str = "origin";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    /// Says where the file comes from, for whoever opens it.
    #[serde(rename = "_generated")]
    pub generated: String,
    /// Hosts in a ring, by name.
    pub hosts: BTreeMap<String, FleetHost>,
}

/// One host's comin settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHost {
    pub ring: String,
    /// `services.comin.remotes[0]`: `name`, `url`.
    pub remote_name: String,
    pub remote_url: String,
    /// `remotes[0].branches.main.name`: the ring's branch.
    pub branch: String,
    /// The sops file (relative to the repository root) and key holding the read token, for
    /// `sops.secrets` and `remotes[0].auth.access_token_path`; null for a public remote.
    pub token_sops_file: Option<String>,
    pub token_sops_key: Option<String>,
    /// `services.comin.machineId`: the host's /etc/machine-id once cairn has read it.
    pub machine_id: Option<String>,
}

/// The fleet file the inventory and state imply.
pub fn render(inventory: &Inventory, state: &StateData) -> Fleet {
    let mut hosts = BTreeMap::new();
    if let Some(g) = &inventory.gitops {
        for ring in &inventory.rings {
            for host in &ring.hosts {
                let token = g.token.as_ref().map(|t| t.to_string_lossy().replace('\\', "/"));
                hosts.insert(
                    host.to_string(),
                    FleetHost {
                        ring: ring.name.to_string(),
                        remote_name: REMOTE_NAME.to_owned(),
                        remote_url: g.remote.clone(),
                        branch: ring.branch.clone(),
                        token_sops_key: token.as_ref().map(|_| g.token_key.clone()),
                        token_sops_file: token,
                        machine_id: state.host(host.as_str()).and_then(|h| h.machine_id.clone()),
                    },
                );
            }
        }
    }
    Fleet {
        generated: "written by `cairn gitops sync` from cairn.hcl (gitops and ring blocks) and \
                    state; edits are overwritten"
            .to_owned(),
        hosts,
    }
}

impl Fleet {
    /// The file's bytes: pretty JSON, hosts sorted, a final newline (stable diffs).
    pub fn to_bytes(&self) -> Vec<u8> {
        super::generated_json(self)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum FleetError {
    #[error("cannot write {}", path.display())]
    #[diagnostic(code(cairn::gitops::fleet_write))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is out of date: the inventory's rings say otherwise", path.display())]
    #[diagnostic(
        code(cairn::gitops::fleet_stale),
        help("run `cairn gitops sync` and commit {FLEET_FILE}")
    )]
    Stale { path: PathBuf },
}

/// What [`sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    Unchanged,
    Written,
}

/// Writes `cairn/fleet.json` under `root` if its content differs (atomically: temp file,
/// fsync, rename). With `check_only`, writes nothing and fails if it would change.
pub fn sync(root: &Path, fleet: &Fleet, check_only: bool) -> Result<Synced, FleetError> {
    let path = root.join(FLEET_FILE);
    let bytes = fleet.to_bytes();
    if fs_err::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(Synced::Unchanged);
    }
    if check_only {
        return Err(FleetError::Stale { path });
    }
    let dir = path.parent().unwrap_or(root);
    fs_err::create_dir_all(dir)
        .map_err(|source| FleetError::Write { path: path.clone(), source })?;
    crate::util::atomic::write(&path, &bytes, 0o644)
        .map_err(|source| FleetError::Write { path: path.clone(), source })?;
    tracing::info!(path = %path.display(), hosts = fleet.hosts.len(), "fleet file written");
    Ok(Synced::Written)
}
