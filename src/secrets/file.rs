//! A sops file: its encrypted documents and its metadata, and the operations on it —
//! encrypt, decrypt (MAC verified), re-encrypt after an edit, rekey, rotate.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::cipher::{Cipher, DataKey};
use super::error::{Result, SecretsError};
use super::metadata::{now_lastmodified, AgeKey, GoDecoder, KeyGroup, Metadata, SOPS_VERSION};
use super::shamir;
use super::store::{Format, StoresConfig};
use super::tree::Documents;
use super::walk::{self, CryptRule, Direction};
use crate::keys::{abbreviate, AgeRecipient, Identities};

/// Who a new file is encrypted to and how: the creation rule, resolved.
#[derive(Debug)]
pub struct EncryptionSpec {
    pub key_groups: Vec<Vec<AgeRecipient>>,
    /// 0 = not set (all groups needed when there are several).
    pub shamir_threshold: usize,
    pub rule: Option<CryptRule>,
    pub mac_only_encrypted: bool,
}

/// The plaintext of a file and the cipher that decrypted it (its data key and iv stash).
pub struct Decrypted {
    pub docs: Documents,
    cipher: Cipher,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decrypted(<redacted>)")
    }
}

impl Decrypted {
    pub fn data_key(&self) -> &DataKey {
        self.cipher.key()
    }
}

/// What a rekey changed in one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RekeyChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub threshold: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct SopsFile {
    /// The file's path, for messages.
    pub path: PathBuf,
    pub format: Format,
    /// The documents as stored (values encrypted), without the metadata.
    pub docs: Documents,
    pub metadata: Metadata,
}

