//! age's hybrid post-quantum keys, as age 1.3 and sops 3.11 write them: recipients
//! `age1pq1...` and identities `AGE-SECRET-KEY-PQ-1...`, whose stanza is
//! `-> mlkem768x25519 <enc>` with the file key sealed by HPKE over MLKEM768-X25519.
//!
//! Built here on RustCrypto's `ml-kem` (the version russh already pulls) because the `age`
//! crate release that has them cannot build beside russh 0.65; [`HybridRecipient`] and
//! [`HybridIdentity`] plug into the `age` crate 0.11 through its `Recipient` and `Identity`
//! traits, so they mix with X25519 and SSH keys like any other.

mod bech32;
mod kem;
#[cfg(test)]
mod vectors;

use std::collections::HashSet;
use std::fmt;

use age::secrecy::ExposeSecret as _;
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use base64::Engine as _;
use zeroize::Zeroizing;

pub(crate) const RECIPIENT_PREFIX: &str = "age1pq1";
pub(crate) const IDENTITY_PREFIX: &str = "AGE-SECRET-KEY-PQ-1";
const RECIPIENT_HRP: &str = "age1pq";
const IDENTITY_HRP: &str = "AGE-SECRET-KEY-PQ-";
const STANZA_TAG: &str = "mlkem768x25519";
/// HPKE's `info`: the stanza's domain separation.
const HPKE_INFO: &[u8] = b"age-encryption.org/mlkem768x25519";
/// The label age gives these stanzas: an age file that holds one may only hold stanzas of
/// other post-quantum recipients (a classic one would defeat the point).
pub const POSTQUANTUM_LABEL: &str = "postquantum";

/// A post-quantum age recipient (`age1pq1...`).
#[derive(Clone)]
pub struct HybridRecipient {
    key: kem::PublicKey,
}

impl HybridRecipient {
    /// Parses `age1pq1...` (lowercase, as age writes it). The error is a short reason that
    /// never quotes the text.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (hrp, data) = bech32::decode(s).map_err(|why| format!("not valid Bech32: {why}"))?;
        if hrp != RECIPIENT_HRP {
            return Err(format!("its prefix is `{hrp}1`, not `{RECIPIENT_PREFIX}`"));
        }
        let key = kem::PublicKey::from_bytes(&data).map_err(|e| match e {
            kem::KemError::LowOrderPoint => {
                "its X25519 part is a low-order point, which no key can decrypt for".to_owned()
            }
            _ if data.len() != kem::PUBLIC_KEY_LEN => format!(
                "it holds {} bytes, not the {} of an MLKEM768-X25519 public key (truncated?)",
                data.len(),
                kem::PUBLIC_KEY_LEN
            ),
            _ => "its ML-KEM-768 part is not a valid encapsulation key".to_owned(),
        })?;
        Ok(Self { key })
    }
}

impl fmt::Debug for HybridRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HybridRecipient").field(&self.to_string()).finish()
    }
}

impl fmt::Display for HybridRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bech32::encode(RECIPIENT_HRP, &self.key.to_bytes()))
    }
}

impl age::Recipient for HybridRecipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let (enc, body) = kem::seal(&self.key, HPKE_INFO, file_key.expose_secret())
            .map_err(|e| age::EncryptError::Io(std::io::Error::other(format!("{e:?}"))))?;
        let stanza = Stanza {
            tag: STANZA_TAG.to_owned(),
            args: vec![base64::engine::general_purpose::STANDARD_NO_PAD.encode(enc)],
            body,
        };
        Ok((vec![stanza], HashSet::from([POSTQUANTUM_LABEL.to_owned()])))
    }
}

/// A post-quantum age identity (`AGE-SECRET-KEY-PQ-1...`). Never shown by `Debug`.
pub struct HybridIdentity {
    key: kem::PrivateKey,
}

impl HybridIdentity {
    pub fn generate() -> Self {
        Self { key: kem::PrivateKey::generate() }
    }

