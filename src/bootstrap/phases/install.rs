//! install: set the system profile and install the boot loader with the closure's own
//! `switch-to-configuration boot`. Check and prove: the script fails unless the system is in
//! the target's store. Record: the system installed, and on the target the install marker
//! naming the host (`reach::installed::MARKER`).

use super::{PhaseResult, INSTALL_SH, TARGET_ROOT};
use crate::bootstrap::chroot;
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
        &chroot::locked(INSTALL_SH),
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
    use std::path::Path;
    use std::process::Command;

    const SYSTEM: &str = "/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-system";

    fn script(root: &str) -> String {
        template::render(
            "templates/bootstrap/install.sh",
            &chroot::locked(INSTALL_SH),
            &Vars::new().word("root", root).word("system", SYSTEM).word("host", "web1"),
        )
        .unwrap()
    }

    /// The install script as sent, the chroot lock prepended, renders and parses.
    #[test]
    fn the_install_script_with_its_lock_renders_and_parses() {
        let script = script(TARGET_ROOT);
        assert!(script.starts_with("# cairn: prepended"), "{script}");
        let parsed =
            std::process::Command::new("sh").arg("-n").arg("-c").arg(&script).output().unwrap();
        assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    }

    /// Running the script for real takes root (the chroot lock lives in /run, the fallback
    /// mounts and chroots); CI runs as root.
    fn is_root() -> bool {
        let root = fs_err::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if !root {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED: running the install script needs root");
            }
        }
        root
    }

    fn executable(path: &Path, text: &str) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// An installer with `nixos-enter` (the real one): the script leaves the chroot to it,
    /// with the boot loader flag, and mounts nothing itself.
    #[test]
    fn the_installers_nixos_enter_builds_the_chroot_when_it_has_one() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mnt");
        let log = dir.path().join("calls");
        let stubs = dir.path().join("bin");
        for tool in ["nixos-enter", "unshare", "mount", "chroot"] {
            executable(
                &stubs.join(tool),
                &format!(
                    "#!/bin/sh\necho \"{tool} $* NIXOS_INSTALL_BOOTLOADER=${{NIXOS_INSTALL_BOOTLOADER:-}}\" >> '{}'\n",
                    log.display()
                ),
            );
        }
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display());
        let out = Command::new("sh")
            .arg("-c")
            .arg(script(&root.display().to_string()))
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let calls = fs_err::read_to_string(&log).unwrap();
        assert_eq!(
            calls,
            format!(
                "nixos-enter --root {} -- {SYSTEM}/bin/switch-to-configuration boot \
                 NIXOS_INSTALL_BOOTLOADER=1\n",
                root.display()
            )
        );
        assert_eq!(fs_err::read_to_string(root.join("var/lib/cairn/host")).unwrap(), "web1\n");
        assert_eq!(
            fs_err::read_link(root.join("nix/var/nix/profiles/system-1-link")).unwrap(),
            Path::new(SYSTEM)
        );
    }

    /// Without nixos-enter, the script builds what it builds: on a host with EFI variables
    /// (here a stand-in efivarfs mounted below /sys, in a private mount namespace of the
    /// test), the chroot sees them, runs in its own pid namespace with nixos-enter's
    /// environment, and nothing mounted for it or by its activation is left in the caller's
    /// mount table afterwards.
    #[test]
    fn without_nixos_enter_the_chroot_sees_efivars_and_leaks_no_mounts() {
        if !is_root() {
            return;
        }
        let Some(busybox) =
            ["/usr/bin/busybox", "/bin/busybox"].into_iter().find(|p| Path::new(p).exists())
        else {
            panic!("busybox (static) is needed in the chroot: run .ci/install");
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mnt");
        fs_err::create_dir_all(root.join("bin")).unwrap();
        fs_err::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "ls", "cat", "mkdir", "mount", "echo", "hostname"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let system = root.join(SYSTEM.trim_start_matches('/'));
        // The activation mounts something of its own (NixOS mounts /run/keys, wrappers...).
        executable(
            &system.join("activate"),
            "#!/bin/sh\necho \"activate IN_NIXOS_ENTER=$IN_NIXOS_ENTER LOCALE_ARCHIVE=$LOCALE_ARCHIVE\" > /tmp/activate.log\n\
             mkdir -p /run/keys && mount -t tmpfs none /run/keys\nhostname web1\n",
        );
        executable(
            &system.join("bin/switch-to-configuration"),
            "#!/bin/sh\n{ echo \"switch $1 NIXOS_INSTALL_BOOTLOADER=$NIXOS_INSTALL_BOOTLOADER pid=$$\"\n\
             ls /sys/firmware/efi/efivars; ls /proc/1/cmdline; } > /tmp/switch.log 2>&1\n",
        );
        fs_err::write(dir.path().join("install.sh"), script(&root.display().to_string())).unwrap();
        // The test's own namespace: an EFI host's efivarfs is a mount below /sys.
        let harness = format!(
            "set -eu\nhostname cairn-harness\nmount --make-rprivate /\nmount -t tmpfs firmware /sys/firmware\n\
             mkdir -p /sys/firmware/efi/efivars\nmount -t tmpfs efivarfs /sys/firmware/efi/efivars\n\
             echo boot > /sys/firmware/efi/efivars/Boot0000-cairn\n\
             PATH=/usr/sbin:/usr/bin:/sbin:/bin sh {d}/install.sh\n\
             cat /proc/self/mountinfo > {d}/mountinfo.after\nhostname > {d}/hostname.after\n",
            d = dir.path().display()
        );
        // Its own UTS namespace too: a script that let the activation's host name out must
        // not rename the machine the test runs on.
        let out = Command::new("unshare")
            .args(["--mount", "--uts", "sh", "-c"])
            .arg(&harness)
            .output()
            .expect("unshare (util-linux) runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("cairn-install: unshare --mount --uts --pid --fork, chroot"),
            "{stderr}"
        );

        let activate = fs_err::read_to_string(root.join("tmp/activate.log")).unwrap();
        assert_eq!(
            activate,
            format!(
                "activate IN_NIXOS_ENTER=1 LOCALE_ARCHIVE={SYSTEM}/sw/lib/locale/locale-archive\n"
            )
        );
        let switch = fs_err::read_to_string(root.join("tmp/switch.log")).unwrap();
        // pid 1: the chroot is the first process of its own pid namespace.
        assert_eq!(
            switch,
            "switch boot NIXOS_INSTALL_BOOTLOADER=1 pid=1\nBoot0000-cairn\n/proc/1/cmdline\n"
        );
        let after = fs_err::read_to_string(dir.path().join("mountinfo.after")).unwrap();
        let root = root.display().to_string();
        let leaked: Vec<&str> = after.lines().filter(|l| l.contains(&root)).collect();
        assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");
        // The host name the activation set stayed in the chroot's namespace, as in nixos-enter
        // (a rescue system installed from keeps its own).
        let hostname = fs_err::read_to_string(dir.path().join("hostname.after")).unwrap();
        assert_eq!(hostname, "cairn-harness\n");
        assert_eq!(fs_err::read_to_string(format!("{root}/var/lib/cairn/host")).unwrap(), "web1\n");
    }
}
