//! The `timeouts { ... }` block: deadlines of the bootstrap's waits and budgets of its
//! remote commands, by name (`reach = "5m"`, `disk = "20m"`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A wait of the bootstrap pipeline that has a deadline, set in `timeouts { ... }` blocks and
/// with `--timeout WAIT=DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    /// For the machine (stock image or installer) to answer SSH.
    Reach,
    /// From `kexec/run` to the installer answering SSH.
    Kexec,
    /// From `reboot` to the installed system answering SSH with its own key.
    Reboot,
    /// For the installed system's health checks to pass.
    Verify,
}

impl Wait {
    pub const ALL: [Wait; 4] = [Wait::Reach, Wait::Kexec, Wait::Reboot, Wait::Verify];
    pub fn as_str(self) -> &'static str {
        match self {
            Wait::Reach => "reach",
            Wait::Kexec => "kexec",
            Wait::Reboot => "reboot",
            Wait::Verify => "verify",
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Wait {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Wait::ALL.into_iter().find(|w| w.as_str() == s).ok_or_else(|| {
            format!(
                "`{s}` is not a wait with a deadline; the waits are {}",
                Wait::ALL.map(Wait::as_str).join(", ")
            )
        })
    }
}

/// How long one remote command of a bootstrap phase may run (commands inside a wait get
/// what is left of the wait's deadline instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Partitioning, formatting and mounting (the layout script or disko).
    Disk,
    /// Each command of the copy phase (the closure stream, registering it).
    Copy,
    /// Installing the boot loader (`switch-to-configuration boot`).
    Install,
    /// Every other remote command.
    Command,
}

impl Budget {
    pub const ALL: [Budget; 4] = [Budget::Disk, Budget::Copy, Budget::Install, Budget::Command];
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Disk => "disk",
            Budget::Copy => "copy",
            Budget::Install => "install",
            Budget::Command => "command",
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name in a `timeouts` block or `--timeout NAME=DURATION`: a wait or a command budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum Limit {
    Wait(Wait),
    Budget(Budget),
}

impl Limit {
    pub fn names() -> Vec<&'static str> {
        let waits = Wait::ALL.map(Wait::as_str);
        let budgets = Budget::ALL.map(Budget::as_str);
        waits.into_iter().chain(budgets).collect()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Wait(w) => w.as_str(),
            Limit::Budget(b) => b.as_str(),
        }
    }
}

impl From<Wait> for Limit {
    fn from(w: Wait) -> Self {
        Limit::Wait(w)
    }
}

impl From<Budget> for Limit {
    fn from(b: Budget) -> Self {
        Limit::Budget(b)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let wait = Wait::ALL.into_iter().find(|w| w.as_str() == s).map(Limit::Wait);
        let budget = Budget::ALL.into_iter().find(|b| b.as_str() == s).map(Limit::Budget);
        wait.or(budget).ok_or_else(|| {
            format!(
                "`{s}` is not a timeout; the waits are {}, the command budgets {}",
                Wait::ALL.map(Wait::as_str).join(", "),
                Budget::ALL.map(Budget::as_str).join(", ")
            )
        })
    }
}

/// Limits from `timeouts { reach = "5m" disk = "20m" ... }`; one not listed uses the next
/// level (host, then its provider, then `defaults`, then cairn's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts(pub BTreeMap<Limit, Duration>);

impl Timeouts {
    pub fn get(&self, limit: impl Into<Limit>) -> Option<Duration> {
        self.0.get(&limit.into()).copied()
    }
    pub fn set(&mut self, limit: impl Into<Limit>, value: Duration) {
        self.0.insert(limit.into(), value);
    }
    /// These timeouts, with `fallback`'s for the limits these leave unset.
    pub fn or(&self, fallback: &Timeouts) -> Timeouts {
        let mut merged = fallback.0.clone();
        merged.extend(self.0.iter().map(|(k, v)| (*k, *v)));
        Timeouts(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_budgets_share_one_namespace() {
        assert_eq!("reach".parse::<Limit>(), Ok(Limit::Wait(Wait::Reach)));
        assert_eq!("disk".parse::<Limit>(), Ok(Limit::Budget(Budget::Disk)));
        let err = "disc".parse::<Limit>().unwrap_err();
        assert_eq!(
            err,
            "`disc` is not a timeout; the waits are reach, kexec, reboot, verify, the command \
             budgets disk, copy, install, command"
        );
        assert_eq!(Limit::names().len(), 8);
    }
}
