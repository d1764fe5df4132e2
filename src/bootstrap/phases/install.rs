//! install: set the system profile and install the boot loader with the closure's own
//! `switch-to-configuration boot`. Check and prove: the script fails unless the system is in
//! the target's store. Record: the system installed, and on the target the install marker
//! naming the host (`reach::installed::MARKER`).

use super::{PhaseResult, CHROOT_LOCK_SH, INSTALL_SH, TARGET_ROOT};
use crate::bootstrap::host_run::HostRun;
use crate::bootstrap::PhaseError;
use crate::inventory::Wait;
use crate::ssh::RemoteCommand;
use crate::state::KeyPhase;
use crate::util::template::{self, Vars};

pub(super) async fn install(r: &mut HostRun<'_>) -> Result<PhaseResult, PhaseError> {
    let system = r.built().await?;
    let script = template::render(
        "templates/bootstrap/install.sh",
        &format!("{CHROOT_LOCK_SH}{INSTALL_SH}"),
        &Vars::new()
            .word("root", TARGET_ROOT)
            .word("system", system.as_str())
            .word("host", r.name()),
    )?;
    let session = r.session(KeyPhase::Installer, Wait::Reach).await?;
    session.exec(&RemoteCommand::script("install", script)).await?;
    let system = system.as_str().to_string();
    r.update_state(|h| h.bootstrap.system = Some(system))?;
    Ok(PhaseResult::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The install script as sent, the chroot lock prepended, renders and parses.
    #[test]
    fn the_install_script_with_its_lock_renders_and_parses() {
        let script = template::render(
            "templates/bootstrap/install.sh",
            &format!("{CHROOT_LOCK_SH}{INSTALL_SH}"),
            &Vars::new()
                .word("root", TARGET_ROOT)
                .word("system", "/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-system")
                .word("host", "web1"),
        )
        .unwrap();
        assert!(script.starts_with("# cairn: prepended"), "{script}");
        let parsed =
            std::process::Command::new("sh").arg("-n").arg("-c").arg(&script).output().unwrap();
        assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    }
}
