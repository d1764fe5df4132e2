//! How a host is reached at each [`Stage`] of its life, and which host key it must present
//! there. Every trust decision lives here: bootstrap, `cairn ssh` (and status) ask this
//! module where to connect and what to pin; `ssh` only carries the connection out.
//!
//! - The address: the provider's public IPv4 as state records it, else its IPv6 (a host
//!   with no IPv4), else the address state recorded, else the inventory's `address`.
//! - The login: the inventory's `ssh.user` on the stock image; root on cairn's installer and
//!   on the systems it installs (bootstrap seeds root's `authorized_keys`).
//! - The port: the stock image's is the recorded address's (else `ssh.port`). The installer
//!   listens on 22 and the installed system on NixOS's 22, whatever port the stock sshd used
//!   (existing machines often move it to 2222), unless `ssh.installer_port` or
//!   `ssh.installed_port` says otherwise. A loopback address is a port forward to the
//!   machine's port 22 (the local qemu provider): the same forwarded port then serves every
//!   stage.
//! - The key: the one recorded for the stage; the installer carries the stock image's keys
//!   across the jump; the installed system presents the key cairn generated, known before
//!   first contact. Machines cairn creates get a stock key cairn made (cloud-init
//!   `ssh_keys`), pinned at creation. Only a stock image whose key nobody knows yet (an
//!   `existing` machine) is met on first contact, only by bootstrap, and its key is recorded
//!   only once the user confirms it or names it (`--trust-host-key`) ([`Trust::FirstContact`]).
//! - The host's own key, as the repository holds it, is never a stock image's: a machine
//!   presenting it on first contact is the installed host with state lost, and bootstrap
//!   refuses to reinstall it ([`installed`]); with nothing recorded, the installed system is
//!   pinned to it.

use crate::inventory::{Host, SshSettings};
use crate::phase::Phase;
use crate::ssh::{HostKeyPolicy, Target};
use crate::state::HostState;

/// Which system a host runs as cairn reaches it: the key and the login differ per stage.
pub use crate::state::KeyPhase as Stage;

/// What reach needs of an inventory host: how to log in and, for a machine cairn did not
/// create, its address.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub ssh: &'a SshSettings,
    pub address: Option<&'a str>,
}

impl<'a> From<&'a Host> for Endpoint<'a> {
    fn from(host: &'a Host) -> Self {
        Endpoint { ssh: &host.ssh, address: host.address.as_deref() }
    }
}

/// One host as state records it, and where that state lives (named in every message).
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub host: &'a str,
    pub state: &'a HostState,
    /// `/repo/.cairn/state.json`, `PostgreSQL state "prod" (...)`.
    pub location: &'a str,
    /// The host's own SSH public key as the repository holds it
    /// (`secrets/hosts/<host>/ssh_host_ed25519_key.pub`), when there is one: cairn generated
    /// it, so it is known whatever state says.
    pub repository_key: Option<&'a str>,
}

/// What to accept from the machine at a stage.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only these keys, as recorded for `recorded_as` (the installer's may be the stock
    /// image's it carried over).
    Pinned { policy: HostKeyPolicy, recorded_as: Stage },
    /// Nothing is known yet about a stock image: its key is recorded on first contact.
    FirstContact,
}

/// Where and how to connect to a host at one stage.
#[derive(Debug, Clone)]
pub struct Route {
    pub target: Target,
    pub stage: Stage,
    pub trust: Trust,
    /// Where the pinned keys live, for the "host key changed" help
    /// (`hosts.web1.host_keys.stock in /repo/.cairn/state.json`).
    pub key_location: String,
    /// On first contact, the host's own key, which no stock image may present.
    pub installed_key: Option<russh::keys::PublicKey>,
}

