//! What the bootstrap seeds besides the host's own keys: a directory of the repository copied
//! under the target's root, single files whose content comes from a local file or a sops file
//! decrypted in memory, and the keys the disk layout needs (a LUKS key file) placed in the
//! installer's RAM before partitioning. Checked at the inventory boundary
//! (`resolve/seed.rs`); written by `bootstrap::seed`.

use std::path::PathBuf;

use serde::Serialize;

/// `extra_files`, `extra_file "PATH" { ... }` and `disk_encryption_key "PATH" { ... }` of a
/// host (the host's own, else the defaults'; blocks of both, the host's winning on a path).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Seed {
    /// A directory of the repository (relative to its root) whose tree is copied under the
    /// target's root: `files/etc/foo` becomes `/etc/foo` of the installed system.
    pub extra_files: Option<PathBuf>,
    /// Files written into the installed system, in the order written.
    pub files: Vec<SeedFile>,
    /// Key files uploaded to the installer's RAM before the disk is partitioned.
    pub disk_keys: Vec<DiskKey>,
}

impl Seed {
    pub fn is_empty(&self) -> bool {
        self.extra_files.is_none() && self.files.is_empty() && self.disk_keys.is_empty()
    }
}

/// Where a seeded file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum SeedSource {
    /// A file of the repository (relative to its root), sent as it is.
    File { path: PathBuf },
    /// A sops file of the repository, decrypted in memory with the operator's keys; with
    /// `key`, only the value at that path of the document (as `sops --extract` does),
    /// else the whole plaintext (for a binary sops file: the original bytes).
    Sops { path: PathBuf, key: Vec<String> },
}

impl SeedSource {
    /// The repository file the bytes come from.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::File { path } | Self::Sops { path, .. } => path,
        }
    }
}

/// `extra_file "/etc/wireguard/wg0.key" { sops = "secrets/wg.yaml" key = "wg0" mode = "0400" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedFile {
    /// The absolute path in the installed system (written under the installer's `/mnt`).
    pub path: String,
    pub source: SeedSource,
    /// File mode (default 0400).
    pub mode: u32,
    /// Numeric owner and group (default root): the installed system's users do not exist
    /// until its first activation, so names other than `root` cannot be resolved yet.
    pub uid: u32,
    pub gid: u32,
}

/// `disk_encryption_key "/tmp/secret.key" { file = "keys/data.key" }` (or `sops = ...`): a
/// key the disk layout (a `luks` partition, a disko `passwordFile`) reads on the installer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskKey {
    /// The absolute path on the installer; it must be on a RAM file system (tmpfs, ramfs).
    pub path: String,
    pub source: SeedSource,
}
