//! Where a host's keys live in the repository:
//!
//! ```text
//! secrets/hosts/<name>/ssh_host_ed25519_key      private, encrypted to the admins
//! secrets/hosts/<name>/ssh_host_ed25519_key.pub  public, plain
//! secrets/hosts/<name>/age.key                   private (only with a separate age key)
//! ```
//!
//! The private files are sealed by a [`KeyCodec`]: in cairn that is the sops binary format
//! (`secrets::SopsBinaryCodec`), so `sops decrypt` opens them and `cairn secrets rekey`
//! covers them like any secret.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::generate::HostKeys;
use super::identity::{encrypt_armored, AgeIdentity, Identities};
use super::recipient::AgeRecipient;
use super::KeysError;

pub const SSH_HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
pub const SSH_HOST_PUBLIC_KEY_FILE: &str = "ssh_host_ed25519_key.pub";
pub const AGE_KEY_FILE: &str = "age.key";

/// Seals and opens private key files at rest.
pub trait KeyCodec {
    /// What sealing and opening fail with; the store's own problems convert into it.
    type Error: From<KeysError>;
    /// Encrypts `plaintext` (to be stored at `path`) so that each of `recipients` can read it.
    fn seal(
        &self,
        path: &Path,
        plaintext: &[u8],
        recipients: &[AgeRecipient],
    ) -> Result<Vec<u8>, Self::Error>;
    /// Decrypts what [`KeyCodec::seal`] wrote.
    fn open(&self, path: &Path, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Self::Error>;
}

/// Plain age files (armored): what `age -e -a -r ...` writes and `age -d` reads.
pub struct AgeFileCodec<'a> {
    pub identities: &'a Identities,
}

impl KeyCodec for AgeFileCodec<'_> {
    type Error = KeysError;
    fn seal(
        &self,
        _path: &Path,
        plaintext: &[u8],
        recipients: &[AgeRecipient],
    ) -> Result<Vec<u8>, KeysError> {
        Ok(encrypt_armored(recipients, plaintext)?.into_bytes())
    }
    fn open(&self, _path: &Path, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeysError> {
        self.identities.decrypt(sealed)
    }
}

/// The host key directory of a repository (`<root>/secrets/hosts`).
#[derive(Debug, Clone)]
pub struct HostKeyStore {
    dir: PathBuf,
}

impl HostKeyStore {
    /// The store of the repository rooted at `repo_root` (the inventory's directory).
    pub fn new(repo_root: &Path) -> Self {
        Self { dir: repo_root.join("secrets").join("hosts") }
    }