impl Route {
    /// The policy to connect with: pinned keys, or recording the stock image's key (never
    /// the host's own key: see [`installed::refused`]).
    pub fn policy(&self) -> HostKeyPolicy {
        match (&self.trust, &self.installed_key) {
            (Trust::Pinned { policy, .. }, _) => policy.clone(),
            (Trust::FirstContact, Some(own)) => HostKeyPolicy::RecordUnless(vec![own.clone()]),
            (Trust::FirstContact, None) => HostKeyPolicy::RecordOnFirstContact,
        }
    }

    /// `--reinstall`: a machine presenting the host's own key may be taken as a stock image
    /// (its key recorded as such), to be wiped on purpose.
    pub fn allowing_reinstall(mut self) -> Self {
        self.installed_key = None;
        self
    }

    /// For connections to a host cairn has seen before (`cairn ssh`, status): a key must be
    /// recorded; nothing is trusted on first contact.
    pub fn require_pinned(self, recorded: &Recorded<'_>) -> Result<Route, ReachError> {
        match self.trust {
            Trust::Pinned { .. } => Ok(self),
            Trust::FirstContact => Err(ReachError::NoRecordedKey {
                reached_at: self.target.to_string(),
                host: recorded.host.to_owned(),
                stage: self.stage,
                location: recorded.location.to_owned(),
            }),
        }
    }
}

/// Where `host` answers SSH at `stage`, and as whom.
pub fn target<'a>(
    host: impl Into<Endpoint<'a>>,
    recorded: &Recorded<'_>,
    stage: Stage,
) -> Result<Target, ReachError> {
    let host = host.into();
    let user = match stage {
        Stage::Stock => host.ssh.user.clone(),
        Stage::Installer | Stage::Installed => "root".to_owned(),
    };
    let address = address(recorded.state, host.ssh.port)
        .or_else(|| host.address.map(str::to_owned))
        .ok_or_else(|| ReachError::NoAddress { host: recorded.host.to_owned() })?;
    let mut target = Target::from_address(&address, host.ssh.port, user).ok_or_else(|| {
        ReachError::BadAddress {
            host: recorded.host.to_owned(),
            address,
            location: recorded.location.to_owned(),
        }
    })?;
    let forwarded = target
        .host
        .parse::<std::net::IpAddr>()
        .map_or(target.host.eq_ignore_ascii_case("localhost"), |ip| ip.is_loopback());
    let set = match stage {
        Stage::Stock => None,
        Stage::Installer => Some(host.ssh.installer_port),
        Stage::Installed => Some(host.ssh.installed_port),
    };
    match set {
        None => {}
        Some(Some(port)) => target.port = port,
        Some(None) if forwarded => {}
        Some(None) => target.port = 22,
    }
    Ok(target)
}

/// The address state records for the host: the provider's public IPv4, else its IPv6 (a
/// server with no IPv4, as Hetzner sells them), on the recorded address's port; else the
/// recorded address itself (qemu's port forward, an `existing` machine).
fn address(state: &HostState, default_port: u16) -> Option<String> {
    let recorded = state.addresses.first();
    let port = recorded
        .and_then(|a| Target::from_address(a, default_port, String::new()))
        .map_or(default_port, |t| t.port);
    let network = &state.network;
    match (network.ipv4, network.ipv6) {
        (Some(v4), _) => Some(format!("{v4}:{port}")),
        (None, Some(v6)) => Some(format!("[{}]:{port}", v6.address)),
        (None, None) => recorded.cloned(),
    }
}

