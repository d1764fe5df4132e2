//! Value encryption as sops does it: AES-256-GCM with a 32-byte nonce, the key path as AAD,
//! and the `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` text form.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use super::tree::Scalar;

type SopsGcm = AesGcm<Aes256, U32>;

/// Decrypted bytes, the `type:` tag and the iv.
type RawPlain = (Zeroizing<Vec<u8>>, String, Vec<u8>);

/// The 32-byte key every value of a file is encrypted with. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *k);
        Self(k)
    }

    /// `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        let k = Zeroizing::new(arr);
        Some(Self(k))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A decrypted leaf: a typed scalar, or the text of a comment.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    Value(Scalar),
    Comment(String),
}

/// Why one `ENC[...]` string could not be decrypted (the walker adds the path and file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CipherError {
    NotCiphertext,
    Encoding(&'static str),
    /// GCM authentication failed: wrong key, modified ciphertext, or a value moved to another key.
    Authentication,
    UnknownType(String),
    /// The plaintext does not parse as its `type:` says (the tag is not authenticated).
    BadPlaintext(&'static str),
}

impl fmt::Display for CipherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CipherError::NotCiphertext => f.write_str("it is not an ENC[AES256_GCM,...] value"),
            CipherError::Encoding(what) => write!(f, "its {what} is not valid base64"),
            CipherError::Authentication => f.write_str("authentication failed (GCM tag mismatch)"),
            CipherError::UnknownType(t) => write!(f, "unknown value type `{t}`"),
            CipherError::BadPlaintext(t) => write!(f, "the decrypted text is not a valid {t}"),
        }
    }
}

/// The `type:` tag sops writes for a scalar.
pub fn type_tag(s: &Scalar) -> &'static str {
    match s {
        Scalar::Str(_) | Scalar::Bytes(_) | Scalar::Null => "str",
        Scalar::Int(_) => "int",
        Scalar::Float(_) => "float",
        Scalar::Bool(_) => "bool",
        Scalar::Time(_) => "time",
    }
}

/// sops' `ToBytes`: the bytes that are encrypted and hashed into the MAC.
pub fn to_bytes(s: &Scalar) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match s {
        Scalar::Null => Vec::new(),
        Scalar::Str(s) => s.as_bytes().to_vec(),
        Scalar::Bytes(b) => b.clone(),
        Scalar::Int(i) => i.to_string().into_bytes(),
        Scalar::Float(f) => format_float(*f).into_bytes(),
        Scalar::Bool(true) => b"True".to_vec(),
        Scalar::Bool(false) => b"False".to_vec(),
        Scalar::Time(t) => t.as_bytes().to_vec(),
    })
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest decimal that round-trips, never
/// with an exponent. Rust's `Display` for `f64` has exactly these digits for finite values.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{f}")
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The four fields of an `ENC[...]` string, still base64.
struct EncParts<'a> {
    data: &'a str,
    iv: &'a str,
    tag: &'a str,
    ty: &'a str,
}

/// sops matches `^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]` (greedy); base64
/// never contains `,` so splitting on the field names gives the same groups.
fn split_enc(s: &str) -> Option<EncParts<'_>> {
    let rest = s.strip_prefix("ENC[AES256_GCM,data:")?;
    let (data, rest) = rest.rsplit_once(",iv:")?;
    let (iv, rest) = rest.rsplit_once(",tag:")?;
    let (tag, rest) = rest.rsplit_once(",type:")?;
    let close = rest.rfind(']')?;
    let ty = &rest[..close];
    if data.is_empty() || iv.is_empty() || tag.is_empty() || ty.is_empty() {
        return None;
    }
    Some(EncParts { data, iv, tag, ty })
}

/// Whether `s` looks like a sops ciphertext.
pub fn is_ciphertext(s: &str) -> bool {
    split_enc(s).is_some()
}

/// The `type:` of a ciphertext, without decrypting it.
pub fn ciphertext_type(s: &str) -> Option<&str> {
    split_enc(s).map(|p| p.ty)
}

#[derive(Hash, PartialEq, Eq)]
struct StashKey {
    aad: String,
    ty: &'static str,
    plaintext: Vec<u8>,
}

