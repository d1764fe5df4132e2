//! keys: the host's SSH host key and age key. Check: the repository already holds them
//! (then they are loaded, not generated). Act: generate, store encrypted to the admins,
//! re-key the host's secrets, seed the keys, the operator's login and the host's
//! `extra_files`/`extra_file`s (`bootstrap::seed`) into /mnt. Record: the
//! public halves in state, the installed system's key pinned before first contact (never a
//! repository key that differs from the one pinned already).

use super::{PhaseResult, TARGET_ROOT};
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::seeded::{AGE_KEY_FILE, HOST_SSH_KEY};
use crate::bootstrap::PhaseError;
use crate::inventory::Wait;
use crate::keys::{AgeRecipient, HostKeyStore, HostKeys};
use crate::ssh::{RemoteCommand, UploadSource};
use crate::state::KeyPhase;

pub(super) async fn keys(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let keys = host_keys(r)?;
    let operator = format!("{}\n", r.ctx.operator.public_line);
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    let dirs = format!(
        "mkdir -p -m 0755 {r}/etc/ssh {r}/var/lib && mkdir -p -m 0700 {r}/root/.ssh {r}/var/lib/sops-nix",
        r = TARGET_ROOT
    );
    session.exec(&RemoteCommand::new("sh").arg("-c").arg(&dirs)).await?;
    let private = keys.ssh_private_openssh();
    session
        .upload(
            UploadSource::Bytes(private.as_bytes()),
            &format!("{TARGET_ROOT}{HOST_SSH_KEY}"),
            0o600,
        )
        .await?;
    let public = format!("{}\n", keys.ssh_public_line());
    session
        .upload(
            UploadSource::Bytes(public.as_bytes()),
            &format!("{TARGET_ROOT}{HOST_SSH_KEY}.pub"),
            0o644,
        )
        .await?;
    if let Some(age) = keys.age_identity() {
        let text = zeroize::Zeroizing::new(format!("{}\n", age.expose_secret()));
        session
            .upload(
                UploadSource::Bytes(text.as_bytes()),
                &format!("{TARGET_ROOT}{AGE_KEY_FILE}"),
                0o600,
            )
            .await?;
    }
    session
        .upload(
            UploadSource::Bytes(operator.as_bytes()),
            &format!("{TARGET_ROOT}/root/.ssh/authorized_keys"),
            0o600,
        )
        .await?;
    let seed = r.host.seed.clone();
    if seed.extra_files.is_some() || !seed.files.is_empty() {
        let identities = crate::keys::Identities::discover(&r.ctx.env);
        let repo = r.ctx.inventory.root.clone();
        let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
        let seeded =
            crate::bootstrap::seed::write_files(session, TARGET_ROOT, &repo, &seed, &identities)
                .await?;
        tracing::info!(files = seeded.files, bytes = seeded.bytes, "seeded the host's extra files");
    }
    Ok(PhaseResult::Done)
}

/// The host's keys: loaded from the repository, or generated, stored encrypted to the
/// admins, and their public halves recorded in state. The host's secrets are re-keyed to
/// include it, so it decrypts them on first boot.
fn host_keys(r: &HostRun<'_>) -> Result<HostKeys, PhaseError> {
    let inv = &r.ctx.inventory;
    let store = HostKeyStore::new(&inv.root);
    let identities = crate::keys::Identities::discover(&r.ctx.env);
    let codec = crate::secrets::SopsBinaryCodec { keyring: &identities };
    let keys = if store.exists(r.name()) {
        // A repository key unlike the installed key state pinned is never re-pinned here:
        // the public file is checked before anything is decrypted, then the key the
        // private half (what is seeded and pinned) derives.
        let state = r.state_snapshot();
        let location = r.ctx.state.location();
        let recorded = crate::reach::Recorded {
            host: r.name(),
            state: &state,
            location: &location,
            repository_key: None,
        };
        if let Some(public) = store.load_public(r.name())? {
            crate::reach::installed::check_repository_key(&recorded, &public)?;
        }
        let keys = store.load(r.name(), &codec)?;
        crate::reach::installed::check_repository_key(&recorded, keys.ssh_public_line())?;
        keys
    } else {
        let admins: Vec<AgeRecipient> = inv.admins.iter().map(|a| a.age.clone()).collect();
        let separate = r.host.install.age_key;
        let keys = HostKeys::generate(&r.host.name, separate);
        store.save(&keys, &admins, &codec)?;
        tracing::info!(key = %keys.ssh_public_line(), "generated the host's keys");
        keys
    };
    let recipient = keys.age_recipient().to_string();
    let public = keys.ssh_public_line().to_string();
    r.update_state(|h| {
        h.ssh_public_key = Some(public.clone());
        h.age_recipient = Some(recipient);
        h.host_keys.insert(KeyPhase::Installed, vec![public]);
    })?;
    crate::bootstrap::secrets::update_host_recipients(inv, &r.ctx.state, &identities)?;
    Ok(keys)
}
