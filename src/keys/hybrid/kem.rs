//! The hybrid KEM age's post-quantum recipients use, MLKEM768-X25519 (X-Wing, as
//! draft-connolly-cfrg-xwing-kem defines it), and the single HPKE (RFC 9180) operation age
//! needs on top: base mode, HKDF-SHA256, ChaCha20Poly1305, one message sealed per key.
//!
//! A private key is a 32-byte seed. SHAKE256 expands it to 96 bytes: the first 64 are the
//! ML-KEM-768 seed (d || z), the last 32 the X25519 scalar. A public key is the ML-KEM
//! encapsulation key (1184 bytes) followed by the X25519 public key; an encapsulation is the
//! ML-KEM ciphertext (1088 bytes) followed by an ephemeral X25519 public key. The shared
//! secret is SHA3-256 over both shared secrets, the X25519 parts and a fixed label.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use ml_kem::{Decapsulate as _, KeyExport as _};
use sha2::Sha256;
use sha3::Digest as _;
use shake::{ExtendableOutput as _, Update as _, XofReader as _};
use zeroize::Zeroizing;

pub(crate) const SEED_LEN: usize = 32;
const MLKEM_PUBLIC_LEN: usize = 1184;
const MLKEM_CIPHERTEXT_LEN: usize = 1088;
const X25519_LEN: usize = 32;
pub(crate) const PUBLIC_KEY_LEN: usize = MLKEM_PUBLIC_LEN + X25519_LEN;
pub(crate) const ENC_LEN: usize = MLKEM_CIPHERTEXT_LEN + X25519_LEN;
/// ChaCha20Poly1305's tag.
pub(crate) const TAG_LEN: usize = 16;

/// X-Wing's domain separator: the ASCII art `\.//^\`.
const XWING_LABEL: &[u8] = b"\\.//^\\";
/// HPKE's suite: KEM 0x647a (MLKEM768-X25519), KDF 0x0001 (HKDF-SHA256), AEAD 0x0003
/// (ChaCha20Poly1305).
const SUITE_ID: &[u8] = b"HPKE\x64\x7a\x00\x01\x00\x03";
const HPKE_VERSION: &[u8] = b"HPKE-v1";
const MODE_BASE: u8 = 0;

/// Why a key or an encapsulation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KemError {
    /// The public key has the wrong length or its ML-KEM part fails FIPS 203's check.
    InvalidPublicKey,
    /// The X25519 exchange gave the all-zero value: a low-order point.
    LowOrderPoint,
    /// The encapsulation has the wrong length.
    InvalidEncapsulation,
    /// The AEAD did not open: not this key, or a damaged message.
    Open,
}

/// An MLKEM768-X25519 public key, validated.
#[derive(Clone)]
pub(crate) struct PublicKey {
    mlkem: ml_kem::EncapsulationKey768,
    x25519: [u8; X25519_LEN],
}

impl PublicKey {
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, KemError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(KemError::InvalidPublicKey);
        }
        let (m, x) = bytes.split_at(MLKEM_PUBLIC_LEN);
        let m = ml_kem::Key::<ml_kem::EncapsulationKey768>::try_from(m)
            .map_err(|_| KemError::InvalidPublicKey)?;
        let mlkem = ml_kem::EncapsulationKey768::new(&m).map_err(|_| KemError::InvalidPublicKey)?;
        let x25519: [u8; X25519_LEN] = x.try_into().map_err(|_| KemError::InvalidPublicKey)?;
        // A low-order point makes every exchange all-zero (clamped scalars are multiples of
        // the cofactor), so one trial with a fixed scalar finds it.
        if MontgomeryPoint(x25519).mul_clamped([0x55; 32]).0 == [0; 32] {
            return Err(KemError::LowOrderPoint);
        }
        Ok(Self { mlkem, x25519 })
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.mlkem.to_bytes().to_vec();
        out.extend_from_slice(&self.x25519);
        out
    }
}

/// An MLKEM768-X25519 private key: the seed and what it expands to.
pub(crate) struct PrivateKey {
    seed: Zeroizing<[u8; SEED_LEN]>,
    mlkem: ml_kem::DecapsulationKey768,
    x25519: Zeroizing<[u8; X25519_LEN]>,
    public: PublicKey,
}

