//! What the scripts that chroot into the target on the installer (install, the copy's
//! registration) share: they run one at a time (a killed run's script may still be inside
//! the chroot when the next run starts), and they build the chroot as nixos-enter does.

const CHROOT_LOCK_SH: &str = include_str!("../../templates/bootstrap/chroot-lock.sh");
const CHROOT_ENTER_SH: &str = include_str!("../../templates/bootstrap/chroot-enter.sh");

/// `script` behind the installer's chroot lock (templates/bootstrap/chroot-lock.sh), with
/// `cairn_enter` defined (templates/bootstrap/chroot-enter.sh).
pub(super) fn locked(script: &str) -> String {
    format!("{CHROOT_LOCK_SH}{CHROOT_ENTER_SH}{script}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::template::{self, Vars};
    use std::path::Path;
    use std::process::Command;

    const REGISTER_SH: &str = include_str!("../../templates/bootstrap/register.sh");

    fn register_script(root: &str, nix_store: &str) -> String {
        template::render(
            "templates/bootstrap/register.sh",
            &locked(REGISTER_SH),
            &Vars::new().word("root", root).word("nix_store", nix_store),
        )
        .unwrap()
    }

    #[test]
    fn the_registration_script_renders_and_parses() {
        let script = register_script("/mnt", "/nix/store/aaaa-nix-2.18/bin/nix-store");
        assert!(script.contains("cairn_enter()"), "{script}");
        let parsed = Command::new("sh").arg("-n").arg("-c").arg(&script).output().unwrap();
        assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    }

    /// The registration's chroot is install's: run as root (CI does) on a stand-in target
    /// whose `nix-store` reports what it sees, on a host with EFI variables below /sys (a
    /// private mount namespace of the test): it reads on stdin the registration gate.sh
    /// leaves in /mnt/tmp, runs as pid 1 of its own pid namespace, sees /sys recursively, and
    /// nothing mounted for it is left in the caller's mount table.
    #[test]
    fn the_registration_runs_in_the_chroot_nixos_enter_builds_and_leaks_no_mounts() {
        let is_root = fs_err::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if !is_root {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED: running the registration script needs root");
            }
            return;
        }
        let busybox = ["/usr/bin/busybox", "/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox (static) is needed in the chroot: run .ci/install");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mnt");
        fs_err::create_dir_all(root.join("bin")).unwrap();
        fs_err::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "ls", "cat", "echo", "env"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let nix_store = "/nix/store/aaaa-nix-2.18/bin/nix-store";
        let stub = root.join(nix_store.trim_start_matches('/'));
        fs_err::create_dir_all(stub.parent().unwrap()).unwrap();
        fs_err::write(
            &stub,
            "#!/bin/sh\n{ echo \"$1 USER=$USER HOME=$HOME pid=$$\"; cat; ls /sys/firmware/efi/efivars; } \
             > /tmp/load-db.log 2>&1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        fs_err::create_dir_all(root.join("nix")).unwrap();
        fs_err::write(root.join("nix/.cairn-copied"), "").unwrap();
        let script = dir.path().join("register.sh");
        fs_err::write(&script, register_script(&root.display().to_string(), nix_store)).unwrap();
        let harness = format!(
            "set -eu\nmount --make-rprivate /\nmount -t tmpfs firmware /sys/firmware\n\
             mkdir -p /sys/firmware/efi/efivars\nmount -t tmpfs efivarfs /sys/firmware/efi/efivars\n\
             echo boot > /sys/firmware/efi/efivars/Boot0000-cairn\n\
             mkdir -p {r}/tmp && echo '/nix/store/bbbb-hello' > {r}/tmp/.cairn-registration\n\
             PATH=/usr/sbin:/usr/bin:/sbin:/bin sh {d}/register.sh\n\
             cat /proc/self/mountinfo > {d}/mountinfo.after\n",
            d = dir.path().display(),
            r = root.display()
        );
        let out = Command::new("unshare").arg("--mount").arg("sh").arg("-c").arg(&harness).output();
        let out = out.expect("unshare (util-linux) runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let seen = fs_err::read_to_string(root.join("tmp/load-db.log")).unwrap();
        assert_eq!(
            seen,
            "--load-db USER=root HOME=/root pid=1\n/nix/store/bbbb-hello\nBoot0000-cairn\n"
        );
        let after = fs_err::read_to_string(dir.path().join("mountinfo.after")).unwrap();
        let root_text = root.display().to_string();
        let leaked: Vec<&str> = after.lines().filter(|l| l.contains(&root_text)).collect();
        assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");
        assert!(!root.join("nix/.cairn-copied").exists(), "the copy's bookkeeping is removed");
        assert!(!root.join("tmp/.cairn-registration").exists());
    }
}
