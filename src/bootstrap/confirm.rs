//! The question before the first destructive step. The kexec phase leads to the disk being
//! wiped, so before it starts on a machine the user confirms which machine and which disk.
//! Library code never reads the terminal: the command layer supplies a [`Confirm`] (a
//! terminal prompt, or `--yes`).

use std::sync::Arc;

use super::host_run::HostRun;
use super::PhaseError;

/// What the kexec phase is about to start erasing, as the user is shown it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub host: String,
    /// Where cairn reached it: `root@203.0.113.7:22`.
    pub address: String,
    /// The provider block (`hcloud.cloud`), and its id for the machine, if any.
    pub provider: String,
    pub machine: Option<String>,
    /// What the disk phase will partition: the layout's device, or the flake's disko config.
    pub disks: Vec<String>,
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Nobody could be asked (no terminal) and `--yes` was not given.
    NoTerminal,
}

/// A host key seen on first contact with a machine nobody pinned a key for (an `existing`
/// machine), for the user to compare with the machine's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstKey {
    pub host: String,
    /// `root@203.0.113.7:22`
    pub address: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `ssh-ed25519`
    pub algorithm: String,
}

/// Asks the user before a machine is erased, and before a host key seen for the first time
/// is trusted. Called from a blocking thread; an implementation may block on the terminal
/// (one question at a time).
pub trait Confirm: Send + Sync {
    fn erase(&self, what: &Erasure) -> Answer;

    /// Nobody can vouch for a key without looking at it: refused unless asked.
    fn trust_host_key(&self, _what: &FirstKey) -> Answer {
        Answer::NoTerminal
    }
}

/// `--yes`: every erasure is agreed to in advance (host keys are not: see
/// [`Confirm::trust_host_key`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AssumeYes;

impl Confirm for AssumeYes {
    fn erase(&self, _what: &Erasure) -> Answer {
        Answer::Yes
    }
}

/// What `r`'s kexec is about to erase.
pub(super) fn erasure(r: &HostRun<'_>) -> Erasure {
    let state = r.state_snapshot();
    let block = r.ctx.inventory.provider_of(r.host);
    let address = match &r.session {
        Some((_, s)) => s.target().to_string(),
        None => state.addresses.first().cloned().unwrap_or_else(|| "(no address)".into()),
    };
    let mut disks = Vec::new();
    if let Some(layout) =
        r.host.disk_layout.as_ref().and_then(|n| r.ctx.inventory.disk_layouts.get(n))
    {
        disks.push(layout.device.clone());
    }
    if let Some(by_id) = &r.host.install.disk_by_id {
        disks.push(by_id.clone());
    }
    if r.host.install.disko && disks.is_empty() {
        disks.push("every disk the flake's disko configuration names".into());
    }
    if disks.is_empty() {
        disks.push("(no disk_layout: the disk phase will refuse)".into());
    }
    Erasure {
        host: r.host.name.to_string(),
        address,
        provider: format!("{}.{}", block.kind, block.name),
        machine: state.provider_id,
        disks,
    }
}

/// Asks before erasing; an error unless the user agreed.
pub(super) async fn before_erasing(r: &HostRun<'_>) -> Result<(), PhaseError> {
    let what = erasure(r);
    let confirm: Arc<dyn Confirm> = r.ctx.confirm.clone();
    let shown = what.clone();
    let answer =
        tokio::task::spawn_blocking(move || confirm.erase(&shown)).await.unwrap_or(Answer::No);
    let machine = what.machine.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
    let refused = |why: &str| PhaseError::NotConfirmed {
        host: what.host.clone(),
        target: format!("{} ({}{machine})", what.address, what.provider),
        disks: what.disks.join(", "),
        why: why.to_owned(),
    };
    match answer {
        Answer::Yes => {
            tracing::info!(disks = %what.disks.join(", "), "the user agreed to erase the machine");
            Ok(())
        }
        Answer::No => Err(refused("the answer was not the host's name or `yes`")),
        Answer::NoTerminal => Err(refused("there is no terminal to ask on")),
    }
}

/// Before the first key a machine presents is recorded: it must be the one
/// `--trust-host-key` names, or the user must confirm it. Never recorded silently.
pub(super) async fn before_trusting(
    r: &HostRun<'_>,
    address: String,
    key: &russh::keys::PublicKey,
) -> Result<(), PhaseError> {
    let what = FirstKey {
        host: r.host.name.to_string(),
        address,
        fingerprint: key.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
        algorithm: key.algorithm().as_str().to_owned(),
    };
    let refused = |why: String| PhaseError::UntrustedHostKey {
        host: what.host.clone(),
        target: what.address.clone(),
        fingerprint: what.fingerprint.clone(),
        why,
    };
    if let Some(expected) = &r.ctx.options.trust_host_key {
        return if expected.trim() == what.fingerprint {
            Ok(())
        } else {
            Err(refused(format!("--trust-host-key names {}", expected.trim())))
        };
    }
    let confirm: Arc<dyn Confirm> = r.ctx.confirm.clone();
    let shown = what.clone();
    let answer = tokio::task::spawn_blocking(move || confirm.trust_host_key(&shown))
        .await
        .unwrap_or(Answer::No);
    match answer {
        Answer::Yes => Ok(()),
        Answer::No => Err(refused("the answer was not `yes`".into())),
        Answer::NoTerminal => Err(refused("there is no terminal to ask on".into())),
    }
}
