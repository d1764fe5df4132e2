//! Creation rules: which recipients (and crypt options) a new or rekeyed secrets file gets.
//!
//! Two sources, one output type ([`CreationRule`]):
//! - `.sops.yaml`, read exactly as sops 3.11 reads it ([`SopsConfig`]): found from the current
//!   directory upward; the first rule whose `path_regex` (RE2, unanchored) matches the file's
//!   path relative to the config's directory wins; a rule without `path_regex` matches all.
//! - the inventory ([`InventoryRules`]): admins read everything; hosts read the files their
//!   `secrets` globs name; host keys under `secrets/hosts/` are for admins only.
//!   [`merge_sops_yaml`] writes those rules into `.sops.yaml` between markers, keeping the
//!   rest of the file, so plain sops agrees.
//!
//! `config` reads `.sops.yaml`, `policy` derives rules from the inventory, `glob` turns its
//! globs into regexes, `render` writes `.sops.yaml`.

use std::path::PathBuf;

use miette::{NamedSource, SourceSpan};

use crate::keys::AgeRecipient;
use crate::secrets::walk::CryptRule;
use crate::secrets::EncryptionSpec;

mod config;
mod glob;
mod policy;
mod render;

pub use config::{find_config, SopsConfig};
pub use glob::{build_glob, compile_glob, glob_to_regex};
pub use policy::{InventoryRule, InventoryRules, SecretsPolicy, HOST_KEYS_DIR};
pub use render::{merge_sops_yaml, render_sops_yaml, BEGIN_MARKER, END_MARKER};

pub const CONFIG_FILE_NAME: &str = ".sops.yaml";
const ALTERNATE_CONFIG_NAME: &str = ".sops.yml";
/// sops looks this many directories up.
const MAX_DEPTH: usize = 100;

/// Key types sops knows but cairn does not implement (cairn speaks age only).
const FOREIGN_KEY_FIELDS: [&str; 8] = [
    "pgp",
    "kms",
    "gcp_kms",
    "azure_keyvault",
    "hc_vault_transit_uri",
    "hc_vault",
    "hckms",
    "plugins",
];

/// The rule that applies to one file.
#[derive(Debug, Clone, PartialEq)]
pub struct CreationRule {
    /// Recipient strings per key group, as sops writes them into the file (trimmed, in
    /// configured order). One group unless the rule uses `key_groups` with several.
    pub key_groups: Vec<Vec<String>>,
    /// `shamir_threshold` when set (non-zero).
    pub shamir_threshold: Option<u32>,
    /// Which leaves are encrypted; `None`: sops' default (`unencrypted_suffix: _unencrypted`).
    pub crypt: Option<CryptRule>,
    pub mac_only_encrypted: bool,
}

impl CreationRule {
    /// What the sops core encrypts a new file with.
    pub fn encryption_spec(&self) -> EncryptionSpec {
        EncryptionSpec {
            key_groups: self.recipients(),
            shamir_threshold: self.shamir_threshold.map_or(0, |t| t as usize),
            rule: self.crypt.clone(),
            mac_only_encrypted: self.mac_only_encrypted,
        }
    }

    /// The recipients of every group, parsed.
    pub fn recipients(&self) -> Vec<Vec<AgeRecipient>> {
        self.key_groups
            .iter()
            .map(|g| g.iter().map(|r| AgeRecipient::parse(r).expect("validated")).collect())
            .collect()
    }
}

/// Everything that is wrong with creation rules.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum RulesError {
    #[error(transparent)]
    #[diagnostic(code(cairn::secrets::rules::io))]
    Io(#[from] std::io::Error),

    #[error("{path} is not valid YAML")]
    #[diagnostic(
        code(cairn::secrets::rules::yaml),
        help("fix the YAML syntax; sops reads this file too")
    )]
    Yaml {
        path: PathBuf,
        #[source]
        source: crate::secrets::yaml::YamlError,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<InvalidConfig>),

    #[error("no creation rule in {} matches `{file}`", config.display())]
    #[diagnostic(
        code(cairn::secrets::rules::no_match),
        help("add a rule whose path_regex matches this path (relative to the directory of .sops.yaml), or a last rule without path_regex")
    )]
    NoMatchingRule { config: PathBuf, file: String },

    #[error("{what}: {message}")]
    #[diagnostic(code(cairn::secrets::rules::inventory), help("{help}"))]
    Inventory { what: String, message: String, help: String },
}

/// A `.sops.yaml` problem, pointing at its line.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{}:{}: {message}", path.display(), line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
#[diagnostic(code(cairn::secrets::rules::invalid), help("{help}"))]
pub struct InvalidConfig {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
    pub help: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
}

impl InvalidConfig {
    /// A problem on line `index` (0-based) of `text`, the file at `path`.
    pub(crate) fn on_line(
        path: &std::path::Path,
        text: &str,
        index: usize,
        message: &str,
        help: &str,
    ) -> Self {
        let start: usize = text.split_inclusive('\n').take(index).map(str::len).sum();
        let len = text[start..].split('\n').next().map_or(0, str::len);
        InvalidConfig {
            path: path.to_owned(),
            line: Some(index + 1),
            message: message.to_owned(),
            help: help.to_owned(),
            src: NamedSource::new(path.display().to_string(), text.to_owned()),
            span: Some(SourceSpan::from((start, len))),
        }
    }
}
