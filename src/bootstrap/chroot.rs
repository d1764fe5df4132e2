//! Scripts that chroot into the target on the installer (install, the copy's registration)
//! run one at a time: a killed run's script may still be inside the chroot when the next
//! run starts.

const CHROOT_LOCK_SH: &str = include_str!("../../templates/bootstrap/chroot-lock.sh");

/// `script` behind the installer's chroot lock (templates/bootstrap/chroot-lock.sh).
pub(super) fn locked(script: &str) -> String {
    format!("{CHROOT_LOCK_SH}{script}")
}
