//! ssh-to-age: an ed25519 SSH key seen as an age X25519 key, the way Mic92's ssh-to-age (and
//! so sops-nix) converts it. A host encrypted to the converted recipient can decrypt with
//! nothing but its SSH host key.

use base64::Engine as _;
use curve25519_dalek::edwards::CompressedEdwardsY;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::identity::AgeIdentity;
use super::recipient::AgeRecipient;
use super::KeysError;

/// `ssh-ed25519 AAAA... [comment]` → `age1...`: the Edwards point's Montgomery u coordinate.
pub fn ssh_public_key_to_age(line: &str) -> Result<AgeRecipient, KeysError> {
    let point = ed25519_public_from_line(line)?;
    let edwards = CompressedEdwardsY(point).decompress().ok_or_else(|| KeysError::SshKey {
        what: "public key".into(),
        reason: "the ed25519 public key is not a valid curve point".into(),
    })?;
    let u = edwards.to_montgomery().to_bytes();
    let text = bech32::encode("age", bech32::ToBase32::to_base32(&u), bech32::Variant::Bech32)
        .expect("the `age` HRP is valid");
    AgeRecipient::parse(&text)
}

/// An ed25519 seed → the age identity ssh-to-age derives: the first 32 bytes of
/// SHA-512(seed), i.e. the clamped-on-use X25519 scalar ed25519 itself uses.
pub fn ed25519_seed_to_age(seed: &[u8; 32]) -> AgeIdentity {
    let digest = Zeroizing::new(<[u8; 64]>::from(Sha512::digest(seed)));
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&digest[..32]);
    AgeIdentity::from_scalar(&scalar)
}

/// An unencrypted OpenSSH ed25519 private key file → its age identity.
pub fn ssh_private_key_to_age(private_key: &[u8]) -> Result<AgeIdentity, KeysError> {
    let key = super::openssh::parse_ed25519_private(private_key)
        .map_err(|e| KeysError::SshKey { what: "private key".into(), reason: e.reason().into() })?;
    Ok(ed25519_seed_to_age(&key.seed))
}

/// The 32-byte public key inside an `ssh-ed25519` authorized_keys line.
pub(crate) fn ed25519_public_from_line(line: &str) -> Result<[u8; 32], KeysError> {
    let not_ed25519 = || KeysError::SshKey {
        what: "public key".into(),
        reason: "only ed25519 keys are supported".into(),
    };
    let malformed = || KeysError::SshKey {
        what: "public key".into(),
        reason: "not an `ssh-ed25519 AAAA...` public key line".into(),
    };
    let mut fields = line.split_whitespace();
    let kind = fields.next().ok_or_else(malformed)?;
    if kind != "ssh-ed25519" {
        return Err(not_ed25519());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(fields.next().ok_or_else(malformed)?)
        .map_err(|_| malformed())?;
    let mut r = super::openssh::Reader::new(&blob);
    if r.string().map_err(|_| malformed())? != b"ssh-ed25519" {
        return Err(not_ed25519());
    }
    let key = r.string().map_err(|_| malformed())?;
    if !r.is_empty() {
        return Err(malformed());
    }
    key.try_into().map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The real cross-checks (age-keygen -y, age -e/-d) are in tests/it/keys.rs.
    #[test]
    fn public_conversion_matches_the_private_one() {
        let keys = crate::keys::generate::HostKeys::generate("web1", false);
        let from_public = ssh_public_key_to_age(keys.ssh_public_line()).unwrap();
        let from_private = ssh_private_key_to_age(keys.ssh_private_openssh().as_bytes()).unwrap();
        assert_eq!(from_public, from_private.to_public());
    }

    #[test]
    fn refuses_other_key_types() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDE alice";
        let err = ssh_public_key_to_age(rsa).unwrap_err();
        assert!(err.to_string().contains("only ed25519"), "{err}");
    }
}
