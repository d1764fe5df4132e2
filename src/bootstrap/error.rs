//! Why a host's bootstrap failed: the host and phase, and the cause with what to do.

use super::Phase;

/// A host's run failed in `phase`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{host}: {phase} failed")]
pub struct BootstrapError {
    pub host: String,
    pub phase: Phase,
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
    Secrets(#[from] crate::secrets::SecretsError),

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

    #[error("the host has no machine yet and its provider `{provider}` cannot create one")]
    #[diagnostic(code(cairn::bootstrap::no_machine), help("{help}"))]
    NoMachine { provider: String, help: String },

    #[error("{what}")]
    #[diagnostic(code(cairn::bootstrap::config), help("{help}"))]
    Config { what: String, help: String },

    #[error("{what} within {seconds} s")]
    #[diagnostic(code(cairn::bootstrap::timeout), help("{help}"))]
    Timeout { what: String, seconds: u64, help: String },

    #[error("{what}")]
    #[diagnostic(code(cairn::bootstrap::remote), help("{help}"))]
    Remote { what: String, help: String },

    #[error("health check `{check}` failed: {output}")]
    #[diagnostic(
        code(cairn::bootstrap::health),
        help("log in with `cairn ssh {host}` to look; the check ran for {seconds} s")
    )]
    HealthCheck { host: String, check: String, output: String, seconds: u64 },

    #[error("{what}: {source}")]
    #[diagnostic(code(cairn::bootstrap::io), help("{help}"))]
    Io {
        what: String,
        help: String,
        #[source]
        source: std::io::Error,
    },
}
