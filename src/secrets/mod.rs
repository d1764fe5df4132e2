//! sops-compatible encrypted files: the formats, the crypto, the MAC, rules, edit and rekey.
//!
//! Follows sops 3.11 exactly (see the compatibility notes in the tests): files cairn writes
//! open in sops and sops-nix, and cairn reads every file sops writes.

pub mod cipher;
pub mod edit;
pub mod error;
pub mod file;
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
pub use store::Format;

use tree::Documents;

fn yaml_parse(text: &str) -> Result<Documents, String> {
    yaml::parse(text).map_err(|e| e.to_string())
}

fn yaml_emit(docs: &Documents) -> Result<String, String> {
    Ok(yaml::emit(docs, yaml::DEFAULT_INDENT))
}

/// The creation rule for `file` from the `.sops.yaml` found from `cwd` (or `config`), as an
/// encryption spec; `None` when there is no config with creation rules.
pub fn rule_spec(
    cwd: &std::path::Path,
    config: Option<&std::path::Path>,
    file: &std::path::Path,
) -> Result<Option<EncryptionSpec>, SecretsError> {
    let Some(path) = rules::find_config(cwd, config) else { return Ok(None) };
    let cfg = rules::SopsConfig::load(&path)?;
    Ok(cfg.rule_for(file, cwd)?.map(|r| r.encryption_spec()))
}

/// The files `rekey` covers with the key groups their rules ask for, and the directory the
/// paths are shown relative to (the one holding `.sops.yaml`). No `files`: every sops file
/// below that directory that a creation rule matches.
pub fn rekey_targets(
    cwd: &std::path::Path,
    config: Option<&std::path::Path>,
    files: &[std::path::PathBuf],
) -> Result<(std::path::PathBuf, Vec<rekey::RekeyTarget>), SecretsError> {
    let path = rules::find_config(cwd, config)
        .ok_or_else(|| SecretsError::NoConfig { dir: cwd.to_owned() })?;
    let cfg = rules::SopsConfig::load(&path)?;
    let root = path.parent().unwrap_or(cwd).to_owned();
    let mut targets = Vec::new();
    if files.is_empty() {
        for file in rekey::find_sops_files(&root)? {
            match cfg.rule_for(&file, cwd) {
                Ok(Some(rule)) => {
                    targets.push(rekey::RekeyTarget { path: file, key_groups: rule.recipients() })
                }
                Ok(None) => {}
                Err(rules::RulesError::NoMatchingRule { .. }) => {
                    tracing::debug!(file = %file.display(), "no creation rule matches; skipped");
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        for file in files {
            let rule = cfg
                .rule_for(file, cwd)?
                .ok_or_else(|| SecretsError::NoConfig { dir: cwd.to_owned() })?;
            targets.push(rekey::RekeyTarget { path: file.clone(), key_groups: rule.recipients() });
        }
    }
    Ok((root, targets))
}
