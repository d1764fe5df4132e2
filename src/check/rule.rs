//! The ids of `cairn check`'s rules: what `--rule`, `--skip` and `check { skip = [...] }` name.

use std::fmt;

use serde::Serialize;

/// How bad a finding is: errors fail the check, warnings only with `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A rule `cairn check` knows. `Policies` stands for every Rego policy in `policies/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    SecretsPlaintext,
    SecretsPrivateKey,
    SecretsRecipients,
    SecretsHostKey,
    SecretsStale,
    InventoryFlake,
    GitopsComin,
    NixosSsh,
    NixosPasswordInStore,
    FlakeInputs,
    DiskById,
    GitopsRings,
    Policies,
}

impl RuleId {
    pub const ALL: [RuleId; 13] = [
        RuleId::SecretsPlaintext,
        RuleId::SecretsPrivateKey,
        RuleId::SecretsRecipients,
        RuleId::SecretsHostKey,
        RuleId::SecretsStale,
        RuleId::InventoryFlake,
        RuleId::GitopsComin,
        RuleId::NixosSsh,
        RuleId::NixosPasswordInStore,
        RuleId::FlakeInputs,
        RuleId::DiskById,
        RuleId::GitopsRings,
        RuleId::Policies,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::SecretsPlaintext => "secrets.plaintext",
            RuleId::SecretsPrivateKey => "secrets.private-key",
            RuleId::SecretsRecipients => "secrets.recipients",
            RuleId::SecretsHostKey => "secrets.host-key",
            RuleId::SecretsStale => "secrets.stale",
            RuleId::InventoryFlake => "inventory.flake",
            RuleId::GitopsComin => "gitops.comin",
            RuleId::NixosSsh => "nixos.ssh",
            RuleId::NixosPasswordInStore => "nixos.password-in-store",
            RuleId::FlakeInputs => "flake.inputs",
            RuleId::DiskById => "disk.by-id",
            RuleId::GitopsRings => "gitops.rings",
            RuleId::Policies => "policies",
        }
    }

    /// The severity of the rule's findings (policies decide their own: deny or warn).
    pub fn severity(self) -> Severity {
        match self {
            RuleId::SecretsStale
            | RuleId::NixosSsh
            | RuleId::NixosPasswordInStore
            | RuleId::FlakeInputs
            | RuleId::DiskById => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// One line on what the rule checks (SARIF's rule descriptions, `--help`).
    pub fn summary(self) -> &'static str {
        match self {
            RuleId::SecretsPlaintext => {
                "a file the inventory or .sops.yaml declares secret is not fully sops-encrypted"
            }
            RuleId::SecretsPrivateKey => {
                "a private key (age identity, OpenSSH/PEM key, ssh_host_*_key) in a tracked file or in the branch's history"
            }
            RuleId::SecretsRecipients => {
                "a secrets file's age recipients differ from who the inventory says may read it"
            }
            RuleId::SecretsHostKey => {
                "a host's age recipient is not the ssh-to-age of its pinned host key"
            }
            RuleId::SecretsStale => {
                "a host removed from the inventory can still decrypt secrets"
            }
            RuleId::InventoryFlake => {
                "a host's flake attribute does not evaluate, or its hostName or system differ from the inventory and state"
            }
            RuleId::GitopsComin => "a host's comin does not follow its ring's branch",
            RuleId::NixosSsh => "sshd allows passwords or root login with a password, or the firewall is off",
            RuleId::NixosPasswordInStore => {
                "users.users.*.password or initialPassword puts a password in the world-readable store"
            }
            RuleId::FlakeInputs => {
                "flake.lock missing, inputs unlocked, local or dirty, or nixpkgs older than the limit"
            }
            RuleId::DiskById => {
                "a disk layout of a physical machine names /dev/sdX or /dev/nvmeXnY instead of /dev/disk/by-id"
            }
            RuleId::GitopsRings => {
                "a ring branch is not a fast-forward of its previous promotion, or a host is ahead of its ring"
            }
            RuleId::Policies => "the Rego policies in policies/*.rego (deny: errors, warn: warnings)",
        }
    }

    /// Whether the rule evaluates the flake with `nix`.
    pub fn needs_nix(self) -> bool {
        matches!(
            self,
            RuleId::InventoryFlake
                | RuleId::GitopsComin
                | RuleId::NixosSsh
                | RuleId::NixosPasswordInStore
        )
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuleId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(id) = RuleId::ALL.into_iter().find(|r| r.as_str() == s) {
            return Ok(id);
        }
        // A policy finding's id (`policy.<package>`) selects the policies as a whole.
        if s.starts_with("policy.") {
            return Ok(RuleId::Policies);
        }
        let closest = RuleId::ALL
            .iter()
            .map(|r| (strsim::jaro_winkler(s, r.as_str()), r.as_str()))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, r)| format!(" (did you mean `{r}`?)"))
            .unwrap_or_default();
        Err(format!(
            "`{s}` is not a check rule{closest}; the rules are {}",
            RuleId::ALL.map(RuleId::as_str).join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ones_are_explained() {
        for id in RuleId::ALL {
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(id));
        }
        let err = "secrets.plaintxt".parse::<RuleId>().unwrap_err();
        assert!(err.contains("did you mean `secrets.plaintext`"), "{err}");
        assert_eq!("policy.fleet.owner".parse::<RuleId>(), Ok(RuleId::Policies));
    }
}
