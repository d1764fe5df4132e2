//! age and SSH key generation, identity discovery, and the ssh-to-age conversion.
//!
//! - [`recipient`]: `age1...` / `ssh-ed25519` / `ssh-rsa` recipients as sops stores them.
//! - [`hybrid`]: post-quantum `age1pq1...` recipients and `AGE-SECRET-KEY-PQ-1...` identities.
//! - [`identity`]: age identities, and where they come from, exactly as sops 3.11 looks.
//! - [`convert`]: ssh-to-age, so a host decrypts with its SSH host key (sops-nix).
//! - [`generate`]: admin age keys and per-host key sets.
//! - [`store`]: where a host's private keys live in the repository (encrypted to the admins).
//!
//! A leaf: nothing here imports from `secrets`, `inventory` or `state`; they use keys.

mod age_key;
pub mod convert;
pub mod generate;
pub mod hybrid;
pub mod identity;
mod openssh;
pub mod recipient;
pub mod store;

pub use convert::{ed25519_seed_to_age, ssh_private_key_to_age, ssh_public_key_to_age};
pub use generate::{
    generate_age_identity, generate_post_quantum_age_identity, AgeKeyFile, HostKeys,
};
pub use identity::{
    encrypt_armored, AgeIdentity, AnyAgeIdentity, Identities, IdentityEnv, IdentitySource,
    SourceOutcome, SourceReport,
};
pub use recipient::{abbreviate, AgeRecipient, RecipientKind};
pub use store::{AgeFileCodec, HostKeyStore, KeyCodec};

/// Everything that goes wrong with keys. Messages name recipients (public) but never
/// private material.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum KeysError {
    #[error("`{recipient}` is an age plugin recipient, which cairn does not support")]
    #[diagnostic(
        code(cairn::keys::plugin_recipient),
        help("use a native age key (`age1...` or post-quantum `age1pq1...`, from `cairn secrets keygen`) or an SSH public key (`ssh-ed25519 ...`)")
    )]
    PluginRecipient { recipient: String },

    #[error("`{recipient}` is not a valid age recipient: {reason}")]
    #[diagnostic(
        code(cairn::keys::invalid_recipient),
        help(
            "an age recipient looks like `age1...` or `age1pq1...` (from `age-keygen -y`) or `ssh-ed25519 AAAA...`"
        )
    )]
    InvalidRecipient {
        recipient: String,
        reason: String,
        /// What is wrong in a few words, for a label under the text.
        summary: &'static str,
    },

    /// Never echoes the text: it is a secret.
    #[error("an age private key (`AGE-SECRET-KEY-...`) was given where a recipient belongs")]
    #[diagnostic(
        code(cairn::keys::private_key_as_recipient),
        help(
            "never put a private key here: use its public key (`age-keygen -y KEYFILE` prints it)"
        )
    )]
    PrivateKeyAsRecipient,

    #[error("`{recipient}` is not an age recipient")]
    #[diagnostic(
        code(cairn::keys::unknown_recipient),
        help("cairn supports age keys (`age1...`, post-quantum `age1pq1...`) and SSH public keys (`ssh-ed25519 ...`, `ssh-rsa ...`)")
    )]
    UnknownRecipient { recipient: String },

    #[error("invalid age identity: {reason}")]
    #[diagnostic(
        code(cairn::keys::invalid_identity),
        help("an age identity is one `AGE-SECRET-KEY-1...` (or post-quantum `AGE-SECRET-KEY-PQ-1...`) line, as `age-keygen` writes it")
    )]
    InvalidIdentity { reason: String },

    #[error("SSH {what}: {reason}")]
    #[diagnostic(
        code(cairn::keys::ssh_key),
        help("cairn converts unencrypted ed25519 keys (`ssh-keygen -t ed25519 -N ''`)")
    )]
    SshKey { what: String, reason: String },

    #[error("no age identity found")]
    #[diagnostic(
        code(cairn::keys::no_identities),
        help("put your age key in ~/.config/sops/age/keys.txt, or set SOPS_AGE_KEY_FILE. Looked in:\n{tried}")
    )]
    NoIdentities { tried: String },

    #[error("none of the age identities found can decrypt this")]
    #[diagnostic(
        code(cairn::keys::no_matching_identity),
        help("the file is not encrypted to any of your keys; ask an admin who can read it to run `cairn secrets rekey`. Looked in:\n{tried}")
    )]
    NoMatchingIdentity { tried: String },

    #[error("age decryption failed: {reason}")]
    #[diagnostic(code(cairn::keys::age_decrypt))]
    AgeDecrypt { reason: String },

    #[error("age encryption failed: {reason}")]
    #[diagnostic(code(cairn::keys::age_encrypt))]
    AgeEncrypt { reason: String },

    #[error(transparent)]
    #[diagnostic(code(cairn::keys::io))]
    Io(#[from] std::io::Error),

    #[error("host key store for `{host}`: {reason}")]
    #[diagnostic(code(cairn::keys::store), help("{help}"))]
    Store { host: String, reason: String, help: String },
}

impl KeysError {
    /// For a recipient that did not parse: what is wrong in a few words, for a label under
    /// the text (the full message says the same with the text itself).
    pub fn recipient_problem(&self) -> Option<&'static str> {
        match self {
            Self::PrivateKeyAsRecipient => {
                Some("this is a private key: never put it here, use its public key")
            }
            Self::PluginRecipient { .. } => {
                Some("an age plugin recipient, which cairn does not support")
            }
            Self::InvalidRecipient { summary, .. } => Some(summary),
            Self::UnknownRecipient { .. } => Some("not an age recipient or SSH public key"),
            _ => None,
        }
    }
}
