//! `cairn/network.json`: each host's public addresses as its provider reported them,
//! generated from state and committed, so the flake configures what no DHCP server hands
//! out (Hetzner Cloud's IPv6: a static address and the gateway `fe80::1`). The flake reads
//! it with `builtins.fromJSON`, as it reads `cairn/fleet.json`.
//!
//! It is rewritten whenever state learns a machine's addresses, through [`record`], so the
//! file and state cannot drift apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fleet::Synced;
use crate::state::{SharedStateLock, StateData, StateError};

/// Where the file lives, relative to the repository root.
pub const NETWORK_FILE: &str = "cairn/network.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFile {
    /// Says where the file comes from, for whoever opens it.
    #[serde(rename = "_generated")]
    pub generated: String,
    /// Hosts whose provider reported public addresses, by name.
    pub hosts: BTreeMap<String, HostNetwork>,
}

/// One host's public addresses; `null` for what the provider did not report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNetwork {
    /// `203.0.113.7` (configured by DHCP; here for firewall rules and DNS records).
    pub ipv4: Option<String>,
    /// `2a01:4f8:c0c:1::1/64`: the static address, with its prefix.
    pub ipv6: Option<String>,
    /// `fe80::1` where the provider routes IPv6 statically (hcloud); null where router
    /// advertisements configure it (aws).
    pub gateway6: Option<String>,
}

/// The file state implies.
pub fn render(state: &StateData) -> NetworkFile {
    let hosts = state
        .hosts
        .iter()
        .filter(|(_, h)| !h.network.is_empty())
        .map(|(name, h)| {
            let n = &h.network;
            let host = HostNetwork {
                ipv4: n.ipv4.map(|a| a.to_string()),
                ipv6: n.ipv6.map(|a| a.to_string()),
                gateway6: n.gateway6.map(|a| a.to_string()),
            };
            (name.clone(), host)
        })
        .collect();
    NetworkFile {
        generated: "written by cairn from state when apply or bootstrap records a machine; \
                    edits are overwritten"
            .to_owned(),
        hosts,
    }
}

impl NetworkFile {
    /// The file's bytes: pretty JSON, hosts sorted, a final newline (stable diffs).
    pub fn to_bytes(&self) -> Vec<u8> {
        super::generated_json(self)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum NetworkError {
    #[error("cannot write {}", path.display())]
    #[diagnostic(
        code(cairn::gitops::network_write),
        help("state has the addresses; fix the directory's permissions and run `cairn apply` again to rewrite it")
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
}

/// Writes `cairn/network.json` under `root` if its content differs (atomically). A repository
/// whose hosts have no public addresses (qemu, existing machines) gets no file.
pub fn sync(root: &Path, file: &NetworkFile) -> Result<Synced, NetworkError> {
    let path = root.join(NETWORK_FILE);
    let bytes = file.to_bytes();
    match fs_err::read(&path) {
        Ok(old) if old == bytes => return Ok(Synced::Unchanged),
        Err(_) if file.hosts.is_empty() => return Ok(Synced::Unchanged),
        _ => {}
    }
    let write = |source| NetworkError::Write { path: path.clone(), source };
    fs_err::create_dir_all(path.parent().unwrap_or(root)).map_err(write)?;
    crate::util::atomic::write(&path, &bytes, 0o644).map_err(write)?;
    tracing::info!(path = %path.display(), "public addresses written for the flake; commit the file");
    Ok(Synced::Written)
}

/// Applies `change` to state and rewrites `cairn/network.json` from the result, both under
/// the state's lock: the one way machines' addresses enter state (apply, import, destroy and
/// bootstrap's provision), so parallel hosts never write a file that lacks another's.
pub fn record<R>(
    state: &SharedStateLock,
    root: &Path,
    change: impl FnOnce(&mut StateData) -> R,
) -> Result<R, NetworkError> {
    let (r, written) = state.update(|data| {
        let r = change(data);
        (r, sync(root, &render(data)))
    })?;
    written?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{HostState, Ipv6Interface, PublicNetwork};

    fn state() -> StateData {
        let mut s = StateData::default();
        *s.host_mut("web1") = HostState {
            network: PublicNetwork {
                ipv4: None,
                ipv6: Ipv6Interface::first_of("2a01:4f8:c0c:1::/64"),
                gateway6: "fe80::1".parse().ok(),
            },
            ..Default::default()
        };
        s.host_mut("db1").network.ipv4 = "203.0.113.7".parse().ok();
        // A qemu VM: no public address, not in the file.
        s.host_mut("vm1").addresses = vec!["127.0.0.1:2201".into()];
        s
    }

    #[test]
    fn names_each_hosts_public_addresses_and_leaves_out_hosts_without() {
        let file = render(&state());
        let json: serde_json::Value = serde_json::from_slice(&file.to_bytes()).unwrap();
        assert_eq!(
            json["hosts"],
            serde_json::json!({
                "db1": {"ipv4": "203.0.113.7", "ipv6": null, "gateway6": null},
                "web1": {"ipv4": null, "ipv6": "2a01:4f8:c0c:1::1/64", "gateway6": "fe80::1"},
            })
        );
        assert!(String::from_utf8(file.to_bytes()).unwrap().ends_with("}\n"));
    }

    #[test]
    fn is_written_once_and_not_at_all_for_a_fleet_without_public_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let empty = render(&StateData::default());
        assert_eq!(sync(dir.path(), &empty).unwrap(), Synced::Unchanged);
        assert!(!dir.path().join(NETWORK_FILE).exists());

        let file = render(&state());
        assert_eq!(sync(dir.path(), &file).unwrap(), Synced::Written);
        assert_eq!(sync(dir.path(), &file).unwrap(), Synced::Unchanged);
        // Every host destroyed: the file stays, with no hosts, so the flake still reads it.
        assert_eq!(sync(dir.path(), &empty).unwrap(), Synced::Written);
        let left = fs_err::read_to_string(dir.path().join(NETWORK_FILE)).unwrap();
        assert!(left.contains("\"hosts\": {}"), "{left}");
    }
}