/// The keys the machine must present at `stage`.
pub fn expected_keys(recorded: &Recorded<'_>, stage: Stage) -> Result<Trust, ReachError> {
    let state = recorded.state;
    let nonempty = |s: Stage| state.host_keys.get(&s).filter(|k| !k.is_empty()).map(|k| (s, k));
    let generated =
        state.ssh_public_key.as_ref().map(|k| (Stage::Installed, std::slice::from_ref(k)));
    let repository = recorded.repository_key.map(str::to_owned);
    let found: Option<(Stage, &[String])> = match stage {
        Stage::Stock => nonempty(Stage::Stock).map(|(s, k)| (s, k.as_slice())),
        // The installer carries the stock system's host keys across the jump.
        Stage::Installer => nonempty(Stage::Installer)
            .or_else(|| nonempty(Stage::Stock))
            .map(|(s, k)| (s, k.as_slice())),
        // The installed system presents the key cairn generated: known before contact, from
        // state, else from the repository (state lost: `--phases verify` re-adopts).
        Stage::Installed => nonempty(Stage::Installed)
            .map(|(s, k)| (s, k.as_slice()))
            .or(generated)
            .or(repository.as_ref().map(|k| (Stage::Installed, std::slice::from_ref(k)))),
    };
    match found {
        Some((recorded_as, lines)) => {
            let policy =
                HostKeyPolicy::pinned_openssh(lines).map_err(|e| ReachError::BadRecordedKey {
                    host: recorded.host.to_owned(),
                    stage: recorded_as,
                    reason: e.to_string(),
                    location: recorded.location.to_owned(),
                })?;
            Ok(Trust::Pinned { policy, recorded_as })
        }
        None if stage == Stage::Stock => Ok(Trust::FirstContact),
        None => Err(ReachError::NoRecordedKey {
            reached_at: recorded.host.to_owned(),
            host: recorded.host.to_owned(),
            stage,
            location: recorded.location.to_owned(),
        }),
    }
}

/// [`target`] and [`expected_keys`] together.
pub fn route<'a>(
    host: impl Into<Endpoint<'a>>,
    recorded: &Recorded<'_>,
    stage: Stage,
) -> Result<Route, ReachError> {
    let target = target(host, recorded, stage)?;
    let trust = match expected_keys(recorded, stage) {
        Err(ReachError::NoRecordedKey { host, stage, location, .. }) => {
            let reached_at = target.to_string();
            return Err(ReachError::NoRecordedKey { reached_at, host, stage, location });
        }
        other => other?,
    };
    let recorded_as = match &trust {
        Trust::Pinned { recorded_as, .. } => *recorded_as,
        Trust::FirstContact => stage,
    };
    let key_location = format!(
        "hosts.{}.host_keys.{} in {}",
        recorded.host,
        stage_name(recorded_as),
        recorded.location
    );
    let installed_key = match trust {
        Trust::FirstContact => installed::repository_key(recorded)?,
        Trust::Pinned { .. } => None,
    };
    Ok(Route { target, stage, trust, key_location, installed_key })
}

/// Fingerprints of the keys recorded for the stages before `stage`: while a host moves to
/// `stage` (the installer rebooting), presenting one of them means "not there yet", not an
/// attack; it is still never accepted as `stage`.
pub fn keys_before(state: &HostState, stage: Stage) -> Vec<String> {
    state
        .host_keys
        .range(..stage)
        .flat_map(|(_, lines)| lines)
        .filter_map(|line| russh::keys::PublicKey::from_openssh(line.trim()).ok())
        .map(|k| crate::ssh::fingerprint(&k))
        .collect()
}

/// A host cairn has seen before (`cairn ssh`, status): at `stage`, else at the stage it runs
/// as far as state knows ([`running_stage`]); a recorded key is required.
pub fn known_host<'a>(
    host: impl Into<Endpoint<'a>>,
    recorded: &Recorded<'_>,
    stage: Option<Stage>,
) -> Result<Route, ReachError> {
    let stage = stage.unwrap_or_else(|| running_stage(recorded.state));
    route(host, recorded, stage)?.require_pinned(recorded)
}

/// The system a host runs, as far as state knows: the one its last completed bootstrap phase
/// left running; without one, the newest stage with a recorded key.
pub fn running_stage(state: &HostState) -> Stage {
    match state.last_phase.as_ref().map(|r| r.phase) {
        Some(phase) => stage_after(phase),
        None => state
            .host_keys
            .iter()
            .rev()
            .find(|(_, keys)| !keys.is_empty())
            .map_or(Stage::Stock, |(stage, _)| *stage),
    }
}