impl Drop for StashKey {
    fn drop(&mut self) {
        self.plaintext.zeroize();
    }
}

/// Encrypts and decrypts values under one data key. Remembers the iv of every value it
/// decrypted, so re-encrypting an unchanged value at the same path gives the same ciphertext
/// (no git diff after `edit`).
pub struct Cipher {
    key: DataKey,
    aead: SopsGcm,
    stash: HashMap<StashKey, [u8; 32]>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher").field("stash_len", &self.stash.len()).finish_non_exhaustive()
    }
}

impl Cipher {
    pub fn new(key: DataKey) -> Self {
        let aead = SopsGcm::new_from_slice(key.as_bytes()).expect("32-byte key");
        Self { key, aead, stash: HashMap::new() }
    }

    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// Encrypts a scalar at `aad` (the key path + `:`). Empty strings and nulls are not
    /// encrypted; the caller keeps them as they are.
    pub fn encrypt_scalar(&mut self, value: &Scalar, aad: &str) -> String {
        let bytes = to_bytes(value);
        self.encrypt_bytes(&bytes, type_tag(value), aad)
    }

    pub fn encrypt_comment(&mut self, text: &str, aad: &str) -> String {
        self.encrypt_bytes(text.as_bytes(), "comment", aad)
    }

    fn encrypt_bytes(&mut self, plaintext: &[u8], ty: &'static str, aad: &str) -> String {
        let key = StashKey { aad: aad.to_owned(), ty, plaintext: plaintext.to_vec() };
        let iv = match self.stash.get(&key) {
            Some(iv) => *iv,
            None => {
                let mut iv = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut iv);
                iv
            }
        };
        let nonce = aes_gcm::Nonce::<U32>::from_slice(&iv);
        let out = self
            .aead
            .encrypt(nonce, Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let (data, tag) = out.split_at(out.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{ty}]",
            B64.encode(data),
            B64.encode(iv),
            B64.encode(tag)
        )
    }

    /// Decrypts the raw bytes of a ciphertext; returns them with the type tag.
    fn decrypt_raw(&self, s: &str, aad: &str) -> Result<RawPlain, CipherError> {
        let parts = split_enc(s).ok_or(CipherError::NotCiphertext)?;
        let data = B64.decode(parts.data).map_err(|_| CipherError::Encoding("data"))?;
        let iv = B64.decode(parts.iv).map_err(|_| CipherError::Encoding("iv"))?;
        let tag = B64.decode(parts.tag).map_err(|_| CipherError::Encoding("tag"))?;
        if iv.len() != 32 || tag.len() != 16 {
            // sops accepts any iv size Go's GCM accepts; every sops release writes 32 bytes.
            return Err(CipherError::Authentication);
        }
        let mut msg = data;
        msg.extend_from_slice(&tag);
        let nonce = aes_gcm::Nonce::<U32>::from_slice(&iv);
        let plain = self
            .aead
            .decrypt(nonce, Payload { msg: &msg, aad: aad.as_bytes() })
            .map_err(|_| CipherError::Authentication)?;
        Ok((Zeroizing::new(plain), parts.ty.to_owned(), iv))
    }

    /// Decrypts one `ENC[...]` string at `aad` into a typed value or a comment, and stashes
    /// its iv for re-encryption. An empty string decrypts to an empty string.
    pub fn decrypt(&mut self, s: &str, aad: &str) -> Result<Plain, CipherError> {
        if s.is_empty() {
            return Ok(Plain::Value(Scalar::Str(String::new())));
        }
        let (plain, ty, iv) = self.decrypt_raw(s, aad)?;
        let text =
            || std::str::from_utf8(&plain).map_err(|_| CipherError::BadPlaintext("UTF-8 text"));
        let (value, stash_ty): (Plain, &'static str) = match ty.as_str() {
            "str" => match String::from_utf8(plain.to_vec()) {
                Ok(s) => (Plain::Value(Scalar::Str(s)), "str"),
                Err(e) => (Plain::Value(Scalar::Bytes(e.into_bytes())), "str"),
            },
            "bytes" => (Plain::Value(Scalar::Bytes(plain.to_vec())), "str"),
            "int" => {
                let i = text()?.parse::<i64>().map_err(|_| CipherError::BadPlaintext("int"))?;
                (Plain::Value(Scalar::Int(i)), "int")
            }
            "float" => {
                let t = text()?;
                let f = parse_go_float(t).ok_or(CipherError::BadPlaintext("float"))?;
                (Plain::Value(Scalar::Float(f)), "float")
            }
            "bool" => {
                let b = parse_bool(text()?).ok_or(CipherError::BadPlaintext("bool"))?;
                (Plain::Value(Scalar::Bool(b)), "bool")
            }
            "time" => {
                let t = text()?;
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| CipherError::BadPlaintext("time"))?;
                (Plain::Value(Scalar::Time(t.to_owned())), "time")
            }
            "comment" => (Plain::Comment(text()?.to_owned()), "comment"),
            other => return Err(CipherError::UnknownType(other.to_owned())),
        };
        // Stash under the bytes the value will serialize to again, so only an unchanged
        // value of the same type at the same path reuses this iv.
        let again = match &value {
            Plain::Value(v) => to_bytes(v),
            Plain::Comment(c) => Zeroizing::new(c.as_bytes().to_vec()),
        };
        if let Ok(iv) = <[u8; 32]>::try_from(iv.as_slice()) {
            self.stash.insert(
                StashKey { aad: aad.to_owned(), ty: stash_ty, plaintext: again.to_vec() },
                iv,
            );
        }
        Ok(value)
    }

    /// Decrypts a ciphertext holding plain text (the MAC).
    pub fn decrypt_text(&self, s: &str, aad: &str) -> Result<Zeroizing<String>, CipherError> {
        let (plain, _, _) = self.decrypt_raw(s, aad)?;
        let s = String::from_utf8(plain.to_vec())
            .map_err(|_| CipherError::BadPlaintext("UTF-8 text"))?;
        Ok(Zeroizing::new(s))
    }

    /// Encrypts plain text with a fresh iv (the MAC).
    pub fn encrypt_text(&mut self, s: &str, aad: &str) -> String {
        let mut iv = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let nonce = aes_gcm::Nonce::<U32>::from_slice(&iv);
        let out = self
            .aead
            .encrypt(nonce, Payload { msg: s.as_bytes(), aad: aad.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let (data, tag) = out.split_at(out.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:str]",
            B64.encode(data),
            B64.encode(iv),
            B64.encode(tag)
        )
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for the forms sops writes (`+Inf`, `-Inf`, `NaN`, decimals).
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

/// The AAD of a value: its map-key path joined with `:`, plus a trailing `:`.
pub fn aad(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        s.push_str(p);
        s.push(':');
    }
    if path.is_empty() {
        s.push(':');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go_formatfloat_f_minus_one() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(6.02e23), "602000000000000000000000");
        assert_eq!(format_float(1.5e-7), "0.00000015");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(12345678901234567890.0), "12345678901234567000");
        assert_eq!(format_float(0.1), "0.1");
    }

    #[test]
    fn aad_is_the_key_path_with_a_trailing_colon() {
        assert_eq!(aad(&[]), ":");
        assert_eq!(aad(&["a".into(), "b".into()]), "a:b:");
        assert_eq!(aad(&["".into()]), ":");
    }

    #[test]
    fn roundtrip_and_iv_reuse() {
        let mut c = Cipher::new(DataKey::generate());
        let e = c.encrypt_scalar(&Scalar::Int(42), "a:");
        assert!(e.ends_with(",type:int]"));
        assert_eq!(c.decrypt(&e, "a:").unwrap(), Plain::Value(Scalar::Int(42)));
        assert_eq!(c.encrypt_scalar(&Scalar::Int(42), "a:"), e);
        assert_ne!(c.encrypt_scalar(&Scalar::Int(43), "a:"), e);
        assert_eq!(c.decrypt(&e, "b:"), Err(CipherError::Authentication));
        assert_eq!(c.decrypt("", "b:").unwrap(), Plain::Value(Scalar::Str(String::new())));
    }

    #[test]
    fn data_key_debug_is_redacted() {
        assert_eq!(format!("{:?}", DataKey::generate()), "DataKey(<redacted>)");
    }
}
