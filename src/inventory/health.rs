//! A host's health checks as shell commands: what bootstrap's verify phase and
//! `cairn status` run on the installed host.

use super::model::{HealthCheck, Host};

/// One check: what it proves, and the shell command (exit 0: passed) that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckCommand {
    pub label: String,
    pub command: String,
}

/// The checks of a NixOS host that names none.
pub const DEFAULT_HEALTH_CHECKS: [(&str, &str); 3] = [
    (
        "the system finished booting without failed units",
        "state=$(systemctl is-system-running --wait); echo \"$state\"; \
         [ \"$state\" = running ] || { systemctl --failed --no-legend --plain; exit 1; }",
    ),
    ("comin.service is active", "systemctl is-active comin.service"),
    (
        "its sops secrets are decrypted (/run/secrets is not empty)",
        "ls -A /run/secrets | grep -q . || { echo '/run/secrets is empty or missing'; exit 1; }",
    ),
];

impl HealthCheck {
    pub fn command(&self) -> CheckCommand {
        let (label, command) = match self {
            HealthCheck::SystemdUnit { unit } => (
                format!("{unit} is active"),
                format!("systemctl is-active {}", crate::ssh::quote(unit)),
            ),
            HealthCheck::Command { command } => (format!("`{command}` succeeds"), command.clone()),
            HealthCheck::FileExists { path } => (
                format!("{path} exists"),
                format!(
                    "test -e {p} || {{ echo 'no such file: '{p}; exit 1; }}",
                    p = crate::ssh::quote(path)
                ),
            ),
        };
        CheckCommand { label, command }
    }
}

impl Host {
    /// The host's checks, or the defaults when it names none.
    pub fn check_commands(&self) -> Vec<CheckCommand> {
        if self.health_checks.is_empty() {
            DEFAULT_HEALTH_CHECKS
                .iter()
                .map(|(l, c)| CheckCommand { label: (*l).to_owned(), command: (*c).to_owned() })
                .collect()
        } else {
            self.health_checks.iter().map(HealthCheck::command).collect()
        }
    }
}
