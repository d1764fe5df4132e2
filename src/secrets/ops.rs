//! The logic behind the `cairn secrets` commands, apart from the clap wiring: resolving
//! formats and recipients, decrypt/encrypt to bytes, and rendering the rekey summary.

use std::path::{Path, PathBuf};

use super::edit::{extract, parse_extract, Extracted};
use super::error::{Result, SecretsError};
use super::file::{abbreviate, EncryptionSpec, SopsFile};
use super::rekey::{RekeyReport, RekeyStatus};
use super::store::Format;
use super::tree::{ListItem, MapItem, Value};
use super::walk::CryptRule;
use crate::keys::{AgeKeyFile, AgeRecipient, Identities, IdentityEnv};

/// `--input-type`/`--output-type`, else the extension.
pub fn format_for(path: &Path, name: Option<&str>) -> Format {
    name.and_then(Format::from_name).unwrap_or_else(|| Format::from_path(path))
}

/// Decrypts `path` and renders the plaintext (or the `--extract`ed part) in `output`.
pub fn decrypt_to_bytes(
    path: &Path,
    input: Format,
    output: Format,
    extract_path: Option<&str>,
    ignore_mac: bool,
    identities: &Identities,
) -> Result<Vec<u8>> {
    let file = SopsFile::read(path, input)?;
    let plain = file.decrypt(identities, ignore_mac)?;
    let emit_err = |reason: String| SecretsError::Unsupported {
        file: path.to_owned(),
        reason,
        help: "choose another --output-type".into(),
    };
    let Some(expr) = extract_path else {
        return output.emit_plain(&plain.docs).map_err(emit_err);
    };
    let ext_err = |reason: String| SecretsError::Extract {
        file: path.to_owned(),
        extract: expr.to_owned(),
        reason,
    };
    let steps = parse_extract(expr).map_err(ext_err)?;
    let first = plain.docs.first().cloned().unwrap_or_default();
    match extract(&first, &steps).map_err(ext_err)? {
        Extracted::Raw(bytes) => Ok(bytes),
        Extracted::Tree(map) => output.emit_plain(&vec![map]).map_err(emit_err),
        Extracted::List(list) => {
            // A list is printed as the value of a one-key document, as close as the
            // formats allow.
            let map = vec![MapItem::Entry { key: "value".into(), value: Value::List(list) }];
            output.emit_plain(&vec![map]).map_err(emit_err)
        }
    }
}

/// Encrypts the plaintext file `path` (read as `input`) into `output` bytes.
pub fn encrypt_to_bytes(
    path: &Path,
    input: Format,
    output: Format,
    spec: &EncryptionSpec,
) -> Result<Vec<u8>> {
    let bytes = fs_err::read(path)?;
    let docs = input.load_plain(&bytes).map_err(|reason| SecretsError::Parse {
        file: path.to_owned(),
        format: input.name(),
        reason,
    })?;
    let file = SopsFile::encrypt(path, output, docs, spec)?;
    file.to_bytes()
}

/// The spec for `--age R1,R2`: one key group, the default crypt rule.
pub fn spec_from_age_list(list: &str) -> Result<EncryptionSpec> {
    let recipients = AgeRecipient::parse_list(list)?;
    Ok(EncryptionSpec {
        key_groups: vec![recipients],
        shamir_threshold: 0,
        rule: None,
        mac_only_encrypted: false,
    })
}

/// The spec from a resolved creation rule's parts.
pub fn spec_from_rule_parts(
    key_groups: Vec<Vec<AgeRecipient>>,
    shamir_threshold: usize,
    crypt_field: Option<(&str, &str)>,
    mac_only_encrypted: bool,
) -> Result<EncryptionSpec, String> {
    let rule = match crypt_field {
        Some((f, v)) => CryptRule::from_field(f, v)?,
        None => None,
    };
    Ok(EncryptionSpec { key_groups, shamir_threshold, rule, mac_only_encrypted })
}

/// Where `keygen` writes by default: `$SOPS_AGE_KEY_FILE`, else `keys.txt` in the user
/// config dir (where sops and cairn look for identities).
pub fn default_key_file(env: &IdentityEnv) -> Option<PathBuf> {
    env.get("SOPS_AGE_KEY_FILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.default_keys_txt())
}

/// Writes a new admin key to `path` (0600, parent created 0700); refuses to overwrite.
pub fn keygen(path: &Path, key: &AgeKeyFile) -> Result<()> {
    if path.exists() {
        return Err(SecretsError::KeyExists { file: path.to_owned() });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
    }
    let text = key.to_text();
    crate::util::atomic::write(path, text.as_bytes(), 0o600)?;
    Ok(())
}

/// The per-file rekey summary, one line per file, then totals.
pub fn render_rekey(reports: &[RekeyReport], root: &Path, dry_run: bool) -> String {
    let mut out = String::new();
    let (mut changed, mut same, mut failed) = (0, 0, 0);
    for r in reports {
        let name = r.path.strip_prefix(root).unwrap_or(&r.path).display().to_string();
        let line = match &r.status {
            RekeyStatus::UpToDate => {
                same += 1;
                "up to date".to_owned()
            }
            RekeyStatus::Changed(c) | RekeyStatus::Rotated(c) => {
                changed += 1;
                let verb = match (&r.status, dry_run) {
                    (RekeyStatus::Rotated(_), true) => "would rotate",
                    (RekeyStatus::Rotated(_), false) => "rotated",
                    (_, true) => "would rekey",
                    (_, false) => "rekeyed",
                };
                let mut parts: Vec<String> = Vec::new();
                parts.extend(c.added.iter().map(|a| format!("+{}", abbreviate(a))));
                parts.extend(c.removed.iter().map(|a| format!("-{}", abbreviate(a))));
                if let Some((from, to)) = c.threshold {
                    parts.push(format!("shamir_threshold {from} -> {to}"));
                }
                if parts.is_empty() {
                    verb.to_owned()
                } else {
                    format!("{verb}: {}", parts.join(", "))
                }
            }
            RekeyStatus::Failed(e) => {
                failed += 1;
                format!("FAILED: {e}")
            }
        };
        out.push_str(&format!("{name}: {line}\n"));
    }
    out.push_str(&format!(
        "{} {changed}, up to date {same}, failed {failed}\n",
        if dry_run { "would change" } else { "changed" }
    ));
    out
}

/// Whether any report removed a recipient (without rotating the data key).
pub fn removed_without_rotation(reports: &[RekeyReport]) -> Vec<String> {
    let mut removed: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.status {
            RekeyStatus::Changed(c) => Some(c.removed.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    removed.sort();
    removed.dedup();
    removed
}

/// List items without comments (for callers that count elements).
pub fn values(list: &[ListItem]) -> impl Iterator<Item = &Value> {
    list.iter().filter_map(|i| match i {
        ListItem::Value(v) => Some(v),
        ListItem::Comment(_) => None,
    })
}
