//! Bech32 (BIP 173 checksum) without BIP 173's 90-character limit, as age encodes keys: a
//! post-quantum recipient is about 1,950 characters, which the `bech32` crate refuses.

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const GENERATOR: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
const CHECKSUM_LEN: usize = 6;

fn polymod(values: impl Iterator<Item = u8>) -> u32 {
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GENERATOR.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// The human-readable part expanded for the checksum (lowercase, as BIP 173 defines it).
fn hrp_expand(hrp: &str) -> impl Iterator<Item = u8> + '_ {
    let lower = hrp.bytes().map(|b| b.to_ascii_lowercase());
    lower.clone().map(|b| b >> 5).chain(std::iter::once(0)).chain(lower.map(|b| b & 31))
}

/// Regroups bits: 8 to 5 with padding (encoding), 5 to 8 without (decoding, where leftover
/// bits must be fewer than 5 and zero).
fn convert_bits(data: &[u8], from: u32, to: u32, pad: bool) -> Option<Vec<u8>> {
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let max = (1u32 << to) - 1;
    let mut out = Vec::with_capacity(data.len() * from as usize / to as usize + 1);
    for &v in data {
        acc = (acc << from) | u32::from(v);
        bits += from;
        while bits >= to {
            bits -= to;
            out.push(((acc >> bits) & max) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if pad {
        if bits > 0 {
            out.push(((acc << (to - bits)) & max) as u8);
        }
    } else if bits >= from || acc != 0 {
        return None;
    }
    Some(out)
}

/// Encodes `data` under `hrp`, in lowercase.
pub(crate) fn encode(hrp: &str, data: &[u8]) -> String {
    let values = convert_bits(data, 8, 5, true).expect("padding always succeeds");
    let chk = polymod(
        hrp_expand(hrp).chain(values.iter().copied()).chain(std::iter::repeat_n(0, CHECKSUM_LEN)),
    ) ^ 1;
    let mut s = String::with_capacity(hrp.len() + 1 + values.len() + CHECKSUM_LEN);
    s.push_str(&hrp.to_ascii_lowercase());
    s.push('1');
    s.extend(values.iter().map(|&v| CHARSET[usize::from(v)] as char));
    s.extend((0..CHECKSUM_LEN).map(|i| CHARSET[((chk >> (5 * (5 - i))) & 31) as usize] as char));
    s
}

/// Decodes a Bech32 string: the human-readable part as written (its case kept) and the
/// data. Mixed case, a bad character or a bad checksum is an error with a short reason.
pub(crate) fn decode(s: &str) -> Result<(&str, Vec<u8>), &'static str> {
    if !s.is_ascii() {
        return Err("it contains a character that is not ASCII");
    }
    if s.bytes().any(|b| b.is_ascii_lowercase()) && s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("it mixes upper and lower case");
    }
    let pos = s.rfind('1').ok_or("it has no `1` separator")?;
    if pos < 1 || pos + 1 + CHECKSUM_LEN > s.len() {
        return Err("it is too short");
    }
    let (hrp, rest) = (&s[..pos], &s[pos + 1..]);
    if hrp.bytes().any(|b| !(33..=126).contains(&b)) {
        return Err("its prefix has an invalid character");
    }
    let values = rest
        .bytes()
        .map(|b| CHARSET.iter().position(|&c| c == b.to_ascii_lowercase()).map(|p| p as u8))
        .collect::<Option<Vec<u8>>>()
        .ok_or("it has a character Bech32 does not use")?;
    if polymod(hrp_expand(hrp).chain(values.iter().copied())) != 1 {
        return Err("its checksum does not match (a typo, or a truncated copy)");
    }
    let data = convert_bits(&values[..values.len() - CHECKSUM_LEN], 5, 8, false)
        .ok_or("its padding is invalid")?;
    Ok((hrp, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_past_the_bip173_length_limit() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1216).collect();
        let s = encode("age1pq", &data);
        assert!(s.len() > 1900 && s.starts_with("age1pq1"), "{}", s.len());
        assert_eq!(decode(&s).unwrap(), ("age1pq", data.clone()));
        let upper = s.to_ascii_uppercase();
        assert_eq!(decode(&upper).unwrap(), ("AGE1PQ", data));
    }

    #[test]
    fn agrees_with_the_bech32_crate_on_short_strings() {
        use bech32::ToBase32 as _;
        let data = [7u8; 32];
        let theirs = bech32::encode("age", data.to_base32(), bech32::Variant::Bech32).unwrap();
        assert_eq!(encode("age", &data), theirs);
    }

    #[test]
    fn refuses_typos_mixed_case_and_garbage_without_panicking() {
        let s = encode("age1pq", &[1, 2, 3, 4]);
        let mut typo = s.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        assert!(decode(std::str::from_utf8(&typo).unwrap()).is_err());
        let mixed = format!("AGE1PQ{}", &s[6..]);
        assert_eq!(decode(&mixed), Err("it mixes upper and lower case"));
        for bad in ["", "1", "age1", "age1pq1", "é1qqqqqq", "age1pq1bbbbbbbb", "\u{0}1qqqqqq"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
