//! From what cairn knows about a host (inventory + state) to where to connect and which
//! host keys to pin: the keys of the newest phase recorded, never "accept anything".

use std::sync::Arc;

use crate::inventory::{Host, SshSettings};
use crate::state::{HostState, KeyPhase};

use super::error::{Error, Result};
use super::{HostKeyPolicy, Target};

/// Where and how to reach a host that cairn has seen before.
#[derive(Debug, Clone)]
pub struct KnownHost {
    pub target: Target,
    pub policy: HostKeyPolicy,
    /// The phase whose keys are pinned.
    pub phase: KeyPhase,
}

/// The recorded address (state first, then the inventory's `address`) and the host keys of
/// `phase`, or of the newest phase with keys when `phase` is `None`.
pub fn known_host(
    host: &Host,
    state: Option<&HostState>,
    phase: Option<KeyPhase>,
) -> Result<KnownHost> {
    resolve(host.name.as_str(), &host.ssh, host.address.as_deref(), state, phase)
}

fn resolve(
    name: &str,
    ssh: &SshSettings,
    inventory_address: Option<&str>,
    state: Option<&HostState>,
    phase: Option<KeyPhase>,
) -> Result<KnownHost> {
    let name = name.to_owned();
    let address = state
        .and_then(|s| s.addresses.first().cloned())
        .or_else(|| inventory_address.map(str::to_owned))
        .ok_or_else(|| Error::NoAddress { host: name.clone() })?;
    let target = Target::from_address(&address, ssh.port, ssh.user.clone())
        .ok_or_else(|| Error::BadAddress { host: name.clone(), address: address.clone() })?;
    let keys = state.map(|s| &s.host_keys);
    let chosen = match phase {
        Some(p) => keys.and_then(|k| k.get(&p)).filter(|v| !v.is_empty()).map(|v| (p, v)),
        // The system the last completed bootstrap phase left running; else the newest phase
        // with keys (KeyPhase orders stock < installer < installed).
        None => {
            let running =
                state.and_then(|s| s.last_phase.as_ref()).map(|r| match r.phase.as_str() {
                    "reboot" | "verify" => KeyPhase::Installed,
                    "kexec" | "disk" | "keys" | "build" | "copy" | "install" => KeyPhase::Installer,
                    _ => KeyPhase::Stock,
                });
            let by_progress = running.and_then(|p| {
                keys.and_then(|k| k.get(&p)).filter(|v| !v.is_empty()).map(|v| (p, v))
            });
            by_progress.or_else(|| {
                keys.and_then(|k| k.iter().rev().find(|(_, v)| !v.is_empty())).map(|(p, v)| (*p, v))
            })
        }
    };
    let Some((phase, lines)) = chosen else {
        return Err(Error::NoRecordedKey {
            target: Arc::new(target),
            host: name,
            phase: phase.map(phase_name),
        });
    };
    let policy = HostKeyPolicy::pinned_openssh(lines).map_err(|e| Error::BadRecordedKey {
        host: name.clone(),
        phase: phase_name(phase),
        reason: e.to_string(),
    })?;
    // The inventory's ssh.user logs into the stock image; cairn's installer and the systems
    // it installs are reached as root (bootstrap seeds root's authorized_keys).
    let mut target = target;
    if phase != KeyPhase::Stock {
        target.user = "root".into();
    }
    Ok(KnownHost { target, policy, phase })
}

