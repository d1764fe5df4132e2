//! Store paths and NAR hashes: validated once, then passed around as types.

use std::fmt;

use base64::Engine as _;

pub const STORE_DIR: &str = "/nix/store";
/// Nix's own base32 alphabet (no e, o, u, t).
const NIX_BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a store path: {reason}")]
pub struct InvalidStorePath {
    pub value: String,
    pub reason: &'static str,
}

/// `/nix/store/<32 base32 chars>-<name>`, and nothing below it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct StorePath(String);

impl StorePath {
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidStorePath> {
        let value = s.into();
        let err = |reason| Err(InvalidStorePath { value: value.clone(), reason });
        let Some(base) = value.strip_prefix("/nix/store/") else {
            return err("it does not start with /nix/store/");
        };
        if base.len() < 34 || base.as_bytes()[32] != b'-' {
            return err("expected a 32-character hash, `-` and a name");
        }
        if !base.as_bytes()[..32].iter().all(|b| NIX_BASE32.contains(b)) {
            return err("the hash part is not Nix base32");
        }
        let name = &base[33..];
        if name.len() > 211 {
            return err("the name is longer than 211 characters");
        }
        if name.starts_with('.') {
            return err("the name starts with `.`");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b)) {
            return err("the name has characters other than letters, digits and +-._?=");
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> &str {
        &self.0[STORE_DIR.len() + 1..STORE_DIR.len() + 33]
    }

    /// The name after the hash (`nixos-system-web1-25.11`).
    pub fn name(&self) -> &str {
        &self.0[STORE_DIR.len() + 34..]
    }

    /// The entry in the store directory (`<hash>-<name>`).
    pub fn base_name(&self) -> &str {
        &self.0[STORE_DIR.len() + 1..]
    }

    /// The path relative to `/` (`nix/store/...`), as it appears in a tar stream.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StorePath {
    type Err = InvalidStorePath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for StorePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a SHA-256 NAR hash: {reason}")]
pub struct InvalidNarHash {
    pub value: String,
    pub reason: &'static str,
}

/// The SHA-256 of a path's NAR serialisation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NarHash([u8; 32]);

impl NarHash {
    /// Accepts the forms Nix prints: SRI (`sha256-<base64>`), and `sha256:` followed by Nix
    /// base32 (52 characters) or hex (64 characters).
    pub fn parse(s: &str) -> Result<Self, InvalidNarHash> {
        let err = |reason| InvalidNarHash { value: s.to_owned(), reason };
        if let Some(b64) = s.strip_prefix("sha256-") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| err("invalid base64"))?;
            return bytes.try_into().map(Self).map_err(|_| err("not 32 bytes"));
        }
        let Some(rest) = s.strip_prefix("sha256:") else {
            return Err(err("expected `sha256-` or `sha256:`"));
        };
        match rest.len() {
            52 => decode_nix_base32(rest).map(Self).ok_or_else(|| err("invalid Nix base32")),
            64 => {
                let bytes = hex::decode(rest).map_err(|_| err("invalid hex"))?;
                bytes.try_into().map(Self).map_err(|_| err("not 32 bytes"))
            }
            _ => Err(err("wrong length")),
        }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, the form `nix-store --dump-db` writes.
    pub fn to_base16(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256-<base64>`.
    pub fn to_sri(&self) -> String {
        format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

impl fmt::Display for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

impl serde::Serialize for NarHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_sri())
    }
}

/// Nix's base32: least significant 5-bit group last in the string.
fn decode_nix_base32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = NIX_BASE32.iter().position(|&a| a == c)? as u16;
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let v = digit << j;
        *out.get_mut(i)? |= (v & 0xff) as u8;
        let carry = (v >> 8) as u8;
        if i + 1 < out.len() {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: &str = "/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top";

    #[test]
    fn valid_store_paths() {
        let p = StorePath::new(TOP).unwrap();
        assert_eq!(p.hash_part(), "wgqb4b5brcyb0y5ggx8yjykdi84rs7xw");
        assert_eq!(p.name(), "top");
        assert_eq!(p.base_name(), "wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top");
        assert_eq!(p.relative(), "nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top");
        StorePath::new(
            "/nix/store/00000000000000000000000000000000-nixos-system-web1-25.11pre-git",
        )
        .unwrap();
    }

    #[test]
    fn invalid_store_paths() {
        let cases = [
            (
                "/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw",
                "expected a 32-character hash, `-` and a name",
            ),
            (
                "/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top/bin/sh",
                "the name has characters other than letters, digits and +-._?=",
            ),
            ("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-top", "the hash part is not Nix base32"),
            (
                "/usr/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top",
                "it does not start with /nix/store/",
            ),
            ("/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-.hidden", "the name starts with `.`"),
            (
                "/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-a b",
                "the name has characters other than letters, digits and +-._?=",
            ),
        ];
        for (value, reason) in cases {
            assert_eq!(StorePath::new(value).unwrap_err().reason, reason, "{value}");
        }
        assert_eq!(
            StorePath::new("/tmp/x").unwrap_err().to_string(),
            "`/tmp/x` is not a store path: it does not start with /nix/store/"
        );
    }

    // Vectors printed by `nix hash to-base32` / `to-base16` (Nix 2.8).
    const SRI: &str = "sha256-DXvLt3oJ+t1z9vA4rJnGRiYSIdiXWZKgIlTHu60OEOI=";
    const B32: &str = "sha256:1qhh1snvpisl4ah94ncpv0hi49j6qscsqf7hyrrxvyh9gavwnyqd";
    const B16: &str = "0d7bcbb77a09fadd73f6f038ac99c646261221d8975992a02254c7bbad0e10e2";

    #[test]
    fn nar_hash_forms_agree() {
        let a = NarHash::parse(SRI).unwrap();
        let b = NarHash::parse(B32).unwrap();
        let c = NarHash::parse(&format!("sha256:{B16}")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_base16(), B16);
        assert_eq!(a.to_sri(), SRI);
    }

    #[test]
    fn bad_nar_hashes() {
        assert!(NarHash::parse("md5-AAAA").is_err());
        assert!(NarHash::parse("sha256-AAAA").is_err());
        assert!(NarHash::parse("sha256:zzzz").is_err());
        // the top 5-bit group may only carry 1 bit into a 256-bit value
        assert!(
            NarHash::parse("sha256:zqhh1snvpisl4ah94ncpv0hi49j6qscsqf7hyrrxvyh9gavwnyqd").is_err()
        );
    }
}
