//! The two system calls the file backend needs that std does not offer at our MSRV.

use std::io;
use std::os::fd::AsRawFd;

/// Tries to take an exclusive flock(2) on `file` without blocking. `Ok(false)`: another open
/// file description holds it.
///
/// flock rather than fcntl locks: it belongs to the open file, so it is released exactly when
/// the holder closes it or dies, and Linux maps it onto NFS locks so it reaches across hosts
/// where the mount supports locking.
#[allow(unsafe_code)]
pub(crate) fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    loop {
        // SAFETY: flock takes a file descriptor and flags and touches no memory of ours; the
        // descriptor is valid for as long as `file` is borrowed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Whether a process with this pid exists on this machine (it may belong to another user).
#[allow(unsafe_code)]
pub(super) fn process_exists(pid: u32) -> bool {
    // pid 0 and negative pids would address process groups, never one process.
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the pid exists and may be signalled; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