pub fn phase_name(p: KeyPhase) -> &'static str {
    match p {
        KeyPhase::Stock => "stock",
        KeyPhase::Installer => "installer",
        KeyPhase::Installed => "installed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKna0glgZAokHtKFwcbxTtqCIs1dpDtPCgmJepLqN7JR stock";
    const INSTALLED: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ+DnwH3YL9K5PuI+YBHLQTeN+B82YXtDAdh5mvxpr0nJPx5BPImJhHkUm6tfDvVrg397o5P2AQqKELQjZ3WMVc=";

    fn state(addresses: &[&str], keys: &[(KeyPhase, &str)]) -> HostState {
        let mut s = HostState {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        for (phase, key) in keys {
            s.host_keys.entry(*phase).or_default().push(key.to_string());
        }
        s
    }

    fn pinned(k: &KnownHost) -> Vec<String> {
        match &k.policy {
            HostKeyPolicy::Pinned(keys) => {
                keys.iter().map(|k| k.algorithm().as_str().to_owned()).collect()
            }
            HostKeyPolicy::RecordOnFirstContact => panic!("never record for a known host"),
        }
    }

    #[test]
    fn pins_the_newest_phase_and_uses_the_recorded_address() {
        let ssh = SshSettings { user: "admin".into(), port: 2222 };
        let st = state(
            &["127.0.0.1:2201", "10.0.0.2"],
            &[(KeyPhase::Stock, STOCK), (KeyPhase::Installed, INSTALLED)],
        );
        let k = resolve("web1", &ssh, Some("192.0.2.1"), Some(&st), None).unwrap();
        // The installed system is reached as root; the inventory's user is the stock image's.
        assert_eq!(k.target, Target::new("127.0.0.1", 2201, "root"));
        assert_eq!(k.phase, KeyPhase::Installed);
        assert_eq!(pinned(&k), ["ecdsa-sha2-nistp256"]);

        let k = resolve("web1", &ssh, None, Some(&st), Some(KeyPhase::Stock)).unwrap();
        assert_eq!(k.target, Target::new("127.0.0.1", 2201, "admin"));
        assert_eq!(pinned(&k), ["ssh-ed25519"]);
    }

    #[test]
    fn follows_the_last_completed_phase_not_the_newest_key() {
        // Keys of the installed system are known from the keys phase on, but until the
        // reboot the machine still runs the installer (with the stock keys carried over).
        let ssh = SshSettings { user: "debian".into(), port: 22 };
        let mut st = state(
            &["127.0.0.1:2201"],
            &[
                (KeyPhase::Stock, STOCK),
                (KeyPhase::Installer, STOCK),
                (KeyPhase::Installed, INSTALLED),
            ],
        );
        st.last_phase = Some(crate::state::PhaseRecord {
            phase: "copy".into(),
            at: time::OffsetDateTime::UNIX_EPOCH,
        });
        let k = resolve("web1", &ssh, None, Some(&st), None).unwrap();
        assert_eq!(k.phase, KeyPhase::Installer);
        assert_eq!(k.target.user, "root");
    }

    #[test]
    fn falls_back_to_the_inventory_address() {
        let ssh = SshSettings { user: "root".into(), port: 22 };
        let st = state(&[], &[(KeyPhase::Stock, STOCK)]);
        let k = resolve("db1", &ssh, Some("192.0.2.9"), Some(&st), None).unwrap();
        assert_eq!(k.target, Target::new("192.0.2.9", 22, "root"));
    }

    #[test]
    fn refuses_without_an_address_or_a_recorded_key() {
        let ssh = SshSettings::default();
        let err = resolve("web1", &ssh, None, None, None).unwrap_err();
        assert!(matches!(err, Error::NoAddress { .. }), "{err:?}");
        let err = resolve("web1", &ssh, Some("192.0.2.1"), None, None).unwrap_err();
        assert!(matches!(err, Error::NoRecordedKey { .. }), "{err:?}");
        let st = state(&[], &[(KeyPhase::Stock, STOCK)]);
        let err = resolve("web1", &ssh, Some("192.0.2.1"), Some(&st), Some(KeyPhase::Installed))
            .unwrap_err();
        assert_eq!(err.to_string(), "no installed host key of web1 is recorded in state");
        let st = state(&[], &[(KeyPhase::Stock, "ssh-ed25519 garbage")]);
        let err = resolve("web1", &ssh, Some("192.0.2.1"), Some(&st), None).unwrap_err();
        assert!(matches!(err, Error::BadRecordedKey { .. }), "{err:?}");
    }
}