/// What runs once `phase` completed.
pub fn stage_after(phase: Phase) -> Stage {
    match phase {
        Phase::Provision | Phase::Reach => Stage::Stock,
        Phase::Kexec | Phase::Disk | Phase::Keys | Phase::Build | Phase::Copy | Phase::Install => {
            Stage::Installer
        }
        Phase::Reboot | Phase::Verify => Stage::Installed,
    }
}

/// `stock`, `installer`, `installed`: as state's `host_keys` and `--phase` spell it.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Stock => "stock",
        Stage::Installer => "installer",
        Stage::Installed => "installed",
    }
}

/// Why cairn will not connect to a host.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum ReachError {
    #[error("cairn has no address for {host}")]
    #[diagnostic(
        code(cairn::reach::no_address),
        help("create the machine first (`cairn apply {host}`, or the provision phase of `cairn bootstrap host {host}`), or set `address` in its host block for an existing machine")
    )]
    NoAddress { host: String },

    #[error("the address {address:?} recorded for {host} is not host, host:port or [ipv6]:port")]
    #[diagnostic(
        code(cairn::reach::bad_address),
        help("fix hosts.{host}.addresses in {location}, or the host's `address` in cairn.hcl")
    )]
    BadAddress { host: String, address: String, location: String },

    #[error("no {} host key of {host} is recorded in state", stage_name(*.stage))]
    #[diagnostic(
        code(cairn::reach::no_recorded_key),
        help("cairn only connects to hosts whose key it knows: bootstrap the host first (`cairn bootstrap host {host}`, or just `--phases reach` to keep the stock system), which records the key in {location} on first contact with {reached_at}")
    )]
    NoRecordedKey { reached_at: String, host: String, stage: Stage, location: String },

    #[error("the {} host key recorded for {host} cannot be read: {reason}", stage_name(*.stage))]
    #[diagnostic(
        code(cairn::reach::bad_recorded_key),
        help("edited by hand? restore hosts.{host}.host_keys.{} in {location} from its backup, or remove it and bootstrap again", stage_name(*.stage))
    )]
    BadRecordedKey { host: String, stage: Stage, reason: String, location: String },

    #[error("{host} looks installed already: {evidence}, but {location} does not record it as installed")]
    #[diagnostic(
        code(cairn::reach::looks_installed),
        help("cairn does not reinstall a host that looks installed. To go on: restore the state ({location}) from a backup; or re-adopt the host as it is: `cairn bootstrap host {host} --phases verify` proves it presents its own key, then records it; or wipe and reinstall it on purpose: `cairn bootstrap host {host} --reinstall`")
    )]
    LooksInstalled { host: String, evidence: String, location: String },

    #[error("the repository's host key of {host} ({repository}, in {path}) is not the installed key pinned in state ({pinned})")]
    #[diagnostic(
        code(cairn::reach::repository_key_changed),
        help("cairn does not re-pin a host key because the repository changed: whoever can commit could seal a key they hold. Check who changed {path} (`git log -p -- {path}`) and restore it if you did not mean to; if the host was re-keyed on purpose, remove hosts.{host}.host_keys.installed and hosts.{host}.ssh_public_key from {location}, then `cairn bootstrap host {host} --reinstall`")
    )]
    RepositoryKeyChanged {
        host: String,
        /// Fingerprints of the keys state pinned.
        pinned: String,
        /// Fingerprint of the repository's key.
        repository: String,
        path: String,
        location: String,
    },

    #[error("the host key of {host} in {path} cannot be read: {reason}")]
    #[diagnostic(
        code(cairn::reach::bad_repository_key),
        help("restore {path} from version control (`git checkout -- {path}`); cairn writes it when it generates the host's keys")
    )]
    BadRepositoryKey { host: String, path: String, reason: String },
}

pub mod installed;
#[cfg(test)]
mod tests;
