//! Processes cairn started itself (QEMU VMs): signal them by pid and wait for them to go;
//! and what child processes must not inherit.

use std::time::{Duration, Instant};

/// True while a process with this pid exists (zombies included).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The process's command line, arguments separated by NUL, if it exists.
pub fn cmdline(pid: u32) -> Option<Vec<u8>> {
    fs_err::read(format!("/proc/{pid}/cmdline")).ok()
}

/// Sends `signal` to `pid`. Only ever called with pids cairn recorded for processes it
/// started (and re-checked by command line just before).
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait again. Returns once the pid is gone.
pub async fn terminate(pid: u32, grace: Duration) -> std::io::Result<()> {
    if !alive(pid) {
        return Ok(());
    }
    let _ = signal(pid, libc::SIGTERM);
    if wait_gone(pid, grace).await {
        return Ok(());
    }
    let _ = signal(pid, libc::SIGKILL);
    if wait_gone(pid, Duration::from_secs(10)).await {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("process {pid} survived SIGKILL")))
    }
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if !alive(pid) || is_zombie(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

fn is_zombie(pid: u32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Whether an environment variable carries a credential that a child process (nix, the
/// editor) has no use for: the cloud tokens and keys cairn reads, sops' inline age key, the
/// PostgreSQL state connection, and anything named like a token, secret or password.
pub fn is_credential_var(name: &str) -> bool {
    const NAMED: &[&str] = &[
        "HCLOUD_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "SOPS_AGE_KEY",
        "CAIRN_PG_CONN",
        "PGPASSWORD",
        "DATABASE_URL",
    ];
    const ENDINGS: &[&str] = &["_TOKEN", "_SECRET", "_PASSWORD", "_SECRET_KEY", "_ACCESS_KEY"];
    let upper = name.to_ascii_uppercase();
    NAMED.contains(&upper.as_str()) || ENDINGS.iter().any(|e| upper.ends_with(e))
}

/// The credential variables (see [`is_credential_var`]) set in this process's environment:
/// remove each from a child's command with `env_remove`.
pub fn credential_vars() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(is_credential_var))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_recognised_by_name() {
        for name in ["HCLOUD_TOKEN", "AWS_SECRET_ACCESS_KEY", "SOPS_AGE_KEY", "CAIRN_PG_CONN"] {
            assert!(is_credential_var(name), "{name}");
        }
        for name in ["GITHUB_TOKEN", "my_api_secret", "DB_PASSWORD"] {
            assert!(is_credential_var(name), "{name}");
        }
        for name in ["PATH", "HOME", "SOPS_AGE_KEY_FILE", "NIX_CONFIG", "XDG_RUNTIME_DIR", "TERM"] {
            assert!(!is_credential_var(name), "{name}");
        }
    }
}
