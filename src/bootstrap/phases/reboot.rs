//! reboot: leave the installer (or the rescue system installed from) for the installed
//! system. Check: still in it (else skipped). Record: the installer's boot id, before acting. Act: reboot. Verify
//! proves the result.

use super::kexec::Jump;
use super::{PhaseResult, REBOOT_SH};
use crate::bootstrap::host_run::{is_transient, HostRun};
use crate::bootstrap::PhaseError;
use crate::inventory::Wait;
use crate::ssh::RemoteCommand;
use crate::state::KeyPhase;

pub(super) async fn reboot(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let facts = r.facts(KeyPhase::Installer, Wait::Reach).await?;
    // Installed from the running system: still the boot the kexec phase recorded (what the
    // install ran in it, the host name, may have changed).
    let installed_from = r.state_snapshot().bootstrap.installer_boot_id;
    let in_place = installed_from.as_deref() == Some(facts.boot_id.as_str())
        || matches!(super::kexec::jump(r.host.install.kexec, &facts), Jump::InPlace(_));
    if !facts.installer && !in_place {
        return Ok(PhaseResult::Skipped("not in the installer any more".into()));
    }
    let installer_boot = facts.boot_id.clone();
    r.update_state(|h| h.bootstrap.installer_boot_id = Some(installer_boot))?;
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    match session.exec(&RemoteCommand::script("reboot", REBOOT_SH)).await {
        Ok(_) => {}
        Err(e) if is_transient(&e) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some((_, s)) = r.session.take() {
        s.close().await;
    }
    Ok(PhaseResult::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Where the script stops being safe to run on a test machine.
    const THE_REBOOT: &str = "# cairn: the reboot itself\n";

    /// The script up to the reboot, run with stubs only on PATH (nothing real is unmounted,
    /// exported or rebooted); `zpool` present or not. Returns the stubs' calls.
    fn run_until_the_reboot(with_zpool: bool) -> String {
        let (before, after) = REBOOT_SH.split_once(THE_REBOOT).expect("the reboot marker");
        assert!(after.contains("reboot -f"), "{after}");
        let code = before.lines().filter(|l| !l.trim_start().starts_with('#'));
        assert!(code.clone().all(|l| !l.contains("reboot -f") && !l.contains("sysrq")), "{before}");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let mut tools = vec!["sync", "swapoff", "umount"];
        if with_zpool {
            tools.push("zpool");
        }
        for tool in tools {
            let p = dir.path().join(tool);
            fs_err::write(&p, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\n", log.display()))
                .unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let sh = ["/bin/sh", "/usr/bin/sh"].into_iter().find(|p| Path::new(p).exists()).unwrap();
        let out = Command::new(sh).arg("-n").arg("-c").arg(REBOOT_SH).output().unwrap();
        assert!(out.status.success(), "sh -n: {}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(sh)
            .arg("-c")
            .arg(before)
            .env_clear()
            .env("PATH", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        fs_err::read_to_string(&log).unwrap_or_default()
    }

    /// As nixos-anywhere does: ZFS pools are exported after the target is unmounted, so the
    /// installed system imports them without forcing.
    #[test]
    fn zfs_pools_are_exported_after_unmounting_before_the_reboot() {
        assert_eq!(
            run_until_the_reboot(true),
            "sync \nswapoff -a\numount -R /mnt\nzpool export -a\nsync \n"
        );
    }

    #[test]
    fn without_zpool_nothing_is_exported() {
        assert_eq!(run_until_the_reboot(false), "sync \nswapoff -a\numount -R /mnt\nsync \n");
    }
}
