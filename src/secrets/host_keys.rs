//! The host key store's codec: a host's private keys as sops binary files, so `sops decrypt`
//! opens them and `cairn secrets rekey` covers them like any other secret.

use std::path::Path;

use zeroize::Zeroizing;

use super::{EncryptionSpec, Format, SecretsError, SopsFile, StoresConfig};
use crate::keys::{AgeRecipient, Identities, KeyCodec, KeysError};

/// sops binary files (`{"data": "ENC[...]", "sops": {...}}`): what `sops encrypt` writes for
/// a file without a known extension, opened by `sops decrypt` and covered by rekey.
pub struct SopsBinaryCodec<'a> {
    pub keyring: &'a Identities,
}

impl KeyCodec for SopsBinaryCodec<'_> {
    type Error = SecretsError;

    fn seal(
        &self,
        path: &Path,
        plaintext: &[u8],
        recipients: &[AgeRecipient],
    ) -> Result<Vec<u8>, SecretsError> {
        let plain = Format::Binary.load_plain(plaintext).map_err(|reason| KeysError::Store {
            host: host_of(path),
            reason,
            help: String::new(),
        })?;
        let spec = EncryptionSpec {
            key_groups: vec![recipients.to_vec()],
            shamir_threshold: 0,
            rule: None,
            mac_only_encrypted: false,
        };
        SopsFile::encrypt(path, Format::Binary, plain, &spec)?.to_bytes(&StoresConfig::default())
    }

    fn open(&self, path: &Path, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let file = SopsFile::from_bytes(path, sealed, Format::Binary)?;
        let decrypted = file.decrypt(self.keyring, false)?;
        let bytes = Format::Binary.emit_plain(&decrypted.docs, &StoresConfig::default()).map_err(
            |reason| KeysError::Store {
                host: host_of(path),
                reason,
                help: "restore the file from git".into(),
            },
        )?;
        Ok(Zeroizing::new(bytes))
    }
}

/// The host a key file belongs to: its directory's name (`secrets/hosts/<host>/...`).
fn host_of(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AgeIdentity, HostKeyStore, HostKeys};

    #[test]
    fn sops_binary_codec_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = HostKeyStore::new(dir.path());
        let admin = AgeIdentity::generate();
        let mut ids = Identities::empty();
        ids.push(admin.to_age());
        let codec = SopsBinaryCodec { keyring: &ids };
        let keys = HostKeys::generate("db1", false);
        store.save(&keys, &[admin.to_public()], &codec).unwrap();
        let sealed = fs_err::read_to_string(store.private_key_path("db1")).unwrap();
        assert!(sealed.starts_with("{\n\t\"data\": \"ENC[AES256_GCM,"), "{sealed}");
        assert!(!store.age_key_path("db1").exists());
        let loaded = store.load("db1", &codec).unwrap();
        assert_eq!(loaded.ssh_private_openssh(), keys.ssh_private_openssh());
    }

    #[test]
    fn host_keys_seal_to_mixed_post_quantum_and_classic_admins() {
        let dir = tempfile::tempdir().unwrap();
        let store = HostKeyStore::new(dir.path());
        let (pq, classic) = (AgeIdentity::generate_post_quantum(), AgeIdentity::generate());
        let keys = HostKeys::generate("db1", true);
        let mut all = Identities::empty();
        all.push(pq.to_age());
        store
            .save(&keys, &[classic.to_public(), pq.to_public()], &SopsBinaryCodec { keyring: &all })
            .unwrap();
        for admin in [&pq, &classic] {
            let mut ids = Identities::empty();
            ids.push(admin.to_age());
            let loaded = store.load("db1", &SopsBinaryCodec { keyring: &ids }).unwrap();
            assert_eq!(loaded.ssh_private_openssh(), keys.ssh_private_openssh());
        }
    }
}
