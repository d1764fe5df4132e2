//! Reading state written by an older cairn: the document is read as this build's
//! [`StateData`], then each step turns schema N into N + 1. Both backends use it; the next
//! commit writes the current schema.

use serde_json::Value;

use super::{StateData, SCHEMA_VERSION};
use crate::phase::Phase;

/// `bytes`, written with schema `from`, read as this build's state. An error names the
/// position in `bytes`, as for current state.
pub(super) fn from_slice(bytes: &[u8], from: u64) -> Result<StateData, serde_json::Error> {
    let mut data = match serde_json::from_slice::<StateData>(bytes) {
        Ok(data) => data,
        Err(error) => match lenient(bytes) {
            Some(data) => data,
            None => return Err(error),
        },
    };
    if from <= 1 {
        v1_to_v2(&mut data);
    }
    data.schema = SCHEMA_VERSION;
    Ok(data)
}

/// The document with every `last_phase` this build cannot read as a [`Phase`] dropped (the
/// host's next bootstrap then starts from the beginning, checking each step); `None` when it
/// still does not read.
fn lenient(bytes: &[u8]) -> Option<StateData> {
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    for (name, host) in value.get_mut("hosts")?.as_object_mut()? {
        let Some(host) = host.as_object_mut() else { continue };
        let phase = host.get("last_phase").and_then(|r| r.get("phase"));
        if phase.is_some_and(|p| serde_json::from_value::<Phase>(p.clone()).is_err()) {
            tracing::warn!(
                host = %name,
                "state records a last phase this cairn does not know ({}); the next bootstrap starts from the beginning",
                phase.map(|p| p.to_string()).unwrap_or_default()
            );
            host.remove("last_phase");
        }
    }
    serde_json::from_value(value).ok()
}

/// Schema 2 records bootstrap's own facts in `bootstrap` rather than among the provider's.
fn v1_to_v2(data: &mut StateData) {
    for host in data.hosts.values_mut() {
        let mut take = |key: &str| match host.provider_data.remove(key) {
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let system = take("system");
        let installer_boot_id = take("installer_boot_id");
        host.bootstrap.system = host.bootstrap.system.take().or(system);
        host.bootstrap.installer_boot_id =
            host.bootstrap.installer_boot_id.take().or(installer_boot_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_1_moves_bootstraps_facts_out_of_provider_data_and_types_phases() {
        let v1 = serde_json::json!({
            "schema": 1,
            "serial": 9,
            "hosts": {
                "web1": {
                    "provider_id": "vm1",
                    "last_phase": { "phase": "reboot", "at": "2026-11-21T17:40:00Z" },
                    "provider_data": {
                        "dir": "/r/.cairn/qemu/web1",
                        "system": "/nix/store/abc-nixos-system-web1",
                        "installer_boot_id": "b00t"
                    }
                },
                "web2": {
                    "provider_data": { "system": "/nix/store/def-nixos-system-web2" },
                    "last_phase": { "phase": "format", "at": "2026-11-21T17:40:00Z" }
                },
                "web3": {}
            }
        });
        let data = from_slice(v1.to_string().as_bytes(), 1).unwrap();
        assert_eq!(data.schema, SCHEMA_VERSION);
        assert_eq!(data.serial, 9);
        let web1 = &data.hosts["web1"];
        assert_eq!(web1.last_phase.as_ref().map(|r| r.phase), Some(Phase::Reboot));
        assert_eq!(web1.bootstrap.system.as_deref(), Some("/nix/store/abc-nixos-system-web1"));
        assert_eq!(web1.bootstrap.installer_boot_id.as_deref(), Some("b00t"));
        assert_eq!(web1.bootstrap.verified, None);
        assert_eq!(
            web1.provider_data.keys().collect::<Vec<_>>(),
            ["dir"],
            "the provider's own facts stay"
        );
        let web2 = &data.hosts["web2"];
        assert!(web2.provider_data.is_empty());
        assert_eq!(web2.bootstrap.system.as_deref(), Some("/nix/store/def-nixos-system-web2"));
        // A phase name no cairn wrote is not guessed at.
        assert_eq!(web2.last_phase, None);
        assert!(data.hosts["web3"].bootstrap.is_empty());
    }

    #[test]
    fn migrated_state_is_written_in_the_current_schema() {
        let v1 = serde_json::json!({
            "schema": 1, "serial": 1,
            "hosts": { "a": { "provider_data": { "installer_boot_id": "x" } } }
        });
        let text = serde_json::to_value(from_slice(v1.to_string().as_bytes(), 1).unwrap()).unwrap();
        assert_eq!(
            text,
            serde_json::json!({
                "schema": SCHEMA_VERSION, "serial": 1,
                "hosts": { "a": { "bootstrap": { "installer_boot_id": "x" } } }
            })
        );
    }
}