impl PrivateKey {
    pub(crate) fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let mut expanded = Zeroizing::new([0u8; 96]);
        let mut xof = shake::Shake256::default();
        xof.update(seed);
        xof.finalize_xof().read(&mut expanded[..]);
        let mut mlkem_seed = ml_kem::Seed::default();
        mlkem_seed.copy_from_slice(&expanded[..64]);
        let mlkem = ml_kem::DecapsulationKey768::from_seed(mlkem_seed);
        zeroize::Zeroize::zeroize(mlkem_seed.as_mut_slice());
        let mut x25519 = Zeroizing::new([0u8; X25519_LEN]);
        x25519.copy_from_slice(&expanded[64..]);
        let public = PublicKey {
            mlkem: mlkem.encapsulation_key().clone(),
            x25519: MontgomeryPoint::mul_base_clamped(*x25519).to_bytes(),
        };
        Self { seed: Zeroizing::new(*seed), mlkem, x25519, public }
    }

    pub(crate) fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed[..]);
        Self::from_seed(&seed)
    }

    pub(crate) fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.public
    }

    fn decapsulate(&self, enc: &[u8]) -> Result<Zeroizing<[u8; 32]>, KemError> {
        if enc.len() != ENC_LEN {
            return Err(KemError::InvalidEncapsulation);
        }
        let (ct_m, ct_x) = enc.split_at(MLKEM_CIPHERTEXT_LEN);
        let ct_m = ml_kem::Ciphertext::<ml_kem::MlKem768>::try_from(ct_m)
            .map_err(|_| KemError::InvalidEncapsulation)?;
        let ct_x: [u8; X25519_LEN] = ct_x.try_into().map_err(|_| KemError::InvalidEncapsulation)?;
        let ss_m = Zeroizing::new(<[u8; 32]>::from(self.mlkem.decapsulate(&ct_m)));
        let ss_x = Zeroizing::new(MontgomeryPoint(ct_x).mul_clamped(*self.x25519).to_bytes());
        if *ss_x == [0; 32] {
            return Err(KemError::LowOrderPoint);
        }
        Ok(combine(&ss_m, &ss_x, &ct_x, &self.public.x25519))
    }
}

fn combine(
    ss_m: &[u8; 32],
    ss_x: &[u8; 32],
    ct_x: &[u8; 32],
    pk_x: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut h = sha3::Sha3_256::new();
    for part in [&ss_m[..], ss_x, ct_x, pk_x, XWING_LABEL] {
        sha3::Digest::update(&mut h, part);
    }
    Zeroizing::new(h.finalize().into())
}

fn encapsulate(pk: &PublicKey) -> Result<(Vec<u8>, Zeroizing<[u8; 32]>), KemError> {
    let mut m = Zeroizing::new([0u8; 32]);
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut m[..]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut ephemeral[..]);
    let ct_x = MontgomeryPoint::mul_base_clamped(*ephemeral).to_bytes();
    let ss_x = Zeroizing::new(MontgomeryPoint(pk.x25519).mul_clamped(*ephemeral).to_bytes());
    if *ss_x == [0; 32] {
        return Err(KemError::LowOrderPoint);
    }
    let (ct_m, ss_m) = pk.mlkem.encapsulate_deterministic(&ml_kem::B32::from(*m));
    let ss_m = Zeroizing::new(<[u8; 32]>::from(ss_m));
    let mut enc = ct_m.to_vec();
    enc.extend_from_slice(&ct_x);
    Ok((enc, combine(&ss_m, &ss_x, &ct_x, &pk.x25519)))
}

