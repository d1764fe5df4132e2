//! The phases, one file each, all of one shape: check the remote side, act, prove the
//! result from the remote side, record it. [`run`] dispatches to them; the loop around them
//! (what to run, skip or re-check) is in `run.rs`.

mod build;
mod bundle;
mod copy;
mod disk;
mod install;
mod kexec;
mod keys;
mod provision;
mod reach;
mod reboot;
mod verify;

use super::host_run::HostRun;
use super::{Phase, PhaseError, Verified};

pub(super) use self::build::build;

const KEXEC_SH: &str = include_str!("../../../templates/bootstrap/kexec.sh");
const INSTALL_SH: &str = include_str!("../../../templates/bootstrap/install.sh");
const REBOOT_SH: &str = include_str!("../../../templates/bootstrap/reboot.sh");
const DISKO_SH: &str = include_str!("../../../templates/bootstrap/disko.sh");

/// Where the installer bundle is unpacked on the stock system.
const BUNDLE_DIR: &str = "/root/cairn-kexec";
/// Where the disko script's closure is unpacked on the installer before it joins /nix/store.
const DISKO_STAGING: &str = "/root/cairn-disko";
/// The root of the system being installed, on the installer.
const TARGET_ROOT: &str = "/mnt";

/// How a phase that did not fail went.
pub(super) enum PhaseResult {
    Done,
    /// Nothing to do, with why (`already running an installer`).
    Skipped(String),
    Verified(Verified),
}

/// Runs `phase`. `recheck`: it completed in an earlier run, but what it left may be gone
/// (the disk's mounts): check that first, redo it if so.
pub(super) async fn run(
    r: &mut HostRun<'_>,
    phase: Phase,
    recheck: bool,
) -> Result<PhaseResult, PhaseError> {
    r.command_limit = r.budgets.for_phase(phase);
    match phase {
        Phase::Provision => provision::provision(r).await,
        Phase::Reach => reach::reach(r).await,
        Phase::Kexec => kexec::kexec(r).await,
        Phase::Disk if recheck => disk::disk_if_unmounted(r).await,
        Phase::Disk => disk::disk(r).await,
        Phase::Keys => keys::keys(r).await,
        Phase::Build => build::build(r).await,
        Phase::Copy => copy::copy(r).await,
        Phase::Install => install::install(r).await,
        Phase::Reboot => reboot::reboot(r).await,
        Phase::Verify => verify::verify(r).await.map(PhaseResult::Verified),
    }
}
