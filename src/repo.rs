//! The repository layout: what cairn keeps next to `cairn.hcl`, under `.cairn/`. The one
//! place these paths are spelled.
//!
//! ```text
//! .cairn/state.json, state.json.bak, state.lock   the file state backend
//! .cairn/logs/<host>.log                          per-host logs of the last run
//! .cairn/ssh/operator_ed25519{,.pub}              the operator's SSH key (0600)
//! .cairn/ssh/stock/<host>_ed25519{,.pub}          the stock image's host key cairn injected
//! .cairn/qemu/<host>/                             the qemu provider's VMs
//! ```

use std::path::{Path, PathBuf};

/// The directory under the repository root that holds cairn's own files.
pub const CAIRN_DIR: &str = ".cairn";

/// A fleet repository, by its root (the directory of `cairn.hcl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    root: PathBuf,
}

impl Repo {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.cairn/`: state, logs, the operator key.
    pub fn cairn_dir(&self) -> PathBuf {
        self.root.join(CAIRN_DIR)
    }

    /// Where the file state backend keeps `state.json`, its backup and its lock.
    pub fn state_dir(&self) -> PathBuf {
        self.cairn_dir()
    }

    /// Per-host logs of a run (`<host>.log`).
    pub fn logs_dir(&self) -> PathBuf {
        self.cairn_dir().join("logs")
    }

    /// The directory of the operator key.
    pub fn operator_key_dir(&self) -> PathBuf {
        self.cairn_dir().join("ssh")
    }

    /// The operator's private SSH key, generated on first use (its public half next to it,
    /// with `.pub`).
    pub fn operator_key(&self) -> PathBuf {
        self.operator_key_dir().join("operator_ed25519")
    }

    /// The stock images' host keys cairn made and injected through user data.
    pub fn stock_keys_dir(&self) -> PathBuf {
        self.operator_key_dir().join("stock")
    }

    /// The qemu provider's VM directories, unless the provider names its own.
    pub fn qemu_dir(&self) -> PathBuf {
        self.cairn_dir().join("qemu")
    }
}

/// Creates `dir` and its missing parents with mode 0700: `.cairn/` holds the state, the
/// operator's private key and logs that name hosts and addresses, whatever the backend.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_lives_under_dot_cairn() {
        let repo = Repo::new("/r");
        assert_eq!(repo.state_dir(), Path::new("/r/.cairn"));
        assert_eq!(repo.logs_dir(), Path::new("/r/.cairn/logs"));
        assert_eq!(repo.operator_key(), Path::new("/r/.cairn/ssh/operator_ed25519"));
        assert_eq!(repo.qemu_dir(), Path::new("/r/.cairn/qemu"));
    }

    #[test]
    fn cairn_dirs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let repo = Repo::new(root.path());
        create_private_dir(&repo.logs_dir()).unwrap();
        for dir in [repo.cairn_dir(), repo.logs_dir()] {
            let mode = fs_err::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
}
