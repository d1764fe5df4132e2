//! sops-compatible encrypted files: the formats, the crypto, the MAC, rules, edit and rekey.
//!
//! Follows sops 3.11 exactly (see the compatibility notes in the tests): files cairn writes
//! open in sops and sops-nix, and cairn reads every file sops writes.

pub mod cipher;
pub mod error;
pub mod file;
pub mod metadata;
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
