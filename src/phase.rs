//! The phases of a host's bootstrap, in order: the vocabulary bootstrap runs, state records
//! and `reach` reads. A leaf: it imports nothing from the crate, so every layer may use it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One step of the pipeline. Each is idempotent, checks the remote side before acting and
/// is recorded in state when it completes. Serialised as its lowercase name (`"kexec"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Ask the provider for the machine (skipped when it exists).
    Provision,
    /// SSH to the stock image; its host key is recorded on first contact, pinned after.
    Reach,
    /// Upload the installer bundle and kexec into it (skipped when already in an installer).
    Kexec,
    /// Partition, format and mount the target disk at /mnt.
    Disk,
    /// Generate (or load) the host's SSH host key and age key, re-encrypt its secrets to
    /// include it, and seed the keys into /mnt. Before build, because the system's closure
    /// carries the encrypted secrets (sops-nix's `defaultSopsFile` lives in the store).
    Keys,
    /// Build the host's system and compute its closure, on this machine.
    Build,
    /// Stream the closure into /mnt/nix/store and register it.
    Copy,
    /// Set the system profile and install the boot loader.
    Install,
    /// Reboot into the installed system.
    Reboot,
    /// Prove it is the machine we installed, and run the health checks.
    Verify,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::Provision,
        Phase::Reach,
        Phase::Kexec,
        Phase::Disk,
        Phase::Keys,
        Phase::Build,
        Phase::Copy,
        Phase::Install,
        Phase::Reboot,
        Phase::Verify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provision => "provision",
            Phase::Reach => "reach",
            Phase::Kexec => "kexec",
            Phase::Disk => "disk",
            Phase::Build => "build",
            Phase::Copy => "copy",
            Phase::Keys => "keys",
            Phase::Install => "install",
            Phase::Reboot => "reboot",
            Phase::Verify => "verify",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phase `{0}`; the phases are {list}", list = Phase::ALL.map(Phase::as_str).join(", "))]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

/// Parses `--phases kexec,disk,copy` (order in the pipeline, not on the command line).
pub fn parse_list(s: &str) -> Result<Vec<Phase>, UnknownPhase> {
    let mut phases = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Phase::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    phases.sort();
    phases.dedup();
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_serialise_as_the_names_state_always_held() {
        for phase in Phase::ALL {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{}\"", phase.as_str()));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), phase);
        }
    }

    #[test]
    fn phase_lists_are_sorted_into_pipeline_order() {
        assert_eq!(
            parse_list("copy, kexec,disk,copy").unwrap(),
            [Phase::Kexec, Phase::Disk, Phase::Copy]
        );
        assert_eq!(
            parse_list("kexec,format").unwrap_err().to_string(),
            "unknown phase `format`; the phases are provision, reach, kexec, disk, keys, build, copy, install, reboot, verify"
        );
    }
}