    /// Parses one `AGE-SECRET-KEY-PQ-1...` (uppercase, as age writes it). The error is a
    /// short reason that never quotes the text.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (hrp, data) = bech32::decode(s).map_err(|why| format!("not valid Bech32: {why}"))?;
        let data = Zeroizing::new(data);
        if hrp != IDENTITY_HRP {
            return Err("its prefix is not `AGE-SECRET-KEY-PQ-1`".to_owned());
        }
        let seed: &[u8; kem::SEED_LEN] = data[..].try_into().map_err(|_| {
            format!(
                "it holds {} bytes, not the {} of a post-quantum age key",
                data.len(),
                kem::SEED_LEN
            )
        })?;
        Ok(Self { key: kem::PrivateKey::from_seed(seed) })
    }

    /// The `AGE-SECRET-KEY-PQ-1...` text. Handle with care.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let lower = Zeroizing::new(bech32::encode(IDENTITY_HRP, self.key.seed()));
        Zeroizing::new(lower.to_ascii_uppercase())
    }

    pub fn to_public(&self) -> HybridRecipient {
        HybridRecipient { key: self.key.public().clone() }
    }
}

impl fmt::Debug for HybridIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HybridIdentity").finish_non_exhaustive()
    }
}

impl age::Identity for HybridIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != STANZA_TAG {
            return None;
        }
        // A stanza of this type that is malformed is a broken header, not someone else's key.
        let invalid = Some(Err(age::DecryptError::InvalidHeader));
        let [arg] = &stanza.args[..] else { return invalid };
        let Ok(enc) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(arg) else {
            return invalid;
        };
        if enc.len() != kem::ENC_LEN || stanza.body.len() != FILE_KEY_BYTES + kem::TAG_LEN {
            return invalid;
        }
        match kem::open(&self.key, &enc, HPKE_INFO, &stanza.body) {
            Ok(plain) => {
                let mut key = Box::new([0u8; FILE_KEY_BYTES]);
                key.copy_from_slice(&plain);
                Some(Ok(FileKey::new(key)))
            }
            // ML-KEM rejects implicitly: another key's stanza fails only at the AEAD.
            Err(kem::KemError::Open) => None,
            Err(_) => invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_their_text() {
        let id = HybridIdentity::generate();
        let secret = id.to_secret_string();
        assert!(secret.starts_with(IDENTITY_PREFIX), "{}", &secret[..20]);
        let again = HybridIdentity::parse(&secret).unwrap();
        let public = id.to_public().to_string();
        assert!(public.starts_with(RECIPIENT_PREFIX));
        assert_eq!(again.to_public().to_string(), public);
        assert_eq!(HybridRecipient::parse(&public).unwrap().to_string(), public);
        assert!(!format!("{id:?}").contains(&secret[20..40]));
    }

    #[test]
    fn encrypts_and_decrypts_with_the_age_crate() {
        use std::io::{Read as _, Write as _};
        let id = HybridIdentity::generate();
        let r = id.to_public();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(b"data key").unwrap();
        w.finish().unwrap();
        let dec = age::Decryptor::new(&out[..]).unwrap();
        let mut plain = Vec::new();
        dec.decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"data key");
        let other = HybridIdentity::generate();
        let dec = age::Decryptor::new(&out[..]).unwrap();
        assert!(matches!(
            dec.decrypt(std::iter::once(&other as &dyn age::Identity)),
            Err(age::DecryptError::NoMatchingKeys)
        ));
    }

    #[test]
    fn malformed_text_gives_a_reason_and_never_panics() {
        let public = HybridIdentity::generate().to_public().to_string();
        let cut = &public[..public.len() - 40];
        assert!(HybridRecipient::parse(cut).unwrap_err().contains("checksum"));
        let short = bech32::encode(RECIPIENT_HRP, &[1; 100]);
        assert!(HybridRecipient::parse(&short).unwrap_err().contains("100 bytes"), "{short}");
        let x = bech32::encode("age", &[1; 32]);
        assert!(HybridRecipient::parse(&x).unwrap_err().contains("prefix"));
        let long = bech32::encode(IDENTITY_HRP, &[1; 33]).to_ascii_uppercase();
        assert!(HybridIdentity::parse(&long).unwrap_err().contains("33 bytes"));
        for bad in ["", "age1pq1", "AGE-SECRET-KEY-PQ-1", "age1pq1é", "AGE-SECRET-KEY-PQ-1ÀÀÀÀÀÀÀ"]
        {
            assert!(HybridRecipient::parse(bad).is_err(), "{bad:?}");
            assert!(HybridIdentity::parse(bad).is_err(), "{bad:?}");
        }
    }
}
