//! Where the tests find the real tools they run: the `CAIRN_TEST_*` variable first (set by
//! scripts/test; empty counts as unset), then the checkout's own `.ci` venvs (made by .ci/install), then PATH. Never
//! a path of one machine: a test that passes only where it was written proves nothing.

use std::path::{Path, PathBuf};

/// `env_var`, else `<checkout>/<venv_path>`, else `name` on PATH.
pub fn find(env_var: &str, venv_path: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(venv_path);
    if local.is_file() {
        return Some(local);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// sops 3.11, if it can be found.
pub fn find_sops() -> Option<PathBuf> {
    find("CAIRN_TEST_SOPS", ".ci/venv/bin/sops", "sops")
}

/// sops 3.11 to run: as found, else plain `sops` (the run then fails, saying so).
pub fn sops() -> PathBuf {
    find_sops().unwrap_or_else(|| "sops".into())
}

/// cloudalone, the Hetzner Cloud emulator.
pub fn cloudalone() -> Option<PathBuf> {
    find("CAIRN_TEST_CLOUDALONE", ".ci/venv-cloud/bin/cloudalone", "cloudalone")
}

/// moto's server, the EC2 emulator.
pub fn moto_server() -> Option<PathBuf> {
    find("CAIRN_TEST_MOTO", ".ci/venv-aws/bin/moto_server", "moto_server")
}