impl SopsFile {
    pub fn read(path: &Path, format: Format) -> Result<Self> {
        let bytes = fs_err::read(path)?;
        Self::from_bytes(path, &bytes, format)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8], format: Format) -> Result<Self> {
        let (docs, meta) = format.load_encrypted(bytes).map_err(|reason| SecretsError::Parse {
            file: path.to_owned(),
            format: format.name(),
            reason,
        })?;
        let meta = meta.ok_or_else(|| SecretsError::MetadataNotFound { file: path.to_owned() })?;
        let decoder = match format {
            Format::Json | Format::Binary => Some(GoDecoder::Json),
            Format::Yaml => Some(GoDecoder::Yaml),
            Format::Dotenv | Format::Ini => None,
        };
        if let Some(decoder) = decoder {
            super::metadata::check_go_types(&meta, decoder)
                .map_err(|reason| SecretsError::Metadata { file: path.to_owned(), reason })?;
        }
        let metadata = Metadata::from_map(&meta)
            .map_err(|reason| SecretsError::Metadata { file: path.to_owned(), reason })?;
        Ok(Self { path: path.to_owned(), format, docs, metadata })
    }

    /// The file as sops would write it with these `stores` settings.
    pub fn to_bytes(&self, stores: &StoresConfig) -> Result<Vec<u8>> {
        self.format.emit_encrypted(&self.docs, &self.metadata, stores).map_err(|reason| {
            SecretsError::Unsupported {
                file: self.path.clone(),
                reason,
                help: "this tree cannot be written in this format".into(),
            }
        })
    }

    /// Encrypts a plaintext tree for a new file.
    pub fn encrypt(
        path: &Path,
        format: Format,
        plain: Documents,
        spec: &EncryptionSpec,
    ) -> Result<Self> {
        if plain.is_empty() {
            return Err(SecretsError::Empty { file: path.to_owned() });
        }
        if format.has_metadata(&plain) {
            return Err(SecretsError::AlreadyEncrypted { file: path.to_owned() });
        }
        let key = DataKey::generate();
        let key_groups = encrypt_data_key(path, &key, &spec.key_groups, spec.shamir_threshold)?;
        let shamir_threshold = if spec.key_groups.len() > 1 && spec.shamir_threshold == 0 {
            spec.key_groups.len()
        } else {
            spec.shamir_threshold
        };
        let metadata = Metadata {
            key_groups,
            shamir_threshold,
            lastmodified: String::new(),
            mac: String::new(),
            rule: if format == Format::Binary {
                None
            } else {
                spec.rule.clone().or_else(|| Some(CryptRule::default_rule()))
            },
            mac_only_encrypted: spec.mac_only_encrypted,
            version: SOPS_VERSION.to_owned(),
        };
        let mut file = Self { path: path.to_owned(), format, docs: Vec::new(), metadata };
        file.seal(plain, &mut Cipher::new(key))?;
        Ok(file)
    }

    /// Encrypts `plain` into this file with `cipher`, then sets lastmodified and the MAC.
    fn seal(&mut self, mut plain: Documents, cipher: &mut Cipher) -> Result<()> {
        let mac = walk::walk(
            &mut plain,
            cipher,
            self.metadata.rule.as_ref(),
            self.metadata.mac_only_encrypted,
            Direction::Encrypt,
        )
        .map_err(|e| SecretsError::Value {
            file: self.path.clone(),
            path: e.path,
            reason: e.error.to_string(),
        })?;
        self.metadata.lastmodified = now_lastmodified();
        let aad = self
            .metadata
            .mac_aad()
            .map_err(|reason| SecretsError::Metadata { file: self.path.clone(), reason })?;
        self.metadata.mac = cipher.encrypt_text(&mac, &aad);
        self.docs = plain;
        Ok(())
    }

    /// Recovers the data key with the identities (one key per group; Shamir when several).
    pub fn data_key(&self, identities: &Identities) -> Result<DataKey> {
        let groups = &self.metadata.key_groups;
        let mut shares: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let needed = if groups.len() > 1 {
            self.metadata.effective_threshold().min(groups.len())
        } else {
            1
        };
        for group in groups {
            if let Some(secret) = group.age.iter().find_map(|k| decrypt_stanza(&k.enc, identities))
            {
                shares.push(secret);
                if shares.len() >= needed {
                    break;
                }
            }
        }
        let bad = |reason: String| SecretsError::BadDataKey { file: self.path.clone(), reason };
        if groups.len() <= 1 {
            let Some(key) = shares.pop() else {
                return Err(self.no_identity(identities));
            };
            return DataKey::from_slice(&key)
                .ok_or_else(|| bad(format!("it has {} bytes, not 32", key.len())));
        }
        if shares.is_empty() {
            return Err(self.no_identity(identities));
        }
        if shares.len() < needed.max(2) {
            return Err(SecretsError::NotEnoughShares {
                file: self.path.clone(),
                got: shares.len(),
                needed,
                tried: identities.describe_sources(),
            });
        }
        let refs: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        let key = shamir::combine(&refs).map_err(|e| bad(e.to_string()))?;
        DataKey::from_slice(&key).ok_or_else(|| bad(format!("it has {} bytes, not 32", key.len())))
    }

    fn no_identity(&self, identities: &Identities) -> SecretsError {
        let recipients: Vec<String> = self.metadata.recipients().map(abbreviate).collect();
        SecretsError::NoIdentity {
            file: self.path.clone(),
            tried: identities.describe_sources(),
            recipients: if recipients.is_empty() {
                "no age recipient".into()
            } else {
                recipients.join(", ")
            },
        }
    }

    /// Decrypts every value and verifies the MAC (unless `ignore_mac`).
    pub fn decrypt(&self, identities: &Identities, ignore_mac: bool) -> Result<Decrypted> {
        let key = self.data_key(identities)?;
        self.decrypt_with_key(key, ignore_mac)
    }

    pub fn decrypt_with_key(&self, key: DataKey, ignore_mac: bool) -> Result<Decrypted> {
        let mut cipher = Cipher::new(key);
        let mut docs = self.docs.clone();
        let computed = walk::walk(
            &mut docs,
            &mut cipher,
            self.metadata.rule.as_ref(),
            self.metadata.mac_only_encrypted,
            Direction::Decrypt,
        )
        .map_err(|e| SecretsError::Value {
            file: self.path.clone(),
            path: e.path,
            reason: e.error.to_string(),
        })?;
        if !ignore_mac {
            if self.metadata.mac.is_empty() {
                return Err(SecretsError::NoMac { file: self.path.clone() });
            }
            let aad = self
                .metadata
                .mac_aad()
                .map_err(|reason| SecretsError::Metadata { file: self.path.clone(), reason })?;
            let stored = cipher
                .decrypt_text(&self.metadata.mac, &aad)
                .map_err(|_| SecretsError::MacUndecryptable { file: self.path.clone() })?;
            if *stored != computed {
                return Err(SecretsError::MacMismatch {
                    file: self.path.clone(),
                    stored: stored.to_string(),
                    computed,
                });
            }
        }
        Ok(Decrypted { docs, cipher })
    }

    /// After an edit: the same data key and master keys, unchanged values keep their
    /// ciphertext (iv stash), new lastmodified and MAC.
    pub fn reencrypt(&self, decrypted: Decrypted, new_plain: Documents) -> Result<Self> {
        let mut cipher = decrypted.cipher;
        let mut file = self.clone();
        if version_older(&file.metadata.version, SOPS_VERSION) {
            file.metadata.version = SOPS_VERSION.to_owned();
        }
        file.seal(new_plain, &mut cipher)?;
        Ok(file)
    }

    /// Rotates the data key: every value re-encrypted under a new key, for `key_groups`
    /// (or the file's own recipients when `None`).
    pub fn rotate(
        &self,
        identities: &Identities,
        key_groups: Option<&[Vec<AgeRecipient>]>,
    ) -> Result<Self> {
        let decrypted = self.decrypt(identities, false)?;
        let key = DataKey::generate();
        let mut file = self.clone();
        let owned;
        let groups = match key_groups {
            Some(g) => g,
            None => {
                owned = self.current_recipients()?;
                &owned
            }
        };
        let threshold = capped_threshold(self.metadata.shamir_threshold, groups.len());
        file.metadata.key_groups = encrypt_data_key(&self.path, &key, groups, threshold)?;
        file.metadata.shamir_threshold = threshold_to_store(threshold, groups.len());
        if version_older(&file.metadata.version, SOPS_VERSION) {
            file.metadata.version = SOPS_VERSION.to_owned();
        }
        file.seal(decrypted.docs.clone(), &mut Cipher::new(key))?;
        Ok(file)
    }

    fn current_recipients(&self) -> Result<Vec<Vec<AgeRecipient>>> {
        self.metadata
            .key_groups
            .iter()
            .map(|g| {
                g.age
                    .iter()
                    .map(|k| {
                        AgeRecipient::parse(&k.recipient).map_err(|e| SecretsError::Recipient {
                            file: self.path.clone(),
                            recipient: k.recipient.clone(),
                            reason: e.to_string(),
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// What [`rekey`](Self::rekey) would change; `None` when the file is up to date.
    pub fn rekey_change(&self, key_groups: &[Vec<AgeRecipient>]) -> Option<RekeyChange> {
        let old: Vec<Vec<&str>> = self
            .metadata
            .key_groups
            .iter()
            .map(|g| g.age.iter().map(|k| k.recipient.as_str()).collect())
            .collect();
        let new: Vec<Vec<&str>> =
            key_groups.iter().map(|g| g.iter().map(|r| r.as_str()).collect()).collect();
        let threshold = capped_threshold(self.metadata.shamir_threshold, key_groups.len());
        let stored = threshold_to_store(threshold, key_groups.len());
        let other_keys = self.metadata.key_groups.iter().any(|g| !g.other.is_empty());
        if old == new && stored == self.metadata.shamir_threshold && !other_keys {
            return None;
        }
        let old_all: Vec<&str> = old.iter().flatten().copied().collect();
        let new_all: Vec<&str> = new.iter().flatten().copied().collect();
        Some(RekeyChange {
            added: new_all.iter().filter(|r| !old_all.contains(r)).map(|r| r.to_string()).collect(),
            removed: old_all
                .iter()
                .filter(|r| !new_all.contains(r))
                .map(|r| r.to_string())
                .collect(),
            threshold: (stored != self.metadata.shamir_threshold)
                .then_some((self.metadata.shamir_threshold, stored)),
        })
    }

    /// `sops updatekeys`: the same data key re-encrypted for new key groups; values, MAC and
    /// lastmodified untouched. `None` when already up to date.
    pub fn rekey(
        &self,
        identities: &Identities,
        key_groups: &[Vec<AgeRecipient>],
    ) -> Result<Option<(Self, RekeyChange)>> {
        let Some(change) = self.rekey_change(key_groups) else { return Ok(None) };
        let key = self.data_key(identities)?;
        let threshold = capped_threshold(self.metadata.shamir_threshold, key_groups.len());
        let mut file = self.clone();
        file.metadata.key_groups = encrypt_data_key(&self.path, &key, key_groups, threshold)?;
        file.metadata.shamir_threshold = threshold_to_store(threshold, key_groups.len());
        Ok(Some((file, change)))
    }
}

/// The file's threshold capped at the number of groups (the rule's threshold is ignored,
/// as `sops updatekeys` does).
fn capped_threshold(file_threshold: usize, groups: usize) -> usize {
    if file_threshold == 0 {
        0
    } else {
        file_threshold.min(groups)
    }
}

/// Several groups always store their threshold; one group only when it was set.
fn threshold_to_store(threshold: usize, groups: usize) -> usize {
    if groups > 1 && threshold == 0 {
        groups
    } else {
        threshold
    }
}

fn version_older(v: &str, than: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parse(v) < parse(than)
}

/// Encrypts the data key (or, with several groups, one Shamir share per group) to every
/// recipient, each into its own armored age file.
fn encrypt_data_key(
    path: &Path,
    key: &DataKey,
    groups: &[Vec<AgeRecipient>],
    threshold: usize,
) -> Result<Vec<KeyGroup>> {
    if groups.is_empty() || groups.iter().all(|g| g.is_empty()) {
        return Err(SecretsError::NoRecipients { file: path.to_owned() });
    }
    let secrets: Vec<Zeroizing<Vec<u8>>> = if groups.len() == 1 {
        vec![Zeroizing::new(key.as_bytes().to_vec())]
    } else {
        let t = if threshold == 0 { groups.len() } else { threshold };
        shamir::split(key.as_bytes(), groups.len(), t).map_err(|e| SecretsError::Unsupported {
            file: path.to_owned(),
            reason: format!(
                "cannot split the data key into {} shares with threshold {t}: {e}",
                groups.len()
            ),
            help: "shamir_threshold must be at least 2 and at most the number of key groups".into(),
        })?
    };
    groups
        .iter()
        .zip(secrets.iter())
        .map(|(group, secret)| {
            let age = group
                .iter()
                .map(|r| {
                    let enc =
                        encrypt_stanza(r, secret).map_err(|reason| SecretsError::Recipient {
                            file: path.to_owned(),
                            recipient: r.as_str().to_owned(),
                            reason,
                        })?;
                    Ok(AgeKey { recipient: r.as_str().to_owned(), enc })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(KeyGroup { age, other: Vec::new() })
        })
        .collect()
}

fn encrypt_stanza(r: &AgeRecipient, secret: &[u8]) -> std::result::Result<String, String> {
    let boxed = r.to_age();
    let recipient: &dyn age::Recipient = boxed.as_ref();
    let enc =
        age::Encryptor::with_recipients(std::iter::once(recipient)).map_err(|e| e.to_string())?;
    let armor = age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor)
        .map_err(|e| e.to_string())?;
    let mut w = enc.wrap_output(armor).map_err(|e| e.to_string())?;
    w.write_all(secret).map_err(|e| e.to_string())?;
    let armor = w.finish().map_err(|e| e.to_string())?;
    let bytes = armor.finish().map_err(|e| e.to_string())?;
    let mut s = String::from_utf8(bytes).map_err(|e| e.to_string())?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

fn decrypt_stanza(enc: &str, identities: &Identities) -> Option<Zeroizing<Vec<u8>>> {
    let reader = age::armor::ArmoredReader::new(enc.as_bytes());
    let decryptor = match age::Decryptor::new(reader) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!("unreadable age stanza: {e}");
            return None;
        }
    };
    let mut r = match decryptor.decrypt(identities.iter()) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("age stanza not decrypted: {e}");
            return None;
        }
    };
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out).ok()?;
    Some(out)
}
