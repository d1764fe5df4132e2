//! The logic behind the `cairn secrets` commands, apart from the clap wiring: resolving
//! formats and recipients, decrypt/encrypt to bytes, and rendering the rekey summary.

use std::path::{Path, PathBuf};

use super::edit::{extract, parse_extract, Extracted};
use super::error::{Result, SecretsError};
use super::file::{EncryptionSpec, SopsFile};
use super::rekey::{RekeyReport, RekeyStatus, SopsYamlUpdate};
use super::store::{Format, StoresConfig};
use super::tree::{ListItem, MapItem, Value};
use super::walk::CryptRule;
use crate::keys::abbreviate;
use crate::keys::{AgeKeyFile, AgeRecipient, Identities, IdentityEnv};

/// `--input-type`/`--output-type`, else the extension.
pub fn format_for(path: &Path, given: Option<Format>) -> Format {
    given.unwrap_or_else(|| Format::from_path(path))
}

/// Decrypts `path` and renders the plaintext (or the `--extract`ed part) in `output`.
pub fn decrypt_to_bytes(
    path: &Path,
    input: Format,
    output: Format,
    extract_path: Option<&str>,
    ignore_mac: bool,
    identities: &Identities,
    stores: &StoresConfig,
) -> Result<Vec<u8>> {
    let file = SopsFile::read(path, input)?;
    let plain = file.decrypt(identities, ignore_mac)?;
    let emit_err = |reason: String| SecretsError::Unsupported {
        file: path.to_owned(),
        reason,
        help: "choose another --output-type".into(),
    };
    let Some(expr) = extract_path else {
        return output.emit_plain(&plain.docs, stores).map_err(emit_err);
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
        Extracted::Tree(map) => output.emit_plain(&vec![map], stores).map_err(emit_err),
        Extracted::List(list) => {
            // A list is printed as the value of a one-key document, as close as the
            // formats allow.
            let map = vec![MapItem::Entry { key: "value".into(), value: Value::List(list) }];
            output.emit_plain(&vec![map], stores).map_err(emit_err)
        }
    }
}

/// Encrypts the plaintext file `path` (read as `input`) into `output` bytes.
pub fn encrypt_to_bytes(
    path: &Path,
    input: Format,
    output: Format,
    spec: &EncryptionSpec,
    stores: &StoresConfig,
) -> Result<Vec<u8>> {
    let bytes = fs_err::read(path)?;
    let docs = input.load_plain(&bytes).map_err(|reason| SecretsError::Parse {
        file: path.to_owned(),
        format: input.name(),
        reason,
    })?;
    let file = SopsFile::encrypt(path, output, docs, spec)?;
    file.to_bytes(stores)
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

/// What regenerating `.sops.yaml` from the inventory did (or, with `dry_run`, would do): a
/// line, and the changed lines as `-`/`+`.
pub fn render_sops_yaml_update(update: &SopsYamlUpdate, root: &Path, dry_run: bool) -> String {
    let name = update.path.strip_prefix(root).unwrap_or(&update.path).display().to_string();
    if !update.changed() {
        return format!("{name}: up to date with the inventory\n");
    }
    let verb = match (&update.old, dry_run) {
        (None, true) => "would be created",
        (None, false) => "created",
        (Some(_), true) => "would be rewritten",
        (Some(_), false) => "rewritten",
    };
    let mut out = format!("{name}: {verb} from the inventory\n");
    let old: Vec<&str> = update.old.as_deref().unwrap_or("").lines().collect();
    let new: Vec<&str> = update.new.lines().collect();
    // Each change under the comment naming its rule (`# secrets/web/*: admins and web1`).
    let mut rule: Option<&str> = None;
    let mut shown: Option<&str> = None;
    for (sign, line) in line_diff(&old, &new) {
        if line.trim_start().starts_with("# ") && line.starts_with("  #") && sign != '-' {
            rule = Some(line);
        }
        if sign == ' ' {
            continue;
        }
        if let Some(r) = rule.filter(|r| shown != Some(*r) && *r != line) {
            out.push_str(&format!("    {r}\n"));
            shown = Some(r);
        }
        out.push_str(&format!("  {sign} {line}\n"));
    }
    out
}

/// Every line of `old` and `new` in file order: `-` only in `old`, `+` only in `new`, ` `
/// in both (a longest common subsequence; `.sops.yaml` is small).
fn line_diff<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<(char, &'a str)> {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out.push((' ', new[j]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(('+', new[j]));
            j += 1;
        } else {
            out.push(('-', old[i]));
            i += 1;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_shows_removed_and_added_lines_in_order() {
        let old = ["a", "b", "c", "d"];
        let new = ["a", "c", "x", "d", "e"];
        let changes = |d: Vec<(char, &'static str)>| {
            d.into_iter().filter(|(sign, _)| *sign != ' ').collect::<Vec<_>>()
        };
        assert_eq!(changes(line_diff(&old, &new)), vec![('-', "b"), ('+', "x"), ('+', "e")]);
        assert_eq!(line_diff(&[], &["a"]), vec![('+', "a")]);
        assert!(changes(line_diff(&old, &old)).is_empty());
    }
}
