//! `cairn hosts`: the inventory joined with state, one row per host.

use serde::Serialize;

use crate::inventory::{Host, Inventory};
use crate::state::{KeyPhase, PhaseRecord, StateData};

#[derive(Debug, Clone, Serialize)]
pub struct ProviderRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub name: String,
    pub provider: ProviderRef,
    /// `flake#attr`, if the host has one.
    pub flake: Option<String>,
    pub tags: Vec<String>,
    /// The best address known: state's first, else the inventory's (`existing` machines).
    pub address: Option<String>,
    pub last_phase: Option<PhaseRecord>,
    /// Fingerprint (`ssh-ed25519 SHA256:...`) of the pinned host key (installed system's, else the latest phase's).
    pub host_key: Option<String>,
}

/// One row per selected host, in inventory order.
pub fn rows(inv: &Inventory, selected: &[&Host], state: &StateData) -> Vec<HostRow> {
    selected
        .iter()
        .map(|host| {
            let provider = inv.provider_of(host);
            let st = state.host(host.name.as_str());
            let pinned = st.and_then(|s| {
                s.host_keys
                    .get(&KeyPhase::Installed)
                    .and_then(|k| k.first())
                    .or(s.ssh_public_key.as_ref())
                    .or_else(|| s.host_keys.values().next_back().and_then(|k| k.first()))
            });
            HostRow {
                name: host.name.to_string(),
                provider: ProviderRef {
                    kind: provider.kind.to_string(),
                    name: provider.name.to_string(),
                },
                flake: host.flake.as_ref().map(|f| f.to_string()),
                tags: host.tags.iter().map(|t| t.to_string()).collect(),
                address: st
                    .and_then(|s| s.addresses.first().cloned())
                    .or_else(|| host.address.clone()),
                last_phase: st.and_then(|s| s.last_phase.clone()),
                host_key: pinned.and_then(|k| fingerprint(k)),
            }
        })
        .collect()
}

/// How `cairn hosts` shows a pinned key line: [`crate::ssh::fingerprint`]
/// (`ssh-ed25519 SHA256:...`, as `ssh-keygen -l` names it); `None` if it is not a key.
fn fingerprint(key_line: &str) -> Option<String> {
    russh::keys::PublicKey::from_openssh(key_line).ok().map(|k| crate::ssh::fingerprint(&k))
}

/// The table's short form: the algorithm without its `ssh-` prefix and 16 digits of the
/// hash (`ed25519 SHA256:ppC8hwvKkktlVNa9`); the full fingerprint is in `--json`.
fn short_fingerprint(full: &str) -> String {
    let (alg, hash) = full.split_once(' ').unwrap_or(("", full));
    let alg = alg.strip_prefix("ssh-").unwrap_or(alg);
    let hash: String = hash.chars().take("SHA256:".len() + 16).collect();
    if alg.is_empty() {
        hash
    } else {
        format!("{alg} {hash}")
    }
}

/// The rows as an aligned plain-text table.
pub fn render_table(rows: &[HostRow]) -> String {
    let header = ["NAME", "PROVIDER", "FLAKE", "TAGS", "ADDRESS", "LAST PHASE", "HOST KEY"];
    let mut table: Vec<[String; 7]> = vec![header.map(str::to_owned)];
    for r in rows {
        let dash = || "-".to_owned();
        table.push([
            r.name.clone(),
            format!("{}.{}", r.provider.kind, r.provider.name),
            r.flake.clone().unwrap_or_else(dash),
            if r.tags.is_empty() { dash() } else { r.tags.join(",") },
            r.address.clone().unwrap_or_else(dash),
            r.last_phase.as_ref().map_or_else(dash, |p| {
                let at =
                    p.at.format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute]"
                    ))
                    .unwrap_or_default();
                format!("{} ({at})", p.phase)
            }),
            // Short, as ssh-keygen users recognise it: the first 16 characters of the hash.
            r.host_key.as_ref().map_or_else(dash, |k| short_fingerprint(k)),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // As `ssh-keygen -lf` printed it for this key.
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIE/orE9QoQ9OmBws2f3DqR08YyzNiTPVGh5WKMSYkUT x@y";
        assert_eq!(
            super::fingerprint(key).unwrap(),
            "ssh-ed25519 SHA256:ppC8hwvKkktlVNa9BXsq/lLrChrxToZQ+pO9ZvnSu80"
        );
        assert_eq!(super::fingerprint("not a key"), None);
    }
}