    /// `secrets/hosts`, relative to the repository root: creation rules for it name admins only.
    pub fn relative_dir() -> &'static str {
        "secrets/hosts"
    }

    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join(host)
    }

    pub fn private_key_path(&self, host: &str) -> PathBuf {
        self.host_dir(host).join(SSH_HOST_KEY_FILE)
    }

    pub fn public_key_path(&self, host: &str) -> PathBuf {
        self.host_dir(host).join(SSH_HOST_PUBLIC_KEY_FILE)
    }

    pub fn age_key_path(&self, host: &str) -> PathBuf {
        self.host_dir(host).join(AGE_KEY_FILE)
    }

    /// Whether the host's private SSH key is stored.
    pub fn exists(&self, host: &str) -> bool {
        self.private_key_path(host).exists()
    }

    /// Stores `keys`: private halves sealed for `admins`, the public key in clear. Replaces
    /// what was there (each file atomically); callers decide whether replacing is wanted.
    pub fn save<C: KeyCodec>(
        &self,
        keys: &HostKeys,
        admins: &[AgeRecipient],
        codec: &C,
    ) -> Result<(), C::Error> {
        let host = keys.host();
        if admins.is_empty() {
            return Err(KeysError::Store {
                host: host.to_owned(),
                reason: "no admin recipients to encrypt its private keys to".into(),
                help: "declare at least one `admin` block with an `age` key in cairn.hcl".into(),
            }
            .into());
        }
        let dir = self.host_dir(host);
        fs_err::create_dir_all(&dir).map_err(KeysError::from)?;

        // The SSH private key is written last: its presence is what `exists` means. A run
        // killed before it leaves nothing a later run would load half of (an SSH key
        // without the host's separate age key, say), so that run generates them again.
        let age_path = self.age_key_path(host);
        if let Some(id) = keys.age_identity() {
            let text = Zeroizing::new(format!("{}\n", id.expose_secret()));
            let sealed = codec.seal(&age_path, text.as_bytes(), admins)?;
            crate::util::atomic::write(&age_path, &sealed, 0o600).map_err(KeysError::from)?;
        } else if age_path.exists() {
            fs_err::remove_file(&age_path).map_err(KeysError::from)?;
        }

        let public = format!("{}\n", keys.ssh_public_line());
        crate::util::atomic::write(&self.public_key_path(host), public.as_bytes(), 0o644)
            .map_err(KeysError::from)?;

        let path = self.private_key_path(host);
        let sealed = codec.seal(&path, keys.ssh_private_openssh().as_bytes(), admins)?;
        crate::util::atomic::write(&path, &sealed, 0o600).map_err(KeysError::from)?;
        tracing::debug!(host, path = %dir.display(), "stored host keys");
        Ok(())
    }

    /// Loads and decrypts a host's keys.
    pub fn load<C: KeyCodec>(&self, host: &str, codec: &C) -> Result<HostKeys, C::Error> {
        let path = self.private_key_path(host);
        if !path.exists() {
            return Err(KeysError::Store {
                host: host.to_owned(),
                reason: format!("{} does not exist", path.display()),
                help: format!("cairn generates host keys during `cairn bootstrap host {host}`"),
            }
            .into());
        }
        let plain = codec.open(&path, &fs_err::read(&path).map_err(KeysError::from)?)?;
        let text =
            Zeroizing::new(String::from_utf8(plain.to_vec()).map_err(|_| KeysError::SshKey {
                what: "host private key".into(),
                reason: format!("{} does not hold a text key", path.display()),
            })?);
        let age_path = self.age_key_path(host);
        let age = if age_path.exists() {
            let plain =
                codec.open(&age_path, &fs_err::read(&age_path).map_err(KeysError::from)?)?;
            let text = std::str::from_utf8(&plain).map_err(|_| KeysError::InvalidIdentity {
                reason: format!("{} is not text", age_path.display()),
            })?;
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .unwrap_or_default();
            Some(AgeIdentity::parse(line)?)
        } else {
            None
        };
        Ok(HostKeys::from_private(host, text, age)?)
    }

    /// The stored public key line, if any (no decryption needed).
    pub fn load_public(&self, host: &str) -> Result<Option<String>, KeysError> {
        match fs_err::read_to_string(self.public_key_path(host)) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A save cut off before its last file (a killed run) leaves keys `exists` does not
    /// see: the next run generates them again instead of loading the SSH key without the
    /// host's separate age key (whose secrets it would then re-key to the wrong recipient).
    #[test]
    fn a_save_cut_off_before_the_ssh_key_leaves_no_keys_to_load() {
        struct CutOff<'a>(AgeFileCodec<'a>, &'static str);
        impl KeyCodec for CutOff<'_> {
            type Error = KeysError;
            fn seal(
                &self,
                path: &Path,
                plain: &[u8],
                to: &[AgeRecipient],
            ) -> Result<Vec<u8>, KeysError> {
                if path.ends_with(self.1) {
                    return Err(KeysError::InvalidIdentity { reason: "killed".into() });
                }
                self.0.seal(path, plain, to)
            }
            fn open(&self, path: &Path, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeysError> {
                self.0.open(path, sealed)
            }
        }
        let admin = AgeIdentity::generate();
        let mut ids = Identities::empty();
        ids.push(admin.to_age());
        let keys = HostKeys::generate("web1", true);
        for cut_at in [AGE_KEY_FILE, SSH_HOST_KEY_FILE] {
            let dir = tempfile::tempdir().unwrap();
            let store = HostKeyStore::new(dir.path());
            let cut = CutOff(AgeFileCodec { identities: &ids }, cut_at);
            assert!(store.save(&keys, &[admin.to_public()], &cut).is_err());
            assert!(!store.exists("web1"), "cut at {cut_at}: half-saved keys count as stored");
        }
    }

    #[test]
    fn save_then_load_gives_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = HostKeyStore::new(dir.path());
        let admin = AgeIdentity::generate();
        let mut ids = Identities::empty();
        ids.push(admin.to_age());
        let codec = AgeFileCodec { identities: &ids };

        let keys = HostKeys::generate("web1", true);
        assert!(!store.exists("web1"));
        store.save(&keys, &[admin.to_public()], &codec).unwrap();
        assert!(store.exists("web1"));

        let sealed = fs_err::read_to_string(store.private_key_path("web1")).unwrap();
        assert!(!sealed.contains("OPENSSH PRIVATE KEY"), "stored encrypted");
        let loaded = store.load("web1", &codec).unwrap();
        assert_eq!(loaded.ssh_private_openssh(), keys.ssh_private_openssh());
        assert_eq!(loaded.age_recipient(), keys.age_recipient());
        assert_eq!(store.load_public("web1").unwrap().as_deref(), Some(keys.ssh_public_line()));
    }

    #[test]
    fn refuses_to_store_without_admins() {
        let dir = tempfile::tempdir().unwrap();
        let ids = Identities::empty();
        let err = HostKeyStore::new(dir.path())
            .save(&HostKeys::generate("web1", false), &[], &AgeFileCodec { identities: &ids })
            .unwrap_err();
        assert!(err.to_string().contains("no admin recipients"), "{err}");
    }
}