fn labeled_extract(salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<Vec<u8>> {
    let input = Zeroizing::new([HPKE_VERSION, SUITE_ID, label, ikm].concat());
    Zeroizing::new(Hkdf::<Sha256>::extract(Some(salt), &input).0.to_vec())
}

fn labeled_expand(prk: &[u8], label: &[u8], info: &[u8], out: &mut [u8]) {
    let len = u16::try_from(out.len()).expect("HPKE outputs are short");
    let labeled = [&len.to_be_bytes()[..], HPKE_VERSION, SUITE_ID, label, info].concat();
    Hkdf::<Sha256>::from_prk(prk)
        .expect("an HKDF-SHA256 PRK is 32 bytes")
        .expand(&labeled, out)
        .expect("HPKE asks for at most 32 bytes");
}

/// HPKE's key schedule in base mode: the AEAD key and nonce of the first (only) message.
fn key_schedule(shared_secret: &[u8; 32], info: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let psk_id_hash = labeled_extract(b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(b"", b"info_hash", info);
    let context = [&[MODE_BASE][..], &psk_id_hash, &info_hash].concat();
    let secret = labeled_extract(shared_secret, b"secret", b"");
    let mut key = Zeroizing::new([0u8; 32]);
    labeled_expand(&secret, b"key", &context, &mut key[..]);
    let mut nonce = [0u8; 12];
    labeled_expand(&secret, b"base_nonce", &context, &mut nonce);
    (key, nonce)
}

/// HPKE single-shot seal to `pk`: the encapsulation and the ciphertext (plaintext + tag).
pub(crate) fn seal(
    pk: &PublicKey,
    info: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), KemError> {
    let (enc, ss) = encapsulate(pk)?;
    let (key, nonce) = key_schedule(&ss, info);
    let ct = ChaCha20Poly1305::new((&*key).into())
        .encrypt((&nonce).into(), Payload { msg: plaintext, aad: b"" })
        .expect("ChaCha20Poly1305 seals any short message");
    Ok((enc, ct))
}

/// HPKE single-shot open with `sk`.
pub(crate) fn open(
    sk: &PrivateKey,
    enc: &[u8],
    info: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KemError> {
    let ss = sk.decapsulate(enc)?;
    let (key, nonce) = key_schedule(&ss, info);
    ChaCha20Poly1305::new((&*key).into())
        .decrypt((&nonce).into(), Payload { msg: ciphertext, aad: b"" })
        .map(Zeroizing::new)
        .map_err(|_| KemError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_a_wrong_key_does_not_open() {
        let sk = PrivateKey::generate();
        let pk = PublicKey::from_bytes(&sk.public().to_bytes()).unwrap();
        let (enc, ct) = seal(&pk, b"info", b"sixteen byte key").unwrap();
        assert_eq!((enc.len(), ct.len()), (ENC_LEN, 16 + TAG_LEN));
        assert_eq!(&open(&sk, &enc, b"info", &ct).unwrap()[..], b"sixteen byte key");
        assert_eq!(open(&sk, &enc, b"other info", &ct).unwrap_err(), KemError::Open);
        assert_eq!(open(&PrivateKey::generate(), &enc, b"info", &ct).unwrap_err(), KemError::Open);
        assert_eq!(open(&sk, &enc[1..], b"info", &ct).unwrap_err(), KemError::InvalidEncapsulation);
    }

    #[test]
    fn the_seed_determines_the_key() {
        let a = PrivateKey::from_seed(&[9; 32]);
        let b = PrivateKey::from_seed(&[9; 32]);
        assert_eq!(a.public().to_bytes(), b.public().to_bytes());
        assert_eq!(a.public().to_bytes().len(), PUBLIC_KEY_LEN);
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let good = PrivateKey::generate().public().to_bytes();
        assert_eq!(PublicKey::from_bytes(&good[1..]).err(), Some(KemError::InvalidPublicKey));
        // A coefficient at or above q (0xfff in the first 12 bits) fails FIPS 203's check.
        let mut bad = good.clone();
        bad[0] = 0xff;
        bad[1] |= 0x0f;
        assert_eq!(PublicKey::from_bytes(&bad).err(), Some(KemError::InvalidPublicKey));
        let mut low = good;
        low[MLKEM_PUBLIC_LEN..].copy_from_slice(&[0; 32]);
        assert_eq!(PublicKey::from_bytes(&low).err(), Some(KemError::LowOrderPoint));
    }
}
