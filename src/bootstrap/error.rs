//! Why a host's bootstrap failed: the host and phase, and the cause with what to do.

use std::time::Duration;

use super::Phase;
use crate::inventory::Wait;
use crate::util::duration;

/// A host's run failed in `phase` (`None`: outside any phase).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{host}: {} failed", .phase.map_or("the run", Phase::as_str))]
pub struct BootstrapError {
    pub host: String,
    pub phase: Option<Phase>,
    #[source]
    #[diagnostic_source]
    pub source: PhaseError,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum PhaseError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ssh(#[from] crate::ssh::Error),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Reach(#[from] crate::reach::ReachError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Provider(#[from] crate::provider::ProviderError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Nix(#[from] crate::nix::NixError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Keys(#[from] crate::keys::KeysError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Disk(#[from] crate::disk::DiskError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Template(#[from] crate::util::template::TemplateError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] crate::state::StateError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Network(#[from] crate::gitops::network::NetworkError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Seed(#[from] super::seed::SeedError),

    /// The installer bundle's download failed or did not match its pinned sum.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Download(crate::download::DownloadError),

    #[error(
        "the machine has {have_mib} MiB of memory; the installer needs at least {need_mib} MiB"
    )]
    #[diagnostic(
        code(cairn::bootstrap::memory),
        help(
            "the installer runs from RAM: choose a machine size with more memory, or, if you \
             know this installer needs less, set `installer_min_memory = {have_mib}` on the host"
        )
    )]
    NotEnoughMemory { have_mib: u64, need_mib: u64 },

    /// The kexec phase (which leads to the disk wipe) was not agreed to.
    #[error("refusing to erase {disks} on {host} at {target} without confirmation: {why}")]
    #[diagnostic(
        code(cairn::bootstrap::not_confirmed),
        help(
            "check that this is the machine to wipe, then run `cairn bootstrap` on a terminal and \
             type the host's name, or pass --yes to erase it without being asked; nothing was \
             changed"
        )
    )]
    NotConfirmed { host: String, target: String, disks: String, why: String },

    /// A key seen for the first time was neither confirmed nor named by --trust-host-key.
    #[error(
        "refusing to trust the host key {fingerprint} that {host} presented at {target} on first \
         contact: {why}"
    )]
    #[diagnostic(
        code(cairn::bootstrap::untrusted_key),
        help(
            "compare it with the machine's own key (on its console: `ssh-keygen -lf \
             /etc/ssh/ssh_host_ed25519_key.pub`); if they match, run `cairn bootstrap` on a \
             terminal and confirm it, or pass --trust-host-key {fingerprint}; nothing was \
             recorded"
        )
    )]
    UntrustedHostKey { host: String, target: String, fingerprint: String, why: String },

    #[error("the host has no machine yet and its provider `{provider}` cannot create one")]
    #[diagnostic(code(cairn::bootstrap::no_machine), help("{help}"))]
    NoMachine { provider: String, help: String },

    #[error("{what}")]
    #[diagnostic(code(cairn::bootstrap::config), help("{help}"))]
    Config { what: String, help: String },

    /// A wait ran out of time: what was awaited, the limit and the setting behind it, what
    /// was seen last, and what to do.
    #[error("{what} within {limit} (the `{wait}` timeout); last seen: {last_seen}")]
    #[diagnostic(
        code(cairn::bootstrap::timeout),
        help("{help}. If it only needs more time, raise the limit: `timeouts {{ {wait} = \"{longer}\" }}` in the host, its provider or `defaults` in cairn.hcl, or `--timeout {wait}={longer}`")
    )]
    Timeout {
        wait: Wait,
        what: String,
        /// The limit, as written in cairn.hcl (`5m`).
        limit: String,
        /// Twice the limit, suggested in the help.
        longer: String,
        last_seen: String,
        help: String,
    },

    #[error("{what}")]
    #[diagnostic(code(cairn::bootstrap::remote), help("{help}"))]
    Remote { what: String, help: String },

    /// A health check still failed when the `verify` wait ran out.
    #[error(
        "the health check “{check}” still failed after {limit} (the `verify` timeout){output}"
    )]
    #[diagnostic(
        code(cairn::bootstrap::health),
        help("log in with `cairn ssh {host}` to look (`systemctl status`, `journalctl -b`). If it only needs more time, raise the limit: `timeouts {{ verify = \"{longer}\" }}` in cairn.hcl, or `--timeout verify={longer}`")
    )]
    HealthCheck {
        host: String,
        check: String,
        /// `; it printed:\n<last lines>`, or empty when it printed nothing.
        output: String,
        limit: String,
        longer: String,
    },

    /// A bug in cairn: the host's run panicked. The other hosts go on.
    #[error("cairn panicked: {message}")]
    #[diagnostic(
        code(cairn::bootstrap::panic),
        help("this is a bug in cairn, please report it with the host's log from .cairn/logs; the other hosts were not affected, and a re-run resumes after the last phase recorded")
    )]
    Panicked { message: String },

    #[error("{what}: {source}")]
    #[diagnostic(code(cairn::bootstrap::io), help("{help}"))]
    Io {
        what: String,
        help: String,
        #[source]
        source: std::io::Error,
    },
}

impl PhaseError {
    /// `wait` ran out after `limit`, having last seen `last_seen`.
    pub fn timeout(
        wait: Wait,
        limit: Duration,
        what: impl Into<String>,
        last_seen: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        PhaseError::Timeout {
            wait,
            what: what.into(),
            limit: duration::format(limit),
            longer: duration::format(limit * 2),
            last_seen: last_seen.into(),
            help: help.into(),
        }
    }

    /// `check` still failed when the verify deadline `limit` passed; `output` is what it
    /// printed last (its last lines are shown) and `exit` how it ended.
    pub fn health_check(
        host: &str,
        check: String,
        output: &str,
        exit: Option<u32>,
        limit: Duration,
    ) -> Self {
        const TAIL_LINES: usize = 15;
        let lines: Vec<&str> = output.trim_end().lines().collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        let status = match exit {
            Some(code) => format!("exit status {code}"),
            None => "it did not finish".to_string(),
        };
        let output = match tail {
            [] => format!(" ({status}, no output)"),
            _ if lines.len() > TAIL_LINES => format!(
                " ({status}); the last {TAIL_LINES} of {} lines it printed:\n{}",
                lines.len(),
                tail.join("\n")
            ),
            _ => format!(" ({status}); it printed:\n{}", tail.join("\n")),
        };
        PhaseError::HealthCheck {
            host: host.to_string(),
            check,
            output,
            limit: duration::format(limit),
            longer: duration::format(limit * 2),
        }
    }
}
