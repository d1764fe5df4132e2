//! disk: partition, format and mount the target disk at /mnt. Check: the expected device
//! (a re-run after the installer kept its mounts checks /mnt is still mounted). Act: the
//! inventory's layout script, or the flake's diskoScript. Prove: the scripts fail unless
//! everything is mounted. Record: the phase.

use super::{PhaseResult, DISKO_SH, DISKO_STAGING, TARGET_ROOT};
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::PhaseError;
use crate::inventory::{Budget, Wait};
use crate::ssh::RemoteCommand;
use crate::state::KeyPhase;
use crate::util::template::{self, Vars};

pub(super) async fn disk_if_unmounted(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let facts = r.facts(KeyPhase::Installer, Wait::Reach).await?;
    if facts.mnt_mounted {
        Ok(PhaseResult::Skipped("done earlier, /mnt is mounted".into()))
    } else {
        tracing::warn!(
            "the disk was prepared earlier but /mnt is not mounted any more: preparing it again"
        );
        disk(r).await
    }
}

pub(super) async fn disk(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    disk_keys(r).await?;
    if r.host.install.disko {
        return disko(r).await;
    }
    let layout_name = r.host.disk_layout.as_ref().ok_or_else(|| PhaseError::Config {
        what: "the host has no disk_layout".into(),
        help:
            "add `disk_layout = \"...\"` to the host (or to `defaults`) naming a disk_layout block"
                .into(),
    })?;
    let layout = &r.ctx.inventory.disk_layouts[layout_name];
    let options = crate::disk::ScriptOptions {
        target: TARGET_ROOT.into(),
        expected_by_id: r.host.install.disk_by_id.clone(),
        keys_in_ram: !r.host.seed.disk_keys.is_empty(),
    };
    let script = crate::disk::render_script(layout, &options)?;
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    session.exec(&RemoteCommand::script("partition", script)).await?;
    // A fresh disk: whatever an earlier copy left is gone.
    Ok(PhaseResult::Done)
}

/// The host's `disk_encryption_key`s, into the installer's RAM before anything is
/// partitioned, so the layout (a LUKS key file, a disko `passwordFile`) finds them.
async fn disk_keys(r: &mut HostRun<'_>) -> Result<(), PhaseError> {
    if r.host.seed.disk_keys.is_empty() {
        return Ok(());
    }
    let identities = crate::keys::Identities::discover(&r.ctx.env);
    let repo = r.ctx.inventory.root.clone();
    let keys = r.host.seed.disk_keys.clone();
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    crate::bootstrap::seed::write_disk_keys(session, &repo, &keys, &identities).await?;
    Ok(())
}

/// `disko = true`: the flake's `diskoScript`, built here like the system, its closure
/// streamed to the installer, run there. A `disk_layout` on the host still names the
/// device, which is checked first (nothing is touched if it is not the expected disk).
async fn disko(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let options = crate::disk::ScriptOptions {
        target: TARGET_ROOT.into(),
        expected_by_id: r.host.install.disk_by_id.clone(),
        keys_in_ram: !r.host.seed.disk_keys.is_empty(),
    };
    if let Some(layout) = r.host.disk_layout.as_ref().map(|n| &r.ctx.inventory.disk_layouts[n]) {
        let check = crate::disk::render_device_check(layout, &options)?;
        let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
        session.exec(&RemoteCommand::script("disk-check", check)).await?;
    }
    let flake = r.flake()?;
    let installable = crate::nix::installable_for_build(&flake, "diskoScript");
    let script = r.ctx.options.nix.build(&installable).await?;
    let closure = r.ctx.options.nix.closure(std::slice::from_ref(&script)).await?;
    tracing::info!(script = %script, paths = closure.len(), "built the flake's disko script");
    let bytes = closure.iter().map(|p| p.nar_size).sum();
    r.command_limit = r.budgets.for_transfer(Budget::Disk, bytes);
    // The copy phase's stream, into a staging root: the installer's own store may hold
    // paths cairn did not send, which the stream's resume would take for cut-off ones.
    r.session(KeyPhase::Installer, Wait::Reach).await?;
    let (_, session) = r.session.as_ref().expect("just connected");
    crate::bootstrap::copy::stream_closure(session, &closure, DISKO_STAGING).await?;
    let run = template::render(
        "templates/bootstrap/disko.sh",
        DISKO_SH,
        &Vars::new().word("staging", DISKO_STAGING).word("script", script.as_str()),
    )?;
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    session.exec(&RemoteCommand::script("disko", run)).await?;
    Ok(PhaseResult::Done)
}
