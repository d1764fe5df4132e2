//! Typing of plain scalars the way yaml.v3 (and therefore sops) types them, and the textual
//! forms yaml.v3 prints for numbers and timestamps.
//!
//! The rules are yaml.v3's core-schema resolver, quirks included: `yes`/`on` stay strings,
//! a leading zero means octal (`0123` is 83), underscores are ignored in numbers, integers
//! that only fit in `u64` are a separate (unsupported) type, and dates become timestamps.

use crate::secrets::tree::Scalar;

/// What a plain scalar resolves to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    /// Fits in `u64` but not `i64`: yaml.v3 decodes it as `uint64`, which sops cannot encrypt.
    Uint(u64),
    Float(f64),
    /// RFC 3339 (nano) text of the timestamp.
    Time(String),
    Str,
}

/// Resolves a plain (unquoted, untagged) scalar as yaml.v3 does.
pub(crate) fn resolve_plain(s: &str) -> Resolved {
    let Some(&first) = s.as_bytes().first() else {
        return Resolved::Null;
    };
    let hint = match first {
        b'+' | b'-' => b'S',
        b'0'..=b'9' => b'D',
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' => b'M',
        b'.' => b'.',
        _ => return Resolved::Str,
    };
    match s {
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match hint {
        b'.' => match go_parse_float(s) {
            Some(f) => Resolved::Float(f),
            None => Resolved::Str,
        },
        b'D' | b'S' => resolve_number(s),
        _ => Resolved::Str,
    }
}

fn resolve_number(s: &str) -> Resolved {
    if let Some(t) = parse_timestamp(s) {
        return Resolved::Time(t);
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(i) = go_parse_int(&plain, 0) {
        return Resolved::Int(i);
    }
    if let Some(u) = go_parse_uint(&plain, 0) {
        return Resolved::Uint(u);
    }
    if is_yaml_float(&plain) {
        if let Some(f) = go_parse_float(&plain) {
            return Resolved::Float(f);
        }
    }
    // yaml.v3 strips the prefix and lets ParseInt see a sign after it (`0b-101` is -5).
    for (prefix, radix) in [("0b", 2), ("0o", 8)] {
        if let Some(rest) = plain.strip_prefix(prefix) {
            if let Some(i) = go_parse_int(rest, radix) {
                return Resolved::Int(i);
            }
            if let Some(u) = go_parse_uint(rest, radix) {
                return Resolved::Uint(u);
            }
        } else if let Some(rest) = plain.strip_prefix(&format!("-{prefix}")) {
            if let Some(i) = go_parse_int(&format!("-{rest}"), radix) {
                return Resolved::Int(i);
            }
        }
    }
    Resolved::Str
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseUint(s, base, 64)` for base 0 (prefix detection), 2 and 8.
fn go_parse_uint(s: &str, base: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if base == 0 {
        let b = s.as_bytes();
        if b[0] == b'0' {
            let lower = b.get(1).map(|c| c.to_ascii_lowercase());
            match lower {
                Some(b'b') if b.len() >= 3 => (&s[2..], 2),
                Some(b'o') if b.len() >= 3 => (&s[2..], 8),
                Some(b'x') if b.len() >= 3 => (&s[2..], 16),
                _ => (&s[1..], 8),
            }
        } else {
            (s, 10)
        }
    } else {
        (s, base)
    };
    let mut n: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        n = n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Go's `strconv.ParseInt(s, base, 64)`.
fn go_parse_int(s: &str, base: u32) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let u = go_parse_uint(rest, base)?;
    if neg {
        if u <= 1u64 << 63 {
            Some((u as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input: an overflow is an error.
fn go_parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let body = s.trim_start_matches(['+', '-']);
    if b.len() - body.len() > 1 || body.is_empty() {
        return None;
    }
    // Only decimal syntax is accepted here (hex floats and inf/nan words are filtered out by
    // the callers' hints); Rust's parser accepts the same decimal forms as Go's.
    if !body.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    if f.is_infinite() {
        return None;
    }
    Some(f)
}

/// Days in a month of the proleptic Gregorian calendar.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses the timestamp forms yaml.v3 accepts and returns Go's RFC 3339 (nano) rendering of
/// the resulting `time.Time`, or `None` if `s` is not a timestamp.
///
/// Accepted (Go layouts): `2006-1-2T15:4:5.999999999Z07:00` (also with `t`),
/// `2006-1-2 15:4:5.999999999` (UTC) and `2006-1-2`.
pub(crate) fn parse_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let mut c = Cursor { b, i: 5 };
    let year: u32 = s[..4].parse().ok()?;
    let month = c.num(2)?;
    c.eat(b'-')?;
    let day = c.num(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if c.done() {
        return Some(format!("{date}T00:00:00Z"));
    }
    let with_zone = match b[c.i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return None,
    };
    c.i += 1;
    let hour = c.num(2)?;
    c.eat(b':')?;
    let minute = c.num(2)?;
    c.eat(b':')?;
    let second = c.num(2)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut frac = String::new();
    if c.i + 1 < b.len() && matches!(b[c.i], b'.' | b',') && b[c.i + 1].is_ascii_digit() {
        c.i += 1;
        while c.i < b.len() && b[c.i].is_ascii_digit() {
            frac.push(char::from(b[c.i]));
            c.i += 1;
        }
        frac.truncate(9);
        let trimmed = frac.trim_end_matches('0').len();
        frac.truncate(trimmed);
    }
    let zone = if with_zone {
        match *b.get(c.i)? {
            b'Z' => {
                c.i += 1;
                "Z".to_string()
            }
            sign @ (b'+' | b'-') => {
                let z = s.get(c.i..c.i + 6)?.as_bytes();
                if z[3] != b':' || !z[1..3].iter().chain(&z[4..6]).all(u8::is_ascii_digit) {
                    return None;
                }
                let zh: u32 = s[c.i + 1..c.i + 3].parse().ok()?;
                let zm: u32 = s[c.i + 4..c.i + 6].parse().ok()?;
                if zh > 24 || zm > 60 {
                    return None;
                }
                c.i += 6;
                if zh == 0 && zm == 0 {
                    "Z".to_string()
                } else {
                    format!("{}{zh:02}:{zm:02}", char::from(sign))
                }
            }
            _ => return None,
        }
    } else {
        "Z".to_string()
    };
    if !c.done() {
        return None;
    }
    let frac = if frac.is_empty() { String::new() } else { format!(".{frac}") };
    Some(format!("{date}T{hour:02}:{minute:02}:{second:02}{frac}{zone}"))
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// One or up to `max` digits (Go's non-fixed `getnum`).
    fn num(&mut self, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i]).ok()?.parse().ok()
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }
    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` with yaml.v3's spellings of the specials.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` gives the shortest round-trip digits, as Go's -1 precision does.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exp) {
        let (head, tail) = digits.split_at(1);
        let tail = if tail.is_empty() { String::new() } else { format!(".{tail}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{tail}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

/// The typed value of a plain scalar, as yaml.v3 decodes it for sops.
///
/// Returns `None` for an integer that fits only in `u64`: yaml.v3 decodes it as `uint64`,
/// which sops refuses to encrypt.
pub fn parse_scalar_plain(s: &str) -> Option<Scalar> {
    Some(match resolve_plain(s) {
        Resolved::Null => Scalar::Null,
        Resolved::Bool(b) => Scalar::Bool(b),
        Resolved::Int(i) => Scalar::Int(i),
        Resolved::Uint(_) => return None,
        Resolved::Float(f) => Scalar::Float(f),
        Resolved::Time(t) => Scalar::Time(t),
        Resolved::Str => Scalar::Str(s.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_v3_typing_quirks() {
        assert_eq!(resolve_plain("0123"), Resolved::Int(83));
        assert_eq!(resolve_plain("0x1F"), Resolved::Int(31));
        assert_eq!(resolve_plain("0o17"), Resolved::Int(15));
        assert_eq!(resolve_plain("0b101"), Resolved::Int(5));
        assert_eq!(resolve_plain("-0x10"), Resolved::Int(-16));
        assert_eq!(resolve_plain("1_000"), Resolved::Int(1000));
        assert_eq!(resolve_plain("09"), Resolved::Float(9.0));
        assert_eq!(resolve_plain("yes"), Resolved::Str);
        assert_eq!(resolve_plain("True"), Resolved::Bool(true));
        assert_eq!(resolve_plain(""), Resolved::Null);
        assert_eq!(resolve_plain("~"), Resolved::Null);
        assert_eq!(resolve_plain("1e3"), Resolved::Float(1000.0));
        assert_eq!(resolve_plain("1."), Resolved::Float(1.0));
        assert_eq!(resolve_plain(".5"), Resolved::Float(0.5));
        assert_eq!(resolve_plain("1e400"), Resolved::Str);
        assert_eq!(resolve_plain("18446744073709551615"), Resolved::Uint(u64::MAX));
        assert_eq!(resolve_plain("99999999999999999999999"), Resolved::Float(1e23));
        assert_eq!(resolve_plain("-9223372036854775808"), Resolved::Int(i64::MIN));
        assert_eq!(resolve_plain("<<"), Resolved::Str);
        assert_eq!(resolve_plain("1:30"), Resolved::Str);
        assert_eq!(resolve_plain("0x"), Resolved::Str);
    }

    #[test]
    fn timestamps_render_as_rfc3339_nano() {
        let t = |s| parse_timestamp(s);
        assert_eq!(t("2024-02-29").as_deref(), Some("2024-02-29T00:00:00Z"));
        assert_eq!(t("2023-02-29"), None);
        assert_eq!(t("2024-2-9").as_deref(), Some("2024-02-09T00:00:00Z"));
        assert_eq!(
            t("2001-12-14t21:59:43.10-05:00").as_deref(),
            Some("2001-12-14T21:59:43.1-05:00")
        );
        assert_eq!(t("2001-12-14 21:59:43.10").as_deref(), Some("2001-12-14T21:59:43.1Z"));
        assert_eq!(t("2024-02-29T12:34:56+00:00").as_deref(), Some("2024-02-29T12:34:56Z"));
        assert_eq!(t("2001-12-14 21:59:43.10 -5"), None);
        assert_eq!(t("2024-02-29T12:34:56"), None);
    }

    #[test]
    fn floats_print_like_go_g_format() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(6.02e23), "6.02e+23");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(1234567.0), "1.234567e+06");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(1.1), "1.1");
        assert_eq!(format_float(f64::NEG_INFINITY), "-.inf");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(1e100), "1e+100");
    }
}
