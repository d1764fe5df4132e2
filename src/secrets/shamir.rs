//! Shamir secret sharing over GF(2^8) (the AES field, x^8+x^4+x^3+x+1), laid out as sops
//! (after HashiCorp Vault) does: a share is the y value for every secret byte, followed by
//! the one-byte x coordinate.

use rand::RngCore;
use zeroize::Zeroizing;

fn mul(a: u8, b: u8) -> u8 {
    // Constant-time shift-and-add multiplication with reduction by 0x11B.
    let mut r: u8 = 0;
    for i in (0..8).rev() {
        let bit = (b >> i) & 1;
        r = (0u8.wrapping_sub(r >> 7) & 0x1B) ^ (r << 1);
        r ^= 0u8.wrapping_sub(bit) & a;
    }
    r
}

fn inverse(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8) (0 maps to 0).
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u32;
    while e > 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

fn div(a: u8, b: u8) -> u8 {
    mul(a, inverse(b))
}

#[derive(Debug, PartialEq, Eq)]
pub enum ShamirError {
    TooFewShares,
    InvalidParameters,
    Inconsistent,
}

impl std::fmt::Display for ShamirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShamirError::TooFewShares => "at least two shares are needed",
            ShamirError::InvalidParameters => "invalid number of shares or threshold",
            ShamirError::Inconsistent => {
                "the shares have different lengths or repeat an x coordinate"
            }
        })
    }
}

/// Splits `secret` into `parts` shares of which any `threshold` recover it.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if threshold < 2 || parts < threshold || parts > 255 {
        return Err(ShamirError::InvalidParameters);
    }
    let mut shares: Vec<Zeroizing<Vec<u8>>> = (0..parts)
        .map(|i| {
            let mut s = Zeroizing::new(vec![0u8; secret.len() + 1]);
            s[secret.len()] = (i + 1) as u8;
            s
        })
        .collect();
    let mut coeffs = Zeroizing::new(vec![0u8; threshold]);
    for (idx, &byte) in secret.iter().enumerate() {
        coeffs[0] = byte;
        rand::rngs::OsRng.fill_bytes(&mut coeffs[1..]);
        for share in shares.iter_mut() {
            let x = share[secret.len()];
            // Horner's rule from the highest coefficient.
            let mut y = 0u8;
            for &c in coeffs.iter().rev() {
                y = mul(y, x) ^ c;
            }
            share[idx] = y;
        }
    }
    Ok(shares)
}

/// Recovers the secret from shares by Lagrange interpolation at x = 0.
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::TooFewShares);
    }
    let len = shares[0].len();
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return Err(ShamirError::Inconsistent);
    }
    let xs: Vec<u8> = shares.iter().map(|s| s[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err(ShamirError::Inconsistent);
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (idx, out) in secret.iter_mut().enumerate() {
        let mut result = 0u8;
        for (i, share) in shares.iter().enumerate() {
            let mut basis = 1u8;
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    basis = mul(basis, div(xj, xs[i] ^ xj));
                }
            }
            result ^= mul(share[idx], basis);
        }
        *out = result;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic() {
        // The AES field: 0x53 * 0xCA = 1.
        assert_eq!(mul(0x53, 0xCA), 1);
        assert_eq!(inverse(0x53), 0xCA);
        assert_eq!(mul(0x57, 0x83), 0xC1);
    }

    #[test]
    fn split_and_combine_any_threshold_subset() {
        let secret: Vec<u8> = (0..32).collect();
        let shares = split(&secret, 3, 2).unwrap();
        for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
            let got = combine(&[&shares[a], &shares[b]]).unwrap();
            assert_eq!(&*got, &secret);
        }
        let all = combine(&[&shares[0], &shares[1], &shares[2]]).unwrap();
        assert_eq!(&*all, &secret);
        assert_eq!(combine(&[&shares[0]]).unwrap_err(), ShamirError::TooFewShares);
    }
}
