//! An admin's or host's own age key, of either native kind: X25519 (`AGE-SECRET-KEY-1...`)
//! or hybrid post-quantum (`AGE-SECRET-KEY-PQ-1...`).

use std::fmt;

use zeroize::Zeroizing;

use super::hybrid::{self, HybridIdentity};
use super::recipient::AgeRecipient;
use super::KeysError;

const SECRET_KEY_HRP: &str = "age-secret-key-";

/// An age identity (`AGE-SECRET-KEY-1...` or `AGE-SECRET-KEY-PQ-1...`). The text is
/// zeroized on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct AgeIdentity {
    secret: Zeroizing<String>,
}

impl AgeIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        use age::secrecy::ExposeSecret as _;
        let id = age::x25519::Identity::generate();
        Self { secret: Zeroizing::new(id.to_string().expose_secret().to_owned()) }
    }

    /// A fresh random post-quantum identity (`AGE-SECRET-KEY-PQ-1...`, age 1.3).
    pub fn generate_post_quantum() -> Self {
        Self { secret: HybridIdentity::generate().to_secret_string() }
    }

    /// Parses one `AGE-SECRET-KEY-1...` or `AGE-SECRET-KEY-PQ-1...` line (surrounding
    /// whitespace ignored).
    pub fn parse(s: &str) -> Result<Self, KeysError> {
        let s = s.trim();
        if s.starts_with(hybrid::IDENTITY_PREFIX) {
            HybridIdentity::parse(s).map_err(|reason| KeysError::InvalidIdentity { reason })?;
        } else {
            s.parse::<age::x25519::Identity>()
                .map_err(|reason| KeysError::InvalidIdentity { reason: reason.to_owned() })?;
        }
        Ok(Self { secret: Zeroizing::new(s.to_owned()) })
    }

    /// Whether this is a hybrid post-quantum identity.
    pub fn is_post_quantum(&self) -> bool {
        self.secret.starts_with(hybrid::IDENTITY_PREFIX)
    }

    /// The identity whose X25519 scalar is `scalar` (age clamps it on use).
    pub(crate) fn from_scalar(scalar: &[u8; 32]) -> Self {
        let encoded = Zeroizing::new(
            bech32::encode(
                SECRET_KEY_HRP,
                bech32::ToBase32::to_base32(scalar),
                bech32::Variant::Bech32,
            )
            .expect("the age secret key HRP is valid"),
        );
        Self { secret: Zeroizing::new(encoded.to_uppercase()) }
    }

    /// The `AGE-SECRET-KEY-1...` text. Handle with care: write it only to private files.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    pub fn to_age(&self) -> AnyAgeIdentity {
        if self.is_post_quantum() {
            AnyAgeIdentity::Hybrid(
                HybridIdentity::parse(&self.secret).expect("validated when constructed"),
            )
        } else {
            AnyAgeIdentity::X25519(self.secret.parse().expect("validated when constructed"))
        }
    }

    pub fn to_public(&self) -> AgeRecipient {
        let public = match self.to_age() {
            AnyAgeIdentity::X25519(id) => id.to_public().to_string(),
            AnyAgeIdentity::Hybrid(id) => id.to_public().to_string(),
        };
        AgeRecipient::parse(&public).expect("age formats valid recipients")
    }
}

/// An identity of either native kind, for the `age` crate's decryptor.
pub enum AnyAgeIdentity {
    X25519(age::x25519::Identity),
    Hybrid(HybridIdentity),
}

impl age::Identity for AnyAgeIdentity {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        match self {
            Self::X25519(id) => id.unwrap_stanza(stanza),
            Self::Hybrid(id) => id.unwrap_stanza(stanza),
        }
    }

    fn unwrap_stanzas(
        &self,
        stanzas: &[age_core::format::Stanza],
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        match self {
            Self::X25519(id) => id.unwrap_stanzas(stanzas),
            Self::Hybrid(id) => id.unwrap_stanzas(stanzas),
        }
    }
}

impl fmt::Debug for AgeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeIdentity")
            .field("public", &super::abbreviate(self.to_public().as_str()))
            .finish_non_exhaustive()
    }
}
