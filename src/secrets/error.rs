//! The one error type of the sops implementation. Messages name the file and what failed;
//! they never contain a plaintext value, the data key or a private key.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

#[derive(Debug, Error, Diagnostic)]
#[non_exhaustive]
pub enum SecretsError {
    #[error(transparent)]
    #[diagnostic(code(cairn::secrets::io), help("check that the file exists and is readable"))]
    Io(#[from] std::io::Error),

    #[error("{file}: cannot parse as {format}: {reason}")]
    #[diagnostic(
        code(cairn::secrets::parse),
        help(
            "fix the syntax, or pass --input-type if the file extension does not match its format"
        )
    )]
    Parse { file: PathBuf, format: &'static str, reason: String },

    #[error("{file}: the document is empty")]
    #[diagnostic(
        code(cairn::secrets::empty),
        help("sops cannot encrypt an empty file; add at least one key")
    )]
    Empty { file: PathBuf },

    #[error("{file}: {reason}")]
    #[diagnostic(code(cairn::secrets::unsupported), help("{help}"))]
    Unsupported { file: PathBuf, reason: String, help: String },

    #[error("{file}: not a sops file: no `sops` metadata found")]
    #[diagnostic(
        code(cairn::secrets::not_encrypted),
        help("encrypt it first with `cairn secrets encrypt --in-place FILE`")
    )]
    MetadataNotFound { file: PathBuf },

    #[error("{file}: the file is already encrypted (it has `sops` metadata)")]
    #[diagnostic(
        code(cairn::secrets::already_encrypted),
        help("use `cairn secrets edit` to change it, or `cairn secrets rekey` to change its recipients")
    )]
    AlreadyEncrypted { file: PathBuf },

    #[error("{file}: invalid sops metadata: {reason}")]
    #[diagnostic(
        code(cairn::secrets::metadata),
        help("the `sops` block was edited by hand or written by an incompatible tool; restore it from git")
    )]
    Metadata { file: PathBuf, reason: String },

    #[error("{file}: no identity could decrypt the data key")]
    #[diagnostic(
        code(cairn::secrets::no_identity),
        help("the file is encrypted to {recipients}. Put a matching age key in one of the places cairn looked, or ask someone who can read the file to add your recipient and run `cairn secrets rekey`. Looked in:\n{tried}")
    )]
    NoIdentity { file: PathBuf, tried: String, recipients: String },

    #[error("{file}: not enough key groups could be decrypted: {got} of the {needed} Shamir shares needed")]
    #[diagnostic(
        code(cairn::secrets::shamir),
        help("you need identities for at least {needed} of the key groups. Looked in:\n{tried}")
    )]
    NotEnoughShares { file: PathBuf, got: usize, needed: usize, tried: String },

    #[error("{file}: the data key is corrupt: {reason}")]
    #[diagnostic(code(cairn::secrets::data_key), help("restore the file from git"))]
    BadDataKey { file: PathBuf, reason: String },

    #[error("{file}: cannot decrypt the value at `{path}`: {reason}")]
    #[diagnostic(
        code(cairn::secrets::value),
        help("the ciphertext was modified, or moved here from another key (the key path is authenticated); restore the file from git")
    )]
    Value { file: PathBuf, path: String, reason: String },

    #[error("{file}: cannot decrypt the MAC: `mac` or `lastmodified` was modified")]
    #[diagnostic(
        code(cairn::secrets::mac_undecryptable),
        help("restore the file from git, or pass --ignore-mac if you trust its content")
    )]
    MacUndecryptable { file: PathBuf },

    #[error("{file}: the file has no MAC")]
    #[diagnostic(
        code(cairn::secrets::no_mac),
        help("restore the file from git, or pass --ignore-mac if you trust its content")
    )]
    NoMac { file: PathBuf },

    #[error("{file}: MAC mismatch: the file has {stored}, its content hashes to {computed}")]
    #[diagnostic(
        code(cairn::secrets::mac_mismatch),
        help("a value was changed, added, removed or reordered outside sops/cairn; restore the file from git, or pass --ignore-mac if you trust its content")
    )]
    MacMismatch { file: PathBuf, stored: String, computed: String },

    #[error("{file}: cannot encrypt the data key to {recipient}: {reason}")]
    #[diagnostic(
        code(cairn::secrets::recipient),
        help("check the recipient in .sops.yaml or --age")
    )]
    Recipient { file: PathBuf, recipient: String, reason: String },

    #[error("{file}: no recipients to encrypt to")]
    #[diagnostic(
        code(cairn::secrets::no_recipients),
        help("add a creation rule for this file to .sops.yaml (or the inventory), or pass --age")
    )]
    NoRecipients { file: PathBuf },

    #[error("{file}: the extract path {extract} {reason}")]
    #[diagnostic(code(cairn::secrets::extract), help("use the form '[\"key\"][0][\"subkey\"]'"))]
    Extract { file: PathBuf, extract: String, reason: String },

    #[error("the editor `{editor}` failed: {reason}")]
    #[diagnostic(
        code(cairn::secrets::editor),
        help("set SOPS_EDITOR, VISUAL or EDITOR to an editor that waits until the file is closed (e.g. `code --wait`)")
    )]
    Editor { editor: String, reason: String },

    #[error("no RAM-backed directory for the plaintext: /dev/shm and $XDG_RUNTIME_DIR are not usable here, and the system temp dir ({disk}) is on disk")]
    #[diagnostic(
        code(cairn::secrets::disk_temp),
        help("pass --allow-disk-temp to edit with the plaintext in {disk} anyway (it is overwritten and removed afterwards, but may survive on the disk), or set XDG_RUNTIME_DIR to a tmpfs directory you own")
    )]
    DiskTemp { disk: String },

    #[error("interrupted by {signal}: nothing was written and the plaintext was removed")]
    #[diagnostic(
        code(cairn::secrets::interrupted),
        help("run the command again to edit the file")
    )]
    Interrupted { signal: &'static str },

    #[error("{file} already exists")]
    #[diagnostic(
        code(cairn::secrets::key_exists),
        help("cairn never overwrites a private key; pass -o with another path, or remove the file yourself if you really mean to")
    )]
    KeyExists { file: PathBuf },

    #[error(
        "no recipients for {file}: no .sops.yaml creation rule applies and --age was not given"
    )]
    #[diagnostic(
        code(cairn::secrets::no_rule),
        help("run cairn in the repository (where .sops.yaml is), or pass --age age1...")
    )]
    NoRule { file: PathBuf },

    #[error("{failed} of {total} files could not be rekeyed")]
    #[diagnostic(
        code(cairn::secrets::rekey_failed),
        help("see the FAILED lines above; the other files were processed")
    )]
    RekeyFailed { failed: usize, total: usize },

    #[error(
        "no default path for the key: neither SOPS_AGE_KEY_FILE nor HOME/XDG_CONFIG_HOME is set"
    )]
    #[diagnostic(code(cairn::secrets::no_key_path), help("pass -o FILE"))]
    NoKeyPath,

    #[error("no .sops.yaml with creation_rules found in {dir} or its parents")]
    #[diagnostic(
        code(cairn::secrets::no_config),
        help("run cairn in the repository; `cairn init` writes .sops.yaml from the inventory (or set SOPS_CONFIG)")
    )]
    NoConfig { dir: PathBuf },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Rules(#[from] super::rules::RulesError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Keys(#[from] crate::keys::KeysError),
}

pub type Result<T, E = SecretsError> = std::result::Result<T, E>;
