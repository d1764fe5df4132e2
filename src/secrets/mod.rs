//! sops-compatible encrypted files: the formats, the crypto, the MAC, rules, edit and rekey.
//!
//! Follows sops 3.11 exactly (see the compatibility notes in the tests): files cairn writes
//! open in sops and sops-nix, and cairn reads every file sops writes.

pub mod cipher;
pub mod edit;
pub mod error;
pub mod file;
pub mod host_keys;
pub mod metadata;
pub mod ops;
pub mod rekey;
pub mod rules;
pub mod shamir;
pub mod store;
pub mod tree;
pub mod walk;
pub mod yaml;

pub use error::SecretsError;
pub use file::{Decrypted, EncryptionSpec, RekeyChange, SopsFile};
pub use host_keys::SopsBinaryCodec;
pub use store::{Format, StoresConfig};

use tree::Documents;

fn yaml_parse(text: &str) -> Result<Documents, String> {
    yaml::parse(text).map_err(|e| e.to_string())
}

/// The `.sops.yaml` found from `cwd` (or `config`), loaded; `None` when there is none.
pub fn load_config(
    cwd: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<Option<rules::SopsConfig>, SecretsError> {
    match rules::find_config(cwd, config) {
        Some(path) => Ok(Some(rules::SopsConfig::load(&path)?)),
        None => Ok(None),
    }
}

/// What `rekey` covers under the `.sops.yaml` found from `cwd` (or `config`): `files`, or
/// with none every sops file below that config's directory that a creation rule matches.
pub fn rekey_targets(
    cwd: &std::path::Path,
    config: Option<&std::path::Path>,
    files: &[std::path::PathBuf],
) -> Result<rekey::RekeyPlan, SecretsError> {
    let cfg =
        load_config(cwd, config)?.ok_or_else(|| SecretsError::NoConfig { dir: cwd.to_owned() })?;
    rekey::plan(&cfg, cwd, files)
}
